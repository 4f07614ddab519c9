"""Ingest: the observations table's DynamoDB stream -> observations + minute rollups, exactly once.

Change capture, not re-reading windows: every item the analyzer writes appears once on the table's
stream (NEW_IMAGE), whatever its capture time, so a crop analysed two hours late still lands in
its minute. Each shard's checkpoint (StreamCheckpoint) moves in the same transaction as the rows
of the page it covers, so a crash re-reads at most that page; a lost checkpoint re-reads the
stream from TRIM_HORIZON (24 h). Rows are keyed by the item's key, and the rollups only count
rows that were really inserted, so a replay writes nothing new.

Ingest also checks what it is given: the stage comes from the item's key, the device and the
organization from the database (the Device row of the key's thing name, which IAM pinned to the
camera's own prefix), never from item attributes. Capture times too far ahead of, or behind, the
time DynamoDB received the item, or outside the festival's dates, are refused and counted per
reason (IngestRejection) for operators.

`fetch_items` + `store_items` remain for the explicit backfill command (manage.py
backfill_observations): a Query of one stage's partition, through the same checks.
"""

from __future__ import annotations

import bisect
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

import awsclients as aws
from devices.models import Device
from edge_package.contracts import (
    EMOTIONS,
    OBSERVATION_PK,
    OBSERVATION_SK,
    TOP_EMOTIONS,
    ContractError,
    normalise_scores,
    observation_partition,
    sort_key_floor,
)
from emotions.comparison import services as comparison
from emotions.live_cache import store_live_ranking
from emotions.models import (
    AnalysisBacklog,
    IngestRejection,
    IngestWatermark,
    MinuteRollup,
    Observation,
    RejectionReason,
    ReportStatus,
    SetReport,
    StreamCheckpoint,
)
from emotions.reports.services import request_rebuild
from festival.models import Festival
from festival.notify import notify_operations
from stages.models import Set, Stage

log = logging.getLogger(__name__)
_deserializer = TypeDeserializer()

INGEST_LOCK_KEY = "stagepulse:ingest:lock"


class IngestConfigError(RuntimeError):
    """The observations table cannot be ingested as configured (no stream, no table)."""


@dataclass
class Incoming:
    """One observation item and when DynamoDB received it (the clock we trust for 'too old')."""

    item: dict
    received_ms: int
    sequence: str = ""


@dataclass
class IngestResult:
    read: int = 0
    created: int = 0
    pairs_created: int = 0  # comparison runs' paired readings
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    festivals: set[int] = field(default_factory=set)  # festivals that got new rows
    pages: int = 0
    shards: int = 0
    iterators_renewed: int = 0
    trimmed: int = 0  # checkpoints older than the stream's retention (records may be lost)

    @property
    def skipped_invalid(self) -> int:
        return sum(self.rejected.values())

    def merge(self, other: IngestResult) -> None:
        self.read += other.read
        self.created += other.created
        self.pairs_created += other.pairs_created
        self.duplicates += other.duplicates
        for reason, count in other.rejected.items():
            self.rejected[reason] = self.rejected.get(reason, 0) + count
        self.festivals |= other.festivals
        self.pages += other.pages
        self.shards += other.shards
        self.iterators_renewed += other.iterators_renewed
        self.trimmed += other.trimmed


@dataclass
class _Refusal:
    reason: str
    detail: str
    key: str
    festival: Festival | None = None
    stage: Stage | None = None


# --- checks -------------------------------------------------------------------------------------
def _lookups(incoming: list[Incoming]) -> tuple[dict, dict, dict]:
    """Stages by (festival slug, stage slug), festivals by slug, devices by thing name: three
    queries per page, whatever its size."""
    partitions, things = set(), set()
    for entry in incoming:
        festival_slug, _, stage_slug = str(entry.item.get(OBSERVATION_PK, "")).partition("/")
        partitions.add((festival_slug, stage_slug))
        things.add(_thing_name(entry.item))
    festival_slugs = {f for f, _ in partitions}
    festivals = {f.slug: f for f in Festival.objects.filter(slug__in=festival_slugs)}
    stages = {
        (s.festival.slug, s.slug): s
        for s in Stage.objects.filter(
            festival__slug__in=festival_slugs, slug__in={s for _, s in partitions}
        ).select_related("festival")
    }
    devices = {
        d.thing_name: d
        for d in Device.objects.filter(thing_name__in=things - {""}).only(
            "id", "thing_name", "organization_id", "festival_id", "stage_id"
        )
    }
    return stages, festivals, devices


