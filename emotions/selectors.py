"""Reads: the live vibe of each stage, the festival ranking, and per-minute timelines.

The vibe score (0-100) of a stage over a sliding window:

    energy = mean over read faces of (HAPPY + SURPRISED) / 100   # positive, high-energy share
    crowd  = min(1, faces per minute / the stage's norm)          # how full it is for this stage
    vibe   = 100 * (0.7 * energy + 0.3 * crowd)

The norm is the stage's `typical_crowd` when set, else the busiest minute of its last two hours.
Every number here follows the one privacy rule (emotions.privacy): a minute with fewer read
faces than the festival's `min_faces_public` is suppressed, and a window sums its published
minutes only. A face whose expression could not be read (top emotion UNKNOWN) counts in faces
and crowd but not in energy or expression shares; with no read face there is no vibe.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from edge_package.contracts import EMOTIONS, LIVELY_EMOTIONS
from emotions.models import (
    AnalysisBacklog,
    IngestRejection,
    IngestWatermark,
    MinuteRollup,
    RejectionReason,
)
from emotions.privacy import WindowStats, is_published, published_total
from festival.models import Festival
from stages.models import Stage
from stages.selectors import now_next_by_stage

logger = logging.getLogger(__name__)

VIBE_WINDOW = timedelta(minutes=5)
TREND_STEADY_POINTS = 5.0
ENERGY_WEIGHT, CROWD_WEIGHT = 0.7, 0.3
NORM_LOOKBACK = timedelta(hours=2)


def vibe_score(stats: WindowStats, minutes: float, norm: float) -> float | None:
    if stats.read_faces == 0:
        return None
    read = stats.read_faces
    energy = sum(stats.sums.get(name, 0.0) for name in LIVELY_EMOTIONS) / (100.0 * read)
    crowd = min(1.0, (stats.faces / max(minutes, 1e-9)) / max(norm, 1.0))
    return round(100.0 * (ENERGY_WEIGHT * min(energy, 1.0) + CROWD_WEIGHT * crowd), 1)


def expression_share(stats: WindowStats) -> dict[str, float] | None:
    """Percent of read faces by top expression (sums to ~100); None when no face was read."""
    read = stats.read_faces
    if read == 0:
        return None
    return {name: round(100.0 * stats.counts.get(name, 0) / read, 1) for name in EMOTIONS}


def window_stats(festival: Festival, start: datetime, end: datetime) -> dict[int, WindowStats]:
    """Per stage, the published minutes of [start, end) summed (emotions.privacy, rule 2)."""
    per_stage: dict[int, list[MinuteRollup]] = {}
    rollups = MinuteRollup.objects.filter(festival=festival, minute__gte=start, minute__lt=end)
    for rollup in rollups.only("stage_id", "faces", "counts", "sums"):
        per_stage.setdefault(rollup.stage_id, []).append(rollup)
    k = festival.min_faces_public
    return {stage_id: published_total(rows, k) for stage_id, rows in per_stage.items()}


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


def _now_and_next(slot) -> dict:
    """What a fan deciding where to walk needs beside the number: who plays until when, and who
    is next (times are UTC; the app shows them in the festival's zone)."""
    now_set = slot.now if slot else None
    next_set = slot.next if slot else None
    return {
        "now_playing": now_set.artist if now_set else None,
        "now_playing_until": now_set.ends_at if now_set else None,
        "next": {"artist": next_set.artist, "starts_at": next_set.starts_at} if next_set else None,
    }


def compute_live_ranking(
    festival: Festival, at: datetime | None = None, window: timedelta = VIBE_WINDOW
) -> dict:
    """The festival's stages ranked by vibe now, with trend against the previous window."""
    at = at or timezone.now()
    start = _window_start(at, window)
    previous_start = _window_start(start, window)
    minutes = (at - start).total_seconds() / 60.0
    stages = list(Stage.objects.filter(festival=festival).order_by("position", "name"))
    # Up to and with the minute `at` falls in: the timeline's minutes, never a later one.
    current = window_stats(festival, start, _window_start(at, timedelta(0)) + timedelta(minutes=1))
    previous = window_stats(festival, previous_start, start)
    norms = crowd_norms(festival, stages, at)
    slots = {row.stage.pk: row for row in now_next_by_stage(festival, at)}
    rows = []
    for stage in stages:
        stats = current.get(stage.pk, WindowStats())
        suppressed = not is_published(stats.read_faces, festival.min_faces_public)
        row = {
            "stage": {"slug": stage.slug, "name": stage.name},
            **_now_and_next(slots.get(stage.pk)),
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
            if is_published(before.read_faces, festival.min_faces_public):
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
    analysis = analysis_status(at)
    add_freshness(festival, stages, rows, at, window, analysis)
    rows.sort(key=lambda r: (r["vibe"] is None, -(r["vibe"] or 0), r["stage"]["name"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank if row["vibe"] is not None else None
    return {
        "festival": festival.slug,
        "generated_at": at,
        "window_seconds": int(window.total_seconds()),
        "min_faces": festival.min_faces_public,
        "stages": rows,
        "analysis": analysis,
    }


# --- freshness: how old each stage's data is, the analysis backlog, why a stage has no number ---
NO_NUMBER_REASONS = ("too_few_faces", "no_recent_data", "analysis_behind")


def stage_data_ages(festival: Festival, at: datetime) -> dict[int, int | None]:
    """Seconds since each stage's newest ingested capture (None: nothing yet). Capture times are
    capped at when DynamoDB received them, so a fast camera clock cannot make this negative."""

    ages = {}
    rows = IngestWatermark.objects.filter(stage__festival=festival, captured_until_ms__gt=0)
    for stage_id, newest_ms in rows.values_list("stage_id", "captured_until_ms"):
        ages[stage_id] = max(0, int(at.timestamp() - newest_ms / 1000))
    return ages


def analysis_status(at: datetime | None = None) -> dict | None:
    """The analysis queue as the beat task last measured it; None when never measured. A
    measurement older than four intervals is reported as stale (and never as 'behind')."""
    from django.conf import settings

    at = at or timezone.now()
    backlog = AnalysisBacklog.objects.filter(measured_at__isnull=False).order_by("-measured_at")
    backlog = backlog.first()
    if backlog is None:
        return None
    age_of_sample = (at - backlog.measured_at).total_seconds()
    stale = age_of_sample > 4 * settings.ANALYSIS_BACKLOG_INTERVAL_S
    oldest = backlog.oldest_age_s
    return {
        "queued": backlog.depth,
        "in_progress": backlog.in_flight,
        "oldest_age_s": None if oldest is None else round(oldest),
        "behind": not stale and (oldest or 0) > settings.ANALYSIS_BEHIND_AFTER_S,
        "measured_at": backlog.measured_at,
        "stale": stale,
    }


def add_freshness(
    festival: Festival,
    stages: list[Stage],
    rows: list[dict],
    at: datetime,
    window: timedelta,
    analysis: dict | None,
) -> None:
    """Adds `data_age_s` and `no_number_reason` to each ranking row (additive: the suppression
    decided before stays as it is). A stage without a number is 'analysis_behind' when the
    queue is behind, else 'no_recent_data' when nothing of it was captured in the window, else
    'too_few_faces'."""
    ages = stage_data_ages(festival, at)
    by_slug = {stage.slug: stage.pk for stage in stages}
    behind = bool(analysis and analysis["behind"])
    for row in rows:
        age = ages.get(by_slug[row["stage"]["slug"]])
        row["data_age_s"] = age
        if row["vibe"] is not None:
            row["no_number_reason"] = None
        elif behind:
            row["no_number_reason"] = "analysis_behind"
        elif age is None or age > window.total_seconds():
            row["no_number_reason"] = "no_recent_data"
        else:
            row["no_number_reason"] = "too_few_faces"


def ingest_refusals(festival: Festival) -> list[dict]:
    """What the ingest refused for this festival, per stage and reason (for its operators)."""

    labels = dict(RejectionReason.choices)
    refusals = IngestRejection.objects.filter(festival=festival).select_related("stage")
    return [
        {
            "reason": r.reason,
            "label": labels.get(r.reason, r.reason),
            "stage": r.stage.slug if r.stage_id else None,
            "count": r.count,
            "last_at": r.last_at,
            "last_detail": r.last_detail,
        }
        for r in refusals.order_by("-last_at")
    ]


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
        suppressed = not is_published(stats.read_faces, festival.min_faces_public)
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
