"""Moving a camera to another stage. A registered camera's stage is part of the config on the
camera (the crop keys it writes), which the shadow cannot change, so the service refuses the move
everywhere (API, admin, services) and says how to do it; an unregistered camera moves freely."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

import awsclients as aws
from devices import services
from devices.models import Device
from edge_package.config import parse_config
from edge_package.contracts import build_crop_key
from stages.models import Stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def bar(two_worlds):
    ours = two_worlds[0]
    return Stage.objects.create(
        organization=ours.organization, festival=ours.festival, name="Bar", slug="bar"
    )


def _role_resource(device: Device) -> str:
    policy = aws.client("iam").get_role_policy(RoleName=device.role_name, PolicyName="own-prefix")
    document = policy["PolicyDocument"]
    if isinstance(document, str):
        document = json.loads(document)
    return document["Statement"][0]["Resource"]


def test_the_service_refuses_to_move_a_registered_camera(registered, bar):
    device, _ = registered
    with pytest.raises(ValidationError) as caught:
        services.update_device(device, stage=bar, name="Renamed")
    message = caught.value.message_dict["stage"][0]
    assert "ours-cam-1 is registered" in message and "Deregister" in message
    device.refresh_from_db()
    assert device.stage.slug == "main" and device.name == "Ours cam"  # nothing changed
    assert _role_resource(device).endswith("/faces/ours-fest/main/ours-cam-1/*")


def test_a_registered_camera_keeps_accepting_other_changes(registered):
    device, _ = registered
    services.update_device(device, stage=device.stage, name="Main left", config={"fps_cap": 5})
    device.refresh_from_db()
    assert device.name == "Main left" and device.config == {"fps_cap": 5}
    assert device.shadow_synced_at is not None


def test_an_unregistered_camera_moves_freely(two_worlds, bar):
    device = two_worlds[0].device
    services.update_device(device, stage=bar)
    device.refresh_from_db()
    assert device.stage == bar and device.crop_prefix == "faces/ours-fest/bar/ours-cam-1/"


def test_api_answers_400_with_the_way_to_move_it(registered, bar, api_client, two_worlds):
    device, _ = registered
    api_client.force_authenticate(two_worlds[0].operator)
    response = api_client.patch(f"/api/v1/devices/{device.pk}/", {"stage": bar.pk}, format="json")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == 400 and error["message"].startswith("stage: ours-cam-1 is registered")
    assert "Register it again" in error["fields"]["stage"][0]
    device.refresh_from_db()
    assert device.stage.slug == "main"
    # Unregistered: the same request moves it.
    unregistered = Device.objects.create(
        organization=device.organization,
        festival=device.festival,
        stage=device.stage,
        name="Spare",
        thing_name="ours-cam-2",
    )
    moved = api_client.patch(
        f"/api/v1/devices/{unregistered.pk}/", {"stage": bar.pk}, format="json"
    )
    assert moved.status_code == 200 and moved.json()["stage"] == bar.pk


def _change_form(device: Device, **changes) -> dict:
    data = {
        "festival": device.festival_id,
        "stage": device.stage_id or "",
        "name": device.name,
        "thing_name": device.thing_name,
        "platform": device.platform,
        "config": json.dumps(device.config),
        "deployments-TOTAL_FORMS": "0",
        "deployments-INITIAL_FORMS": "0",
        "deployments-MIN_NUM_FORMS": "0",
        "deployments-MAX_NUM_FORMS": "0",
    }
    data.update(changes)
    return data


def test_admin_shows_a_form_error_and_keeps_the_stage(registered, bar, client, two_worlds):
    device, _ = registered
    client.force_login(two_worlds[0].operator)
    url = f"/admin/devices/device/{device.pk}/change/"
    response = client.post(url, _change_form(device, stage=bar.pk))
    assert response.status_code == 200  # the form again, with the error
    assert "stage" in response.context["adminform"].form.errors
    assert "Register it again" in response.content.decode()
    device.refresh_from_db()
    assert device.stage.slug == "main"
    assert _role_resource(device).endswith("/faces/ours-fest/main/ours-cam-1/*")


def test_admin_saves_other_changes_of_a_registered_camera(registered, client, two_worlds):
    device, _ = registered
    client.force_login(two_worlds[0].operator)
    url = f"/admin/devices/device/{device.pk}/change/"
    response = client.post(url, _change_form(device, config='{"paused": true}'))
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.paused and device.shadow_synced_at is not None


def test_admin_moves_an_unregistered_camera(two_worlds, bar, client):
    device = two_worlds[0].device
    client.force_login(two_worlds[0].operator)
    url = f"/admin/devices/device/{device.pk}/change/"
    assert client.post(url, _change_form(device, stage=bar.pk)).status_code == 302
    device.refresh_from_db()
    assert device.stage == bar


def test_the_documented_move_works_end_to_end(registered, bar):
    """Deregister, move, register again: the new bundle's config and the new role agree, so the
    camera's uploads to the new stage are allowed."""
    device, _ = registered
    services.deregister_device(device)
    services.update_device(device, stage=bar)
    bundle = services.register_device(device)
    device.refresh_from_db()
    config = parse_config(json.loads(bundle.files()["stagepulse.json"]))
    assert config.stage == "bar"
    key = build_crop_key(config.festival, config.stage, config.device, 1_783_000_000_000, 1)
    assert (
        _role_resource(device) == f"arn:aws:s3:::{config.bucket}/faces/ours-fest/bar/ours-cam-1/*"
    )
    assert key.startswith("faces/ours-fest/bar/ours-cam-1/")