def _thing_name(item: dict) -> str:
    """The camera's thing name, from the sort key (`<ms>#<device>#<seq>#<face>`): the key comes
    from the crop key, which the camera's IAM role can only write under its own name."""
    parts = str(item.get(OBSERVATION_SK, "")).split("#")
    return parts[1] if len(parts) == 4 else ""


def _festival_dates_allow(festival: Festival, captured: datetime) -> bool:
    local = captured.astimezone(festival.tz).date()
    return festival.starts_on - timedelta(days=1) <= local <= festival.ends_on + timedelta(days=1)


def _check(entry: Incoming, stages: dict, festivals: dict, devices: dict) -> Observation | _Refusal:
    """The item as a row, or why it is refused. Order matters: the stage first, so every later
    refusal is counted where its operators look."""
    item = entry.item
    pk, sk = str(item.get(OBSERVATION_PK, "")), str(item.get(OBSERVATION_SK, ""))
    key = f"{pk} {sk}"[:460]
    festival_slug, _, stage_slug = pk.partition("/")
    stage = stages.get((festival_slug, stage_slug))
    if stage is None:
        festival = festivals.get(festival_slug)
        return _Refusal(RejectionReason.UNKNOWN_STAGE, f"no stage {pk!r}", key, festival)
    festival = stage.festival
    try:
        captured_ms = int(item["captured_at_ms"])
        if not sk.startswith(f"{captured_ms:013d}#"):
            raise ContractError("captured_at_ms does not match the sort key")
        thing = _thing_name(item)
        if not thing or str(item.get("device", thing)) != thing:
            raise ContractError("the device attribute does not match the sort key")
    except (KeyError, TypeError, ValueError, ContractError) as error:
        return _Refusal(RejectionReason.MALFORMED, str(error), key, festival, stage)
    limits = settings.INGEST_MAX_FUTURE_S * 1000, settings.INGEST_MAX_AGE_S * 1000
    if captured_ms > entry.received_ms + limits[0]:
        ahead = (captured_ms - entry.received_ms) / 1000
        return _Refusal(RejectionReason.FUTURE, f"{ahead:.0f} s ahead", key, festival, stage)
    if captured_ms < entry.received_ms - limits[1]:
        behind = (entry.received_ms - captured_ms) / 1000
        return _Refusal(RejectionReason.TOO_OLD, f"{behind:.0f} s old", key, festival, stage)
    device = devices.get(thing)
    if device is None:
        return _Refusal(RejectionReason.UNKNOWN_DEVICE, thing, key, festival, stage)
    if (device.organization_id, device.festival_id, device.stage_id) != (
        stage.organization_id,
        stage.festival_id,
        stage.pk,
    ):
        return _Refusal(RejectionReason.WRONG_DEVICE, thing, key, festival, stage)
    try:
        row = _as_row(item, stage, device, captured_ms)
    except (KeyError, TypeError, ValueError, OverflowError, OSError, ContractError) as error:
        return _Refusal(RejectionReason.MALFORMED, str(error)[:300], key, festival, stage)
    if not _festival_dates_allow(festival, row.captured_at):
        return _Refusal(
            RejectionReason.OUTSIDE_FESTIVAL, f"{row.captured_at:%Y-%m-%d}", key, festival, stage
        )
    row.received_ms = entry.received_ms  # for the stage's freshness; not a column
    return row


def _as_row(item: dict, stage: Stage, device: Device, captured_ms: int) -> Observation:
    scores = normalise_scores({k: float(v) for k, v in item["emotions"].items()})
    fields = {name.lower(): scores[name] for name in EMOTIONS}
    top = str(item.get("top_emotion", ""))
    if top not in TOP_EMOTIONS:  # UNKNOWN: a face counted without an expression read
        raise ContractError(f"top_emotion {top!r} is not in the taxonomy")
    return Observation(
        organization_id=stage.organization_id,
        festival_id=stage.festival_id,
        stage_id=stage.pk,  # ids, not instances: the related descriptors cost more than the row
        device_id=device.pk,
        dynamo_pk=str(item[OBSERVATION_PK]),
        dynamo_sk=str(item[OBSERVATION_SK]),
        captured_at=datetime.fromtimestamp(captured_ms / 1000, tz=UTC),
        source=str(item.get("source", ""))[:16],
        model=str(item.get("model", ""))[:100],
        top_emotion=top,
        face_confidence=float(item.get("face_confidence", 0)),
        **fields,
    )


