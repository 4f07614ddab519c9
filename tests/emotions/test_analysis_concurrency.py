"""The analyzer keeps up and loses nothing (issue 12): I/O overlaps, workers run side by side, a
SIGKILL mid-batch loses no crop, an SQS read timeout is retried, and memory stays bounded."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from botocore.config import Config
from PIL import Image

import awsclients as festival_aws
from analyzer.analyzer import Analyzer
from analyzer.backends import LocalBackend
from analyzer.events import crops_from_s3_event
from analyzer.worker import run_worker
from edge_package.emotion_model import EmotionClassifier

from .moto_server import StallingProxy, create_stack, moto_server
from .test_analysis_support import (
    BUCKET,
    TABLE,
    all_items,
    analyzer_stack,
    jpeg_bytes,
    key_for,
    local_analyzer,
    put_crop,
    s3_event,
    s3_record,
    settings,
)

REPO = Path(__file__).resolve().parents[2]
QUEUE = "stagepulse-analyzer"


@pytest.fixture
def aws(moto_aws):
    return analyzer_stack()


@pytest.fixture(scope="module")
def server():
    with moto_server() as url:
        yield url


def upload(made: dict, queue_url: str, count: int) -> list[str]:
    """`count` crops in the bucket and their S3 events on the queue, as edge and S3 leave them."""
    keys, entries = [], []
    for i in range(count):
        key = key_for(i, device=f"cam-{i % 4}")
        data = jpeg_bytes(96, 96, seed=i)
        made["s3"].put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg")
        entries.append({"Id": str(i % 10), "MessageBody": json.dumps(s3_event(s3_record(key)))})
        keys.append(key)
        if len(entries) == 10:
            made["sqs"].send_message_batch(QueueUrl=queue_url, Entries=entries)
            entries = []
    if entries:
        made["sqs"].send_message_batch(QueueUrl=queue_url, Entries=entries)
    return keys


def item_count(made: dict) -> int:
    return made["dynamodb"].scan(TableName=TABLE, Select="COUNT")["Count"]


def queue_depth(made: dict, queue_url: str) -> int:
    attrs = made["sqs"].get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(v) for v in attrs.values())


def analyzer_on(made: dict) -> Analyzer:
    """Its own model: a TFLite interpreter must not be shared by two workers' threads."""
    return Analyzer(
        settings=settings(),
        backend=LocalBackend(EmotionClassifier()),
        s3=made["s3"],
        dynamodb=made["dynamodb"],
        cloudwatch=made["cloudwatch"],
    )


def test_downloads_overlap_so_per_crop_latency_does_not_bound_a_batch(aws):
    """32 crops behind a 100 ms GET each: one after another, the waits alone take 3.2 s."""
    records = [put_crop(aws, key_for(i), jpeg_bytes(seed=i)) for i in range(32)]
    real = aws.s3
    lock = threading.Lock()
    in_flight = {"now": 0, "peak": 0}

    class FarAway:
        def __getattr__(self, name):
            return getattr(real, name)

        def get_object(self, **kwargs):
            with lock:
                in_flight["now"] += 1
                in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
            time.sleep(0.1)
            try:
                return real.get_object(**kwargs)
            finally:
                with lock:
                    in_flight["now"] -= 1

    analyzer = local_analyzer(aws)
    analyzer.s3 = FarAway()
    start = time.perf_counter()
    report = analyzer.process(*crops_from_s3_event(s3_event(*records)))
    elapsed = time.perf_counter() - start
    assert report.faces_written == 32 and len(all_items(aws)) == 32
    assert in_flight["peak"] >= 4  # GETs overlap...
    assert elapsed < 32 * 0.1  # ...so the batch takes less than its crops' waits added up


def test_an_sqs_read_timeout_is_retried_with_backoff_and_the_worker_carries_on(server):
    """It used to exit on the first ReadTimeoutError, which stopped all analysis."""
    made, queue_url = create_stack(server, BUCKET, TABLE, QUEUE)
    upload(made, queue_url, 3)
    proxy = StallingProxy(int(server.rsplit(":", 1)[1]), stall=4)
    try:
        sqs = festival_aws.client(
            "sqs",
            endpoint_url=f"http://127.0.0.1:{proxy.port}",
            region_name="eu-west-1",
            config=Config(
                read_timeout=0.5,
                connect_timeout=1,
                retries={"max_attempts": 1, "mode": "standard"},
            ),
        )
        stats = run_worker(
            queue_url,
            analyzer=analyzer_on(made),
            sqs=sqs,
            wait_time_s=0,
            batch_window_s=0,
            max_messages=3,
            backoff_base_s=0.05,
        )
    finally:
        proxy.close()
    assert stats.receive_errors >= 2  # one per stalled receive, or per pair of connections
    assert stats.received == 3 and stats.deleted == 3
    assert item_count(made) == 3 and queue_depth(made, queue_url) == 0


