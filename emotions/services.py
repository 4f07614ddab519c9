"""Ingest: DynamoDB observation items -> Postgres observations + minute rollups, idempotently.

The watermark moves in the same transaction as the rows it covers, so a database failure leaves
it where it was and the next run reads the same items again; unique keys make re-reads harmless.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from boto3.dynamodb.types import TypeDeserializer
from django.db import connection, transaction
from django.utils import timezone

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
from emotions.models import IngestWatermark, MinuteRollup, Observation
from festival import aws
from festival.models import Festival
from stages.models import Set, Stage

log = logging.getLogger(__name__)

# Items captured this long before the watermark are read again, for late arrivals.
DEFAULT_OVERLAP_MS = 10 * 60 * 1000
_deserializer = TypeDeserializer()


@dataclass
class IngestResult:
    stage_id: int
    read: int = 0
    created: int = 0
    skipped_invalid: int = 0
    watermark_ms: int = 0


def fetch_items(table: str, festival: Festival, stage: Stage, since_ms: int, dynamodb=None):
    """Every observation item of a stage captured at or after `since_ms`, oldest first."""
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


def _as_row(item: dict, stage: Stage, devices: dict[str, int]) -> Observation:
    scores = normalise_scores({k: float(v) for k, v in item["emotions"].items()})
    captured_ms = int(item["captured_at_ms"])
    fields = {name.lower(): scores[name] for name in EMOTIONS}
    top = str(item.get("top_emotion", ""))
    if top not in TOP_EMOTIONS:  # UNKNOWN: a face counted without an expression read
        raise ContractError(f"top_emotion {top!r} is not in the taxonomy")
    return Observation(
        organization_id=stage.organization_id,
        festival_id=stage.festival_id,
        stage=stage,
        device_id=devices.get(str(item.get("device", ""))),
        dynamo_pk=str(item[OBSERVATION_PK]),
        dynamo_sk=str(item[OBSERVATION_SK]),
        captured_at=datetime.fromtimestamp(captured_ms / 1000, tz=UTC),
        source=str(item.get("source", ""))[:16],
        model=str(item.get("model", ""))[:100],
        top_emotion=top,
        face_confidence=float(item.get("face_confidence", 0)),
        **fields,
    )


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
    by_minute: dict[datetime, list[Observation]] = {}
    for row in rows:
        by_minute.setdefault(row.captured_at.replace(second=0, microsecond=0), []).append(row)
    existing = {
        r.minute: r for r in MinuteRollup.objects.filter(stage=stage, minute__in=list(by_minute))
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
    """Other databases (SQLite): look up which keys exist, insert the rest."""
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


def store_items(stage: Stage, items: Iterable[dict], result: IngestResult | None = None):
    """Upsert items into Postgres and the rollups, and advance the stage's watermark — atomically.

    Rows already ingested (same DynamoDB key) are skipped, so the rollups count each face once.
    """
    result = result or IngestResult(stage_id=stage.pk)
    devices = dict(
        Device.objects.filter(festival_id=stage.festival_id).values_list("thing_name", "id")
    )
    rows: list[Observation] = []
    newest_ms = 0
    for item in items:
        result.read += 1
        try:
            row = _as_row(item, stage, devices)
        except (KeyError, TypeError, ValueError, ContractError) as error:
            result.skipped_invalid += 1
            log.warning("skipping malformed observation item %s: %s", item.get("sk"), error)
            continue
        newest_ms = max(newest_ms, int(item["captured_at_ms"]))
        rows.append(row)
    unique = list({row.dynamo_sk: row for row in rows}.values())
    with transaction.atomic():
        watermark, _ = IngestWatermark.objects.select_for_update().get_or_create(
            stage=stage, defaults={"organization_id": stage.organization_id}
        )
        _attach_sets(stage, unique)
        if connection.vendor == "postgresql":
            fresh_rows = _insert_new_rows_postgres(unique)
        else:
            fresh_rows = _insert_new_rows_portable(stage, unique)
        _add_to_rollups(stage, fresh_rows)
        watermark.captured_until_ms = max(watermark.captured_until_ms, newest_ms)
        watermark.last_run_at = timezone.now()
        watermark.last_count = len(fresh_rows)
        watermark.save()
    result.created += len(fresh_rows)
    result.watermark_ms = watermark.captured_until_ms
    return result


def ingest_stage(stage: Stage, *, overlap_ms: int = DEFAULT_OVERLAP_MS, dynamodb=None):
    watermark = IngestWatermark.objects.filter(stage=stage).first()
    since = max(0, (watermark.captured_until_ms if watermark else 0) - overlap_ms)
    festival = stage.festival
    items = fetch_items(festival.table, festival, stage, since, dynamodb=dynamodb)
    return store_items(stage, items)


def active_festivals(today=None):
    """Festivals running now, give or take a day (sets past midnight, time zones)."""
    from datetime import timedelta

    today = today or timezone.now().date()
    return Festival.objects.filter(
        starts_on__lte=today + timedelta(days=1), ends_on__gte=today - timedelta(days=1)
    )


def ingest_active_festivals(*, dynamodb=None) -> list[IngestResult]:
    from emotions.selectors import store_live_ranking

    results = []
    for festival in active_festivals():
        changed = False
        for stage in Stage.objects.filter(festival=festival).select_related("festival"):
            result = ingest_stage(stage, dynamodb=dynamodb)
            changed = changed or result.created > 0
            results.append(result)
        if changed:
            store_live_ranking(festival)  # the fan API serves it without recomputing
    return results
