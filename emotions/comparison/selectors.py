"""Comparison runs (reads): the runs a user may see, and what the run's page shows."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import (
    BooleanField,
    Case,
    Count,
    ExpressionWrapper,
    F,
    IntegerField,
    Q,
    Sum,
    Value,
    When,
)
from django.db.models.functions import Substr, TruncHour, TruncMinute
from django.utils import timezone

from edge_package.contracts import TOP_EMOTIONS, UNKNOWN_EXPRESSION
from emotions.comparison.rules import recommend
from emotions.models import ComparisonReading, ComparisonRun, Observation

# A minute needs this many faces read by both backends for its vibe to be compared.
MIN_PAIRS_PER_MINUTE = 3
NO_FACE = "NO_FACE"  # the confusion matrix's row/column for "this backend saw no face"


def runs_for(user):
    return (
        ComparisonRun.objects.for_user(user).select_related("festival").prefetch_related("devices")
    )


def page_context(run: ComparisonRun, *, now: datetime | None = None) -> dict:
    """The stored result and the facts around it, for the page and the API."""
    now = now or timezone.now()
    result = run.result or {}
    return {
        "run": run,
        "status": run.status_at(now),
        "result": result,
        "cameras": [
            {"thing_name": d.thing_name, "name": d.name, "mode": d.effective_config["mode"]}
            for d in run.devices.select_related("festival").order_by("thing_name")
        ],
        "computed": bool(result),
    }


# Hours and minutes to group by. Django's Trunc on SQLite (the demo's database) calls a Python
# function for every row, which was most of a refresh's time; SQLite keeps a datetime as UTC text
# ("2026-07-10 21:04:05.123456"), so its first 13 or 16 characters are the UTC hour or minute.
_PREFIX = {"hour": 13, "minute": 16}
_TRUNC = {"hour": TruncHour, "minute": TruncMinute}


def _bucket(field: str, kind: str, *, tz=UTC):
    """An expression for `field`'s hour or minute in `tz` (read back with _bucket_time)."""
    if connection.vendor == "sqlite" and tz is UTC:
        return Substr(field, 1, _PREFIX[kind])
    return _TRUNC[kind](field, tzinfo=tz)


def _current_zone():
    """The current time zone (the hours of the cameras' faces are counted in it, as before);
    UTC itself when it is UTC, so that SQLite can count them without a Python call per row."""
    zone = timezone.get_current_timezone()
    return UTC if timezone.get_current_timezone_name() == "UTC" else zone


def _bucket_time(value) -> datetime:
    if isinstance(value, str):  # SQLite's "2026-07-10 21" or "2026-07-10 21:04"
        return datetime.fromisoformat(value + (":00" if len(value) == 16 else ":00:00")).replace(
            tzinfo=UTC
        )
    return value


def _nearest_rank(values, share: float, n: int) -> float | None:
    """Nearest-rank percentile of the `n` values of a queryset (no interpolation: every figure
    shown was measured), read from the database: one row at its rank, by the index."""
    if not n:
        return None
    rank = max(1, math.ceil(share * n))
    return values.order_by("latency_s").values_list("latency_s", flat=True)[rank - 1]


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


def _settled(total: float, n: int, shown, added_in_python) -> float:
    """A float sum the database added, or the same sum added in Python, one pair after another
    in capture order, when the two could show differently. The database adds in its own order
    (SQLite compensates), so the two totals may differ in their last bits; that changes a
    rounded figure only at a tie (a mean of 27.05 to one decimal). `shown(total)`: every figure
    the page shows from this total, rounded; when they are the same over the widest such
    difference, the database's total stands, else `added_in_python()` (a few rows) decides."""
    slack = (n + 1) * 2.0**-45 * abs(total)
    if shown(total - slack) == shown(total + slack):
        return total
    return added_in_python()


def _energy(lively: float | None, read: int) -> float | None:
    """The vibe's expression term over read faces: 100 x mean (HAPPY + SURPRISED) / 100, from a
    minute's sum of HAPPY + SURPRISED over its read faces. Both backends read the same faces, so
    the vibe's crowd term is the same for both and this is what can differ between them."""
    if not read:
        return None
    return round(min(100.0, (lively or 0.0) / read), 1)


