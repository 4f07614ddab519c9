"""Writes for stages and the lineup: one place that enforces "ends after it starts" and
"no two sets overlap on a stage", for the admin, the API and the CSV import alike."""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.core.exceptions import ValidationError
from django.db import transaction

from festival.models import Festival
from stages.models import Set, Stage

LINEUP_COLUMNS = ["stage", "artist", "starts_at", "ends_at", "notes"]
REQUIRED_COLUMNS = LINEUP_COLUMNS[:4]
MAX_LINEUP_ROWS = 5000


def describe_slot(existing: Set, tz: ZoneInfo) -> str:
    start = existing.starts_at.astimezone(tz)
    end = existing.ends_at.astimezone(tz)
    return f"'{existing.artist}' on {existing.stage.name} ({start:%a %d %b %H:%M}–{end:%H:%M})"


def overlapping_sets(stage: Stage, starts_at: datetime, ends_at: datetime, exclude_id=None):
    """Sets on `stage` that share any time with [starts_at, ends_at); back-to-back is fine."""
    query = Set.objects.filter(stage=stage, starts_at__lt=ends_at, ends_at__gt=starts_at)
    if exclude_id is not None:
        query = query.exclude(pk=exclude_id)
    return query.select_related("stage").order_by("starts_at")


def validate_set_slot(stage: Stage, starts_at, ends_at, exclude_id=None) -> None:
    if starts_at is None or ends_at is None:
        return
    if ends_at <= starts_at:
        raise ValidationError({"ends_at": "A set must end after it starts."})
    clash = overlapping_sets(stage, starts_at, ends_at, exclude_id).first()
    if clash is not None:
        raise ValidationError(
            {"starts_at": f"This set overlaps {describe_slot(clash, stage.festival.tz)}."}
        )


@transaction.atomic
def save_set(instance: Set) -> Set:
    """Create or update a set after locking its stage, so two writers cannot both fit a slot."""
    stage = Stage.objects.select_for_update().select_related("festival").get(pk=instance.stage_id)
    validate_set_slot(stage, instance.starts_at, instance.ends_at, exclude_id=instance.pk)
    instance.organization_id = stage.organization_id
    instance.save()
    return instance


# --- Lineup CSV ----------------------------------------------------------------------------------
@dataclass
class RowError:
    line: int
    column: str
    message: str

    def as_dict(self) -> dict:
        return {"line": self.line, "column": self.column, "message": self.message}


@dataclass
class LineupImportResult:
    created: int = 0
    unchanged: int = 0
    deleted: int = 0
    errors: list[RowError] = field(default_factory=list)
    dry_run: bool = False
    blocked_sets: list[dict] = field(default_factory=list)  # sets with reports a replace kept
    warnings: list[RowError] = field(default_factory=list)  # worth a look; never block

    @property
    def ok(self) -> bool:
        return not self.errors

    def as_dict(self) -> dict:
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "created": self.created,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "errors": [error.as_dict() for error in self.errors],
            "blocked_sets": self.blocked_sets,
            "warnings": [warning.as_dict() for warning in self.warnings],
        }


@dataclass
class _Row:
    line: int
    stage: Stage
    artist: str
    starts_at: datetime
    ends_at: datetime
    notes: str


def parse_local_datetime(text: str, tz: ZoneInfo) -> datetime:
    """A lineup time in the festival's zone; refuses times a DST change makes ambiguous or void."""
    text = text.strip()
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a date and time like 2026-07-10 23:30") from None
    if value.tzinfo is not None:
        return value
    early = value.replace(tzinfo=tz, fold=0)
    late = value.replace(tzinfo=tz, fold=1)
    round_trip = early.astimezone(ZoneInfo("UTC")).astimezone(tz).replace(tzinfo=None)
    if round_trip != value:
        raise ValueError(
            f"{text} does not exist in {tz.key}: the clocks skip that hour for daylight saving"
        )
    if early.utcoffset() != late.utcoffset():
        raise ValueError(
            f"{text} happens twice in {tz.key} (clocks go back); add the offset, e.g. "
            f"{early.isoformat(timespec='minutes')} or {late.isoformat(timespec='minutes')}"
        )
    return early


