"""pipeline.*: the demo topology held for ten minutes: does it keep up, and does it lose anything?

Runs `manage.py run_demo` (moto server with the stack deployed, web, Celery worker and beat, the
analyzer worker with the local model, four simulated cameras running the real edge_package at the
demo's rate) for `BENCH_PIPELINE_S` seconds (default 600) on a throwaway SQLite database, then
lets it stop as Ctrl-C does (cameras first, the queue drained, a last ingest). Meanwhile, every
second:

1. it reads the new observation rows from the SQLite file (read-only): each row is "in the
   database" from that moment (an upper bound on its commit time);
2. it asks `GET /api/v1/public/festivals/pulse-2026/live/`: a row is *visible* at the first answer
   whose `generated_at` is not earlier than the moment the row was in the database, and whose
   stage shows a number (a stage held back under `min_faces` hides its rows);
3. every other second, it reads the analysis queue's depth (waiting + in flight) from moto.

freshness = when a row became visible − its `captured_at` (camera and bench share one clock).
`freshness_p95_s_last_minute` takes the rows captured in the last minute before the cameras
stopped: if the analyzer or the ingest fell behind, this is where it shows.

`crops_uploaded` is the sum of the cameras' own upload counters (each prints a JSON summary when it
stops); `lost` = crops uploaded − observation rows after the drain (one face per crop with the
local model) − the crops the edge-mode camera sent for the demo's comparison run (each becomes a
comparison pair, not an observation), which must be 0. `crops_left_in_s3` must be 0 too: crops
are deleted after analysis.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

from bench.bench_freshness import (
    FESTIVAL,
    finished_demo,
    parse_time,
    percentile,
    start_demo,
    stop_demo,
)

ROOT = Path(__file__).resolve().parent.parent
PIPELINE_SECONDS = int(os.environ.get("BENCH_PIPELINE_S", 600))
CAMERA_FPS = float(os.environ.get("BENCH_PIPELINE_CAMERA_FPS", 2.0))
SET_MINUTES = 4
POLL_S = 1.0
QUEUE_EVERY_S = 2.0
ANALYZED_EVERY_S = 30.0
DRAIN_GRACE_S = 300  # stop + drain + last ingest


def parse_generated_at(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def aws_client(service: str, moto_port: int):
    import boto3

    return boto3.client(
        service,
        endpoint_url=f"http://127.0.0.1:{moto_port}",
        region_name="eu-west-1",
        aws_access_key_id="demo",
        aws_secret_access_key="demo",
    )


class QueueProbe:
    """Depth of the analysis queue (waiting + in flight), read from moto."""

    def __init__(self, moto_port: int):
        self.moto_port = moto_port
        self.client = None
        self.url = ""
        self.depths: list[int] = []

    def sample(self) -> None:
        try:
            if not self.url:
                self.client = aws_client("sqs", self.moto_port)
                urls = self.client.list_queues().get("QueueUrls", [])
                chosen = [u for u in urls if "analysis" in u and not u.endswith("-dlq")]
                if not chosen:
                    return
                self.url = chosen[0]
            attributes = self.client.get_queue_attributes(
                QueueUrl=self.url,
                AttributeNames=[
                    "ApproximateNumberOfMessages",
                    "ApproximateNumberOfMessagesNotVisible",
                ],
            )["Attributes"]
            self.depths.append(sum(int(v) for v in attributes.values()))
        except Exception:  # noqa: BLE001 - moto not up yet, or already stopped
            return


class Tracker:
    """When each observation row reached the database, and when /live first showed it."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self.db: sqlite3.Connection | None = None
        self.last_id = 0
        # id -> [captured_at, stage slug, in database at, visible at or None]
        self.rows: dict[int, list] = {}
        self.pending: list[int] = []
        self.answers = 0
        self.first_answer_at: float | None = None

    def read_new_rows(self, now: float) -> None:
        if self.db is None:
            if not self.db_path.exists():
                return
            self.db = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True, timeout=10)
        try:
            found = self.db.execute(
                "SELECT o.id, o.captured_at, s.slug, o.dynamo_sk FROM emotions_observation o "
                "JOIN stages_stage s ON s.id = o.stage_id WHERE o.id > ? ORDER BY o.id",
                (self.last_id,),
            ).fetchall()
        except sqlite3.OperationalError:  # not migrated yet, or busy
            return
        for obs_id, captured_at, stage, sk in found:
            self.rows[obs_id] = [parse_time(captured_at), stage, now, None, sk]
            self.pending.append(obs_id)
            self.last_id = max(self.last_id, obs_id)

    def see(self, payload: dict, answered_at: float) -> None:
        self.answers += 1
        if self.first_answer_at is None:
            self.first_answer_at = answered_at
        generated = parse_generated_at(payload["generated_at"])
        stages = payload.get("stages", [])
        shown = {row["stage"]["slug"] for row in stages if row.get("faces") is not None}
        still = []
        for obs_id in self.pending:
            row = self.rows[obs_id]
            if generated >= row[2] and row[1] in shown:
                row[3] = answered_at
            else:
                still.append(obs_id)
        self.pending = still


