"""The comparison result as it was computed before it moved into SQL (every pair read into
Python): kept verbatim as the reference that tests/emotions/test_comparison_aggregates.py
compares the aggregated result with. Not used by the service."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime

from django.conf import settings
from django.db.models import Count
from django.db.models.functions import TruncHour
from django.utils import timezone

from edge_package.contracts import EMOTIONS, LIVELY_EMOTIONS, TOP_EMOTIONS, UNKNOWN_EXPRESSION
from emotions.comparison.rules import recommend
from emotions.models import ComparisonReading, ComparisonRun, Observation

# A minute needs this many faces read by both backends for its vibe to be compared.
MIN_PAIRS_PER_MINUTE = 3
NO_FACE = "NO_FACE"  # the confusion matrix's row/column for "this backend saw no face"


def _percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (no interpolation: every figure shown was measured)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(share * len(ordered)))
    return ordered[rank - 1]


def _pearson(xs: list[float], ys: list[float]) -> float | None:
    if len(xs) < 3:
        return None
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True))
    sxx = sum((x - mx) ** 2 for x in xs)
    syy = sum((y - my) ** 2 for y in ys)
    if sxx == 0 or syy == 0:
        return None  # a flat line correlates with nothing
    return round(sxy / math.sqrt(sxx * syy), 3)


def _energy(scores: list[dict]) -> float | None:
    """The vibe's expression term over read faces: 100 x mean (HAPPY + SURPRISED) / 100. Both
    backends read the same faces, so the vibe's crowd term is the same for both and this is what
    can differ between them."""
    read = [s for s in scores if any(s.get(name, 0) > 0 for name in EMOTIONS)]
    if not read:
        return None
    lively = sum(sum(s.get(name, 0.0) for name in LIVELY_EMOTIONS) for s in read)
    return round(min(100.0, lively / len(read)), 1)


def _latency(readings: list[ComparisonReading]) -> dict:
    """Capture to visible per mode, from the run's own cameras in that mode. Cloud mode: the pair
    is written right after the crop's observation and ingested with it. Edge mode: the camera's
    scores were written when its model was done; they wait for the ingest as the pair did."""
    cloud, edge = [], []
    for r in readings:
        captured_ms = r.captured_at.timestamp() * 1000
        ingest_wait_ms = max(0.0, (r.visible_at - r.received_at).total_seconds() * 1000)
        if r.mode == "cloud":
            cloud.append((r.visible_at.timestamp() * 1000 - captured_ms) / 1000)
        elif r.local_done_ms:
            edge.append((r.local_done_ms - captured_ms + ingest_wait_ms) / 1000)
    out = {}
    for mode, values in (("cloud", cloud), ("edge", edge)):
        p50, p95 = _percentile(values, 0.5), _percentile(values, 0.95)
        out[mode] = {
            "n": len(values),
            "p50_s": None if p50 is None else round(p50, 2),
            "p95_s": None if p95 is None else round(p95, 2),
        }
    return out


def build_result(run: ComparisonRun, *, now: datetime | None = None) -> dict:
    """Every figure of the run's page from its stored pairs and the cameras' observations (read
    only; services.compute_result stores it). Nothing is estimated that was not measured: a
    figure that needs Rekognition is None when the run had none."""
    now = now or timezone.now()
    readings = list(run.readings.order_by("captured_at"))
    price = settings.REKOGNITION_PRICE_USD_PER_IMAGE
    both = [r for r in readings if r.rekognition_available and r.local_available]
    rekognition_available = bool(both)
    labels = [*TOP_EMOTIONS, NO_FACE]
    index = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    agree = 0
    for r in both:
        row = r.rekognition_top if r.rekognition_faces else NO_FACE
        col = r.local_top if r.local_faces else NO_FACE
        matrix[index[row]][index[col]] += 1
        agree += row == col and row != NO_FACE
    seen_both = [r for r in both if r.rekognition_faces and r.local_faces]
    agreement = round(agree / len(seen_both), 3) if seen_both else None
    minutes: dict[datetime, list[ComparisonReading]] = defaultdict(list)
    for r in seen_both:
        minutes[r.captured_at.replace(second=0, microsecond=0)].append(r)
    minute_rows, xs, ys = [], [], []
    for minute, group in sorted(minutes.items()):
        rek = _energy([r.rekognition_scores for r in group])
        loc = _energy([r.local_scores for r in group])
        enough = len(group) >= MIN_PAIRS_PER_MINUTE and rek is not None and loc is not None
        minute_rows.append(
            {"minute": minute.isoformat(), "pairs": len(group), "rekognition": rek, "local": loc,
             "compared": enough}
        )  # fmt: skip
        if enough:
            xs.append(rek)
            ys.append(loc)
    no_face = sum(1 for r in both if not r.rekognition_faces)
    faces_seen = {
        "pairs": len(both),
        "both": len(seen_both),
        "camera_only": no_face,  # the camera's detector cropped it; Rekognition saw no face
        "rekognition_extra": sum(max(0, r.rekognition_faces - 1) for r in both),
        "camera_model_unread": sum(
            1 for r in both if r.local_faces and r.local_top == UNKNOWN_EXPRESSION
        ),
        "rekognition_unread": sum(
            1 for r in both if r.rekognition_faces and r.rekognition_top == UNKNOWN_EXPRESSION
        ),
    }
    # Per hour: the faces the run's cameras sent in the window (every mode), what each mode
    # sends for them (measured bytes per face from the pairs), and Rekognition's calls.
    cameras = list(run.devices.values_list("pk", flat=True))
    faces_per_hour = {
        row["hour"]: row["faces"]
        for row in Observation.objects.filter(
            device_id__in=cameras, captured_at__gte=run.starts_at, captured_at__lt=run.ends_at
        )
        .annotate(hour=TruncHour("captured_at"))
        .values("hour")
        .annotate(faces=Count("id"))
    }
    crop_sizes = [r.crop_bytes for r in readings if r.crop_bytes]
    edge_sizes = [r.edge_bytes for r in readings if r.edge_bytes]
    per_face = {
        "cloud": round(sum(crop_sizes) / len(crop_sizes)) if crop_sizes else None,
        "edge": round(sum(edge_sizes) / len(edge_sizes)) if edge_sizes else None,
    }
    with_calls = [r for r in readings if r.rekognition_available]
    calls_per_crop = (
        sum(r.rekognition_calls for r in with_calls) / len(with_calls) if with_calls else None
    )
    run_calls: dict[datetime, float] = defaultdict(float)
    extra_bytes: dict[datetime, int] = defaultdict(int)
    for r in readings:
        hour = r.captured_at.replace(minute=0, second=0, microsecond=0)
        run_calls[hour] += r.rekognition_calls
        if r.mode == "edge":
            extra_bytes[hour] += r.crop_bytes  # the run's own extra upload from edge cameras
    hours = []
    for hour in sorted(set(faces_per_hour) | set(run_calls)):
        faces = faces_per_hour.get(hour, 0)
        projected = None if calls_per_crop is None else faces * calls_per_crop
        hours.append(
            {
                "hour": hour.astimezone(UTC).isoformat(),
                "faces": faces,
                "cloud_bytes": None if per_face["cloud"] is None else faces * per_face["cloud"],
                "edge_bytes": None if per_face["edge"] is None else faces * per_face["edge"],
                "run_extra_bytes": extra_bytes.get(hour, 0),
                "run_rekognition_calls": round(run_calls.get(hour, 0.0), 2),
                "run_cost_usd": round(run_calls.get(hour, 0.0) * price, 4),
                "cloud_rekognition_calls": None if projected is None else round(projected, 1),
                "cloud_cost_usd": None if projected is None else round(projected * price, 4),
            }
        )
    window_hours = max(1e-9, (min(run.ends_at, now) - run.starts_at).total_seconds() / 3600)
    total_faces = sum(faces_per_hour.values())
    projected_cost = (
        None
        if calls_per_crop is None or run.starts_at >= now
        else round(total_faces * calls_per_crop * price / window_hours, 4)
    )
    latency = _latency(readings)
    figures = {
        "rekognition_available": rekognition_available,
        "pairs_both": len(seen_both),
        "agreement": agreement,
        "correlation": _pearson(xs, ys),
        "no_face_share": round(no_face / len(both), 3) if both else None,
        "bytes_per_face": per_face,
        "latency": latency,
        "projected_cost_usd_per_hour": projected_cost,
    }
    missing = sorted({r.rekognition_reason for r in readings if not r.rekognition_available})
    result = {
        "computed_at": now.isoformat(),
        "status": run.status_at(now),
        "pairs": len(readings),
        "modes": {mode: sum(1 for r in readings if r.mode == mode) for mode in ("cloud", "edge")},
        "rekognition_available": rekognition_available,
        "rekognition_missing_reasons": missing,
        "agreement": {
            "labels": labels,
            "matrix": matrix,
            "share": agreement,
            "faces": len(seen_both),
        },  # fmt: skip
        "vibe": {
            "minutes": minute_rows,
            "correlation": figures["correlation"],
            "compared_minutes": len(xs),
        },  # fmt: skip
        "faces_seen": faces_seen,
        "price_usd_per_image": price,
        "calls_per_crop": None if calls_per_crop is None else round(calls_per_crop, 4),
        "bytes_per_face": per_face,
        "hours": hours,
        "latency": latency,
        "projected_cost_usd_per_hour": projected_cost,
        "refused": dict(run.refused),
        "recommendation": recommend(figures),
    }
    return result