def format_local_datetime(value: datetime, tz: ZoneInfo) -> str:
    local = value.astimezone(tz)
    naive = local.replace(tzinfo=None)
    if naive.replace(tzinfo=tz, fold=0).utcoffset() != naive.replace(tzinfo=tz, fold=1).utcoffset():
        return local.isoformat(sep=" ", timespec="minutes")
    return f"{naive:%Y-%m-%d %H:%M}"


DELIMITER_NAMES = {",": "comma", ";": "semicolon", "\t": "tab"}


def sniff_delimiter(content: str) -> str:
    """Comma, or the semicolon (or tab) Excel writes in many European locales: whichever splits
    the header line into the most columns."""
    first = content.lstrip("\ufeff").splitlines()[0] if content.strip() else ""
    return max(DELIMITER_NAMES, key=lambda d: (first.count(d), d == ","))


def _read_rows(festival: Festival, content: bytes | str, result: LineupImportResult) -> list[_Row]:
    if isinstance(content, bytes):
        try:
            content = content.decode("utf-8-sig")
        except UnicodeDecodeError:
            result.errors.append(
                RowError(1, "", "The file is not UTF-8 text; save it as CSV UTF-8.")
            )
            return []
    if not content.strip():
        result.errors.append(
            RowError(1, "", "The file is empty (0 bytes or only blank lines): nothing to import.")
        )
        return []
    delimiter = sniff_delimiter(content)
    reader = csv.DictReader(io.StringIO(content), delimiter=delimiter)
    header = [name.strip().lower() for name in (reader.fieldnames or [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        result.errors.append(
            RowError(
                1,
                "",
                f"Missing column(s): {', '.join(missing)} (read as "
                f"{DELIMITER_NAMES[delimiter]}-separated). "
                f"Expected header: {','.join(LINEUP_COLUMNS)}",
            )
        )
        return []
    reader.fieldnames = header
    stages = {}
    for stage in Stage.objects.filter(festival=festival):
        stages[stage.slug.lower()] = stage
        stages[stage.name.lower()] = stage
    tz = festival.tz
    rows: list[_Row] = []
    for record in reader:
        line = reader.line_num
        if len(rows) + len(result.errors) >= MAX_LINEUP_ROWS:
            result.errors.append(RowError(line, "", f"More than {MAX_LINEUP_ROWS} rows."))
            break
        if not any((value or "").strip() for value in record.values() if isinstance(value, str)):
            continue  # blank line
        values = {k: (record.get(k) or "").strip() for k in LINEUP_COLUMNS}
        row_errors = []
        stage = stages.get(values["stage"].lower())
        if stage is None:
            known = ", ".join(sorted({s.slug for s in stages.values()})) or "none yet"
            row_errors.append(
                RowError(
                    line,
                    "stage",
                    f"Unknown stage {values['stage']!r} (this festival has: {known}).",
                )
            )
        if not values["artist"]:
            row_errors.append(RowError(line, "artist", "Artist is empty."))
        times = {}
        for column in ("starts_at", "ends_at"):
            try:
                times[column] = parse_local_datetime(values[column], tz)
            except ValueError as error:
                row_errors.append(RowError(line, column, str(error)))
        if len(times) == 2 and times["ends_at"] <= times["starts_at"]:
            row_errors.append(
                RowError(
                    line,
                    "ends_at",
                    "A set must end after it starts (a set past midnight ends on the next date).",
                )
            )
        if row_errors:
            result.errors.extend(row_errors)
            continue
        rows.append(
            _Row(
                line, stage, values["artist"], times["starts_at"], times["ends_at"], values["notes"]
            )
        )
    return rows


def _warn_about(rows: list[_Row], festival: Festival, result: LineupImportResult) -> None:
    """Likely mistakes that may still be right: an offset that is not the festival zone's at
    that moment, a date outside the festival, one artist on two stages at the same time."""
    tz = festival.tz
    last_day = festival.ends_on + timedelta(days=1)  # the last night's sets end after midnight
    for row in rows:
        for column in ("starts_at", "ends_at"):
            value = getattr(row, column)
            expected = value.astimezone(tz).utcoffset()
            if value.utcoffset() != expected:
                result.warnings.append(
                    RowError(
                        row.line,
                        column,
                        f"The offset {value:%z} is not {tz.key}'s at that moment "
                        f"({value.astimezone(tz):%z}); the time was read as "
                        f"{value.astimezone(tz):%Y-%m-%d %H:%M} local time.",
                    )
                )
        day = row.starts_at.astimezone(tz).date()
        if not festival.starts_on <= day <= last_day:
            result.warnings.append(
                RowError(
                    row.line,
                    "starts_at",
                    f"{day:%a %d %b %Y} is outside the festival's dates "
                    f"({festival.starts_on:%d %b}–{festival.ends_on:%d %b %Y}).",
                )
            )
    by_artist: dict[str, list[_Row]] = {}
    for row in rows:
        by_artist.setdefault(row.artist.strip().lower(), []).append(row)
    for same in by_artist.values():
        same.sort(key=lambda r: r.starts_at)
        for before, after in zip(same, same[1:], strict=False):
            if after.stage.pk != before.stage.pk and after.starts_at < before.ends_at:
                result.warnings.append(
                    RowError(
                        after.line,
                        "artist",
                        f"'{after.artist}' also plays {before.stage.name} at that time "
                        f"(line {before.line}).",
                    )
                )
    result.warnings.sort(key=lambda w: (w.line, w.column))


def _check_overlaps_in_file(rows: list[_Row], tz: ZoneInfo, result: LineupImportResult) -> None:
    by_stage: dict[int, list[_Row]] = {}
    for row in rows:
        by_stage.setdefault(row.stage.pk, []).append(row)
    for stage_rows in by_stage.values():
        stage_rows.sort(key=lambda r: r.starts_at)
        for before, after in zip(stage_rows, stage_rows[1:], strict=False):
            if after.starts_at < before.ends_at:
                result.errors.append(
                    RowError(
                        after.line,
                        "starts_at",
                        f"Overlaps line {before.line} ('{before.artist}' on {before.stage.name}, "
                        f"until {before.ends_at.astimezone(tz):%a %d %b %H:%M}).",
                    )
                )


def _slot_key(stage_id: int, artist: str, starts_at: datetime, ends_at: datetime) -> tuple:
    return (stage_id, artist, starts_at, ends_at)


def _refuse_deleting_reported_sets(doomed: list[Set], tz, result: LineupImportResult) -> None:
    """A set's report (published ones too: fans hold its URL) must not go as a side effect.

    Asked through the reverse relation (emotions' SetReport.set, related_name "report"), so
    stages, below emotions, imports nothing of it."""
    reported = set(
        Set.objects.filter(pk__in=[s.pk for s in doomed], report__isnull=False).values_list(
            "pk", flat=True
        )
    )
    blocked = [s for s in doomed if s.pk in reported]
    if not blocked:
        return
    result.blocked_sets = [
        {"id": s.pk, "artist": s.artist, "stage": s.stage.name, "slot": describe_slot(s, tz)}
        for s in blocked
    ]
    names = "; ".join(describe_slot(s, tz) for s in blocked[:10])
    more = f" and {len(blocked) - 10} more" if len(blocked) > 10 else ""
    result.errors.append(
        RowError(
            1,
            "",
            f"Replacing would delete {len(blocked)} set(s) that have a report: {names}{more}. "
            "Keep those rows in the file, or replace with force=true to delete the sets and "
            "their reports.",
        )
    )


@transaction.atomic
def import_lineup(
    festival: Festival,
    content: bytes | str,
    *,
    replace: bool = False,
    dry_run: bool = False,
    force: bool = False,
) -> LineupImportResult:
    """All-or-nothing lineup import with a line-by-line report.

    replace=False adds the file's sets (rows identical to an existing set count as unchanged);
    replace=True makes the festival's lineup exactly the file: identical rows keep their set (same
    id, same report), only sets missing from the file are deleted, and deleting a set that has a
    report is refused unless force=True. Nothing is written on any error.
    """
    result = LineupImportResult(dry_run=dry_run)
    rows = _read_rows(festival, content, result)
    tz = festival.tz
    _check_overlaps_in_file(rows, tz, result)
    _warn_about(rows, festival, result)
    existing = list(Set.objects.filter(stage__festival=festival).select_related("stage"))
    list(Stage.objects.select_for_update().filter(festival=festival))  # serialize importers
    current = {_slot_key(s.stage_id, s.artist, s.starts_at, s.ends_at): s for s in existing}
    kept: dict[int, str] = {}  # set id -> notes from the file
    fresh = []
    for row in rows:
        same = current.get(_slot_key(row.stage.pk, row.artist, row.starts_at, row.ends_at))
        if same is not None and same.pk not in kept:
            kept[same.pk] = row.notes
            result.unchanged += 1
            continue
        if not replace:
            clash = overlapping_sets(row.stage, row.starts_at, row.ends_at).first()
            if clash is not None:
                result.errors.append(
                    RowError(
                        row.line,
                        "starts_at",
                        f"Overlaps the existing set {describe_slot(clash, tz)}.",
                    )
                )
                continue
        fresh.append(row)
    doomed = [s for s in existing if s.pk not in kept] if replace else []
    if replace and not rows and not result.errors:
        result.errors.append(
            RowError(1, "", "The file has no sets; replacing with it would empty the lineup.")
        )
    if doomed and not force and not result.errors:
        _refuse_deleting_reported_sets(doomed, tz, result)
    result.errors.sort(key=lambda e: (e.line, e.column))
    if result.errors:
        result.created = result.deleted = result.unchanged = 0
        return result
    result.created = len(fresh)
    result.deleted = len(doomed)
    if dry_run:
        return result
    if doomed:
        Set.objects.filter(pk__in=[s.pk for s in doomed]).delete()
    for item in existing:
        if item.pk in kept and kept[item.pk] != item.notes:
            Set.objects.filter(pk=item.pk).update(notes=kept[item.pk])
    Set.objects.bulk_create(
        Set(
            organization_id=festival.organization_id,
            stage=row.stage,
            artist=row.artist,
            starts_at=row.starts_at,
            ends_at=row.ends_at,
            notes=row.notes,
        )
        for row in fresh
    )
    return result


def export_lineup(festival: Festival) -> str:
    """The festival's lineup as CSV in local time; import_lineup reads it back unchanged."""
    tz = festival.tz
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(LINEUP_COLUMNS)
    sets = (
        Set.objects.filter(stage__festival=festival)
        .select_related("stage")
        .order_by("starts_at", "stage__position")
    )
    for item in sets:
        writer.writerow(
            [
                item.stage.slug,
                item.artist,
                format_local_datetime(item.starts_at, tz),
                format_local_datetime(item.ends_at, tz),
                item.notes,
            ]
        )
    return out.getvalue()


def demo_lineup_rows(festival: Festival, first_day, days: int = 2) -> list[dict]:
    """A plausible lineup (12:00–02:00, 90-minute sets, 15-minute changeovers) for seeding."""
    stages = list(Stage.objects.filter(festival=festival).order_by("position"))
    rows = []
    artist_number = 0
    for day in range(days):
        date = first_day + timedelta(days=day)
        for stage_index, stage in enumerate(stages):
            start = datetime(date.year, date.month, date.day, 12, 0) + timedelta(
                minutes=15 * stage_index
            )
            while start.hour >= 12 or start.hour < 1:
                end = start + timedelta(minutes=90)
                artist_number += 1
                rows.append(
                    {
                        "stage": stage.slug,
                        "artist": DEMO_ARTISTS[artist_number % len(DEMO_ARTISTS)]
                        + ("" if artist_number < len(DEMO_ARTISTS) else f" ({artist_number})"),
                        "starts_at": f"{start:%Y-%m-%d %H:%M}",
                        "ends_at": f"{end:%Y-%m-%d %H:%M}",
                        "notes": "",
                    }
                )
                start = end + timedelta(minutes=15)
    return rows


DEMO_ARTISTS = [
    "Nova Tide",
    "The Lanterns",
    "Kiko Bass",
    "Mira & the Moths",
    "Deep Static",
    "Orchid Avenue",
    "Sol Parade",
    "Velvet Circuit",
    "Haze Theory",
    "Juniper Drift",
    "Atlas Bloom",
    "Echo Harbour",
    "Pale Saturn",
    "Ruby Frequency",
    "Cobalt Kids",
    "Lowland Choir",
]


# --- DJ booth screen links -----------------------------------------------------------------------
def issue_screen_link(stage: Stage) -> str:
    """A new secret for the stage's booth screen; the previous link stops working at once."""
    import secrets

    stage.screen_key = secrets.token_urlsafe(32)
    stage.save(update_fields=["screen_key"])
    return stage.screen_key


def revoke_screen_link(stage: Stage) -> None:
    stage.screen_key = ""
    stage.save(update_fields=["screen_key"])