def poll_live(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response) if response.status == 200 else None
    except (OSError, ValueError):
        return None


def camera_uploads(log_text: str) -> tuple[int, int]:
    """(sum of the cameras' `uploads`, how many cameras printed a summary)."""
    total = cameras = 0
    for line in log_text.splitlines():
        match = re.search(r"\| (\{.*\"uploads\".*\})\s*$", line)
        if not match:
            continue
        try:
            summary = json.loads(match.group(1))
        except ValueError:
            continue
        total += int(summary.get("uploads", 0))
        cameras += 1
    return total, cameras


class AnalyzedTimes:
    """sk -> when the analyzer wrote the item (`analyzed_at_ms`), fetched from moto while the demo
    runs, by key, for the rows already in the database: each row is read once, so an hour's run
    costs moto no more per minute than a minute's, and the figures exist before moto stops."""

    BATCH = 100  # BatchGetItem's limit

    def __init__(self, moto_port: int):
        self.moto_port = moto_port
        self.client = None
        self.table = ""
        self.found: dict[str, float] = {}
        self.asked: set[str] = set()

    def fetch(self, rows) -> None:
        try:
            if not self.table:
                self.client = aws_client("dynamodb", self.moto_port)
                tables = [t for t in self.client.list_tables()["TableNames"] if "observations" in t]
                if not tables:
                    return
                self.table = tables[0]
            wanted = [(stage, sk) for _, stage, _, _, sk in rows if sk and sk not in self.asked]
            for i in range(0, len(wanted), self.BATCH):
                chunk = wanted[i : i + self.BATCH]
                keys = [
                    {"pk": {"S": f"{FESTIVAL}/{stage}"}, "sk": {"S": sk}} for stage, sk in chunk
                ]
                request = {self.table: {"Keys": keys, "ProjectionExpression": "sk, analyzed_at_ms"}}
                while request:
                    answer = self.client.batch_get_item(RequestItems=request)
                    for item in answer["Responses"].get(self.table, []):
                        if "analyzed_at_ms" in item:
                            self.found[item["sk"]["S"]] = int(item["analyzed_at_ms"]["N"]) / 1000
                    request = answer.get("UnprocessedKeys") or None
                self.asked.update(sk for _, sk in chunk)
        except Exception:  # noqa: BLE001 - moto not up yet, or already stopped: try again later
            return


def breakdown(rows, analyzed: dict[str, float]) -> dict[str, float | None]:
    """p50 and p95 of each leg of freshness, over the rows with all four times."""
    legs: dict[str, list[float]] = {
        "capture_to_analyzed": [],
        "analyzed_to_db": [],
        "db_to_visible": [],
    }
    for captured, _, in_db, visible, sk in rows:
        if visible is None or sk not in analyzed:
            continue
        legs["capture_to_analyzed"].append(analyzed[sk] - captured)
        legs["analyzed_to_db"].append(in_db - analyzed[sk])
        legs["db_to_visible"].append(visible - in_db)
    return {
        f"{name}_p{q}_s": percentile(values, q) for name, values in legs.items() for q in (50, 95)
    }


def crops_left(moto_port: int) -> int | None:
    try:
        s3 = aws_client("s3", moto_port)
        left = 0
        for bucket in s3.list_buckets()["Buckets"]:
            if "crops" in bucket["Name"]:
                pages = s3.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket["Name"], Prefix="faces/"
                )
                left += sum(page.get("KeyCount", 0) for page in pages)
        return left
    except Exception:  # noqa: BLE001 - moto already stopped
        return None


