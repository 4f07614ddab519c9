"""Offline detection with one alert per incident and a recovery notice; device metrics to
CloudWatch; edge configuration pushed to the device shadow without a redeploy."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from unittest import mock

import pytest
from botocore.stub import Stubber
from django.core import mail
from django.utils import timezone

import awsclients as aws
from devices import services
from devices.models import Device, DeviceStatus

pytestmark = pytest.mark.django_db


class Hook(BaseHTTPRequestHandler):
    received: list = []
    status = 204

    def do_POST(self):  # noqa: N802 - http.server's name
        length = int(self.headers["Content-Length"])
        Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(Hook.status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    Hook.received, Hook.status = [], 204
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook", Hook
    server.shutdown()
    server.server_close()


@pytest.fixture
def watched(two_worlds, webhook):
    """Our camera, online and last heard 10 minutes ago; ops contacts by e-mail and webhook."""
    ours = two_worlds[0]
    festival = ours.festival
    festival.ops_emails = "crew@example.org,\nlead@example.org"
    festival.ops_webhook_url = webhook[0]
    festival.save()
    Device.objects.filter(pk=ours.device.pk).update(
        status=DeviceStatus.ONLINE, last_seen_at=timezone.now() - timedelta(minutes=10)
    )
    return ours.device


def test_silent_device_goes_offline_with_one_alert(watched, webhook):
    _, hook = webhook
    counts = services.sweep_device_health()
    assert counts == {
        "offline": 1,
        "alerts": 1,
        "recovered": 0,
        "input_alerts": 0,
        "input_recovered": 0,
        "shadows_repushed": 0,
    }
    watched.refresh_from_db()
    assert watched.status == DeviceStatus.OFFLINE
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["crew@example.org", "lead@example.org"]
    assert "camera offline: Ours cam" in message.subject
    assert "no telemetry for 10 min" in message.body
    assert [h["event"] for h in hook.received] == ["device.offline"]
    assert hook.received[0]["device"] == "ours-cam-1"
    # The next sweeps do not repeat the alert.
    services.sweep_device_health()
    services.sweep_device_health()
    assert len(mail.outbox) == 1 and len(hook.received) == 1


def test_recovery_is_announced_once_and_a_new_incident_alerts_again(watched, webhook):
    _, hook = webhook
    services.sweep_device_health()
    token = services.issue_device_token(watched)
    assert services.device_for_token(token) == watched
    services.record_telemetry(
        watched,
        {
            "device_id": "ours-cam-1",
            "software_version": "0.1.0",
            "sent_at_ms": int(timezone.now().timestamp() * 1000),
            "analysis_mode": "cloud",
        },
    )
    assert services.sweep_device_health()["recovered"] == 1
    assert services.sweep_device_health()["recovered"] == 0
    assert [h["event"] for h in hook.received] == ["device.offline", "device.recovered"]
    assert "back online" in mail.outbox[1].subject
    # Silent again: a new incident, a new alert.
    Device.objects.filter(pk=watched.pk).update(last_seen_at=timezone.now() - timedelta(minutes=6))
    assert services.sweep_device_health()["alerts"] == 1
    assert len(hook.received) == 3


def test_recently_seen_and_never_seen_devices_raise_nothing(two_worlds, settings):
    settings.DEVICE_OFFLINE_AFTER_MINUTES = 5
    ours, theirs = two_worlds
    Device.objects.filter(pk=ours.device.pk).update(
        status=DeviceStatus.ONLINE, last_seen_at=timezone.now() - timedelta(minutes=4)
    )
    assert services.sweep_device_health() == {
        "offline": 0,
        "alerts": 0,
        "recovered": 0,
        "input_alerts": 0,
        "input_recovered": 0,
        "shadows_repushed": 0,
    }
    assert mail.outbox == []


def test_a_broken_webhook_does_not_stop_the_email(watched, webhook):
    _, hook = webhook
    hook.status = 500
    services.sweep_device_health()
    assert len(mail.outbox) == 1
    watched.refresh_from_db()
    assert watched.status == DeviceStatus.OFFLINE


def test_metrics_go_to_cloudwatch_with_a_device_dimension(moto_aws, two_worlds):
    device = two_worlds[0].device
    device.festival.cloudwatch_namespace = "Pulse/Test"
    device.festival.save()
    services.record_telemetry(
        device,
        {
            "device_id": "ours-cam-1",
            "software_version": "0.1.0",
            "sent_at_ms": int(timezone.now().timestamp() * 1000),
            "analysis_mode": "cloud",
            "fps": 9.5,
            "faces_detected": 12,
            "spool_depth": 3,
        },
    )
    assert services.publish_device_metrics()["sent"] == 1
    metrics = aws.client("cloudwatch").list_metrics(Namespace="Pulse/Test")["Metrics"]
    names = {m["MetricName"] for m in metrics}
    assert names == {"Fps", "FacesDetected", "SpoolDepth"}
    dimensions = {(d["Name"], d["Value"]) for d in metrics[0]["Dimensions"]}
    assert dimensions == {("Festival", "ours-fest"), ("Stage", "main"), ("Device", "ours-cam-1")}
    assert services.publish_device_metrics()["sent"] == 0  # once per report


def test_one_devices_bad_value_never_stops_another_devices_metrics(moto_aws, two_worlds, caplog):
    """A camera stored a 401-digit counter (before the schema had bounds): float() overflows.
    Every other device, of every organization, still gets its metrics; the bad one is logged,
    counted and not retried every minute."""
    ours, theirs = two_worlds
    now = timezone.now()
    Device.objects.filter(pk=ours.device.pk).update(
        last_seen_at=now, health={"faces_detected": 10**400, "fps": 9.0}
    )
    Device.objects.filter(pk=theirs.device.pk).update(
        last_seen_at=now, health={"faces_detected": 7, "fps": 11.0}
    )
    assert services.publish_device_metrics() == {"sent": 1, "skipped": 1, "failed": 0}
    assert "ours-cam-1: metrics skipped" in caplog.text
    metrics = aws.client("cloudwatch").list_metrics(Namespace=theirs.festival.namespace)
    devices = {d["Value"] for m in metrics["Metrics"] for d in m["Dimensions"]}
    assert "theirs-cam-1" in devices and "ours-cam-1" not in devices
    assert services.publish_device_metrics() == {"sent": 0, "skipped": 0, "failed": 0}


def test_a_batch_cloudwatch_refuses_is_retried_device_by_device(two_worlds, monkeypatch):
    """CloudWatch refuses a whole PutMetricData for one value it does not take; the others in
    that batch still land."""
    from botocore.exceptions import ClientError

    ours, theirs = two_worlds
    theirs.festival.cloudwatch_namespace = ours.festival.namespace  # one namespace, one batch
    theirs.festival.save()
    now = timezone.now()
    Device.objects.filter(pk__in=[ours.device.pk, theirs.device.pk]).update(
        last_seen_at=now, health={"fps": 5.0}
    )
    calls = []

    class Refusing:
        def put_metric_data(self, Namespace, MetricData):  # noqa: N803 - boto3's names
            names = {d["Value"] for m in MetricData for d in m["Dimensions"]}
            calls.append(names)
            if "ours-cam-1" in names:
                error = {"Error": {"Code": "InvalidParameterValue", "Message": "no"}}
                raise ClientError(error, "PutMetricData")

    monkeypatch.setattr(aws, "cached_client", lambda name: Refusing())
    assert services.publish_device_metrics() == {"sent": 1, "skipped": 0, "failed": 1}
    assert len(calls) == 3  # the batch, then each device alone


# --- shadow ------------------------------------------------------------------------------------
def desired(device) -> dict:
    shadow = aws.client("iot-data").get_thing_shadow(thingName=device.thing_name)
    return json.loads(shadow["payload"].read())["state"]["desired"]["stagepulse"]


def test_pause_is_pushed_to_the_shadow(registered):
    device, _ = registered
    services.set_paused(device, True)
    assert desired(device)["paused"] is True
    assert desired(device)["jpeg_quality"] == 85  # the whole effective config
    services.set_paused(device, False)
    assert desired(device)["paused"] is False
    device.refresh_from_db()
    assert device.shadow_synced_at and device.shadow_error == ""


def test_api_config_change_is_pushed(registered, api_client, two_worlds):
    device, _ = registered
    api_client.force_authenticate(two_worlds[0].operator)
    masks = [[[0, 0], [0.3, 0], [0.3, 0.3]]]
    response = api_client.patch(
        f"/api/v1/devices/{device.pk}/", {"config": {"masks": masks}}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert desired(device)["masks"] == masks
    assert response.json()["shadow_error"] == ""


def test_admin_pause_action(registered, client, two_worlds):
    device, _ = registered
    client.force_login(two_worlds[0].operator)
    client.post("/admin/devices/device/", {"action": "pause", "_selected_action": [device.pk]})
    assert desired(device)["paused"] is True


def test_shadow_failure_keeps_the_config_and_says_so(registered, monkeypatch):
    device, _ = registered
    data = aws.client("iot-data")
    stubber = Stubber(data)
    stubber.add_client_error("update_thing_shadow", "ServiceUnavailableException", "try later")
    monkeypatch.setattr(aws, "cached_client", lambda name: data)
    with stubber:
        services.set_paused(device, True)
    device.refresh_from_db()
    assert device.config == {"paused": True}
    assert "ServiceUnavailableException" in device.shadow_error


def test_unregistered_device_config_is_saved_without_a_push(moto_aws, two_worlds):
    device = two_worlds[0].device
    services.set_paused(device, True)
    device.refresh_from_db()
    assert device.paused and device.shadow_synced_at is None and device.shadow_error == ""


def test_the_edge_applies_the_shadow_desired_state():
    from edge_package.config import parse_config
    from edge_package.shadow import apply_desired  # the proposed device-side hook

    config = parse_config({"device": "cam", "festival": "f", "stage": "s", "bucket": "b"})
    updated = apply_desired(config, {"state": {"stagepulse": {"paused": True}}})
    assert updated.paused is True


def test_switching_the_festival_to_edge_mode_is_pushed_to_its_cameras(
    registered, api_client, two_worlds, django_capture_on_commit_callbacks
):
    device, _ = registered
    ours, _ = two_worlds
    services.set_paused(device, False)
    assert desired(device)["mode"] == "cloud"
    api_client.force_authenticate(ours.owner)
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.patch(
            f"/api/v1/festivals/{device.festival_id}/", {"analysis_mode": "edge"}, format="json"
        )
    assert response.status_code == 200, response.json()
    assert desired(device)["mode"] == "edge"


def test_a_shadow_push_that_failed_is_retried_by_the_health_sweep(registered, monkeypatch):
    """A pause pushed while IoT was unreachable reaches the camera's shadow at the next sweep."""
    from botocore.exceptions import EndpointConnectionError

    import awsclients as aws

    device, _ = registered
    client = aws.cached_client("iot-data")
    real_update = client.update_thing_shadow
    monkeypatch.setattr(
        client,
        "update_thing_shadow",
        mock.Mock(side_effect=EndpointConnectionError(endpoint_url="https://iot")),
    )
    services.set_paused(device, True)
    device.refresh_from_db()
    assert device.shadow_error and device.paused
    monkeypatch.setattr(client, "update_thing_shadow", real_update)  # IoT is back
    counts = services.sweep_device_health()
    assert counts["shadows_repushed"] == 1
    assert desired(device)["paused"] is True
    device.refresh_from_db()
    assert device.shadow_error == ""
