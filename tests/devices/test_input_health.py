"""Camera input health from telemetry: a black or frozen picture, a stage too dark, a camera clock
that drifted, uploads that stopped and a spool that keeps growing each raise one alert per
incident and one notice when it ends, and show on the dashboard while they last."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from django.core import mail
from django.utils import timezone

from devices import services
from devices.models import Device
from tests.devices.test_health import webhook  # noqa: F401 - a fixture

pytestmark = pytest.mark.django_db


@pytest.fixture
def cam(two_worlds, webhook):  # noqa: F811 - the fixture imported above
    ours = two_worlds[0]
    ours.festival.ops_emails = "crew@example.org"
    ours.festival.ops_webhook_url = webhook[0]
    ours.festival.save()
    return ours.device


def report(device: Device, minutes_ago_last: float | None = None, skew_s: float = 0, **fields):
    """One telemetry report; `minutes_ago_last` moves what earlier reports left that many
    minutes further back in time (as if they had come that much earlier)."""
    device.refresh_from_db()
    if minutes_ago_last is not None:
        for key in ("received_at", "uploads_moved_at", "spool_growing_since"):
            if key in device.health:
                then = datetime.fromisoformat(device.health[key])
                earlier = then - timedelta(minutes=minutes_ago_last)
                device.health[key] = earlier.isoformat(timespec="seconds")
        Device.objects.filter(pk=device.pk).update(health=device.health)
        device.refresh_from_db()
    sent = timezone.now() - timedelta(seconds=skew_s)
    payload = {
        "contract": 2,
        "device_id": device.thing_name,
        "software_version": "0.1.0",
        "sent_at_ms": int(sent.timestamp() * 1000),
        "analysis_mode": "cloud",
        "fps": 15.0,
        "input_luma": 110.0,
        "input_motion": 3.0,
        "input_black_s": 0.0,
        "input_frozen_s": 0.0,
        **fields,
    }
    return services.record_telemetry(device, payload)


def events(hook):
    return [h["event"] for h in hook.received]


def test_a_black_picture_alerts_once_and_its_end_is_announced(cam, webhook):  # noqa: F811
    _, hook = webhook
    report(cam, input_black_s=45.0, input_luma=3.0, input_frozen_s=45.0)
    services.sweep_device_health()
    services.sweep_device_health()
    assert events(hook) == ["device.input.black"]  # not also frozen and dark: one cause
    assert "picture black: Ours cam" in mail.outbox[0].subject
    assert "black for 45 s" in mail.outbox[0].body
    cam.refresh_from_db()
    assert set(cam.input_alerts) == {"black"}
    report(cam)
    services.sweep_device_health()
    services.sweep_device_health()
    assert events(hook) == ["device.input.black", "device.input.black.resolved"]
    cam.refresh_from_db()
    assert cam.input_alerts == {}


def test_frozen_and_dark_pictures_alert_each(cam, webhook, settings):  # noqa: F811
    _, hook = webhook
    report(cam, input_frozen_s=settings.INPUT_FROZEN_AFTER_S + 5)
    services.sweep_device_health()
    report(cam, input_luma=20.0)
    services.sweep_device_health()
    assert events(hook) == [
        "device.input.frozen",
        "device.input.dark",
        "device.input.frozen.resolved",
    ]


def test_a_drifting_camera_clock_alerts(cam, webhook):  # noqa: F811
    _, hook = webhook
    report(cam, skew_s=120)
    services.sweep_device_health()
    assert events(hook) == ["device.input.clock_drift"]
    assert "120 s behind the service" in mail.outbox[0].body


def test_uploads_that_stop_while_the_spool_holds_crops_alert(cam, webhook):  # noqa: F811
    _, hook = webhook
    report(cam, uploads=40, spool_depth=0)
    report(cam, minutes_ago_last=1, uploads=40, spool_depth=5)
    services.sweep_device_health()
    assert events(hook) == []  # one quiet minute is no gap
    report(cam, minutes_ago_last=11, uploads=40, spool_depth=8)
    services.sweep_device_health()
    assert events(hook) == ["device.input.upload_gap"]
    report(cam, uploads=41, spool_depth=0)
    services.sweep_device_health()
    assert events(hook)[-1] == "device.input.upload_gap.resolved"


def test_a_spool_that_only_grows_alerts_and_a_draining_one_does_not(cam, webhook):  # noqa: F811
    _, hook = webhook
    report(cam, uploads=1, spool_depth=10)
    report(cam, minutes_ago_last=6, uploads=2, spool_depth=60)
    report(cam, minutes_ago_last=6, uploads=3, spool_depth=120)
    services.sweep_device_health()
    assert events(hook) == ["device.input.spool_growing"]
    assert "grew by 110 to 120 items" in mail.outbox[0].body
    report(cam, uploads=50, spool_depth=80)  # draining
    services.sweep_device_health()
    assert events(hook)[-1] == "device.input.spool_growing.resolved"


def test_a_paused_camera_raises_no_picture_alert(cam, webhook):  # noqa: F811
    _, hook = webhook
    services.set_paused(cam, True)
    report(cam, paused=True, input_black_s=300.0, input_luma=2.0)
    services.sweep_device_health()
    assert events(hook) == []


def test_a_camera_on_the_first_contract_is_still_accepted_and_quiet(cam, webhook):  # noqa: F811
    _, hook = webhook
    cam.refresh_from_db()
    services.record_telemetry(
        cam,
        {
            "contract": 1,
            "device_id": cam.thing_name,
            "software_version": "0.0.9",
            "sent_at_ms": int(timezone.now().timestamp() * 1000),
            "analysis_mode": "cloud",
            "fps": 12.0,
        },
    )
    services.sweep_device_health()
    assert events(hook) == []


def test_the_dashboard_shows_what_is_wrong_with_the_cameras_input(
    cam,
    client,
    two_worlds,
):
    report(cam, input_frozen_s=400.0)
    client.force_login(two_worlds[0].viewer)
    data = client.get(f"/dashboard/{two_worlds[0].festival.pk}/data.json").json()
    (row,) = [d for d in data["devices"] if d["thing_name"] == cam.thing_name]
    assert [p["kind"] for p in row["input"]] == ["frozen"]
    assert "has not changed for 400 s" in row["input"][0]["message"]
    assert any(
        i["kind"] == "camera_frozen" and "Ours cam" in i["message"] for i in data["attention"]
    )
    page = client.get(f"/dashboard/{two_worlds[0].festival.pk}/").content.decode()
    assert "<th>Input</th>" in page