# --- writes -------------------------------------------------------------------------------------
def _attach_sets(stage: Stage, rows: list[Observation]) -> None:
    if not rows:
        return
    first = min(r.captured_at for r in rows)
    last = max(r.captured_at for r in rows)
    sets = list(
        Set.objects.filter(stage=stage, starts_at__lte=last, ends_at__gt=first)
        .order_by("starts_at")
        .values_list("starts_at", "ends_at", "id")
    )
    starts = [s[0] for s in sets]
    for row in rows:
        index = bisect.bisect_right(starts, row.captured_at) - 1
        if index >= 0 and sets[index][1] > row.captured_at:
            row.set_id = sets[index][2]


def _add_to_rollups(stage: Stage, rows: list[Observation]) -> None:
    """Adds only `rows` (the newly inserted ones) to their minutes, late minutes included."""
    by_minute: dict[datetime, list[Observation]] = {}
    for row in rows:
        by_minute.setdefault(row.captured_at.replace(second=0, microsecond=0), []).append(row)
    existing = {
        r.minute: r
        for r in MinuteRollup.objects.select_for_update().filter(
            stage=stage, minute__in=list(by_minute)
        )
    }
    to_create, to_update = [], []
    for minute, minute_rows in by_minute.items():
        rollup = existing.get(minute)
        if rollup is None:
            rollup = MinuteRollup(
                organization_id=stage.organization_id,
                festival_id=stage.festival_id,
                stage=stage,
                minute=minute,
                counts={},
                sums={},
            )
            to_create.append(rollup)
        else:
            to_update.append(rollup)
        rollup.faces += len(minute_rows)
        for row in minute_rows:
            rollup.counts[row.top_emotion] = rollup.counts.get(row.top_emotion, 0) + 1
            for name in EMOTIONS:
                rollup.sums[name] = round(
                    rollup.sums.get(name, 0.0) + getattr(row, name.lower()), 3
                )
    MinuteRollup.objects.bulk_create(to_create)
    MinuteRollup.objects.bulk_update(to_update, ["faces", "counts", "sums"])


_COPY_COLUMNS = [
    "organization_id", "festival_id", "stage_id", "set_id", "device_id", "dynamo_pk",
    "dynamo_sk", "captured_at", "source", "model", "top_emotion", "face_confidence",
    *[name.lower() for name in EMOTIONS],
]  # fmt: skip


