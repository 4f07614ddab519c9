"""Per-device telemetry tokens: shown once, stored as SHA-256 only."""

from __future__ import annotations

import hashlib
import secrets

from devices.models import Device

TOKEN_PREFIX = "spd_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_device_token(device: Device, *, save: bool = True) -> str:
    """A new token for `device` (the previous one stops working). Returns the clear token."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    device.token_hash = hash_token(token)
    if save:
        device.save(update_fields=["token_hash", "updated_at"])
    return token


def device_for_token(token: str) -> Device | None:
    if not token or not token.startswith(TOKEN_PREFIX):
        return None
    return (
        Device.objects.select_related("festival", "stage", "organization")
        .filter(token_hash=hash_token(token))
        .first()
    )
