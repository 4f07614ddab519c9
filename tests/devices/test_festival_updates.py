"""A festival's analysis mode is part of every camera's config: changing it through the one
festival-update service (operations.services.update_festival, which the API and the admin both
call) re-pushes the festival's registered cameras' shadows, after commit, and only when the mode
really changed. A plain save of a festival does nothing more (no signal, no extra query)."""

from __future__ import annotations

import json
from unittest import mock

import pytest
from django.urls import reverse

import awsclients as aws
from devices import services as devices_services
from festival.models import Festival
from operations import services

pytestmark = pytest.mark.django_db


def desired(device) -> dict:
    shadow = aws.client("iot-data").get_thing_shadow(thingName=device.thing_name)
    return json.loads(shadow["payload"].read())["state"]["desired"]["stagepulse"]


def admin_form(festival: Festival, **changes) -> dict:
    form = {
        "organization": festival.organization_id,
        "name": festival.name,
        "slug": festival.slug,
        "timezone": festival.timezone,
        "starts_on": festival.starts_on.isoformat(),
        "ends_on": festival.ends_on.isoformat(),
        "min_faces_public": festival.min_faces_public,
        "crop_retention_hours": festival.crop_retention_hours,
        "analysis_mode": festival.analysis_mode,
        "ops_emails": festival.ops_emails,
        "ops_webhook_url": festival.ops_webhook_url,
        "cloudwatch_namespace": festival.cloudwatch_namespace,
        "crops_bucket": festival.crops_bucket,
        "observations_table": festival.observations_table,
        "vibe_weights": json.dumps(festival.vibe_weights),
        **changes,
    }
    if festival.public and "public" not in changes:
        form["public"] = "on"
    if festival.face_free and "face_free" not in changes:
        form["face_free"] = "on"
    return form


@pytest.fixture
def pushes(monkeypatch):
    spy = mock.Mock(wraps=services.push_festival_cameras)
    monkeypatch.setattr(services, "push_festival_cameras", spy)
    return spy


def test_the_admin_pushes_a_mode_change_to_the_cameras(
    registered, client, two_worlds, django_capture_on_commit_callbacks
):
    device, _ = registered
    ours, _ = two_worlds
    devices_services.set_paused(device, False)  # a shadow to read
    assert desired(device)["mode"] == "cloud"
    client.force_login(ours.owner)
    url = reverse("admin:festival_festival_change", args=[ours.festival.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, admin_form(ours.festival, analysis_mode="edge"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Festival.objects.get(pk=ours.festival.pk).analysis_mode == "edge"
    assert desired(device)["mode"] == "edge"


def test_the_admin_pushes_nothing_when_the_mode_stays(
    registered, client, two_worlds, pushes, django_capture_on_commit_callbacks
):
    ours, _ = two_worlds
    client.force_login(ours.owner)
    url = reverse("admin:festival_festival_change", args=[ours.festival.pk])
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, admin_form(ours.festival, name="Renamed in the admin"))
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Festival.objects.get(pk=ours.festival.pk).name == "Renamed in the admin"
    pushes.assert_not_called()


@pytest.mark.parametrize(
    ("change", "pushed"),
    [({"analysis_mode": "edge"}, 1), ({"analysis_mode": "cloud"}, 0), ({"name": "New"}, 0)],
)
def test_the_api_pushes_only_a_real_mode_change(
    registered, api_client, two_worlds, pushes, django_capture_on_commit_callbacks, change, pushed
):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.patch(f"/api/v1/festivals/{ours.festival.pk}/", change)
    assert response.status_code == 200, response.json()
    assert pushes.call_count == pushed
    if pushed:
        pushes.assert_called_once_with(ours.festival.pk)


def test_the_service_pushes_after_commit_only(registered, two_worlds, pushes):
    ours, _ = two_worlds
    festival = Festival.objects.get(pk=ours.festival.pk)
    services.update_festival(festival, analysis_mode="edge")
    pushes.assert_not_called()  # the test's transaction never commits


def test_a_festival_not_loaded_from_the_database_is_compared_with_its_row(
    two_worlds, pushes, django_capture_on_commit_callbacks
):
    ours, _ = two_worlds
    festival = Festival(
        **{f.attname: getattr(ours.festival, f.attname) for f in Festival._meta.concrete_fields}
    )
    with django_capture_on_commit_callbacks(execute=True):
        services.update_festival(festival, analysis_mode="edge")
    pushes.assert_called_once_with(ours.festival.pk)


def test_a_plain_festival_save_does_nothing_more(two_worlds, django_assert_num_queries):
    festival = Festival.objects.get(pk=two_worlds[0].festival.pk)
    festival.analysis_mode = "edge"
    with django_assert_num_queries(1):  # the UPDATE; no signal reads the row first
        festival.save()
