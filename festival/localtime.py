"""Times as organizers read them: in the festival's zone, with the zone named.

Stored times are UTC. Anything a person reads (admin lists, report pages, the dashboard) goes
through `local_label`, so an organizer in Amsterdam never has to add two hours in their head.
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo


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
