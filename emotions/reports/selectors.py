"""Reads for set reports: the report payload, computed from SQL aggregates, and report lists.

Numbers come from the per-minute rollups of the set's stage (a few hundred rows, whatever the
number of faces) with the same vibe formula as the live ranking (emotions.selectors.vibe_score).
Observations are only read through one GROUP BY (device, source, model) for coverage and the
model statement, so a set with a million faces never brings a million rows into Python.

A minute belongs to the set when it starts in [floor(starts_at), ends_at); a set starting at
18:00:30 shares its first minute with whatever played before (sets normally start on the minute).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Sum
from django.utils import timezone

from devices.models import Device, DeviceStatus
from edge_package.contracts import EMOTIONS, UNKNOWN_EXPRESSION
from emotions import vibe as v2
from emotions.models import CrowdMinute, MinuteRollup, Observation, ReportStatus, SetReport
from emotions.privacy import (
    WindowStats,
    is_crowd_published,
    is_published,
    published_buckets,
    published_crowd_total,
    published_total,
)
from emotions.selectors import _minute_energy, expression_share, vibe_score, vibe_v2
from festival.localtime import local_label, local_time_label
from festival.models import Festival
from stages.models import Set, Stage

PAYLOAD_VERSION = 2  # 2: vibe_v2 and its components per minute, overall and per compared set
# A festival "day" runs from 06:00 to 06:00 local time, so a set at 01:00 is compared with the
# evening it closes rather than with the next afternoon.
DAY_STARTS_AT_HOUR = 6

SOURCE_WORDING = {
    "rekognition": "Amazon Rekognition DetectFaces (cloud)",
    "local": "the local on-device/worker classifier",
}
LIMITS_TEXT = (
    "These are apparent facial expressions as read by an automated model from face crops, not "
    "feelings or opinions. The model reads the shape of a face; it is less reliable in poor "
    "light, at steep angles, with partly hidden faces, and it is known to vary across ages and "
    "skin tones. Faces are counted per analysed crop (a person may be counted in several "
    "minutes), so the crowd curve is an indication of crowd size, not a head count."
)


def _floor(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def festival_day(festival: Festival, moment: datetime) -> tuple[datetime, datetime]:
    """The festival day (06:00-06:00 local) that `moment` falls in, as UTC-aware bounds."""
    local = moment.astimezone(festival.tz)
    start = local.replace(hour=DAY_STARTS_AT_HOUR, minute=0, second=0, microsecond=0)
    if local < start:
        start -= timedelta(days=1)
    # Add the day in local wall time (a DST night has 23 or 25 hours).
    end = (start.replace(tzinfo=None) + timedelta(days=1)).replace(tzinfo=festival.tz)
    return start, end


@dataclass
class _Row:
    stage_id: int
    minute: datetime
    faces: int
    counts: dict
    sums: dict

    def stats(self) -> WindowStats:
        stats = WindowStats()
        stats.faces = self.faces
        stats.counts = dict(self.counts)
        stats.sums = dict(self.sums)
        return stats


def _day_rollups(festival: Festival, start: datetime, end: datetime) -> list[_Row]:
    rows = MinuteRollup.objects.filter(
        festival=festival, minute__gte=_floor(start), minute__lt=end
    ).values_list("stage_id", "minute", "faces", "counts", "sums")
    return [_Row(*row) for row in rows]


def _set_rows(rows: list[_Row], a_set: Set) -> list[_Row]:
    first = _floor(a_set.starts_at)
    return [
        r
        for r in rows
        if r.stage_id == a_set.stage_id and first <= r.minute < a_set.ends_at and r.faces > 0
    ]


def _norms(stages: list[Stage], rows: list[_Row]) -> dict[int, float]:
    """Crowd norm per stage: its typical_crowd, else its busiest minute that festival day."""
    busiest: dict[int, int] = {}
    for row in rows:
        busiest[row.stage_id] = max(busiest.get(row.stage_id, 0), row.faces)
    return {s.pk: float(s.typical_crowd or busiest.get(s.pk) or 1) for s in stages}


def _set_vibe(rows: list[_Row], norm: float, min_faces: int) -> tuple[int, float | None]:
    """A set's faces and vibe over its published minutes (emotions.privacy, rule 2)."""
    published = published_buckets(rows, min_faces)
    stats = published_total(published, min_faces)
    if not is_published(stats.read_faces, min_faces):
        return stats.faces, None
    return stats.faces, vibe_score(stats, len(published), norm)


