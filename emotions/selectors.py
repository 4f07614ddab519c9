"""Reads: the live vibe of each stage, the festival ranking, and per-minute timelines.

The vibe score (0-100) of a stage over a sliding window:

    energy = mean over faces of (HAPPY + SURPRISED) / 100        # positive, high-energy share
    crowd  = min(1, faces per minute / the stage's norm)          # how full it is for this stage
    vibe   = 100 * (0.7 * energy + 0.3 * crowd)

The norm is the stage's `typical_crowd` when set, else the busiest minute of its last two hours.
A window with fewer faces than the festival's `min_faces_public` is suppressed: no number at all.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder
from django.db.models import Max
from django.utils import timezone

from edge_package.contracts import EMOTIONS, LIVELY_EMOTIONS
from emotions.models import MinuteRollup
from festival.models import Festival
from stages.models import Stage
from stages.selectors import now_next_by_stage

VIBE_WINDOW = timedelta(minutes=5)
TREND_STEADY_POINTS = 5.0
ENERGY_WEIGHT, CROWD_WEIGHT = 0.7, 0.3
NORM_LOOKBACK = timedelta(hours=2)
LIVE_CACHE_SECONDS = 5


@dataclass
class WindowStats:
    faces: int = 0
    counts: dict = field(default_factory=dict)
    sums: dict = field(default_factory=dict)

    def add(self, rollup: MinuteRollup) -> None:
        self.faces += rollup.faces
        for name, value in rollup.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        for name, value in rollup.sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + value


def vibe_score(stats: WindowStats, minutes: float, norm: float) -> float | None:
    if stats.faces == 0:
        return None
    energy = sum(stats.sums.get(name, 0.0) for name in LIVELY_EMOTIONS) / (100.0 * stats.faces)
    crowd = min(1.0, (stats.faces / max(minutes, 1e-9)) / max(norm, 1.0))
    return round(100.0 * (ENERGY_WEIGHT * min(energy, 1.0) + CROWD_WEIGHT * crowd), 1)


def expression_share(stats: WindowStats) -> dict[str, float]:
    """Percent of faces by top expression (sums to ~100)."""
    return {name: round(100.0 * stats.counts.get(name, 0) / stats.faces, 1) for name in EMOTIONS}


def window_stats(festival: Festival, start: datetime, end: datetime) -> dict[int, WindowStats]:
    stats: dict[int, WindowStats] = {}
    rollups = MinuteRollup.objects.filter(festival=festival, minute__gte=start, minute__lt=end)
    for rollup in rollups.only("stage_id", "faces", "counts", "sums"):
        stats.setdefault(rollup.stage_id, WindowStats()).add(rollup)
    return stats


def crowd_norms(festival: Festival, stages: list[Stage], at: datetime) -> dict[int, float]:
    learned = dict(
        MinuteRollup.objects.filter(festival=festival, minute__gte=at - NORM_LOOKBACK)
        .values("stage_id")
        .annotate(peak=Max("faces"))
        .values_list("stage_id", "peak")
    )
    return {s.pk: float(s.typical_crowd or learned.get(s.pk) or 1) for s in stages}


def _window_start(at: datetime, window: timedelta) -> datetime:
    return (at - window).replace(second=0, microsecond=0)


def compute_live_ranking(
    festival: Festival, at: datetime | None = None, window: timedelta = VIBE_WINDOW
) -> dict:
    """The festival's stages ranked by vibe now, with trend against the previous window."""
    at = at or timezone.now()
    start = _window_start(at, window)
    previous_start = _window_start(start, window)
    minutes = (at - start).total_seconds() / 60.0
    stages = list(Stage.objects.filter(festival=festival).order_by("position", "name"))
    current = window_stats(festival, start, at + timedelta(minutes=1))
    previous = window_stats(festival, previous_start, start)
    norms = crowd_norms(festival, stages, at)
    playing = {row.stage.pk: row.now for row in now_next_by_stage(festival, at)}
    rows = []
    for stage in stages:
        stats = current.get(stage.pk, WindowStats())
        suppressed = stats.faces < festival.min_faces_public
        row = {
            "stage": {"slug": stage.slug, "name": stage.name},
            "now_playing": playing[stage.pk].artist if playing.get(stage.pk) else None,
            "suppressed": suppressed,
            "faces": None if suppressed else stats.faces,
            "vibe": None,
            "expression_share": None,
            "trend": None,
            "trend_delta": None,
        }
        if not suppressed:
            row["vibe"] = vibe_score(stats, minutes, norms[stage.pk])
            row["expression_share"] = expression_share(stats)
            before = previous.get(stage.pk, WindowStats())
            if before.faces >= festival.min_faces_public:
                delta = round(
                    row["vibe"] - vibe_score(before, window.seconds / 60, norms[stage.pk]), 1
                )
                row["trend_delta"] = delta
                row["trend"] = (
                    "steady"
                    if abs(delta) < TREND_STEADY_POINTS
                    else "rising"
                    if delta > 0
                    else "falling"
                )
        rows.append(row)
    rows.sort(key=lambda r: (r["vibe"] is None, -(r["vibe"] or 0), r["stage"]["name"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank if row["vibe"] is not None else None
    return {
        "festival": festival.slug,
        "generated_at": at,
        "window_seconds": int(window.total_seconds()),
        "min_faces": festival.min_faces_public,
        "stages": rows,
    }


# The ranking is cached as an entry {"at", "public", "ranking", "json"}: the fan API serves the
# pre-rendered JSON with one cache read and no database query. Ingest writes a fresh entry when
# data lands; a request that finds the entry older than LIVE_CACHE_SECONDS refreshes it, and while
# one request refreshes, the others keep serving the previous copy (no stampede at expiry).
LIVE_KEEP_SECONDS = 120


def live_cache_key(festival_slug: str) -> str:
    return f"stagepulse:live:{festival_slug}"


def cached_live_entry(festival_slug: str) -> dict | None:
    return cache.get(live_cache_key(festival_slug))


def is_fresh(entry: dict | None) -> bool:
    return entry is not None and time.time() - entry["at"] < LIVE_CACHE_SECONDS


def store_live_ranking(festival: Festival) -> dict:
    ranking = compute_live_ranking(festival)
    entry = {
        "at": time.time(),
        "public": festival.public,
        "ranking": ranking,
        "json": json.dumps(ranking, cls=DjangoJSONEncoder).encode(),
    }
    cache.set(live_cache_key(festival.slug), entry, LIVE_KEEP_SECONDS)
    return entry


def live_entry(festival: Festival) -> dict:
    entry = cached_live_entry(festival.slug)
    if is_fresh(entry):
        return entry
    lock = live_cache_key(festival.slug) + ":refreshing"
    if entry is not None and not cache.add(lock, 1, timeout=10):
        return entry  # another request is refreshing it; a few seconds old is fine
    try:
        return store_live_ranking(festival)
    finally:
        cache.delete(lock)


def live_ranking(festival: Festival) -> dict:
    """The festival's ranking, at most a few seconds old."""
    return live_entry(festival)["ranking"]


def stage_timeline(
    festival: Festival, stage: Stage, at: datetime | None = None, minutes: int = 60
) -> list[dict]:
    """Per minute over the last `minutes`: faces, vibe and expression share (small buckets
    suppressed)."""
    at = at or timezone.now()
    start = (at - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    norm = crowd_norms(festival, [stage], at)[stage.pk]
    rollups = {
        r.minute: r
        for r in MinuteRollup.objects.filter(stage=stage, minute__gte=start, minute__lte=at)
    }
    points = []
    minute = start
    while minute <= at:
        stats = WindowStats()
        if minute in rollups:
            stats.add(rollups[minute])
        suppressed = stats.faces < festival.min_faces_public
        points.append(
            {
                "minute": minute,
                "suppressed": suppressed,
                "faces": None if suppressed else stats.faces,
                "vibe": None if suppressed else vibe_score(stats, 1.0, norm),
                "expression_share": None if suppressed else expression_share(stats),
            }
        )
        minute += timedelta(minutes=1)
    return points
