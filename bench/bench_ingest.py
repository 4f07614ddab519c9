"""ingest: the stream path's read cost per observation, and the database side's throughput.

1. `items_read_per_observation` (target ≤ 1.2): a moto DynamoDB table with its NEW_IMAGE stream,
   4 cameras on 2 stages writing in rounds as the analyzer would — live crops, crops 15 min and
   2 h late, replays of the same item (duplicate deliveries, refused by the conditional put) —
   with `ingest_streams()` after every round, as the beat task runs it. Stream records read
   divided by observations created. The former path (Query of each stage's last 10 minutes per
   run) read about 100 items per new observation in the demo.
2. `observations_per_s`: `store_items` on 50,000 pre-built deserialized items (rows + minute
   rollups + freshness, one transaction per 5,000), moto apart.
"""

from __future__ import annotations

import os
import time

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stagepulse_bench"
)
TOTAL = int(os.environ.get("BENCH_INGEST_ITEMS", 50_000))
BATCH = 5_000
ROUNDS = int(os.environ.get("BENCH_INGEST_ROUNDS", 20))
PER_ROUND = int(os.environ.get("BENCH_INGEST_PER_ROUND", 100))


def world(slug: str, starts_on, days: int = 2):
    from datetime import timedelta

    from devices.models import Device
    from festival.models import Festival, Organization
    from stages.models import Stage

    org = Organization.objects.create(name=slug.title(), slug=slug)
    festival = Festival.objects.create(
        organization=org,
        name=slug.title(),
        slug=slug,
        starts_on=starts_on,
        ends_on=starts_on + timedelta(days=days),
    )
    stages = []
    for name in ("main", "tent"):
        stage = Stage.objects.create(organization=org, festival=festival, name=name, slug=name)
        stages.append(stage)
        for camera in range(2):
            Device.objects.create(
                organization=org,
                festival=festival,
                stage=stage,
                name=f"{name} {camera}",
                thing_name=f"{slug}-{name}-cam{camera}",
            )
    return festival, stages


def measure_stream() -> dict:
    """Rounds of analyzer writes, each followed by one ingest run, against moto with streams."""
    import boto3
    from django.utils import timezone
    from moto import mock_aws

    from edge_package.contracts import (
        CropKey,
        build_observation_item,
        observation_table_definition,
        to_dynamodb,
    )
    from emotions.models import Observation
    from emotions.services import IngestResult, ingest_streams

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    festival, stages = world("bench-live", timezone.localdate())
    table_name = festival.table
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        streams = boto3.client("dynamodbstreams", region_name="eu-west-1")
        client.create_table(**observation_table_definition(table_name))
        table = boto3.resource("dynamodb", region_name="eu-west-1").Table(table_name)
        total = IngestResult()
        seq = 0
        written = conditional_refused = 0
        ingest_s = 0.0
        for _round in range(ROUNDS):
            now_ms = int(time.time() * 1000)
            for i in range(PER_ROUND):
                seq += 1
                stage = stages[i % 2]
                lateness_ms = 2 * 3600_000 if i % 25 == 0 else 15 * 60_000 if i % 10 == 0 else 1_500
                crop = CropKey(
                    festival.slug,
                    stage.slug,
                    f"{festival.slug}-{stage.slug}-cam{(i // 2) % 2}",
                    now_ms - lateness_ms - i,
                    seq,
                )
                item = to_dynamodb(
                    build_observation_item(
                        crop=crop,
                        face_index=0,
                        scores={"HAPPY": (seq * 7) % 100, "CALM": (seq * 3) % 100},
                        face_confidence=99.0,
                        source="local",
                        analyzed_at_ms=now_ms,
                    )
                )
                for _attempt in range(2 if i % 20 == 0 else 1):  # duplicate SQS deliveries
                    try:
                        table.put_item(Item=item, ConditionExpression="attribute_not_exists(pk)")
                        written += 1
                    except table.meta.client.exceptions.ConditionalCheckFailedException:
                        conditional_refused += 1
            started = time.perf_counter()
            total.merge(ingest_streams(dynamodb=client, streams=streams))
            ingest_s += time.perf_counter() - started
        idle = ingest_streams(dynamodb=client, streams=streams)  # nothing new: reads nothing
        total.merge(idle)
    stored = Observation.objects.filter(festival=festival).count()
    assert stored == written == total.created, (stored, written, total.created)
    return {
        "items_read_per_observation": round(total.read / max(total.created, 1), 3),
        "stream_records_read": total.read,
        "stream_observations_created": total.created,
        "stream_items_written": written,
        "stream_lost": written - stored,
        "stream_duplicate_deliveries_refused_by_put": conditional_refused,
        "stream_rounds": ROUNDS + 1,
        "stream_pages": total.pages,
        "stream_ingest_ms_per_round": round(1000 * ingest_s / ROUNDS, 1),
        "stream_idle_run_records_read": idle.read,
        "stream_late_items_share": 0.14,  # i % 10 == 0 (15 min) or i % 25 == 0 (2 h)
    }


def measure_store() -> dict:
    from datetime import date

    from edge_package.contracts import CropKey, build_observation_item
    from emotions.models import Observation
    from emotions.services import store_items

    festival, stages = world("bench", date(2026, 7, 10))
    stage = stages[0]
    start_ms = 1_783_700_000_000
    items = []
    for i in range(TOTAL):
        crop = CropKey("bench", "main", f"bench-main-cam{i % 2}", start_ms + i * 40, i)
        item = build_observation_item(
            crop=crop,
            face_index=0,
            scores={"HAPPY": (i * 7) % 100, "CALM": (i * 3) % 100},
            face_confidence=99.0,
            source="local",
            analyzed_at_ms=start_ms + i * 40 + 500,
        )
        items.append(item)
    started = time.perf_counter()
    for offset in range(0, TOTAL, BATCH):
        result = store_items(stage, items[offset : offset + BATCH])
        assert result.created == len(items[offset : offset + BATCH]), result
    elapsed = time.perf_counter() - started
    assert Observation.objects.filter(festival=festival).count() == TOTAL
    replay_started = time.perf_counter()
    store_items(stage, items[:BATCH])  # a replay: everything already there
    replay_elapsed = time.perf_counter() - replay_started
    return {
        "observations_per_s": round(TOTAL / elapsed, 1),
        "items": TOTAL,
        "batch": BATCH,
        "replay_items_per_s": round(BATCH / replay_elapsed, 1),
        "target_observations_per_s": 10_000,
    }


def main() -> int:
    from bench.database import start_django_on

    start_django_on(BENCH_DB)
    from bench.results import record

    figures = record(
        "ingest",
        {
            **measure_stream(),
            **measure_store(),
            "database": "PostgreSQL (local, 127.0.0.1)",
            "target_items_read_per_observation": 1.2,
            "method": (
                f"items_read_per_observation: {ROUNDS} rounds of {PER_ROUND} analyzer writes "
                "(4 cameras, 2 stages; 14 % 15 min or 2 h late; 5 % delivered twice) into moto "
                "DynamoDB with a NEW_IMAGE stream, ingest_streams() after each round and once "
                "more idle; stream records read / observations created. observations_per_s: "
                "store_items() on pre-built deserialized items, moto apart"
            ),
        },
    )
    print(figures)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
