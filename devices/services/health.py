"""Device health: offline detection and camera input health (black or frozen picture, too dark,
clock drift, upload gap, growing spool), each with one alert per incident and a recovery notice;
device metrics to CloudWatch; pushing edge configuration to the IoT device shadow."""

from __future__ import annotations

import json
import logging
import math
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

import awsclients as aws
from devices.models import Device, DeviceStatus
from devices.selectors import INPUT_KINDS, input_problems
from festival.notify import notify_operations

log = logging.getLogger(__name__)

METRICS = {
    "fps": ("Fps", "Count/Second"),
    "faces_detected": ("FacesDetected", "Count"),
    "uploads": ("Uploads", "Count"),
    "bytes_sent": ("BytesSent", "Bytes"),
    "spool_depth": ("SpoolDepth", "Count"),
    "errors": ("Errors", "Count"),
}


# --- alerts --------------------------------------------------------------------------------------
def send_alert(device: Device, *, subject: str, body: str, event: str) -> list[str]:
    """E-mail the festival's operations contacts and/or call its webhook; returns what was sent."""
    return notify_operations(
        device.festival,
        subject=subject,
        body=body,
        payload={
            "event": event,
            "stage": device.stage.slug if device.stage_id else "",
            "device": device.thing_name,
            "last_seen_at": device.last_seen_at.isoformat() if device.last_seen_at else None,
        },
    )


def _where(device: Device) -> str:
    stage = device.stage.name if device.stage_id else "no stage"
    return f"{device.name} ({device.thing_name}) at {device.festival.name} / {stage}"


