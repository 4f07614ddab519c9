"""Reads for the device fleet."""

from __future__ import annotations

from django.db.models import QuerySet

from devices.models import Deployment, Device, EdgeRelease


def devices_for(user) -> QuerySet[Device]:
    return Device.objects.for_user(user).select_related("festival", "stage", "current_release")


def deployments_for(user) -> QuerySet[Deployment]:
    return Deployment.objects.for_user(user).select_related("device", "release", "rollback_of")


def releases() -> QuerySet[EdgeRelease]:
    """Releases are global (the same software for every tenant) and carry no tenant data."""
    return EdgeRelease.objects.all()


def latest_release() -> EdgeRelease | None:
    return EdgeRelease.objects.order_by("-created_at", "-id").first()
