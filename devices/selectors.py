"""Reads for the device fleet."""

from __future__ import annotations

import json
import logging
import time
from datetime import datetime

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone

import awsclients as aws
from devices.models import Deployment, Device, EdgeRelease
from stages.models import Set

log = logging.getLogger(__name__)
RULE_SECRET_TTL_S = 300  # a rotated secret reaches every process within five minutes
_rule_secret: dict = {"value": "", "arn": "", "at": 0.0}


def devices_for(user) -> QuerySet[Device]:
    return Device.objects.for_user(user).select_related("festival", "stage", "current_release")


def deployments_for(user) -> QuerySet[Deployment]:
    return Deployment.objects.for_user(user).select_related("device", "release", "rollback_of")


def releases() -> QuerySet[EdgeRelease]:
    """Releases are global (the same software for every tenant) and carry no tenant data."""
    return EdgeRelease.objects.all()


def latest_release() -> EdgeRelease | None:
    return EdgeRelease.objects.order_by("-created_at", "-id").first()


def set_lock(stage, now, margin):
    """(the set holding deployments to this stage's cameras, when the next gap starts).

    A set holds them while it plays and from `margin` before it starts; sets that follow each
    other closer than the margin hold as one, so the gap is the first moment with no set playing
    and none starting within the margin. (None, now) when nothing holds."""

    if stage is None:
        return None, now
    holding, free_at = None, now
    for a_set in Set.objects.filter(stage=stage, ends_at__gt=now).order_by("starts_at", "pk"):
        if a_set.starts_at >= free_at + margin:
            break
        if a_set.ends_at > free_at:
            holding = holding or a_set
            free_at = a_set.ends_at
    return holding, free_at


# --- camera input health (read from the last telemetry report; alerts: services.health) -------
INPUT_KINDS = {
    "black": "picture black",
    "frozen": "picture frozen",
    "dark": "too dark",
    "clock_drift": "clock drift",
    "upload_gap": "upload gap",
    "spool_growing": "spool growing",
}


def _since(value, now) -> float | None:
    """Seconds from an ISO timestamp stored in the health to now (None when absent or bad)."""
    try:
        return (now - datetime.fromisoformat(value)).total_seconds()
    except (TypeError, ValueError):
        return None


def _number(health: dict, key: str) -> float | None:
    value = health.get(key)
    return None if isinstance(value, bool) or not isinstance(value, (int, float)) else value


def input_problems(device: Device, now=None) -> dict[str, str]:
    """The camera's input problems from its last report, kind -> what a crew member reads.

    The picture checks (black, frozen, dark) are skipped while the camera is paused: it does not
    look at its frames then. Black wins over frozen and dark (a black picture is both)."""
    now = now or timezone.now()
    health = device.health if isinstance(device.health, dict) else {}
    problems: dict[str, str] = {}
    if not device.paused and not health.get("paused"):
        black = _number(health, "input_black_s")
        frozen = _number(health, "input_frozen_s")
        luma = _number(health, "input_luma")
        if black is not None and black >= settings.INPUT_BLACK_AFTER_S:
            problems["black"] = f"the picture has been black for {int(black)} s (lens covered?)"
        elif frozen is not None and frozen >= settings.INPUT_FROZEN_AFTER_S:
            problems["frozen"] = (
                f"the picture has not changed for {int(frozen)} s (stream stuck on one frame?)"
            )
        elif luma is not None and luma < settings.INPUT_DARK_LUMA:
            problems["dark"] = (
                f"mean brightness {luma:.0f} of 255 is under {settings.INPUT_DARK_LUMA:g}: "
                "too dark to find faces"
            )
    skew = _number(health, "device_clock_skew_s")
    if skew is not None and abs(skew) > settings.INPUT_CLOCK_DRIFT_MAX_S:
        ahead = "behind" if skew > 0 else "ahead of"
        problems["clock_drift"] = (
            f"the camera's clock is {abs(skew):.0f} s {ahead} the service's: crops land in the "
            "wrong minute (check NTP on the box)"
        )
    depth = _number(health, "spool_depth") or 0
    quiet = _since(health.get("uploads_moved_at"), now)
    if depth > 0 and quiet is not None and quiet >= settings.INPUT_UPLOAD_GAP_MINUTES * 60:
        problems["upload_gap"] = (
            f"nothing uploaded for {int(quiet // 60)} min while {int(depth)} items wait "
            "in the spool (network or credentials?)"
        )
    growing = _since(health.get("spool_growing_since"), now)
    grown = depth - (_number(health, "spool_growing_from") or 0)
    if (
        growing is not None
        and growing >= settings.INPUT_SPOOL_GROWING_MINUTES * 60
        and grown >= settings.INPUT_SPOOL_GROWING_MIN_ITEMS
    ):
        problems["spool_growing"] = (
            f"the spool grew by {int(grown)} to {int(depth)} items in {int(growing // 60)} min: "
            "the link sends less than the camera keeps"
        )
    return problems


def iot_rule_secret() -> str:
    """The token the IoT telemetry rule sends: TELEMETRY_IOT_RULE_SECRET, or the stack's
    Secrets Manager secret (TELEMETRY_IOT_RULE_SECRET_ARN, key "token"), cached per process.
    Empty when neither is set or the secret cannot be read (rule requests are then refused)."""
    if settings.TELEMETRY_IOT_RULE_SECRET:
        return settings.TELEMETRY_IOT_RULE_SECRET
    arn = settings.TELEMETRY_IOT_RULE_SECRET_ARN
    if not arn:
        return ""
    cached = _rule_secret
    if cached["arn"] == arn and time.monotonic() - cached["at"] < RULE_SECRET_TTL_S:
        return cached["value"]
    try:
        raw = aws.cached_client("secretsmanager").get_secret_value(SecretId=arn)["SecretString"]
        value = str(json.loads(raw).get("token", ""))
    except (ClientError, BotoCoreError, ValueError, KeyError) as exc:
        log.warning("IoT rule secret %s unreadable: %s", arn, exc)
        return cached["value"] if cached["arn"] == arn else ""
    _rule_secret.update(value=value, arn=arn, at=time.monotonic())
    return value
