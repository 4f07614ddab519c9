"""Closeout: DynamoDB items deleted per second, one batch writer against the parallel path.

Run: .venv/bin/python -m bench.bench_closeout  (writes the "closeout" section of results.json)

No AWS here, and moto would measure moto (its in-process scan and batch write cost more CPU than
the round trip they stand for, on two shared cores). So the real botocore DynamoDB client is used
(request building, signing, response parsing all run), and a `before-send` hook answers each
call as DynamoDB would, after ROUND_TRIP_MS, a modelled network round trip to a regional
endpoint: Scan pages of PAGE_ITEMS keys per segment, with LastEvaluatedKey, and BatchWriteItem
with no unprocessed items. The figures therefore say how much of that latency each path overlaps:

- items_deleted_per_s_serial: one scan segment, one batch writer (closeout before this change
  read all keys, then wrote 25 at a time, one call after another);
- items_deleted_per_s_parallel: the shipped settings (SCAN_SEGMENTS, DELETE_WORKERS);
- hours_for_40m_items_*: a three-day festival at 160 crops/s, at those rates. DynamoDB's own
  limit (40,000 write units a second per on-demand table by default) is well above either;
  throttling, if any, comes back as UnprocessedItems and is retried with backoff.
"""

from __future__ import annotations

import os
import time

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagepulse.settings")
os.environ.setdefault("DATABASE_URL", "sqlite:///:memory:")
for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    os.environ.setdefault(name, "testing")
os.environ.pop("AWS_ENDPOINT_URL", None)
django.setup()

import json  # noqa: E402
import threading  # noqa: E402
from datetime import date  # noqa: E402

from botocore.awsrequest import AWSResponse  # noqa: E402
from django.core.management import call_command  # noqa: E402

import awsclients as aws  # noqa: E402
from bench.results import record  # noqa: E402
from festival.models import Festival, Organization  # noqa: E402
from operations import closeout  # noqa: E402
from operations.closeout import Closeout, StepReport  # noqa: E402

ITEMS = int(os.environ.get("BENCH_CLOSEOUT_ITEMS", "40000"))
ROUND_TRIP_MS = 20.0
PAGE_ITEMS = 1000
TABLE = "bench-observations"


class Raw:
    def __init__(self, data: bytes):
        self.data = data

    def stream(self, **_kwargs):
        yield self.data


class ModelledDynamoDB:
    """Answers Scan and BatchWriteItem after a modelled round trip; counts deleted keys."""

    def __init__(self, festival: str):
        self.festival = festival
        self.deleted = 0
        self.lock = threading.Lock()

    def __call__(self, request, **_kwargs):
        time.sleep(ROUND_TRIP_MS / 1000)
        operation = request.headers["X-Amz-Target"].decode().split(".")[-1]
        body = json.loads(request.body)
        if operation == "Scan":
            answer = self.scan(body)
        elif operation == "BatchWriteItem":
            with self.lock:
                self.deleted += sum(len(r) for r in body["RequestItems"].values())
            answer = {"UnprocessedItems": {}}
        else:
            raise AssertionError(operation)
        data = json.dumps(answer).encode()
        return AWSResponse(
            request.url, 200, {"Content-Type": "application/x-amz-json-1.0"}, Raw(data)
        )

    def scan(self, body: dict) -> dict:
        segment, total = body["Segment"], body["TotalSegments"]
        mine = range(segment, ITEMS, total)
        start = int(body.get("ExclusiveStartKey", {}).get("sk", {}).get("S", "-1")) + 1
        chosen = [i for i in mine[start : start + PAGE_ITEMS]]
        page = {
            "Items": [
                {"pk": {"S": f"{self.festival}/stage-{i % 4}"}, "sk": {"S": f"{i:013d}"}}
                for i in chosen
            ],
            "Count": len(chosen),
            "ScannedCount": len(chosen),
        }
        if start + PAGE_ITEMS < len(mine):
            page["LastEvaluatedKey"] = {"pk": {"S": "x"}, "sk": {"S": str(start + PAGE_ITEMS - 1)}}
        return page


def _run(festival: Festival, segments: int, workers: int) -> float:
    closeout.SCAN_SEGMENTS, closeout.DELETE_WORKERS = segments, workers
    service = ModelledDynamoDB(festival.slug)

    def client(name: str):
        made = aws.client(name)
        if name == "dynamodb":
            made.meta.events.register("before-send.dynamodb", service)
        return made

    job = Closeout(festival, client=client)
    report = StepReport("observations")
    started = time.perf_counter()
    job.observations(report)
    elapsed = time.perf_counter() - started
    assert not report.errors and service.deleted == ITEMS == job.removed[closeout.DDB_ITEMS]
    return ITEMS / elapsed


def main() -> dict:
    call_command("migrate", verbosity=0)
    organization = Organization.objects.create(name="Bench", slug="bench")
    festival = Festival.objects.create(
        organization=organization,
        name="Bench",
        slug="bench-fest",
        starts_on=date(2026, 7, 10),
        ends_on=date(2026, 7, 12),
        observations_table=TABLE,
    )
    shipped = (closeout.SCAN_SEGMENTS, closeout.DELETE_WORKERS)
    rates = {
        label: _run(festival, segments, workers)
        for label, (segments, workers) in {"serial": (1, 1), "parallel": shipped}.items()
    }
    figures = {
        "items": ITEMS,
        "service": "botocore client, DynamoDB answers modelled (no moto, no AWS)",
        "modelled_round_trip_ms": ROUND_TRIP_MS,
        "scan_segments": shipped[0],
        "delete_workers": shipped[1],
        "items_deleted_per_s_serial": round(rates["serial"]),
        "items_deleted_per_s_parallel": round(rates["parallel"]),
        "parallel_speedup": round(rates["parallel"] / rates["serial"], 1),
        "hours_for_40m_items_serial": round(40e6 / rates["serial"] / 3600, 1),
        "hours_for_40m_items_parallel": round(40e6 / rates["parallel"] / 3600, 1),
    }
    print(record("closeout", figures))
    return figures


if __name__ == "__main__":
    main()