def _mean_scores(stats: WindowStats) -> dict[str, float] | None:
    """Over read faces only: an UNKNOWN face has no scores to average (docs/analysis.md)."""
    read = stats.read_faces
    if read == 0:
        return None
    return {name: round(stats.sums.get(name, 0.0) / read, 1) for name in EMOTIONS}


def _top(shares: dict[str, float] | None) -> str:
    if not shares:
        return UNKNOWN_EXPRESSION
    return max(EMOTIONS, key=lambda name: (shares.get(name, 0.0), -EMOTIONS.index(name)))


def _coverage(a_set: Set, minutes: list[dict]) -> tuple[dict, list[dict]]:
    """Per device faces during the set (exact set times) and the models that read them."""
    grouped = (
        Observation.objects.filter(
            stage_id=a_set.stage_id,
            captured_at__gte=a_set.starts_at,
            captured_at__lt=a_set.ends_at,
        )
        .values_list("device_id", "source", "model")
        .annotate(n=Count("id"))
        .order_by()
    )
    per_device: dict[int | None, int] = {}
    per_model: dict[tuple[str, str], int] = {}
    for device_id, source, model, n in grouped:
        per_device[device_id] = per_device.get(device_id, 0) + n
        per_model[(source, model)] = per_model.get((source, model), 0) + n
    ids = {d for d in per_device if d is not None}
    devices = Device.objects.filter(pk__in=ids) | Device.objects.filter(stage_id=a_set.stage_id)
    device_rows = []
    for device in devices.distinct().order_by("name"):
        faces = per_device.get(device.pk, 0)
        device_rows.append(
            {
                "name": device.name,
                "thing_name": device.thing_name,
                "faces": faces,
                "silent": faces == 0,
                "status_now": device.status,
                "offline_now": device.status == DeviceStatus.OFFLINE,
                "last_seen_at": _iso(device.last_seen_at),
            }
        )
    set_minutes = len(minutes)
    with_data = sum(1 for m in minutes if m["has_data"])
    coverage = {
        "set_minutes": set_minutes,
        "minutes_with_data": with_data,
        "minutes_reportable": sum(1 for m in minutes if not m["suppressed"]),
        "coverage_percent": round(100.0 * with_data / set_minutes, 1) if set_minutes else 0.0,
        "devices": device_rows,
        "devices_silent": [d["name"] for d in device_rows if d["silent"]],
        "faces_unknown_device": per_device.get(None, 0),
        "note": (
            "StagePulse does not keep a device's online/offline history yet: a device is "
            "listed as silent when it sent no analysed face during the set, and its status is "
            "its status now (with when it was last seen), not during the set."
        ),
    }
    models = [
        {"source": source, "model": model, "faces": n}
        for (source, model), n in sorted(per_model.items(), key=lambda item: -item[1])
    ]
    return coverage, models


def _model_statement(models: list[dict]) -> str:
    if not models:
        return "No analysed faces: no model was involved. " + LIMITS_TEXT
    parts = []
    for entry in models:
        where = SOURCE_WORDING.get(entry["source"], entry["source"] or "an unnamed analyzer")
        name = f" (model {entry['model']})" if entry["model"] else ""
        parts.append(f"{where}{name}")
    return "Apparent expression read by " + "; ".join(parts) + ". " + LIMITS_TEXT


LOW_COVERAGE_PERCENT = 60.0  # below this share of the set's minutes with data, say so


def local_span(a_set: Set, tz) -> str:
    """'Sat 24 Oct 23:30 CEST – 02:30 CET (4 h 0 min)': with the zones, so a set across a DST
    change does not read as an hour shorter (or longer) than it is."""
    minutes = a_set.duration_minutes
    length = f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
    end = a_set.ends_at.astimezone(tz)
    same_day = end.date() == a_set.starts_at.astimezone(tz).date()
    end_text = local_time_label(end, tz) if same_day else local_label(end, tz)
    return f"{local_label(a_set.starts_at, tz)} – {end_text} ({length})"


def coverage_caveat(coverage: dict) -> str:
    """A sentence to print next to the vibe when too few of the set's minutes had data."""
    if not coverage["set_minutes"] or coverage["coverage_percent"] >= LOW_COVERAGE_PERCENT:
        return ""
    return (
        f"Low coverage: only {coverage['minutes_with_data']} of {coverage['set_minutes']} "
        f"minutes had data ({coverage['coverage_percent']:g} %). The numbers describe those "
        "minutes, not the whole set."
    )