def sweep_device_health(now=None) -> dict:
    """Mark silent devices offline and alert once per incident; send a recovery notice for
    devices that came back. Safe to run concurrently: each alert is claimed by one UPDATE."""
    now = now or timezone.now()
    limit = timedelta(minutes=settings.DEVICE_OFFLINE_AFTER_MINUTES)
    cutoff = now - limit
    counts = {"offline": 0, "alerts": 0, "recovered": 0}
    silent = Device.objects.filter(status=DeviceStatus.ONLINE, last_seen_at__lt=cutoff)
    for device in silent.select_related("festival", "stage"):
        marked = Device.objects.filter(
            pk=device.pk, status=DeviceStatus.ONLINE, last_seen_at__lt=cutoff
        ).update(status=DeviceStatus.OFFLINE)
        counts["offline"] += marked
        claimed = Device.objects.filter(pk=device.pk, offline_alerted_at__isnull=True).update(
            offline_alerted_at=now
        )
        if marked and claimed:
            minutes = int((now - device.last_seen_at).total_seconds() // 60)
            send_alert(
                device,
                subject=f"[StagePulse] camera offline: {device.name}",
                body=(
                    f"{_where(device)} has sent no telemetry for {minutes} min "
                    f"(last seen {device.last_seen_at:%Y-%m-%d %H:%M} UTC)."
                ),
                event="device.offline",
            )
            counts["alerts"] += 1
    back = Device.objects.filter(status=DeviceStatus.ONLINE, offline_alerted_at__isnull=False)
    for device in back.select_related("festival", "stage"):
        if Device.objects.filter(pk=device.pk, offline_alerted_at__isnull=False).update(
            offline_alerted_at=None
        ):
            send_alert(
                device,
                subject=f"[StagePulse] camera back online: {device.name}",
                body=f"{_where(device)} is reporting again.",
                event="device.recovered",
            )
            counts["recovered"] += 1
    counts.update(sweep_input_health(now))
    counts["shadows_repushed"] = repush_failed_shadows()
    return counts


# --- camera input health -------------------------------------------------------------------------
def sweep_input_health(now=None) -> dict:
    """One alert when an input problem starts, one notice when it ends, per camera and kind.
    Only online cameras are judged (an offline one has its own alert and no fresh report).
    Each change is claimed under the device's row lock, so concurrent sweeps send it once."""
    now = now or timezone.now()
    counts = {"input_alerts": 0, "input_recovered": 0}
    online = Device.objects.filter(status=DeviceStatus.ONLINE).select_related("festival", "stage")
    for device in online:
        problems = input_problems(device, now)
        if set(problems) == set(device.input_alerts or {}):
            continue
        with transaction.atomic():
            locked = Device.objects.select_for_update().get(pk=device.pk)
            open_alerts = dict(locked.input_alerts or {})
            opened = [kind for kind in problems if kind not in open_alerts]
            closed = [kind for kind in open_alerts if kind not in problems]
            for kind in opened:
                open_alerts[kind] = now.isoformat(timespec="seconds")
            for kind in closed:
                del open_alerts[kind]
            Device.objects.filter(pk=device.pk).update(input_alerts=open_alerts)
        for kind in opened:
            send_alert(
                device,
                subject=f"[StagePulse] camera {INPUT_KINDS[kind]}: {device.name}",
                body=f"{_where(device)}: {problems[kind]}.",
                event=f"device.input.{kind}",
            )
            counts["input_alerts"] += 1
        for kind in closed:
            send_alert(
                device,
                subject=f"[StagePulse] camera {INPUT_KINDS[kind]} resolved: {device.name}",
                body=f"{_where(device)}: {INPUT_KINDS[kind]} is over.",
                event=f"device.input.{kind}.resolved",
            )
            counts["input_recovered"] += 1
    return counts


def repush_failed_shadows() -> int:
    """Settings that did not reach a device's shadow (IoT throttled or down when a pause or a
    festival's mode change was pushed) are pushed again on every sweep until they land."""
    failed = Device.objects.filter(registered_at__isnull=False).exclude(shadow_error="")
    pushed = 0
    for device in failed.select_related("festival"):
        try:
            pushed += push_config_to_shadow(device)
        except Exception:  # one device's bad config never stops the others' pushes
            log.exception("device %s: shadow re-push failed", device.thing_name)
    return pushed


# --- CloudWatch ----------------------------------------------------------------------------------
CLOUDWATCH_LIMIT = 2.0**360  # CloudWatch refuses values beyond +-2^360, NaN and infinities
METRICS_BATCH = 1000  # metric data per PutMetricData call


class BadMetricValue(ValueError):
    """A device's stored telemetry holds a value CloudWatch cannot take."""


def device_metric_data(device: Device) -> list[dict]:
    """The device's latest telemetry as CloudWatch metric data. Raises BadMetricValue for a
    value CloudWatch would refuse (which would fail the whole batch it is in)."""
    health = device.health if isinstance(device.health, dict) else {}
    dimensions = [
        {"Name": "Festival", "Value": device.festival.slug},
        {"Name": "Stage", "Value": device.stage.slug if device.stage_id else "-"},
        {"Name": "Device", "Value": device.thing_name},
    ]
    data = []
    for key, (name, unit) in METRICS.items():
        raw = health.get(key)
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            continue
        try:
            value = float(raw)
        except OverflowError:
            value = math.inf
        if not math.isfinite(value) or abs(value) > CLOUDWATCH_LIMIT:
            raise BadMetricValue(f"{key} = {str(raw)[:40]}... is out of CloudWatch's range")
        data.append(
            {
                "MetricName": name,
                "Dimensions": dimensions,
                "Timestamp": device.last_seen_at,
                "Value": value,
                "Unit": unit,
            }
        )
    return data


def publish_device_metrics(now=None) -> dict:
    """Put each device's latest telemetry into CloudWatch (namespace festival.namespace,
    dimensions Festival, Stage, Device), once per report.

    Each device is isolated: a value that cannot be sent (or any error reading it) is logged,
    counted as skipped and marked done until its next report; a batch CloudWatch refuses as
    invalid is retried one device at a time, so only the bad device's metrics are lost.
    Returns {"sent", "skipped", "failed"} device counts."""
    now = now or timezone.now()
    pending = (
        Device.objects.select_related("festival", "stage")
        .filter(last_seen_at__isnull=False)
        .filter(
            Q(metrics_published_at__isnull=True) | Q(metrics_published_at__lt=F("last_seen_at"))
        )
    )
    counts = {"sent": 0, "skipped": 0, "failed": 0}
    by_namespace: dict[str, list[tuple[Device, list[dict]]]] = {}
    skipped: list[int] = []
    for device in pending:
        try:
            data = device_metric_data(device)
            namespace = device.festival.namespace
        except Exception as exc:  # one device's bad data never stops the others
            log.warning("device %s: metrics skipped: %s", device.thing_name, exc)
            skipped.append(device.pk)
            continue
        if data:
            by_namespace.setdefault(namespace, []).append((device, data))
    if skipped:
        Device.objects.filter(pk__in=skipped).update(metrics_published_at=now)
        counts["skipped"] = len(skipped)
    client = aws.cached_client("cloudwatch") if by_namespace else None
    for namespace, items in by_namespace.items():
        for batch in _batches(items):
            _put_batch(client, namespace, batch, now, counts)
    if counts["skipped"] or counts["failed"]:
        log.warning("device metrics: %s", counts)
    return counts


def _batches(items: list[tuple[Device, list[dict]]]):
    batch: list[tuple[Device, list[dict]]] = []
    size = 0
    for device, data in items:
        if batch and size + len(data) > METRICS_BATCH:
            yield batch
            batch, size = [], 0
        batch.append((device, data))
        size += len(data)
    if batch:
        yield batch


def _put_batch(client, namespace: str, batch, now, counts: dict) -> None:
    """One PutMetricData for the batch; when CloudWatch refuses it as invalid, one call per
    device, so a value it refuses costs only that device's metrics."""
    try:
        client.put_metric_data(
            Namespace=namespace, MetricData=[d for _, data in batch for d in data]
        )
    except ClientError as exc:
        code = aws.error_code(exc)
        if len(batch) > 1 and code.startswith(("InvalidParameter", "MissingParameter")):
            for one in batch:
                _put_batch(client, namespace, [one], now, counts)
            return
        log.error("device metrics to %s failed: %s", namespace, exc)
        counts["failed"] += len(batch)
        if code.startswith("InvalidParameter"):  # refused as such: retrying will not help
            Device.objects.filter(pk__in=[d.pk for d, _ in batch]).update(metrics_published_at=now)
        return
    except BotoCoreError as exc:
        log.error("device metrics to %s failed: %s", namespace, exc)
        counts["failed"] += len(batch)
        return
    Device.objects.filter(pk__in=[d.pk for d, _ in batch]).update(metrics_published_at=now)
    counts["sent"] += len(batch)


# --- device shadow -------------------------------------------------------------------------------
def push_config_to_shadow(device: Device) -> bool:
    """Desired state = the effective edge config (pause, masks, thresholds...). Records success or
    the error on the device; returns whether it was pushed."""
    if not device.registered_at:
        return False
    document = {"state": {"desired": {"stagepulse": device.effective_config}}}
    try:
        aws.cached_client("iot-data").update_thing_shadow(
            thingName=device.thing_name, payload=json.dumps(document).encode()
        )
    except (ClientError, BotoCoreError) as exc:
        message = f"shadow update failed: {exc}"[:500]
        Device.objects.filter(pk=device.pk).update(shadow_error=message)
        device.shadow_error = message
        return False
    now = timezone.now()
    Device.objects.filter(pk=device.pk).update(shadow_synced_at=now, shadow_error="")
    device.shadow_synced_at, device.shadow_error = now, ""
    return True


def push_festival_cameras(festival_id: int) -> int:
    """The festival's analysis mode is part of every camera's effective config
    (Device.effective_config): push each registered camera's config to its shadow after a change
    (operations.services.update_festival); returns how many were pushed. Standalone cameras get it
    from their next telemetry answer; a failed push is recorded on the device and retried by the
    health sweep (repush_failed_shadows)."""
    cameras = Device.objects.filter(festival_id=festival_id, registered_at__isnull=False)
    return sum(push_config_to_shadow(device) for device in cameras.select_related("festival"))


MOVE_REGISTERED_HINT = (
    "To move it: Deregister it, choose the new stage, Register it again, install the new bundle "
    "(certificate and stagepulse.json) on the camera and deploy the edge release; "
    "see 'Moving a camera' in docs/devices.md."
)


def check_stage_change(device: Device, stage) -> None:
    """Refuse moving a registered camera: its stage is written into the camera's own config (the
    crop keys it uploads to), which neither the shadow nor a telemetry answer can change, so after
    a move every upload would be AccessDenied and the new stage would get nothing."""
    new_stage_id = getattr(stage, "pk", stage)
    if not device.pk or not device.registered_at or new_stage_id == device.stage_id:
        return
    raise ValidationError(
        {
            "stage": (
                f"{device.thing_name} is registered for "
                f"{device.stage.name if device.stage_id else 'no stage'}, and that stage is part "
                f"of the configuration on the camera itself. {MOVE_REGISTERED_HINT}"
            )
        }
    )


def update_device(device: Device, **changes) -> Device:
    """Apply organizer changes (name, stage, config...), then push the config to the shadow.
    A registered device keeps its stage (check_stage_change). Validation errors change nothing."""
    for key in ("stage", "stage_id"):
        if key in changes:
            check_stage_change(device, changes[key])
    old_config = dict(device.config)
    for key, value in changes.items():
        setattr(device, key, value)
    # A name from before the current thing-name rule stays usable (pause must always work);
    # only a new name is held to the rule.
    device.full_clean(exclude=None if "thing_name" in changes else ["thing_name"])
    device.save()
    if device.config != old_config:
        push_config_to_shadow(device)
    return device


def set_paused(device: Device, paused: bool) -> Device:
    """The privacy switch: pushed to the device through its shadow, no redeploy."""
    return update_device(device, config={**device.config, "paused": bool(paused)})
