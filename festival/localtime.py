"""Times as organizers read them: in the festival's zone, with the zone named.

Stored times are UTC. Anything a person reads (admin lists, report pages, the dashboard) goes
through `local_label`, so an organizer in Amsterdam never has to add two hours in their head.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from django.utils import timezone


def offset_text(local: datetime) -> str:
    """UTC+02:00 style offset of an aware datetime."""
    offset = local.utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def zone_abbreviation(local: datetime) -> str:
    """CEST, BST…; zones without a letter abbreviation get their UTC offset instead."""
    name = local.tzname() or ""
    return name if name.isalpha() else offset_text(local)


def local_label(value: datetime | None, tz: ZoneInfo, fmt: str = "%a %d %b %H:%M") -> str:
    """'Fri 10 Jul 20:00 CEST': the moment in the festival's zone, with the zone."""
    if value is None:
        return "—"
    local = value.astimezone(tz)
    return f"{local.strftime(fmt)} {zone_abbreviation(local)}"


def local_time_label(value: datetime | None, tz: ZoneInfo) -> str:
    """'20:00 CEST': a time of day in the festival's zone, with the zone."""
    return local_label(value, tz, "%H:%M")


class FestivalZoneAdminMixin:
    """Renders an object page in its festival's zone (read-only times, the admin's "you are N
    hours ahead" note) and a changelist in the zone of the festivals it lists, when they share
    one (its date drill-down then cuts days at local midnight)."""

    festival_zone_path: str = ""  # lookup from the model to Festival.timezone

    def festival_zone_for(self, obj) -> ZoneInfo:
        raise NotImplementedError

    def zone_of_listed(self, request) -> ZoneInfo | None:
        zones = set(
            self.get_queryset(request).values_list(self.festival_zone_path, flat=True).distinct()
        )
        return ZoneInfo(zones.pop()) if len(zones) == 1 else None

    def changeform_view(self, request, object_id=None, form_url="", extra_context=None):
        tz = None
        if object_id is not None:
            obj = self.get_queryset(request).filter(pk=object_id).first()
            tz = self.festival_zone_for(obj) if obj is not None else None
        else:
            tz = self.zone_of_listed(request)
        with timezone.override(tz or timezone.get_current_timezone()):
            return super().changeform_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):
        with timezone.override(self.zone_of_listed(request) or timezone.get_current_timezone()):
            return super().changelist_view(request, extra_context)
