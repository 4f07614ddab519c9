"""Reads for stages and the lineup: what is playing now and next, per stage."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone

from festival.models import Festival
from stages.models import Set, Stage


@dataclass
class StageNowNext:
    stage: Stage
    now: Set | None
    next: Set | None


def set_playing(stage_id: int, at: datetime) -> Set | None:
    return (
        Set.objects.filter(stage_id=stage_id, starts_at__lte=at, ends_at__gt=at)
        .order_by("starts_at")
        .first()
    )


def now_next_by_stage(festival: Festival, at: datetime | None = None) -> list[StageNowNext]:
    """Each stage with its current and next set, in two queries whatever the number of stages."""
    at = at or timezone.now()
    stages = list(Stage.objects.filter(festival=festival).order_by("position", "name"))
    upcoming = (
        Set.objects.filter(stage__festival=festival, ends_at__gt=at)
        .order_by("starts_at")
        .only("id", "stage_id", "artist", "starts_at", "ends_at", "notes")
    )
    slots: dict[int, list[Set]] = {}
    for item in upcoming:
        bucket = slots.setdefault(item.stage_id, [])
        if len(bucket) < 2:
            bucket.append(item)
    result = []
    for stage in stages:
        now_set = next_set = None
        for item in slots.get(stage.pk, []):
            if item.starts_at <= at and now_set is None:
                now_set = item
            elif next_set is None and item.starts_at > at:
                next_set = item
        result.append(StageNowNext(stage=stage, now=now_set, next=next_set))
    return result


def festival_lineup(festival: Festival):
    return (
        Set.objects.filter(stage__festival=festival)
        .select_related("stage")
        .order_by("starts_at", "stage__position")
    )
