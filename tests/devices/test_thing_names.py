"""One thing-name rule (edge_package.contracts.THING_NAME_PATTERN) on both sides: a name the
server accepts is one the camera's config accepts, and a name the camera would refuse is refused
by the model, the API and the admin with the rule in words."""

from __future__ import annotations

import json

import pytest
from django.core.exceptions import ValidationError

from devices import services
from devices.models import Device
from edge_package.config import ConfigError, parse_config
from edge_package.contracts import THING_NAME_RULE

pytestmark = pytest.mark.django_db

# AWS IoT would take the first three; the camera would not (':' / first character), nor '.'.
REFUSED = [
    "cam:main-1",
    "_cam",
    "-cam",
    "cam.1",
    "has space",
    "cam/1",
    "",
    "x" * 129,
    "cam\n",
    "2026",
]
ACCEPTED = ["cam-1", "Main_Left-2", "9a", "x" * 128]


def _device(world, thing_name: str) -> Device:
    return Device(
        organization=world.organization,
        festival=world.festival,
        stage=world.stage,
        name="x",
        thing_name=thing_name,
    )


def _camera_accepts(thing_name: str) -> bool:
    try:
        parse_config({"device": thing_name, "festival": "f", "stage": "s", "bucket": "b"})
    except ConfigError:
        return False
    return True


@pytest.mark.parametrize("thing_name", REFUSED)
def test_names_the_camera_refuses_are_refused_by_the_model(two_worlds, thing_name):
    assert not _camera_accepts(thing_name)
    with pytest.raises(ValidationError) as caught:
        _device(two_worlds[0], thing_name).full_clean()
    assert "thing_name" in caught.value.message_dict


@pytest.mark.parametrize("thing_name", ACCEPTED)
def test_names_the_camera_accepts_are_valid_devices(two_worlds, thing_name):
    assert _camera_accepts(thing_name)
    _device(two_worlds[0], thing_name).full_clean()


@pytest.mark.parametrize("thing_name", ["cam:main-1", "_cam", "cam.1"])
def test_api_refuses_them_with_the_rule(api_client, two_worlds, thing_name):
    ours = two_worlds[0]
    api_client.force_authenticate(ours.operator)
    response = api_client.post(
        "/api/v1/devices/",
        {
            "festival": ours.festival.pk,
            "stage": ours.stage.pk,
            "name": "x",
            "thing_name": thing_name,
        },
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["thing_name"] == [f"Use {THING_NAME_RULE}."]
    assert not Device.objects.filter(thing_name=thing_name).exists()


def test_admin_refuses_them_with_the_rule(client, two_worlds):
    ours = two_worlds[0]
    client.force_login(ours.operator)
    response = client.post(
        "/admin/devices/device/add/",
        {
            "festival": ours.festival.pk,
            "stage": ours.stage.pk,
            "name": "x",
            "thing_name": "cam:main-1",
            "platform": "greengrass_v2",
            "config": "{}",
            "deployments-TOTAL_FORMS": "0",
            "deployments-INITIAL_FORMS": "0",
            "deployments-MIN_NUM_FORMS": "0",
            "deployments-MAX_NUM_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert response.context["adminform"].form.errors["thing_name"] == [f"Use {THING_NAME_RULE}."]
    assert not Device.objects.filter(thing_name="cam:main-1").exists()


def test_an_accepted_name_registers_and_its_bundle_parses(moto_aws, api_client, two_worlds):
    ours = two_worlds[0]
    api_client.force_authenticate(ours.operator)
    created = api_client.post(
        "/api/v1/devices/",
        {
            "festival": ours.festival.pk,
            "stage": ours.stage.pk,
            "name": "Left",
            "thing_name": "Main_Left-2",
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    device = Device.objects.get(pk=created.json()["id"])
    bundle = services.register_device(device)
    config = parse_config(json.loads(bundle.files()["stagepulse.json"]), "stagepulse.json")
    assert config.device == "Main_Left-2" and config.stage == "main"


def test_aws_names_of_the_longest_thing_names_fit_and_never_collide():
    from types import SimpleNamespace

    from devices.services.registration import _names

    first = _names(SimpleNamespace(thing_name="cam-" + "a" * 120 + "-001"))
    second = _names(SimpleNamespace(thing_name="cam-" + "a" * 120 + "-002"))
    for names in (first, second):
        assert len(names["policy"]) <= 128 and len(names["role_alias"]) <= 128
        assert len(names["role"]) <= 64
    assert all(first[kind] != second[kind] for kind in ("policy", "role", "role_alias"))
    short = _names(SimpleNamespace(thing_name="main-cam-1"))
    assert short == {  # roles carry the environment (STAGEPULSE_ENV=dev here) and "cam-"
        "policy": "stagepulse-device-main-cam-1",
        "role": "stagepulse-dev-cam-main-cam-1",
        "role_alias": "stagepulse-device-main-cam-1",
    }


def test_a_camera_named_before_the_rule_can_still_be_paused(two_worlds, moto_aws):
    """The privacy switch must work for every existing camera, whatever its older name."""
    from devices.services import set_paused

    world = two_worlds[0]
    Device.objects.filter(pk=world.device.pk).update(thing_name="0042")  # valid when created
    device = Device.objects.get(pk=world.device.pk)
    set_paused(device, True)
    device.refresh_from_db()
    assert device.paused is True
