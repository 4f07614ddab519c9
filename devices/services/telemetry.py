"""Device telemetry: schema validation, the device's health, and the IoT rule destination's
confirmation."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.utils import timezone
from jsonschema import Draft202012Validator

import awsclients as aws
from devices.models import Device, DeviceStatus
from edge_package.contracts import TELEMETRY_SCHEMA

log = logging.getLogger(__name__)

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
    "input_luma",
    "input_motion",
    "input_black_s",
    "input_frozen_s",
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
    health.update(_trends(device.health if isinstance(device.health, dict) else {}, health, now))
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


def _trends(before: dict, health: dict, now) -> dict:
    """What one report cannot say alone, from the previous one: errors per minute (the counter
    restarts with the component), since when uploads have not moved, and since when the spool
    has only grown (services.health turns the last two into upload-gap and spool alerts)."""
    try:
        then = datetime.fromisoformat(before["received_at"])
    except (KeyError, TypeError, ValueError):
        then = None
    stamp = now.isoformat(timespec="seconds")
    trends: dict = {}
    errors, errors_before = health.get("errors"), before.get("errors")
    minutes = (now - then).total_seconds() / 60 if then else 0.0
    if isinstance(errors, int) and isinstance(errors_before, int) and minutes > 0:
        new = errors - errors_before if errors >= errors_before else errors
        trends["errors_per_min"] = round(new / minutes, 2)
    elif "errors_per_min" in before:
        trends["errors_per_min"] = before["errors_per_min"]
    uploads = health.get("uploads")
    moved = uploads != before.get("uploads") or "uploads_moved_at" not in before
    trends["uploads_moved_at"] = stamp if moved else before["uploads_moved_at"]
    depth, depth_before = health.get("spool_depth"), before.get("spool_depth")
    growing = (
        isinstance(depth, int)
        and isinstance(depth_before, int)
        and depth > 0
        and depth >= depth_before
        and "spool_growing_since" in before
    )
    if growing:
        trends["spool_growing_since"] = before["spool_growing_since"]
        trends["spool_growing_from"] = before.get("spool_growing_from", depth_before)
    else:
        trends["spool_growing_since"], trends["spool_growing_from"] = stamp, depth or 0
    return trends


# --- the AWS IoT rule's HTTPS destination -------------------------------------------------------
DESTINATION_ARN = re.compile(r"^arn:aws[a-z-]*:iot:[a-z0-9-]+:\d{12}:ruledestination/http/\S+$")


class ConfirmationRejected(ValueError):
    pass


def is_destination_confirmation(payload) -> bool:
    """AWS IoT's one-off POST to a new HTTPS rule destination: {arn, confirmationToken,
    enableUrl}, without any of the rule's headers."""
    return isinstance(payload, dict) and "confirmationToken" in payload and "arn" in payload


def confirm_rule_destination(payload: dict) -> str:
    """Confirm our telemetry topic rule's destination with AWS, so the first deploy ends with a
    delivering rule and nobody runs `aws iot confirm-topic-rule-destination`.

    Not gated on the rule's secret (the stack creates it, so the service may not have it yet):
    the call is signed with the service's own credentials, so AWS accepts only a token of a
    destination in the service's account; a forged or foreign token is refused by AWS. The
    destination must be in the service's region and partition. When AWS refuses or cannot be
    reached, the token is logged so an operator can confirm by hand. Returns the destination ARN.
    """
    arn, token = str(payload.get("arn", "")), str(payload.get("confirmationToken", ""))
    if not DESTINATION_ARN.match(arn) or not token or len(token) > 4096:
        raise ConfirmationRejected("Not an AWS IoT HTTPS rule destination confirmation.")
    parts = arn.split(":")
    if parts[1] != aws.partition() or parts[3] != aws.region():
        raise ConfirmationRejected(
            f"{arn} is not in this service's region ({aws.partition()}:{aws.region()})."
        )
    try:
        aws.cached_client("iot").confirm_topic_rule_destination(confirmationToken=token)
    except (ClientError, BotoCoreError) as exc:
        log.warning(
            "IoT rule destination %s not confirmed (%s); confirm it by hand with: aws iot "
            "confirm-topic-rule-destination --confirmation-token %s",
            arn,
            exc,
            token,
        )
        raise ConfirmationRejected(f"AWS refused the confirmation of {arn}: {exc}") from exc
    log.info("IoT rule destination %s confirmed", arn)
    return arn
