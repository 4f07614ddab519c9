"""Reads: the live vibe of each stage, the festival ranking, and per-minute timelines.

The vibe score (0-100) of a stage over a sliding window:

    energy = mean over read faces of (HAPPY + SURPRISED) / 100   # positive, high-energy share
    crowd  = min(1, faces per minute / the stage's norm)          # how full it is for this stage
    vibe   = 100 * (0.7 * energy + 0.3 * crowd)

The norm is the stage's `typical_crowd` when set, else the busiest minute of its last two hours.
That is vibe v1 (`vibe`, faces only), kept for reports and clients that read it. The ranking
runs on vibe v2 (`vibe_v2`, emotions.vibe): expression, motion, sound and crowd fill, each
normalised against the stage's own last three hours, with the festival's weights; each
component is in `components`, so a surface can draw every curve and not only the blend.
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
from emotions import vibe as v2
from emotions.models import (
    AnalysisBacklog,
    CrowdMinute,
    IngestRejection,
    IngestWatermark,
    MinuteRollup,
    RejectionReason,
)
from emotions.privacy import (
    WindowStats,
    is_crowd_published,
    is_published,
    published_crowd_total,
    published_total,
)
from festival.models import Festival, effective_vibe_weights
from stages.models import Stage
from stages.selectors import now_next_by_stage

logger = logging.getLogger(__name__)

VIBE_WINDOW = timedelta(minutes=5)
TREND_STEADY_POINTS = 5.0
ENERGY_WEIGHT, CROWD_WEIGHT = 0.7, 0.3
NORM_LOOKBACK = timedelta(hours=2)
VIBE2_LOOKBACK = timedelta(hours=3)  # the history each component is normalised against


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


def crowd_window_stats(festival: Festival, start: datetime, end: datetime) -> dict:
    """Per stage, the crowd minutes of [start, end) with a camera reporting, summed (rule 3)."""
    per_stage: dict[int, list[CrowdMinute]] = {}
    for bucket in CrowdMinute.objects.filter(festival=festival, minute__gte=start, minute__lt=end):
        per_stage.setdefault(bucket.stage_id, []).append(bucket)
    return {stage_id: published_crowd_total(rows) for stage_id, rows in per_stage.items()}


def _minute_energy(min_faces: int):
    def energy(bucket) -> float | None:
        stats = WindowStats()
        stats.add(bucket)
        if not is_published(stats.read_faces, min_faces):
            return None  # a suppressed minute shapes no public number, references included
        return v2.expression_energy(stats)

    return energy


def vibe_references(
    festival: Festival, stage_ids: list[int], start: datetime, end: datetime
) -> dict[int, v2.Reference]:
    """Each stage's reference for vibe v2: its own and the festival's per-minute component
    values in [start, end) (published face minutes, crowd minutes with a camera)."""
    faces = [] if festival.face_free else MinuteRollup.objects.filter(
        festival=festival, minute__gte=start, minute__lt=end
    ).only("stage_id", "faces", "counts", "sums")  # fmt: skip
    crowd = [
        b
        for b in CrowdMinute.objects.filter(festival=festival, minute__gte=start, minute__lt=end)
        if is_crowd_published(b)
    ]
    per_stage = v2.minute_values(faces, crowd, _minute_energy(festival.min_faces_public))
    return v2.build_references(per_stage, stage_ids)


def vibe_v2(
    festival: Festival,
    stats: WindowStats | None,
    crowd: v2.CrowdStats | None,
    reference: v2.Reference,
) -> tuple[float | None, dict]:
    """The blend and its components for one window (expression only over published faces, and
    never in face-free mode)."""
    expression = None
    k = festival.min_faces_public
    if stats is not None and not festival.face_free and is_published(stats.read_faces, k):
        expression = v2.expression_energy(stats)
    raw = v2.raw_components(expression, crowd)
    return v2.blend(raw, reference, effective_vibe_weights(festival.vibe_weights))


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
    end = _window_start(at, timedelta(0)) + timedelta(minutes=1)
    current = window_stats(festival, start, end)
    previous = window_stats(festival, previous_start, start)
    crowd_now = crowd_window_stats(festival, start, end)
    crowd_before = crowd_window_stats(festival, previous_start, start)
    references = vibe_references(festival, [s.pk for s in stages], start - VIBE2_LOOKBACK, start)
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
        crowd = crowd_now.get(stage.pk, v2.CrowdStats())
        row["vibe_v2"], row["components"] = vibe_v2(festival, stats, crowd, references[stage.pk])
        row["cameras"] = crowd.cameras
        if not suppressed:
            row["vibe"] = vibe_score(stats, minutes, norms[stage.pk])
            row["expression_share"] = expression_share(stats)
        before, _ = vibe_v2(
            festival,
            previous.get(stage.pk, WindowStats()),
            crowd_before.get(stage.pk, v2.CrowdStats()),
            references[stage.pk],
        )
        if row["vibe_v2"] is not None and before is not None:
            delta = round(row["vibe_v2"] - before, 1)
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
    rows.sort(key=lambda r: (r["vibe_v2"] is None, -(r["vibe_v2"] or 0), r["stage"]["name"]))
    for rank, row in enumerate(rows, start=1):
        row["rank"] = rank if row["vibe_v2"] is not None else None
    return {
        "festival": festival.slug,
        "generated_at": at,
        "window_seconds": int(window.total_seconds()),
        "min_faces": festival.min_faces_public,
        "face_free": festival.face_free,
        "vibe_weights": effective_vibe_weights(festival.vibe_weights),
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
    decided before stays as it is). A stage without a number (no `vibe_v2`: no component had
    data) is 'analysis_behind' when the queue is behind, else 'no_recent_data' when nothing of
    it was captured in the window, else 'too_few_faces'."""
    ages = stage_data_ages(festival, at)
    by_slug = {stage.slug: stage.pk for stage in stages}
    behind = bool(analysis and analysis["behind"])
    for row in rows:
        age = ages.get(by_slug[row["stage"]["slug"]])
        row["data_age_s"] = age
        if row.get("vibe_v2", row["vibe"]) is not None:
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
    """Per minute over the last `minutes`: faces, vibe (v1), vibe_v2 and its components, and
    expression share (small buckets suppressed; crowd numbers where a camera reported). Every
    minute is normalised against the same reference (the three hours up to `at`), so the
    curve's shape is the raw signal's."""
    at = at or timezone.now()
    start = (at - timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    norm = crowd_norms(festival, [stage], at)[stage.pk]
    rollups = {
        r.minute: r
        for r in MinuteRollup.objects.filter(stage=stage, minute__gte=start, minute__lte=at)
    }
    crowd_minutes = {
        b.minute: b
        for b in CrowdMinute.objects.filter(stage=stage, minute__gte=start, minute__lte=at)
    }
    reference = vibe_references(festival, [stage.pk], at - VIBE2_LOOKBACK, at)[stage.pk]
    points = []
    minute = start
    while minute <= at:
        stats = WindowStats()
        if minute in rollups:
            stats.add(rollups[minute])
        suppressed = not is_published(stats.read_faces, festival.min_faces_public)
        crowd = published_crowd_total([crowd_minutes[minute]] if minute in crowd_minutes else [])
        blended, components = vibe_v2(festival, stats, crowd, reference)
        points.append(
            {
                "minute": minute,
                "suppressed": suppressed,
                "faces": None if suppressed else stats.faces,
                "vibe": None if suppressed else vibe_score(stats, 1.0, norm),
                "vibe_v2": blended,
                "components": components,
                "cameras": crowd.cameras,
                "expression_share": None if suppressed else expression_share(stats),
            }
        )
        minute += timedelta(minutes=1)
    return points
