"""Deployment locks: a deployment never restarts a camera while a set plays on its stage (or is
about to start), unless forced; it says why it waits and goes at the next gap between sets."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from devices import selectors, services
from devices.models import Deployment, DeploymentState
from stages.models import Set
from tests.devices.test_deployments import stub_component, stub_deployment, stub_status

pytestmark = pytest.mark.django_db
S = DeploymentState


def add_set(world_stage, artist, starts_in_min, minutes):
    now = timezone.now()
    return Set.objects.create(
        organization_id=world_stage.organization_id,
        stage=world_stage,
        artist=artist,
        starts_at=now + timedelta(minutes=starts_in_min),
        ends_at=now + timedelta(minutes=starts_in_min + minutes),
    )


def test_a_deployment_waits_while_a_set_plays_and_says_why(registered, release, ggv2, settings):
    device, _ = registered
    playing = add_set(device.stage, "Nina Kraviz", -30, 60)
    deployment = services.start_deployment(device, release, enqueue=False)
    # Shown from the start, in the festival's local time, before any worker ran it.
    assert "Nina Kraviz plays on Ours Main until" in deployment.hold_reason
    assert deployment.held_until == playing.ends_at
    stub_component(ggv2, release)  # the component is cloud-side: made now, the camera untouched
    wait = services.run_deployment(deployment.pk)
    assert wait == settings.DEPLOYMENT_HOLD_RECHECK_SECONDS
    deployment.refresh_from_db()
    assert deployment.state == S.CREATE_DEPLOYMENT  # create_deployment was never called
    assert deployment.held_until == playing.ends_at
    assert "force it to deploy now" in deployment.hold_reason
    assert deployment.deadline_at > playing.ends_at  # waiting never counts as the device's time
    # Running it again while the set plays writes no new history line and calls nothing.
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert sum(deployment.hold_reason == e["note"] for e in deployment.history) == 1
    # The set ends: the deployment goes on by itself.
    Set.objects.filter(pk=playing.pk).update(
        starts_at=timezone.now() - timedelta(minutes=90), ends_at=timezone.now()
    )
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED and deployment.hold_reason == ""
    assert "gap between sets: deploying" in [e["note"] for e in deployment.history]


def test_a_set_starting_within_the_margin_holds_too(registered, release, settings):
    device, _ = registered
    settings.DEPLOYMENT_SET_MARGIN_MINUTES = 15
    soon = add_set(device.stage, "Opener", 10, 45)
    deployment = services.start_deployment(device, release, enqueue=False)
    assert "Opener starts on Ours Main at" in deployment.hold_reason
    assert deployment.held_until == soon.ends_at
    # With a 5-minute margin the same set, 10 minutes away, holds nothing yet.
    Deployment.objects.all().delete()
    settings.DEPLOYMENT_SET_MARGIN_MINUTES = 5
    now_free = services.start_deployment(device, release, enqueue=False)
    assert now_free.hold_reason == "" and now_free.held_until is None


def test_back_to_back_sets_hold_until_the_real_gap(registered):
    """Sets closer than the margin are one block: the gap is after the last of them."""
    device, _ = registered
    add_set(device.stage, "First", -20, 40)  # ends in 20 min
    add_set(device.stage, "Second", 25, 30)  # 5 min changeover: no time to deploy
    third = add_set(device.stage, "Third", 60, 30)  # 5 min again
    add_set(device.stage, "Late", 130, 30)  # 40 min after Third: a real gap
    holding, free_at = selectors.set_lock(device.stage, timezone.now(), timedelta(minutes=15))
    assert holding.artist == "First" and free_at == third.ends_at


def test_another_stages_set_does_not_hold_this_camera(registered, release, two_worlds):
    device, _ = registered
    from stages.models import Stage

    other = Stage.objects.create(
        organization=device.organization, festival=device.festival, name="Tent", slug="tent"
    )
    add_set(other, "Elsewhere", -10, 60)
    deployment = services.start_deployment(device, release, enqueue=False)
    assert deployment.held_until is None and deployment.hold_reason == ""


def test_a_forced_deployment_goes_during_a_set(registered, release, ggv2):
    device, _ = registered
    add_set(device.stage, "Headliner", -10, 90)
    deployment = services.start_deployment(device, release, enqueue=False, force=True)
    assert deployment.hold_reason == "" and "(forced)" in deployment.history[0]["note"]
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED


def test_the_api_forces_and_shows_why_a_deployment_waits(
    registered, release, api_client, two_worlds
):
    device, _ = registered
    add_set(device.stage, "Headliner", -10, 90)
    api_client.force_authenticate(two_worlds[0].operator)
    waiting = api_client.post("/api/v1/deployments/", {"device": device.pk}, format="json")
    assert waiting.status_code == 202, waiting.json()
    body = waiting.json()
    assert body["force"] is False and "Headliner plays" in body["hold_reason"]
    assert body["held_until"]
    Deployment.objects.all().delete()
    forced = api_client.post(
        "/api/v1/deployments/", {"device": device.pk, "force": True}, format="json"
    )
    assert forced.json()["force"] is True and forced.json()["hold_reason"] == ""


def test_the_admin_says_why_it_waits_and_offers_a_forced_deploy(
    registered, release, client, two_worlds
):
    device, _ = registered
    add_set(device.stage, "Headliner", -10, 90)
    client.force_login(two_worlds[0].operator)
    page = client.post(
        "/admin/devices/device/",
        {"action": "deploy_latest", "_selected_action": [device.pk]},
        follow=True,
    ).content.decode()
    assert "waits for the gap between sets: Headliner plays" in page
    listing = client.get("/admin/devices/deployment/").content.decode()
    assert "Headliner plays" in listing
    Deployment.objects.all().delete()
    client.post(
        "/admin/devices/device/",
        {"action": "deploy_latest_forced", "_selected_action": [device.pk]},
        follow=True,
    )
    assert Deployment.objects.get().force is True


def test_a_rollback_never_waits_for_a_gap(registered, release, ggv2):
    """A failed deployment's camera is broken already: restoring it cannot wait for the set."""
    from devices.models import Device
    from tests.devices.test_deployments import old_release

    device, _ = registered
    good = old_release()
    Device.objects.filter(pk=device.pk).update(current_release=good)
    device.refresh_from_db()
    deployment = services.start_deployment(device, release, enqueue=False, force=True)
    add_set(device.stage, "Headliner", -10, 90)
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "FAILED", reason="broke")
    services.run_deployment(deployment.pk)
    rollback = Deployment.objects.get(rollback_of=deployment)
    assert rollback.hold_reason == "" and rollback.held_until is None