def _insert_new_rows_postgres(rows: list[Observation]) -> list[Observation]:
    """COPY into a temporary table, then INSERT … ON CONFLICT DO NOTHING RETURNING: one round
    trip for thousands of rows, and only the rows that were really new come back."""
    if not rows:
        return []
    columns = ", ".join(_COPY_COLUMNS)
    table = Observation._meta.db_table
    with connection.cursor() as cursor:
        raw = cursor.cursor
        raw.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS ingest_batch "
            f"(LIKE {table} INCLUDING DEFAULTS EXCLUDING IDENTITY) ON COMMIT DELETE ROWS"
        )
        raw.execute("ALTER TABLE ingest_batch ALTER COLUMN id DROP NOT NULL")
        with raw.copy(f"COPY ingest_batch ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row([getattr(row, column) for column in _COPY_COLUMNS])
        raw.execute(
            f"INSERT INTO {table} ({columns}) SELECT {columns} FROM ingest_batch "
            "ON CONFLICT (dynamo_pk, dynamo_sk) DO NOTHING RETURNING dynamo_sk"
        )
        inserted = {sk for (sk,) in raw.fetchall()}
        raw.execute("TRUNCATE ingest_batch")
    return [row for row in rows if row.dynamo_sk in inserted]


def _insert_new_rows_portable(stage: Stage, rows: list[Observation]) -> list[Observation]:
    """Other databases (SQLite, whose writers are serialised): insert the keys not there yet."""
    partition = observation_partition(stage.festival.slug, stage.slug)
    keys = [row.dynamo_sk for row in rows]
    seen: set[str] = set()
    for start in range(0, len(keys), 500):
        seen.update(
            Observation.objects.filter(
                dynamo_pk=partition, dynamo_sk__in=keys[start : start + 500]
            ).values_list("dynamo_sk", flat=True)
        )
    fresh = [row for row in rows if row.dynamo_sk not in seen]
    Observation.objects.bulk_create(fresh, batch_size=2000)
    return fresh


def _advance_freshness(stage: Stage, fresh: list[Observation]) -> None:
    """The stage's newest capture time, each capped at when DynamoDB received it: a camera
    whose clock runs ahead never makes a stage look fresher than it is."""
    if not fresh:
        return
    watermark, _ = IngestWatermark.objects.select_for_update().get_or_create(
        stage=stage, defaults={"organization_id": stage.organization_id}
    )
    captured = [int(r.captured_at.timestamp() * 1000) for r in fresh]
    newest = max(min(ms, r.received_ms) for ms, r in zip(captured, fresh, strict=True))
    lags = sorted(max(0, r.received_ms - ms) for ms, r in zip(captured, fresh, strict=True))
    watermark.captured_until_ms = max(watermark.captured_until_ms, newest)
    watermark.last_run_at = timezone.now()
    watermark.last_count = len(fresh)
    watermark.lag_ms = lags[len(lags) // 2]
    watermark.save()


def _flag_reports(fresh: list[Observation]) -> int:
    """A report already built for a set that just got late faces is queued for a rebuild now
    (the sweeper's detect_late_data would find it within a minute anyway)."""

    late: dict[int, int] = {}
    for row in fresh:
        if row.set_id:
            late[row.set_id] = late.get(row.set_id, 0) + 1
    if not late:
        return 0
    flagged = 0
    for report in SetReport.objects.filter(set_id__in=late, status=ReportStatus.READY):
        flagged += request_rebuild(
            report, f"late data: {late[report.set_id]} faces arrived after the build"
        )
    return flagged


def _count_refusals(refusals: list[_Refusal]) -> None:
    """One counter row per (festival, stage, reason), updated with F() so concurrent runs add."""
    grouped: dict[str, tuple[_Refusal, int]] = {}
    for refusal in refusals:
        scope = (
            f"{refusal.festival.pk if refusal.festival else '-'}:"
            f"{refusal.stage.pk if refusal.stage else '-'}:{refusal.reason}"
        )
        grouped[scope] = (refusal, grouped.get(scope, (refusal, 0))[1] + 1)
    for scope, (last, count) in grouped.items():
        counter, _ = IngestRejection.objects.get_or_create(
            key=scope,
            defaults={
                "organization_id": last.festival.organization_id if last.festival else None,
                "festival": last.festival,
                "stage": last.stage,
                "reason": last.reason,
            },
        )
        IngestRejection.objects.filter(pk=counter.pk).update(
            count=F("count") + count,
            last_key=last.key,
            last_detail=last.detail[:300],
            last_at=timezone.now(),
        )
        log.warning("ingest refused %s item(s) (%s): %s %s", count, scope, last.key, last.detail)


def _save_checkpoint(checkpoint: StreamCheckpoint, sequence: str, finished: bool, read: int):
    """Only forward: sequence numbers grow within a shard (compared as integers)."""
    current = StreamCheckpoint.objects.select_for_update().get(pk=checkpoint.pk)
    if sequence and (not current.sequence_number or int(sequence) > int(current.sequence_number)):
        current.sequence_number = sequence
    current.finished = current.finished or finished
    current.records += read
    current.save()
    checkpoint.sequence_number, checkpoint.finished = current.sequence_number, current.finished


def store_incoming(
    incoming: list[Incoming],
    *,
    checkpoint: StreamCheckpoint | None = None,
    sequence: str = "",
    finished: bool = False,
    records_read: int | None = None,
    only_partition: str | None = None,
) -> IngestResult:
    """Check, store and count one page of items — rows, rollups, freshness, refusals and the
    shard's checkpoint in one transaction: all of it happens, or none and the page is re-read."""
    result = IngestResult(read=len(incoming))
    pairs = [entry for entry in incoming if comparison.is_pair_item(entry.item)]
    if pairs:  # comparison runs' paired readings (their own partition): not observations
        incoming = [entry for entry in incoming if not comparison.is_pair_item(entry.item)]
    stages, festivals, devices = _lookups(incoming)
    rows_by_stage: dict[int, tuple[Stage, dict[str, Observation]]] = {}
    refusals: list[_Refusal] = []
    for entry in incoming:
        if only_partition is not None and entry.item.get(OBSERVATION_PK) != only_partition:
            continue
        checked = _check(entry, stages, festivals, devices)
        if isinstance(checked, _Refusal):
            refusals.append(checked)
            result.rejected[checked.reason] = result.rejected.get(checked.reason, 0) + 1
            continue
        stage = stages[tuple(checked.dynamo_pk.split("/", 1))]
        rows_by_stage.setdefault(stage.pk, (stage, {}))[1][checked.dynamo_sk] = checked
    with transaction.atomic():
        for stage, keyed in rows_by_stage.values():
            rows = list(keyed.values())
            _attach_sets(stage, rows)
            if connection.vendor == "postgresql":
                fresh = _insert_new_rows_postgres(rows)
            else:
                fresh = _insert_new_rows_portable(stage, rows)
            _add_to_rollups(stage, fresh)
            _advance_freshness(stage, fresh)
            _flag_reports(fresh)
            result.created += len(fresh)
            result.duplicates += len(rows) - len(fresh)
            if fresh:
                result.festivals.add(stage.festival_id)
        if pairs and only_partition is None:
            created, duplicates, refused = comparison.store_pairs(pairs)
            result.pairs_created += created
            result.duplicates += duplicates
            for refusal in refused:
                result.rejected[refusal["reason"]] = result.rejected.get(refusal["reason"], 0) + 1
                refusals.append(
                    _Refusal(
                        refusal["reason"],
                        str(refusal.get("detail", ""))[:300],
                        refusal["key"],
                        refusal.get("festival"),
                        refusal.get("stage"),
                    )
                )
        if refusals:
            _count_refusals(refusals)
        if checkpoint is not None:
            read = len(incoming) if records_read is None else records_read
            _save_checkpoint(checkpoint, sequence, finished, read)
    return result


# --- the stream ---------------------------------------------------------------------------------
def _ms(value) -> int:
    if isinstance(value, datetime):
        return int(value.timestamp() * 1000)
    return int(float(value) * 1000)


class StreamReader:
    """Reads one table's stream from the checkpoints: parents before children, closed shards to
    their end, open shards until they have nothing more; each page stored in one transaction."""

    def __init__(self, table: str, *, dynamodb=None, streams=None, page_limit: int | None = None):
        self.table = table
        self.dynamodb = dynamodb or aws.cached_client("dynamodb")
        self.streams = streams or aws.cached_client("dynamodbstreams")
        self.page_limit = page_limit or settings.INGEST_STREAM_PAGE_LIMIT
        self.max_pages = settings.INGEST_MAX_PAGES_PER_SHARD

    def stream_arn(self) -> str:
        try:
            table = self.dynamodb.describe_table(TableName=self.table)["Table"]
        except ClientError as exc:
            raise IngestConfigError(f"table {self.table}: {exc}") from exc
        arn = table.get("LatestStreamArn")
        spec = table.get("StreamSpecification") or {}
        if not arn or not spec.get("StreamEnabled"):
            raise IngestConfigError(
                f"table {self.table} has no stream: enable StreamSpecification NEW_IMAGE "
                "(infra/stagepulse.yaml does)"
            )
        return arn

    def shards(self, arn: str) -> list[dict]:
        shards, start = [], None
        while True:
            kwargs = {"StreamArn": arn, **({"ExclusiveStartShardId": start} if start else {})}
            description = self.streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            start = description.get("LastEvaluatedShardId")
            if not start:
                return shards

    def run(self) -> IngestResult:
        arn = self.stream_arn()
        shards = self.shards(arn)
        listed = {s["ShardId"]: s for s in shards}
        checkpoints = {c.shard_id: c for c in StreamCheckpoint.objects.filter(stream_arn=arn)}
        for shard_id, shard in listed.items():
            if shard_id not in checkpoints:
                checkpoints[shard_id], _ = StreamCheckpoint.objects.get_or_create(
                    stream_arn=arn,
                    shard_id=shard_id,
                    defaults={"parent_shard_id": shard.get("ParentShardId", "")},
                )
        # Shards gone from the stream (older than its 24 h) and read to their end: forget them;
        # and checkpoints of this table's earlier streams (re-created or re-enabled) after 2 days.
        StreamCheckpoint.objects.filter(stream_arn=arn, finished=True).exclude(
            shard_id__in=list(listed)
        ).delete()
        StreamCheckpoint.objects.filter(
            stream_arn__startswith=arn.rsplit("/stream/", 1)[0] + "/stream/",
            updated_at__lt=timezone.now() - timedelta(days=2),
        ).exclude(stream_arn=arn).delete()
        result = IngestResult()
        done: set[str] = set()
        progress = True
        while progress:  # a pass may finish a parent, which frees its children for the next one
            progress = False
            for shard_id, shard in sorted(
                listed.items(), key=lambda kv: int(kv[1]["SequenceNumberRange"].get(
                    "StartingSequenceNumber", "0"))
            ):  # fmt: skip
                checkpoint = checkpoints[shard_id]
                if shard_id in done or checkpoint.finished:
                    continue
                parent = shard.get("ParentShardId")
                if parent in listed and not checkpoints[parent].finished:
                    continue  # parent first: its records are older
                done.add(shard_id)
                result.shards += 1
                self.read_shard(arn, shard, checkpoint, result)
                progress = progress or checkpoint.finished
        return result

    def _iterator(self, arn: str, shard_id: str, checkpoint: StreamCheckpoint, result) -> str:
        kwargs = {"StreamArn": arn, "ShardId": shard_id}
        if checkpoint.sequence_number:
            try:
                return self.streams.get_shard_iterator(
                    **kwargs,
                    ShardIteratorType="AFTER_SEQUENCE_NUMBER",
                    SequenceNumber=checkpoint.sequence_number,
                )["ShardIterator"]
            except ClientError as exc:
                if aws.error_code(exc) != "TrimmedDataAccessException":
                    raise
                result.trimmed += 1
                log.error(
                    "shard %s: checkpoint %s is past the stream's retention; reading from "
                    "TRIM_HORIZON (records between are lost)",
                    shard_id,
                    checkpoint.sequence_number,
                )
        return self.streams.get_shard_iterator(**kwargs, ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]

    def read_shard(self, arn: str, shard: dict, checkpoint: StreamCheckpoint, result) -> None:
        shard_id = shard["ShardId"]
        closed = "EndingSequenceNumber" in shard.get("SequenceNumberRange", {})
        try:
            iterator = self._iterator(arn, shard_id, checkpoint, result)
        except ClientError as exc:
            if aws.error_code(exc) != "ResourceNotFoundException":
                raise
            log.warning("shard %s is gone from the stream; marking it read", shard_id)
            with transaction.atomic():
                _save_checkpoint(checkpoint, "", True, 0)
            return
        pages = renewals = 0
        while iterator and pages < self.max_pages:
            try:
                page = self.streams.get_records(ShardIterator=iterator, Limit=self.page_limit)
            except ClientError as exc:
                code = aws.error_code(exc)
                if code not in ("ExpiredIteratorException", "TrimmedDataAccessException"):
                    raise
                renewals += 1
                if renewals > 3:
                    raise
                result.iterators_renewed += 1
                log.warning("shard %s: %s; a new iterator from the checkpoint", shard_id, code)
                iterator = self._iterator(arn, shard_id, checkpoint, result)
                continue
            pages += 1
            result.pages += 1
            records = page.get("Records", [])
            iterator = page.get("NextShardIterator")
            if records:
                incoming = [
                    Incoming(
                        item={
                            k: _deserializer.deserialize(v)
                            for k, v in record["dynamodb"]["NewImage"].items()
                        },
                        received_ms=_ms(record["dynamodb"]["ApproximateCreationDateTime"]),
                        sequence=record["dynamodb"]["SequenceNumber"],
                    )
                    for record in records
                    if record.get("eventName") in ("INSERT", "MODIFY")
                    and "NewImage" in record.get("dynamodb", {})
                ]  # REMOVE: the TTL expiring an old item, nothing to ingest
                stored = store_incoming(
                    incoming,
                    checkpoint=checkpoint,
                    sequence=records[-1]["dynamodb"]["SequenceNumber"],
                    finished=iterator is None,
                    records_read=len(records),
                )
                stored.read = len(records)
                result.merge(stored)
            elif iterator is None:
                with transaction.atomic():
                    _save_checkpoint(checkpoint, "", True, 0)
            elif not closed:
                return  # an open shard with nothing more for now: the next run goes on


def observation_tables() -> list[str]:
    """The default table and those of festivals running now (give or take a day)."""
    custom = active_festivals().exclude(observations_table="")
    names = {settings.OBSERVATIONS_TABLE, *custom.values_list("observations_table", flat=True)}
    return sorted(names)


def ingest_streams(*, dynamodb=None, streams=None, force: bool = False) -> IngestResult:
    """One ingest run over every observations table's stream. Runs are serialised by a lease in
    the shared cache (a second worker skips); correctness does not depend on it — rows are
    idempotent and checkpoints only move forward — it only saves duplicate reads. `force` takes
    the lease over (when no other ingest can be running, e.g. the demo's last run)."""
    token = uuid.uuid4().hex
    if force:
        cache.delete(INGEST_LOCK_KEY)
    if not cache.add(INGEST_LOCK_KEY, token, timeout=settings.INGEST_LOCK_SECONDS):
        log.info("another ingest run holds the lease; skipping")
        return IngestResult()
    total = IngestResult()
    try:
        for table in observation_tables():
            try:
                total.merge(StreamReader(table, dynamodb=dynamodb, streams=streams).run())
            except IngestConfigError as exc:
                log.error("ingest: %s", exc)
    finally:
        if cache.get(INGEST_LOCK_KEY) == token:
            cache.delete(INGEST_LOCK_KEY)
    for festival in Festival.objects.filter(pk__in=total.festivals):
        store_live_ranking(festival)  # the fan API serves it without recomputing
    return total


def active_festivals(today=None):
    """Festivals running now, give or take a day (sets past midnight, time zones)."""
    today = today or timezone.now().date()
    return Festival.objects.filter(
        starts_on__lte=today + timedelta(days=1), ends_on__gte=today - timedelta(days=1)
    )


# --- backfill (explicit, manage.py backfill_observations) ---------------------------------------
def fetch_items(table: str, festival: Festival, stage: Stage, since_ms: int, dynamodb=None):
    """Every observation item of a stage captured at or after `since_ms`, oldest first. Only for
    the backfill command: the live path reads the stream."""
    dynamodb = dynamodb or aws.cached_client("dynamodb")
    paginator = dynamodb.get_paginator("query")
    pages = paginator.paginate(
        TableName=table,
        KeyConditionExpression="#pk = :pk AND #sk >= :since",
        ExpressionAttributeNames={"#pk": OBSERVATION_PK, "#sk": OBSERVATION_SK},
        ExpressionAttributeValues={
            ":pk": {"S": observation_partition(festival.slug, stage.slug)},
            ":since": {"S": sort_key_floor(since_ms)},
        },
    )
    for page in pages:
        for raw in page.get("Items", []):
            yield {key: _deserializer.deserialize(value) for key, value in raw.items()}


def store_items(stage: Stage | None, items: Iterable[dict], batch: int = 5000) -> IngestResult:
    """Store deserialized items through the same checks as the stream. Without a stream record
    the receive time is the analyzer's `analyzed_at_ms` (its clock, not the camera's), else now.
    With `stage`, items of other partitions are left alone."""
    only = observation_partition(stage.festival.slug, stage.slug) if stage is not None else None
    now_ms = int(time.time() * 1000)
    result = IngestResult()
    chunk: list[Incoming] = []

    def flush():
        result.merge(store_incoming(chunk, only_partition=only))
        chunk.clear()

    for item in items:
        analyzed = item.get("analyzed_at_ms")
        received = int(analyzed) if isinstance(analyzed, (int, float)) else now_ms
        chunk.append(Incoming(item=item, received_ms=received))
        if len(chunk) >= batch:
            flush()
    if chunk:
        flush()
    return result


def backfill_stage(stage: Stage, since_ms: int = 0, *, dynamodb=None) -> IngestResult:
    """Re-read one stage's partition from `since_ms` (e.g. after the stream's 24 h retention was
    exceeded by an outage). Idempotent: what is there already is not counted again."""
    festival = stage.festival
    items = fetch_items(festival.table, festival, stage, since_ms, dynamodb=dynamodb)
    result = store_items(stage, items)
    if result.created:
        store_live_ranking(festival)
    return result


# --- the analysis backlog (measured by a beat task, never per request) --------------------------
def analysis_queue_url(sqs) -> str:
    return (
        settings.ANALYSIS_QUEUE_URL
        or sqs.get_queue_url(QueueName=settings.ANALYSIS_QUEUE_NAME)["QueueUrl"]
    )


def _oldest_age_from_cloudwatch(cloudwatch, queue_name: str, now: datetime) -> float | None:
    """SQS's own ApproximateAgeOfOldestMessage (1-minute metric); None without a datapoint."""
    try:
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_name}],
            StartTime=now - timedelta(minutes=5),
            EndTime=now,
            Period=60,
            Statistics=["Maximum"],
        ).get("Datapoints", [])
    except (ClientError, BotoCoreError) as exc:
        log.warning("ApproximateAgeOfOldestMessage unavailable: %s", exc)
        return None
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def _estimated_oldest_age(waiting: int, now: datetime) -> float:
    """Without the metric (moto, a new queue): the analysis lag of recent rows (median of
    DynamoDB received - captured, per stage), or — messages waiting but no new rows — the time
    since rows last arrived. Receiving a message to read its SentTimestamp is never done: it
    would count towards the queue's maxReceiveCount and send crops to the DLQ."""
    if waiting == 0:
        return 0.0
    recent = IngestWatermark.objects.filter(last_run_at__isnull=False).order_by("-last_run_at")
    latest = list(recent.values_list("last_run_at", "lag_ms")[:50])
    if not latest:
        return 0.0
    window_start = latest[0][0] - timedelta(seconds=2 * settings.ANALYSIS_BACKLOG_INTERVAL_S)
    lags = sorted(lag for at, lag in latest if at >= window_start)
    lag_s = lags[len(lags) // 2] / 1000 if lags else 0.0
    silent_s = (now - latest[0][0]).total_seconds()
    return round(max(lag_s, silent_s if silent_s > settings.ANALYSIS_BACKLOG_INTERVAL_S else 0), 1)


def measure_analysis_backlog(*, now=None, sqs=None, cloudwatch=None) -> AnalysisBacklog:
    """Store the queue's depth and the age of its oldest message, then alert on a backlog."""
    now = now or timezone.now()
    sqs = sqs or aws.cached_client("sqs")
    try:
        url = analysis_queue_url(sqs)
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=[
                "ApproximateNumberOfMessages",
                "ApproximateNumberOfMessagesNotVisible",
                "ApproximateNumberOfMessagesDelayed",
            ],
        )["Attributes"]
    except (ClientError, BotoCoreError) as exc:  # shown as stale on /live after a minute
        backlog, _ = AnalysisBacklog.objects.get_or_create(
            queue=settings.ANALYSIS_QUEUE_URL or settings.ANALYSIS_QUEUE_NAME
        )
        backlog.error = str(exc)[:300]
        backlog.save(update_fields=["error"])
        log.error("analysis backlog not measured: %s", exc)
        return backlog
    depth = int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
        attributes.get("ApproximateNumberOfMessagesDelayed", 0)
    )
    in_flight = int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0))
    age = _oldest_age_from_cloudwatch(
        cloudwatch or aws.cached_client("cloudwatch"), url.rstrip("/").rsplit("/", 1)[-1], now
    )
    source = "cloudwatch"
    if age is None:
        age, source = _estimated_oldest_age(depth + in_flight, now), "estimate"
    previous = AnalysisBacklog.objects.filter(queue=url).values_list("oldest_age_s", flat=True)
    was_behind = (previous.first() or 0) > settings.ANALYSIS_BEHIND_AFTER_S
    backlog, _ = AnalysisBacklog.objects.update_or_create(
        queue=url,
        defaults={
            "measured_at": now,
            "depth": depth,
            "in_flight": in_flight,
            "oldest_age_s": age,
            "age_source": source,
            "error": "",
        },
    )
    alert_on_backlog(backlog, now)
    if was_behind != (age > settings.ANALYSIS_BEHIND_AFTER_S):
        for festival in active_festivals():  # "analysis behind" shows now, not at the next data
            store_live_ranking(festival)
    return backlog