def _peak_and_low(reportable: list[dict]) -> tuple[dict | None, dict | None, str]:
    """The best and the worst minute; never the same one. A single minute or a flat curve has a
    peak but no low, and says why."""
    if not reportable:
        return None, None, ""
    peak = max(reportable, key=lambda m: m["vibe"])
    lower = [m for m in reportable if m["vibe"] < peak["vibe"]]
    if not lower:
        why = "a single minute" if len(reportable) == 1 else "every minute had the same vibe"
        return peak, None, f"No low: {why}."
    return peak, min(lower, key=lambda m: m["vibe"]), ""


@dataclass
class _Day:
    """The festival day a set is compared within: the sets that had ended by the build time (and
    the set itself), the rollups of all of them, and each stage's crowd norm that day."""

    start: datetime
    sets: list[Set]
    rows: list[_Row]
    norms: dict[int, float]
    crowd: list[CrowdMinute]  # the day's crowd minutes with a camera reporting (rule 3)
    references: dict[int, v2.Reference]  # vibe v2: each stage against the day so far


def _day_crowd(festival: Festival, start: datetime, end: datetime) -> list[CrowdMinute]:
    """The day's crowd minutes with a camera reporting (emotions.privacy, rule 3)."""
    rows = CrowdMinute.objects.filter(festival=festival, minute__gte=_floor(start), minute__lt=end)
    return [b for b in rows if is_crowd_published(b)]


def _set_crowd(crowd: list[CrowdMinute], a_set: Set) -> list[CrowdMinute]:
    first = _floor(a_set.starts_at)
    return [b for b in crowd if b.stage_id == a_set.stage_id and first <= b.minute < a_set.ends_at]


def _festival_day_context(a_set: Set, now: datetime) -> _Day:
    festival = a_set.stage.festival
    day_start, day_end = festival_day(festival, a_set.starts_at)
    day_sets = list(
        Set.objects.filter(
            stage__festival=festival,
            starts_at__gte=day_start,
            starts_at__lt=day_end,
            ends_at__lte=now,
        )
        .select_related("stage")
        .order_by("starts_at", "stage__position")
    )
    if a_set.pk not in {s.pk for s in day_sets}:
        day_sets.append(a_set)
    window_start = min([day_start, *[s.starts_at for s in day_sets]])
    window_end = max([day_end, *[s.ends_at for s in day_sets]])
    rows = _day_rollups(festival, window_start, window_end)
    stages = list(Stage.objects.filter(festival=festival))
    norms = _norms(stages, rows)
    # Vibe v2's reference: the festival day's minutes up to the build (emotions.vibe).
    crowd = _day_crowd(festival, window_start, window_end)
    face_rows = [] if festival.face_free else [r for r in rows if r.minute < now]
    references = v2.build_references(
        v2.minute_values(
            face_rows,
            [b for b in crowd if b.minute < now],
            _minute_energy(festival.min_faces_public),
        ),
        [s.pk for s in stages],
    )
    return _Day(
        start=day_start, sets=day_sets, rows=rows, norms=norms, crowd=crowd, references=references
    )


def _minute_points(
    a_set: Set, own: dict[datetime, _Row], *, norm: float, k: int, tz, suppressed: bool,
    own_crowd: dict[datetime, CrowdMinute], reference: v2.Reference,
) -> list[dict]:  # fmt: skip
    """One point per minute of the set; a small minute (or a suppressed set) carries no face
    number; vibe v2 and its crowd components where a camera reported (rule 3)."""
    festival = a_set.stage.festival
    minutes = []
    minute = _floor(a_set.starts_at)
    while minute < a_set.ends_at:
        row = own.get(minute)
        faces = row.faces if row else 0
        stats = row.stats() if row else WindowStats()
        hidden = suppressed or not is_published(stats.read_faces, k)
        crowd = published_crowd_total([own_crowd[minute]] if minute in own_crowd else [])
        blended, components = vibe_v2(festival, stats, crowd, reference)
        minutes.append(
            {
                "minute": _iso(minute),
                "local_time": minute.astimezone(tz).strftime("%H:%M"),
                "has_data": faces > 0 or crowd.signals > 0,
                "suppressed": hidden,
                "faces": None if hidden else faces,
                "vibe": None if hidden else vibe_score(stats, 1.0, norm),
                "vibe_v2": blended,
                "components": components,
                "cameras": crowd.cameras,
                "expression_share": None if hidden else expression_share(stats),
            }
        )
        minute += timedelta(minutes=1)
    return minutes


