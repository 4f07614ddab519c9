"""Device telemetry: schema validation and the device's health."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone
from jsonschema import Draft202012Validator

from devices.models import Device, DeviceStatus
from edge_package.contracts import TELEMETRY_SCHEMA

VALIDATOR = Draft202012Validator(TELEMETRY_SCHEMA)
HEALTH_FIELDS = (
    "fps",
    "frames",
    "faces_detected",
    "uploads",
    "bytes_sent",
    "spool_depth",
    "spool_dropped",
    "errors",
    "last_error",
    "analysis_mode",
    "paused",
    "sent_at_ms",
)


class TelemetryRejected(ValueError):
    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


def validate_telemetry(payload) -> list[str]:
    """Every schema problem, as 'field: message' lines."""
    problems = []
    for error in sorted(VALIDATOR.iter_errors(payload), key=lambda e: list(e.path)):
        where = ".".join(str(p) for p in error.path) or "(body)"
        problems.append(f"{where}: {error.message}")
    return problems


def record_telemetry(device: Device, payload: dict) -> Device:
    """Validate `payload` for `device` and update its health. Raises TelemetryRejected."""
    problems = validate_telemetry(payload)
    if not problems and payload["device_id"] != device.thing_name:
        problems.append(
            f"device_id: {payload['device_id']!r} is not the device these credentials belong to"
        )
    if problems:
        raise TelemetryRejected(problems)
    now = timezone.now()
    health = {key: payload[key] for key in HEALTH_FIELDS if key in payload}
    health["received_at"] = now.isoformat(timespec="seconds")
    health["device_clock_skew_s"] = round(
        (now - datetime.fromtimestamp(payload["sent_at_ms"] / 1000, tz=UTC)).total_seconds(), 1
    )
    # One UPDATE; status leaves OFFLINE here, the recovery notice is sent by the health sweep.
    Device.objects.filter(pk=device.pk).update(
        last_seen_at=now,
        software_version=payload["software_version"],
        health=health,
        status=DeviceStatus.ONLINE,
        updated_at=now,
    )
    device.refresh_from_db()
    return device
