"""Reads for the device fleet."""

from __future__ import annotations

import json
import logging
import time

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.db.models import QuerySet

from devices.models import Deployment, Device, EdgeRelease
from festival import aws

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