def _latency(readings) -> dict:
    """Capture to visible per mode, from the run's own cameras in that mode (each pair's
    `latency_s`, worked out when it was stored: emotions.comparison.derived.latency_s)."""
    timed = readings.filter(latency_s__isnull=False)
    counts = dict(timed.values("mode").annotate(n=Count("id")).values_list("mode", "n"))
    out = {}
    for mode in ("cloud", "edge"):
        n = counts.get(mode, 0)
        values = timed.filter(mode=mode)
        p50, p95 = _nearest_rank(values, 0.5, n), _nearest_rank(values, 0.95, n)
        out[mode] = {
            "n": n,
            "p50_s": None if p50 is None else round(p50, 2),
            "p95_s": None if p95 is None else round(p95, 2),
        }
    return out


def build_result(run: ComparisonRun, *, now: datetime | None = None) -> dict:
    """Every figure of the run's page from its stored pairs and the cameras' observations (read
    only; services.compute_result stores it). Nothing is estimated that was not measured: a
    figure that needs Rekognition is None when the run had none.

    Aggregated in the database (a dozen queries, whatever the number of pairs): no pair is read
    into Python, so the beat's refresh every minute costs the same Python time and memory at
    5,000 pairs as at 500,000 (bench/bench_comparison.py)."""
    now = now or timezone.now()
    readings = ComparisonReading.objects.filter(run=run).order_by()
    price = settings.REKOGNITION_PRICE_USD_PER_IMAGE
    totals = readings.aggregate(
        pairs=Count("id"),
        cloud=Count("id", filter=Q(mode="cloud")),
        edge=Count("id", filter=Q(mode="edge")),
        crops=Count("id", filter=Q(crop_bytes__gt=0)),
        crop_bytes=Sum("crop_bytes", filter=Q(crop_bytes__gt=0)),
        scores_items=Count("id", filter=Q(edge_bytes__gt=0)),
        scores_bytes=Sum("edge_bytes", filter=Q(edge_bytes__gt=0)),
        with_calls=Count("id", filter=Q(rekognition_available=True)),
        calls=Sum("rekognition_calls", filter=Q(rekognition_available=True)),
    )
    # Pairs both backends could read, by what each saw: the confusion matrix and the faces one
    # backend saw and the other did not.
    both = readings.filter(rekognition_available=True, local_available=True)
    groups = (
        both.annotate(
            rek_seen=ExpressionWrapper(Q(rekognition_faces__gt=0), output_field=BooleanField()),
            loc_seen=ExpressionWrapper(Q(local_faces__gt=0), output_field=BooleanField()),
        )
        .values("rek_seen", "loc_seen", "rekognition_top", "local_top")
        .annotate(
            n=Count("id"),
            extra=Sum(
                Case(
                    When(rekognition_faces__gt=1, then=F("rekognition_faces") - 1),
                    default=Value(0),
                    output_field=IntegerField(),
                )
            ),
        )
    )
    labels = [*TOP_EMOTIONS, NO_FACE]
    index = {name: i for i, name in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    agree = n_both = n_seen_both = no_face = extra = camera_unread = rekognition_unread = 0
    for group in groups:
        n = group["n"]
        row = group["rekognition_top"] if group["rek_seen"] else NO_FACE
        col = group["local_top"] if group["loc_seen"] else NO_FACE
        matrix[index[row]][index[col]] += n
        agree += n if row == col and row != NO_FACE else 0
        n_both += n
        n_seen_both += n if group["rek_seen"] and group["loc_seen"] else 0
        no_face += 0 if group["rek_seen"] else n
        extra += group["extra"] or 0
        camera_unread += n if group["loc_seen"] and group["local_top"] == UNKNOWN_EXPRESSION else 0
        rekognition_unread += (
            n if group["rek_seen"] and group["rekognition_top"] == UNKNOWN_EXPRESSION else 0
        )
    rekognition_available = bool(n_both)
    agreement = round(agree / n_seen_both, 3) if n_seen_both else None
    # Per minute, over faces both backends saw: each backend's sum of HAPPY + SURPRISED over the
    # faces it read, and how many it read.
    seen_both = both.filter(rekognition_faces__gt=0, local_faces__gt=0)
    minutes = (
        seen_both.annotate(minute=_bucket("captured_at", "minute"))
        .values("minute")
        .annotate(
            pairs=Count("id"),
            rek_read=Count("id", filter=Q(rekognition_read=True)),
            rek_lively=Sum("rekognition_lively", filter=Q(rekognition_read=True)),
            loc_read=Count("id", filter=Q(local_read=True)),
            loc_lively=Sum("local_lively", filter=Q(local_read=True)),
        )
        .order_by("minute")
    )

    def minute_energy(group: dict, backend: str) -> float | None:
        side = backend[:3]  # rek, loc
        read = group[f"{side}_read"]

        def added_in_python() -> float:
            start = group["minute"]
            return sum(
                seen_both.filter(
                    **{f"{backend}_read": True},
                    captured_at__gte=start,
                    captured_at__lt=start + timedelta(minutes=1),
                )
                .order_by("captured_at")
                .values_list(f"{backend}_lively", flat=True)
            )

        total = group[f"{side}_lively"] or 0.0
        return _energy(_settled(total, read, lambda t: _energy(t, read), added_in_python), read)

    minute_rows, xs, ys = [], [], []
    for group in minutes:
        group["minute"] = _bucket_time(group["minute"])
        rek, loc = minute_energy(group, "rekognition"), minute_energy(group, "local")
        enough = group["pairs"] >= MIN_PAIRS_PER_MINUTE and rek is not None and loc is not None
        minute_rows.append(
            {"minute": group["minute"].isoformat(), "pairs": group["pairs"], "rekognition": rek,
             "local": loc, "compared": enough}
        )  # fmt: skip
        if enough:
            xs.append(rek)
            ys.append(loc)
    faces_seen = {
        "pairs": n_both,
        "both": n_seen_both,
        "camera_only": no_face,  # the camera's detector cropped it; Rekognition saw no face
        "rekognition_extra": extra,
        "camera_model_unread": camera_unread,
        "rekognition_unread": rekognition_unread,
    }
    # Per hour: the faces the run's cameras sent in the window (every mode), what each mode
    # sends for them (measured bytes per face from the pairs), and Rekognition's calls.
    cameras = list(run.devices.values_list("pk", flat=True))
    faces_per_hour = {
        row["hour"]: row["faces"]
        for row in Observation.objects.filter(
            device_id__in=cameras, captured_at__gte=run.starts_at, captured_at__lt=run.ends_at
        )
        .annotate(hour=_bucket("captured_at", "hour", tz=_current_zone()))
        .values("hour")
        .annotate(faces=Count("id"))
    }
    faces_per_hour = {_bucket_time(hour): faces for hour, faces in faces_per_hour.items()}
    per_face = {
        "cloud": round(totals["crop_bytes"] / totals["crops"]) if totals["crops"] else None,
        "edge": (
            round(totals["scores_bytes"] / totals["scores_items"])
            if totals["scores_items"]
            else None
        ),
    }
    window_hours = max(1e-9, (min(run.ends_at, now) - run.starts_at).total_seconds() / 3600)
    total_faces = sum(faces_per_hour.values())

    def cloud_figures(calls_per_crop: float | None) -> tuple:
        """What cloud mode would call and cost, per hour and an hour on average, at
        `calls_per_crop` (None: no Rekognition reading measured the calls)."""
        if calls_per_crop is None:
            return (None, {}, None)
        per_hour = {}
        for hour, faces in faces_per_hour.items():
            projected = faces * calls_per_crop
            per_hour[hour] = (round(projected, 1), round(projected * price, 4))
        average = (
            None
            if run.starts_at >= now
            else round(total_faces * calls_per_crop * price / window_hours, 4)
        )
        return (round(calls_per_crop, 4), per_hour, average)

    with_calls = readings.filter(rekognition_available=True).order_by("captured_at")
    calls_per_crop = None
    if totals["with_calls"]:
        n = totals["with_calls"]
        calls = _settled(
            totals["calls"] or 0.0,
            n,
            lambda total: cloud_figures(total / n),
            lambda: sum(with_calls.values_list("rekognition_calls", flat=True)),
        )
        calls_per_crop = calls / n
    calls_shown, cloud_per_hour, projected_cost = cloud_figures(calls_per_crop)
    run_calls: dict[datetime, float] = {}
    extra_bytes: dict[datetime, int] = {}
    for row in (
        readings.annotate(hour=_bucket("captured_at", "hour"))
        .values("hour")
        .annotate(
            n=Count("id"),
            calls=Sum("rekognition_calls"),
            extra=Sum("crop_bytes", filter=Q(mode="edge")),
        )
    ):
        hour = _bucket_time(row["hour"])
        run_calls[hour] = _settled(
            row["calls"] or 0.0,
            row["n"],
            lambda total: (round(total, 2), round(total * price, 4)),
            lambda hour=hour: sum(
                readings.filter(captured_at__gte=hour, captured_at__lt=hour + timedelta(hours=1))
                .order_by("captured_at")
                .values_list("rekognition_calls", flat=True)
            ),
        )
        extra_bytes[hour] = row["extra"] or 0  # the run's own extra upload (edge cameras)
    hours = []
    for hour in sorted(set(faces_per_hour) | set(run_calls)):
        faces = faces_per_hour.get(hour, 0)
        cloud_calls, cloud_cost = cloud_per_hour.get(hour, (None, None))
        if calls_per_crop is not None and hour not in cloud_per_hour:
            cloud_calls, cloud_cost = 0.0, 0.0  # an hour of pairs without faces
        hours.append(
            {
                "hour": hour.astimezone(UTC).isoformat(),
                "faces": faces,
                "cloud_bytes": None if per_face["cloud"] is None else faces * per_face["cloud"],
                "edge_bytes": None if per_face["edge"] is None else faces * per_face["edge"],
                "run_extra_bytes": extra_bytes.get(hour, 0),
                "run_rekognition_calls": round(run_calls.get(hour, 0.0), 2),
                "run_cost_usd": round(run_calls.get(hour, 0.0) * price, 4),
                "cloud_rekognition_calls": cloud_calls,
                "cloud_cost_usd": cloud_cost,
            }
        )
    latency = _latency(readings)
    figures = {
        "rekognition_available": rekognition_available,
        "pairs_both": n_seen_both,
        "agreement": agreement,
        "correlation": _pearson(xs, ys),
        "no_face_share": round(no_face / n_both, 3) if n_both else None,
        "bytes_per_face": per_face,
        "latency": latency,
        "projected_cost_usd_per_hour": projected_cost,
    }
    missing = sorted(
        set(
            readings.filter(rekognition_available=False)
            .values_list("rekognition_reason", flat=True)
            .distinct()
        )
    )
    # Pairs without the camera's side (e.g. no_local_model: an older camera's cloud-mode crop
    # read by an analyzer without the model), by reason: the page says why they count nowhere.
    no_camera = dict(
        readings.filter(local_available=False)
        .values("local_reason")
        .annotate(n=Count("id"))
        .values_list("local_reason", "n")
    )
    result = {
        "computed_at": now.isoformat(),
        "status": run.status_at(now),
        "pairs": totals["pairs"],
        "modes": {"cloud": totals["cloud"], "edge": totals["edge"]},
        "rekognition_available": rekognition_available,
        "rekognition_missing_reasons": missing,
        "camera_reading_missing": {
            "pairs": sum(no_camera.values()),
            "reasons": sorted(reason or "unknown" for reason in no_camera),
        },
        "agreement": {
            "labels": labels,
            "matrix": matrix,
            "share": agreement,
            "faces": n_seen_both,
        },  # fmt: skip
        "vibe": {
            "minutes": minute_rows,
            "correlation": figures["correlation"],
            "compared_minutes": len(xs),
        },  # fmt: skip
        "faces_seen": faces_seen,
        "price_usd_per_image": price,
        "calls_per_crop": calls_shown,
        "bytes_per_face": per_face,
        "hours": hours,
        "latency": latency,
        "projected_cost_usd_per_hour": projected_cost,
        "refused": dict(run.refused),
        "recommendation": recommend(figures),
    }
    return result