def test_two_workers_side_by_side_count_every_crop_once(server):
    made, queue_url = create_stack(server, BUCKET, TABLE, QUEUE)
    # Five batches of 16: enough that both workers take part. moto's SQS walks every message
    # left on each receive, so its server's CPU grows with the square of the queue's length.
    upload(made, queue_url, 80)
    results = []

    def work():
        results.append(
            run_worker(
                queue_url,
                analyzer=analyzer_on(made),
                sqs=made["sqs"],
                batch_size=16,
                batch_window_s=0,
                wait_time_s=1,
                idle_exit=True,
            )
        )

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert len(results) == 2
    assert all(stats.received > 0 for stats in results)  # both took part
    assert sum(stats.faces_written for stats in results) == 80  # no face written twice
    assert item_count(made) == 80 and queue_depth(made, queue_url) == 0


def worker_process(server: str, queue_url: str) -> subprocess.Popen:
    """`run_worker` in its own process, configured from the environment as in production."""
    env = {
        **os.environ,
        "AWS_ENDPOINT_URL": server,
        "STAGEPULSE_ANALYZER_BACKEND": "local",
        "STAGEPULSE_OBSERVATIONS_TABLE": TABLE,
        "STAGEPULSE_ANALYZER_QUEUE_URL": queue_url,
        "PYTHONPATH": str(REPO),
    }
    code = (
        "from analyzer.worker import run_worker\n"
        "run_worker(batch_size=16, batch_window_s=0.2, wait_time_s=1, visibility_timeout_s=4,"
        " handle_signals=True)\n"
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_for(condition, timeout_s: float, step_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step_s)
    return condition()


CROPS = 100


def test_a_worker_killed_with_sigkill_mid_batch_then_restarted_loses_nothing(server):
    made, queue_url = create_stack(server, BUCKET, TABLE, QUEUE)
    # 100 crops, batches of 16: killed once 20 are written, the worker dies with most of them
    # still queued or in flight (300 cost ~20 s more CPU, most of it moto's server, for the same
    # behaviour).
    keys = upload(made, queue_url, CROPS)
    first = worker_process(server, queue_url)
    try:
        assert wait_for(lambda: item_count(made) >= 20, 60), "the worker wrote nothing"
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=10)
    killed_at = item_count(made)
    assert killed_at < CROPS, "the kill came too late to be mid-run"
    second = worker_process(server, queue_url)
    try:
        assert wait_for(lambda: item_count(made) >= CROPS, 120, step_s=0.5)
        assert wait_for(lambda: queue_depth(made, queue_url) == 0, 30, step_s=0.5)
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0  # a clean stop on SIGTERM
    assert item_count(made) == CROPS  # every crop uploaded, exactly once
    listed = made["s3"].list_objects_v2(Bucket=BUCKET, Prefix="faces/").get("KeyCount", 0)
    assert listed == 0 and len(keys) == CROPS  # and every crop deleted after analysis


MEMORY_SCRIPT = r"""
import io, json, resource, sys
resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))  # guard the shared machine
import boto3
from moto import mock_aws
from PIL import Image
from edge_package.contracts import build_crop_key, observation_table_definition
from edge_package.emotion_model import EmotionClassifier
from analyzer.analyzer import Analyzer
from analyzer.backends import LocalBackend
from analyzer.config import AnalyzerSettings
from analyzer.events import CropRef

side = 4096  # the largest crop the analyzer accepts (max_crop_side_px)
gradient = Image.linear_gradient("L").resize((side, side))
buffer = io.BytesIO()
Image.merge("RGB", (gradient, gradient.transpose(Image.Transpose.ROTATE_90), gradient)).save(
    buffer, format="JPEG", quality=90)
data = buffer.getvalue()
del gradient
with mock_aws():
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(
        Bucket="crops-b", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(**observation_table_definition("t"))
    refs = []
    for i in range(64):
        key = build_crop_key("f", "s", "cam", 1751371200000 + i, i)
        s3.put_object(Bucket="crops-b", Key=key, Body=data)
        refs.append(CropRef("crops-b", key, len(data)))
    analyzer = Analyzer(
        settings=AnalyzerSettings(backend="local", table_name="t"),
        backend=LocalBackend(EmotionClassifier()),
        s3=s3, dynamodb=ddb, cloudwatch=boto3.client("cloudwatch", region_name="eu-west-1"))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = analyzer.process(refs)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"written": report.faces_written, "bytes": len(data),
                  "peak_rss_kb": peak, "before_kb": before}))
"""


def test_a_batch_of_64_of_the_largest_crops_fits_in_1_gb():
    """Every crop used to be decoded at full size before any was analyzed (~65 MB each)."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["written"] == 64
    assert figures["peak_rss_kb"] < 1024 * 1024, figures  # the whole process, model included


def test_decoded_crops_are_capped_in_pixels(aws):
    big = io.BytesIO()
    Image.linear_gradient("L").resize((3000, 2000)).convert("RGB").save(big, format="JPEG")
    analyzer = local_analyzer(aws)
    image = analyzer._decode(big.getvalue())
    assert max(image.size) <= analyzer.settings.analysis_side_px
    assert image.mode == "RGB" and abs(image.width / image.height - 1.5) < 0.02