def _moment(point: dict | None, tz) -> dict | None:
    """A peak or low minute as the report prints it."""
    if point is None:
        return None
    return {
        "minute": point["minute"],
        "local_time": point["local_time"],
        "local_label": local_time_label(datetime.fromisoformat(point["minute"]), tz),
        "vibe": point["vibe"],
        "faces": point["faces"],
        "top_expression": _top(point["expression_share"]),
    }


def _comparison(a_set: Set, day: _Day, *, k: int, tz) -> dict:
    """The day's ended sets, each with its vibe, ranked over the festival and over this stage."""
    sets = []
    festival = a_set.stage.festival
    for other in day.sets:
        faces, vibe = _set_vibe(_set_rows(day.rows, other), day.norms.get(other.stage_id, 1.0), k)
        other_v2, _ = vibe_v2(
            festival,
            published_total(_set_rows(day.rows, other), k),
            published_crowd_total(_set_crowd(day.crowd, other)),
            day.references.get(other.stage_id, v2.EMPTY_REFERENCE),
        )
        sets.append(
            {
                "set_id": other.pk,
                "artist": other.artist,
                "stage": other.stage.name,
                "same_stage": other.stage_id == a_set.stage_id,
                "this_set": other.pk == a_set.pk,
                "starts_at": _iso(other.starts_at),
                "local_start": other.starts_at.astimezone(tz).strftime("%H:%M"),
                "suppressed": vibe is None,
                "faces": None if vibe is None else faces,
                "vibe": vibe,
                "vibe_v2": other_v2,
            }
        )
    ranked = sorted((c for c in sets if c["vibe"] is not None), key=lambda c: -c["vibe"])
    for position, entry in enumerate(ranked, start=1):
        entry["rank_festival_day"] = position
    stage_ranked = [c for c in ranked if c["same_stage"]]
    for position, entry in enumerate(stage_ranked, start=1):
        entry["rank_stage_day"] = position
    mine = next(c for c in sets if c["this_set"])
    return {
        "day_starts": _iso(day.start),
        "sets": sets,
        "rank_festival_day": mine.get("rank_festival_day"),
        "rank_stage_day": mine.get("rank_stage_day"),
        "festival_sets_ranked": len(ranked),
        "stage_sets_ranked": len(stage_ranked),
    }


def _overall(total: WindowStats, published_minutes: int, norm: float) -> dict:
    """The whole set's numbers, over its published minutes only."""
    share = expression_share(total)
    return {
        "faces": total.faces,
        "vibe": vibe_score(total, published_minutes, norm),
        "expression_share": share,
        "mean_scores": _mean_scores(total),
        "top_expression": _top(share),
    }


def _set_header(a_set: Set, tz) -> dict:
    stage, festival = a_set.stage, a_set.stage.festival
    return {
        "id": a_set.pk,
        "artist": a_set.artist,
        "stage": {"slug": stage.slug, "name": stage.name},
        "festival": {"slug": festival.slug, "name": festival.name},
        "timezone": festival.timezone,
        "starts_at": _iso(a_set.starts_at),
        "ends_at": _iso(a_set.ends_at),
        "local_start": a_set.starts_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "local_end": a_set.ends_at.astimezone(tz).strftime("%Y-%m-%d %H:%M"),
        "local_span": local_span(a_set, tz),
        "duration_minutes": a_set.duration_minutes,
    }


