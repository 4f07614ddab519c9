"""Staged rollout: canaries first, their telemetry watched against what they reported before, then
the rest at a bounded rate; a failed or worse canary, or too many failures in the rest, halts
the rollout and rolls the cameras that got the release back by themselves."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from devices import services
from devices.models import (
    Deployment,
    DeploymentState,
    Device,
    EdgeRelease,
    Rollout,
    RolloutState,
)
from devices.services import deployments

pytestmark = pytest.mark.django_db
S = DeploymentState
R = RolloutState


def make_release(version: str) -> EdgeRelease:
    return EdgeRelease.objects.create(
        version=version, sha256=version.replace(".", "") * 8, bucket="b", key=version, size_bytes=1
    )


@pytest.fixture
def fleet(two_worlds):
    """Four registered cameras of one festival on release 0.1.0; 'ours-cam-2' is the canary."""
    ours = two_worlds[0]
    old = make_release("0.1.0")
    cams = [ours.device]
    for n in (2, 3, 4):
        cams.append(
            Device.objects.create(
                organization=ours.organization,
                festival=ours.festival,
                stage=ours.stage,
                name=f"cam {n}",
                thing_name=f"ours-cam-{n}",
                canary=n == 2,
            )
        )
    Device.objects.filter(pk__in=[c.pk for c in cams]).update(
        certificate_arn="arn:aws:iot:eu-west-1:123456789012:cert/x", current_release=old
    )
    for cam in cams:
        cam.refresh_from_db()
        report(cam, fps=15.0, errors=0)
    return cams, old, make_release("0.2.0")


def report(device: Device, *, fps: float, errors: int, minutes_since_last: float = 1.0):
    """One telemetry report, the previous one `minutes_since_last` ago."""
    device.refresh_from_db()
    if device.health.get("received_at"):
        earlier = timezone.now() - timedelta(minutes=minutes_since_last)
        device.health["received_at"] = earlier.isoformat(timespec="seconds")
        Device.objects.filter(pk=device.pk).update(health=device.health)
    return services.record_telemetry(
        device,
        {
            "device_id": device.thing_name,
            "software_version": "0.1.0",
            "sent_at_ms": int(timezone.now().timestamp() * 1000),
            "analysis_mode": "cloud",
            "fps": fps,
            "errors": errors,
        },
    )


def finish(deployment: Deployment, state=S.SUCCEEDED, reason="device reports SUCCEEDED"):
    deployment.refresh_from_db()
    deployments._finish(deployment, state, reason)


def test_canaries_first_then_the_rest_once_they_stay_healthy(fleet, settings):
    cams, old, new = fleet
    settings.ROLLOUT_MAX_PER_MINUTE = 10
    rollout = services.start_rollout(cams, new)
    canary = Deployment.objects.get(rollout=rollout)
    assert canary.device.thing_name == "ours-cam-2" and canary.wave == "canary"
    assert services.advance_rollout(rollout) == R.CANARY  # canary still deploying: nothing else
    assert Deployment.objects.filter(rollout=rollout).count() == 1
    finish(canary)
    assert services.advance_rollout(rollout) == R.WATCHING
    report(canary.device, fps=14.5, errors=0)
    assert services.advance_rollout(rollout) == R.WATCHING  # the watch is not over yet
    later = timezone.now() + timedelta(minutes=settings.ROLLOUT_WATCH_MINUTES + 1)
    assert services.advance_rollout(rollout, now=later) == R.REST
    rest = Deployment.objects.filter(rollout=rollout, wave="rest")
    assert sorted(d.device.thing_name for d in rest) == ["ours-cam-1", "ours-cam-3", "ours-cam-4"]
    for deployment in rest:
        finish(deployment)
    assert services.advance_rollout(rollout) == R.SUCCEEDED
    assert not Deployment.objects.filter(wave="rollback").exists()


def test_a_canary_whose_fps_drops_halts_and_rolls_back(fleet, settings):
    cams, old, new = fleet
    rollout = services.start_rollout(cams, new)
    canary = Deployment.objects.get(rollout=rollout)
    finish(canary)
    services.advance_rollout(rollout)
    report(canary.device, fps=6.0, errors=0)
    later = timezone.now() + timedelta(minutes=settings.ROLLOUT_WATCH_MINUTES + 1)
    assert services.advance_rollout(rollout, now=later) == R.HALTED
    rollout.refresh_from_db()
    assert "ours-cam-2: fps fell from 15 to 6" in rollout.reason
    back = Deployment.objects.get(wave="rollback")
    assert back.device == canary.device and back.release == old and back.rollback_of == canary
    assert not Deployment.objects.filter(wave="rest").exists()  # the rest never got it


def test_a_canary_whose_errors_rise_halts(fleet, settings):
    cams, old, new = fleet
    rollout = services.start_rollout(cams, new)
    canary = Deployment.objects.get(rollout=rollout)
    finish(canary)
    services.advance_rollout(rollout)
    report(canary.device, fps=15.0, errors=0)
    report(canary.device, fps=15.0, errors=12, minutes_since_last=2)  # 6 errors a minute
    later = timezone.now() + timedelta(minutes=settings.ROLLOUT_WATCH_MINUTES + 1)
    assert services.advance_rollout(rollout, now=later) == R.HALTED
    rollout.refresh_from_db()
    assert "errors rose from 0.0/min to 6.0/min" in rollout.reason


def test_a_silent_canary_halts(fleet, settings):
    cams, old, new = fleet
    rollout = services.start_rollout(cams, new)
    finish(Deployment.objects.get(rollout=rollout))
    services.advance_rollout(rollout)
    later = timezone.now() + timedelta(minutes=settings.ROLLOUT_WATCH_MINUTES + 1)
    assert services.advance_rollout(rollout, now=later) == R.HALTED
    assert "no telemetry since its deployment" in Rollout.objects.get().reason


def test_a_failed_canary_halts_at_once_and_stops_the_others(fleet):
    cams, old, new = fleet
    Device.objects.filter(thing_name="ours-cam-3").update(canary=True)
    cams = list(Device.objects.filter(pk__in=[c.pk for c in cams]))
    rollout = services.start_rollout(cams, new)
    first, second = Deployment.objects.filter(rollout=rollout).order_by("pk")
    finish(first, S.FAILED, "create_deployment: device reports FAILED: broke")
    assert services.advance_rollout(rollout) == R.HALTED
    second.refresh_from_db()
    assert second.state == S.FAILED and "halted" in second.reason  # never reached its camera
    assert not Deployment.objects.filter(wave="rest").exists()
    assert not Deployment.objects.filter(rollback_of=second).exists()  # nothing to undo


def test_the_rest_goes_at_a_bounded_rate_and_aborts_past_the_failure_threshold(fleet, settings):
    cams, old, new = fleet
    settings.ROLLOUT_MAX_PER_MINUTE = 1
    settings.ROLLOUT_ABORT_MIN_EXECUTED = 1
    settings.ROLLOUT_ABORT_THRESHOLD_PERCENT = 50
    rollout = services.start_rollout(cams, new)
    canary = Deployment.objects.get(rollout=rollout)
    finish(canary)
    services.advance_rollout(rollout)
    report(canary.device, fps=15.0, errors=0)
    later = timezone.now() + timedelta(minutes=settings.ROLLOUT_WATCH_MINUTES + 1)
    assert services.advance_rollout(rollout, now=later) == R.REST
    (first,) = Deployment.objects.filter(wave="rest")  # one a minute
    finish(first, S.FAILED, "poll: device reports FAILED: broke")
    assert services.advance_rollout(rollout) == R.HALTED
    assert Deployment.objects.filter(wave="rest").count() == 1  # nobody else got it
    rollout.refresh_from_db()
    assert "1 of 1 cameras failed (100% >= 50%)" in rollout.reason
    assert Deployment.objects.get(wave="rollback").device == canary.device


def test_a_camera_that_finishes_after_the_halt_is_rolled_back_too(fleet, settings):
    cams, old, new = fleet
    Device.objects.filter(thing_name="ours-cam-3").update(canary=True)
    cams = list(Device.objects.filter(pk__in=[c.pk for c in cams]))
    rollout = services.start_rollout(cams, new)
    first, second = Deployment.objects.filter(rollout=rollout).order_by("pk")
    Deployment.objects.filter(pk=second.pk).update(state=S.POLL)  # already at its camera
    finish(first, S.FAILED, "poll: device reports FAILED: broke")
    services.advance_rollout(rollout)
    second.refresh_from_db()
    assert second.state == S.POLL  # a camera mid-deployment is left to finish
    finish(second)
    services.advance_rollouts()
    back = Deployment.objects.get(wave="rollback")
    assert back.device == second.device and back.release == old


def test_the_admin_rolls_out_to_the_chosen_cameras(fleet, client, two_worlds):
    cams, old, new = fleet
    client.force_login(two_worlds[0].operator)
    page = client.post(
        "/admin/devices/device/",
        {"action": "roll_out_latest", "_selected_action": [c.pk for c in cams]},
        follow=True,
    ).content.decode()
    assert "canaries ours-cam-2 first, then 3 more camera(s)" in page
    assert Rollout.objects.get().release == new


def test_the_api_starts_a_rollout_and_follows_it(fleet, api_client, two_worlds):
    cams, old, new = fleet
    ours, theirs = two_worlds
    api_client.force_authenticate(ours.viewer)
    body = {"devices": [c.pk for c in cams], "release": new.pk}
    assert api_client.post("/api/v1/rollouts/", body, format="json").status_code == 403
    api_client.force_authenticate(ours.operator)
    answer = api_client.post("/api/v1/rollouts/", {**body, "force": True}, format="json")
    assert answer.status_code == 202, answer.json()
    data = answer.json()
    assert data["state"] == "canary" and data["canaries"] == ["ours-cam-2"] and data["force"]
    assert sorted(data["rest"]) == ["ours-cam-1", "ours-cam-3", "ours-cam-4"]
    assert Deployment.objects.get(rollout_id=data["id"]).force is True
    mixed = api_client.post(
        "/api/v1/rollouts/", {"devices": [theirs.device.pk], "release": new.pk}, format="json"
    )
    assert mixed.status_code == 400  # another organization's camera does not exist here
    api_client.force_authenticate(theirs.owner)
    assert api_client.get(f"/api/v1/rollouts/{data['id']}/").status_code == 404
