"""ingest.observations_per_s: DynamoDB-shaped items into PostgreSQL (rows + rollups + watermark).

The database side is measured apart from moto: items are built once in memory in exactly the
shape `fetch_items` yields (deserialized DynamoDB items), then `store_items` — the code the ingest
task runs — is timed in batches of 5,000 (one transaction each, as one ingest run per stage).
moto's query speed is reported separately (`moto_query_items_per_s`), for information only.
"""

from __future__ import annotations

import os
import time

BENCH_DB = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stagepulse_bench"
)
TOTAL = int(os.environ.get("BENCH_INGEST_ITEMS", 50_000))
BATCH = 5_000


def main() -> int:
    from bench.database import start_django_on

    start_django_on(BENCH_DB)
    from datetime import date

    from bench.results import record
    from edge_package.contracts import CropKey, build_observation_item
    from emotions.models import Observation
    from emotions.services import store_items
    from festival.models import Festival, Organization
    from stages.models import Stage

    org = Organization.objects.create(name="Bench", slug="bench")
    festival = Festival.objects.create(
        organization=org,
        name="Bench",
        slug="bench",
        starts_on=date(2026, 7, 10),
        ends_on=date(2026, 7, 12),
    )
    stage = Stage.objects.create(organization=org, festival=festival, name="Main", slug="main")
    start_ms = 1_783_700_000_000
    items = []
    for i in range(TOTAL):
        crop = CropKey("bench", "main", f"cam-{i % 4}", start_ms + i * 40, i)
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
        store_items(stage, items[offset : offset + BATCH])
    elapsed = time.perf_counter() - started
    assert Observation.objects.count() == TOTAL
    replay_started = time.perf_counter()
    store_items(stage, items[:BATCH])  # a replay: everything already there
    replay_elapsed = time.perf_counter() - replay_started

    moto_rate = measure_moto_query()
    figures = record(
        "ingest",
        {
            "observations_per_s": round(TOTAL / elapsed, 1),
            "items": TOTAL,
            "batch": BATCH,
            "database": "PostgreSQL (local, 127.0.0.1)",
            "replay_items_per_s": round(BATCH / replay_elapsed, 1),
            "moto_query_items_per_s": moto_rate,
            "method": "store_items() timed on pre-built deserialized DynamoDB items; moto apart",
            "target_observations_per_s": 10_000,
        },
    )
    print(figures)
    return 0


def measure_moto_query(count: int = 2000) -> float:
    import boto3
    from moto import mock_aws

    from edge_package.contracts import (
        CropKey,
        build_observation_item,
        observation_table_definition,
        to_dynamodb,
    )
    from emotions.services import fetch_items
    from festival.models import Festival
    from stages.models import Stage

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**observation_table_definition("bench"))
        table = boto3.resource("dynamodb", region_name="eu-west-1").Table("bench")
        with table.batch_writer() as writer:
            for i in range(count):
                crop = CropKey("bench", "main", "cam", 1_783_700_000_000 + i, i)
                writer.put_item(
                    Item=to_dynamodb(
                        build_observation_item(
                            crop=crop,
                            face_index=0,
                            scores={"HAPPY": 50},
                            face_confidence=99,
                            source="local",
                            analyzed_at_ms=1_783_700_000_000,
                        )
                    )
                )
        festival = Festival.objects.get(slug="bench")
        stage = Stage.objects.get(festival=festival, slug="main")
        started = time.perf_counter()
        read = sum(1 for _ in fetch_items("bench", festival, stage, 0, dynamodb=client))
        return round(read / (time.perf_counter() - started), 1)


if __name__ == "__main__":
    raise SystemExit(main())