def build_payload(a_set: Set, now: datetime | None = None) -> dict:
    """Everything a report shows, as JSON-ready data. Small buckets carry no numbers.

    The comparison holds the day's sets that had ended by `now` (the build time): a set that has
    not played has nothing to compare, and listing the whole day's lineup buries the few that
    have (241 rows in the demo)."""
    festival = a_set.stage.festival
    k, tz = festival.min_faces_public, festival.tz
    day = _festival_day_context(a_set, now or timezone.now())
    norm = day.norms[a_set.stage_id]

    own = {r.minute: r for r in _set_rows(day.rows, a_set)}
    published = published_buckets(own.values(), k)
    total = published_total(published, k)  # the overall numbers: published minutes only
    suppressed = not is_published(total.read_faces, k)
    reference = day.references[a_set.stage_id]
    own_crowd = {b.minute: b for b in _set_crowd(day.crowd, a_set)}
    minutes = _minute_points(
        a_set, own, norm=norm, k=k, tz=tz, suppressed=suppressed, own_crowd=own_crowd,
        reference=reference,
    )  # fmt: skip
    set_crowd = published_crowd_total(own_crowd.values())
    overall_v2, overall_components = vibe_v2(festival, total, set_crowd, reference)
    coverage, models = _coverage(a_set, minutes)
    reportable = [m for m in minutes if not m["suppressed"] and m["vibe"] is not None]
    peak, low, low_note = _peak_and_low(reportable)
    return {
        "version": PAYLOAD_VERSION,
        "set": _set_header(a_set, tz),
        "min_faces": k,
        "crowd_norm": norm,
        "suppressed": suppressed,
        "suppressed_message": (
            "This festival is face-free: no face was detected or analysed, so this report "
            "has no apparent-expression numbers; the crowd's motion, sound and fill are above."
            if suppressed and festival.face_free
            else f"Fewer than {k} faces were analysed in every minute of this set, so this "
            "report shows no numbers about the crowd's apparent expression."
            if suppressed
            else ""
        ),
        "overall": None if suppressed else _overall(total, len(published), norm),
        "vibe_v2": overall_v2,
        "components": overall_components,
        "cameras": set_crowd.cameras,
        "face_free": festival.face_free,
        "minutes": minutes,
        "peak": _moment(peak, tz),
        "low": _moment(low, tz),
        "low_note": low_note,
        "comparison": _comparison(a_set, day, k=k, tz=tz),
        "coverage": coverage,
        "coverage_caveat": coverage_caveat(coverage),
        "models": models,
        "model_statement": _model_statement(models),
        "method_v2": (
            "vibe v2 = the festival's weighted blend of expression energy (published minutes "
            "only), motion energy, sound level and crowd fill, each scored 0-100 against its "
            "stage's own minutes that day and the festival's (emotions.vibe; docs/analysis.md). "
            "A component without data drops out and the other weights are renormalised. Crowd "
            "numbers are averages over the crowd area from minutes where a camera reported."
        ),
        "method": (
            "vibe v1 (the first version, kept for comparison) = 100 x (0.7 x mean share of "
            "HAPPY + SURPRISED scores + 0.3 x crowd size "
            "relative to the stage's norm: its typical crowd, else its busiest minute that "
            f"day). Minutes with fewer than {k} faces show no numbers and count in no total."
        ),
        "covered_faces": sum(r.faces for r in own.values()),  # every face: the late-data check
    }


def rollup_faces(a_set: Set) -> int:
    """Faces in the set's minutes now (compared with a report's covered_faces: late data)."""
    total = (
        MinuteRollup.objects.filter(
            stage_id=a_set.stage_id, minute__gte=_floor(a_set.starts_at), minute__lt=a_set.ends_at
        )
        .order_by()
        .aggregate(faces=Sum("faces"))["faces"]
    )
    return total or 0


# --- lists --------------------------------------------------------------------------------------
def reports_for_user(user, *, festival_id: int | None = None):
    """The report rows a user may see (their organizations'), newest set first."""
    reports = SetReport.objects.for_user(user).select_related("set", "stage", "festival")
    if festival_id is not None:
        reports = reports.filter(festival_id=festival_id)
    return reports


def published_reports(festival: Festival):
    """Reports fans may see: ready, published by an organizer, of a public festival."""
    if not festival.public:
        return SetReport.objects.none()
    return (
        SetReport.objects.filter(festival=festival, status=ReportStatus.READY, published=True)
        .select_related("set", "stage")
        .order_by("-set__starts_at")
    )


FAN_MINUTE_KEYS = (
    "minute", "local_time", "suppressed", "faces", "vibe", "vibe_v2", "components",
    "expression_share",
)  # fmt: skip


def public_payload(report: SetReport) -> dict:
    """The fan view of a report: aggregate numbers only (no devices, no per-device counts)."""
    payload = report.payload or {}
    return {
        "id": report.pk,
        "set": payload.get("set"),
        "built_at": _iso(report.built_at),
        "min_faces": payload.get("min_faces"),
        "suppressed": payload.get("suppressed", True),
        "suppressed_message": payload.get("suppressed_message", ""),
        "overall": payload.get("overall"),
        "vibe_v2": payload.get("vibe_v2"),
        "components": payload.get("components"),
        "peak": payload.get("peak"),
        "low": payload.get("low"),
        "minutes": [
            {key: point.get(key) for key in FAN_MINUTE_KEYS} for point in payload.get("minutes", [])
        ],
        "model_statement": payload.get("model_statement", ""),
        "method": payload.get("method", ""),
        "method_v2": payload.get("method_v2", ""),
    }