def edge_comparison_pairs(db_path: Path) -> int:
    """Crops an edge-mode camera sent for the demo's comparison run: each becomes one comparison
    pair and no observation (the camera wrote its own scores), so `lost` leaves them out."""
    with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
        return db.execute(
            "SELECT COUNT(*) FROM emotions_comparisonreading WHERE mode = 'edge'"
        ).fetchone()[0]


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.results import figures_of_others, record

    started = time.monotonic()
    # BENCH_PIPELINE_DIR keeps the demo's folder (its log, database, broker) for a post-mortem
    keep = os.environ.get("BENCH_PIPELINE_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
    with (
        contextlib.nullcontext(keep)
        if keep
        else tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp
    ):
        demo, db_path, web_port, moto_port, log_path = start_demo(
            Path(tmp),
            PIPELINE_SECONDS,
            "--set-minutes",
            str(SET_MINUTES),
            "--camera-fps",
            str(CAMERA_FPS),
        )
        url = f"http://127.0.0.1:{web_port}/api/v1/public/festivals/{FESTIVAL}/live/"
        tracker, queue = Tracker(db_path), QueueProbe(moto_port)
        cameras_stopped_at = None
        left_in_s3 = None
        analyzed = AnalyzedTimes(moto_port)
        next_queue = next_analyzed = 0.0
        try:
            while demo.poll() is None:
                tick = time.monotonic()
                if tick - started > PIPELINE_SECONDS + 240 + DRAIN_GRACE_S:
                    raise SystemExit("the demo did not stop in time")
                tracker.read_new_rows(time.time())
                payload = poll_live(url)
                if payload is not None:
                    tracker.see(payload, time.time())
                if tick >= next_queue:
                    queue.sample()
                    next_queue = tick + QUEUE_EVERY_S
                if tick >= next_analyzed:
                    analyzed.fetch(tracker.rows.values())
                    next_analyzed = tick + ANALYZED_EVERY_S
                if cameras_stopped_at is None:
                    text = log_path.read_text(errors="replace")
                    if "stopping the cameras" in text:
                        cameras_stopped_at = time.time()
                elif left_in_s3 is None:
                    text = log_path.read_text(errors="replace")
                    if "queue drained" in text or "crops left in the queue" in text:
                        left_in_s3 = crops_left(moto_port)
                        analyzed.fetch(tracker.rows.values())
                time.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))
        finally:
            stop_demo(demo)
        log_text, in_db = finished_demo(demo, log_path, db_path)
        edge_pairs = edge_comparison_pairs(db_path)
        if tracker.db is not None:
            tracker.db.close()
    elapsed = time.monotonic() - started

    uploaded, cameras = camera_uploads(log_text)
    # the demo stops early (and says so) when one of its processes exits: the run is shorter
    early = re.search(r"stopping: (.+) exited", log_text)
    if early:
        print(log_text[-6000:], file=sys.stderr)
    visible = [(row[3] - row[0], row[0]) for row in tracker.rows.values() if row[3] is not None]
    if not visible:
        print(log_text[-4000:], file=sys.stderr)
        raise SystemExit("no observation ever became visible in /live")
    freshness = [f for f, _ in visible]
    end = cameras_stopped_at or max(captured for _, captured in visible)
    last_minute = [f for f, captured in visible if captured >= end - 60]
    # p95 per minute of capture since the first row: a slow start and a slow drift look different
    first = min(captured for _, captured in visible)
    by_minute: dict[int, list[float]] = {}
    for f, captured in visible:
        by_minute.setdefault(int((captured - first) // 60), []).append(f)
    sustained = (cameras_stopped_at or time.time()) - (tracker.first_answer_at or time.time())
    depths = queue.depths or [0]
    figures = record(
        "pipeline",
        {
            # bench_facefree's figures live in this section too: a rerun here keeps them
            **figures_of_others("pipeline", lambda key: key.startswith("facefree_")),
            "sustained_s": round(sustained, 1),
            "demo_stopped_early": early.group(1) if early else None,
            "crops_uploaded": uploaded,
            "cameras_reporting": cameras,
            "observations_in_db": in_db,
            "comparison_edge_crops": edge_pairs,
            "lost": uploaded - in_db - edge_pairs,
            "crops_left_in_s3": left_in_s3,
            "queue_depth_max": max(depths),
            "queue_depth_p95": percentile([float(d) for d in depths], 95),
            "queue_samples": len(queue.depths),
            "freshness_p50_s": percentile(freshness, 50),
            "freshness_p95_s": percentile(freshness, 95),
            "freshness_max_s": round(max(freshness), 2),
            "freshness_p95_s_last_minute": percentile(last_minute, 95),
            "freshness_breakdown": breakdown(tracker.rows.values(), analyzed.found),
            "freshness_p95_s_by_minute": [percentile(by_minute[m], 95) for m in sorted(by_minute)],
            "observations_visible": len(visible),
            "observations_visible_last_minute": len(last_minute),
            "never_visible": in_db - len(visible),
            "target_freshness_p95_s": 10,
            "poll_interval_s": POLL_S,
            "camera_fps": CAMERA_FPS,
            "demo_s": PIPELINE_SECONDS,
            "bench_wall_s": round(elapsed, 1),
            "method": (
                "run_demo on SQLite (moto, web, Celery worker+beat, analyzer worker with the local "
                "model, 4 simulated cameras); every 1 s new observation rows are read from the "
                "database and /live is polled; a row is visible at the first answer generated "
                "after it was in the database whose stage shows a number; never_visible = rows "
                "of stages held under min_faces and rows of the last ingest after the web stopped"
            ),
        },
    )
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