def backlog_over_threshold(backlog: AnalysisBacklog, factor: float = 1.0) -> bool:
    return (backlog.oldest_age_s or 0) > settings.ANALYSIS_BACKLOG_ALERT_AFTER_S * factor or (
        backlog.depth > settings.ANALYSIS_BACKLOG_ALERT_DEPTH * factor
    )


def alert_on_backlog(backlog: AnalysisBacklog, now=None) -> str:
    """One alert per incident (claimed by one UPDATE, as camera-offline does) to the operations
    contacts of every festival running now, and one recovery notice once below half of both
    thresholds (no flapping around the line). Returns "alerted", "recovered" or ""."""

    now = now or timezone.now()
    age = int(backlog.oldest_age_s or 0)
    if backlog_over_threshold(backlog):
        if not AnalysisBacklog.objects.filter(pk=backlog.pk, alerted_at__isnull=True).update(
            alerted_at=now
        ):
            return ""
        subject = f"[StagePulse] analysis behind: {backlog.depth} crops waiting, oldest {age} s"
        body = (
            f"The analysis queue holds {backlog.depth} crops ({backlog.in_flight} in progress); "
            f"the oldest has waited about {age} s ({backlog.age_source}). Live numbers lag "
            "until it drains; add analyzer workers or check the analyzer's logs."
        )
        event = "analysis.behind"
    elif backlog.alerted_at is not None and not backlog_over_threshold(backlog, 0.5):
        if not AnalysisBacklog.objects.filter(pk=backlog.pk, alerted_at__isnull=False).update(
            alerted_at=None
        ):
            return ""
        subject = "[StagePulse] analysis caught up"
        body = f"The analysis queue holds {backlog.depth} crops; the oldest waited {age} s."
        event = "analysis.recovered"
    else:
        return ""
    payload = {"event": event, "queue": backlog.queue, "depth": backlog.depth, "oldest_age_s": age}
    for festival in active_festivals():
        notify_operations(festival, subject=subject, body=body, payload=payload)
    return "alerted" if event == "analysis.behind" else "recovered"
