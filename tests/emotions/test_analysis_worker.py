"""The SQS worker: the handler driven by a polling loop; messages deleted only after writes."""

from __future__ import annotations

import json
import signal
import threading

import pytest
from botocore.exceptions import ClientError

from analyzer.worker import run_worker

from .test_analysis_support import (
    all_items,
    analyzer_stack,
    crop_exists,
    jpeg_bytes,
    key_for,
    local_analyzer,
    put_crop,
    queue_depth,
    s3_event,
)

FAST = {"wait_time_s": 0, "batch_window_s": 0, "idle_exit": True}


@pytest.fixture
def aws(moto_aws):
    return analyzer_stack()


def enqueue_crops(aws, count: int, start: int = 0) -> list[str]:
    keys = []
    for i in range(start, start + count):
        key = key_for(i)
        record = put_crop(aws, key, jpeg_bytes(seed=i))
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(s3_event(record)))
        keys.append(key)
    return keys


class Killing:
    """A DynamoDB client that dies (like a killed process) on the n-th write."""

    def __init__(self, real, die_on: int):
        self.real, self.die_on, self.writes = real, die_on, 0

    def put_item(self, **kwargs):
        self.writes += 1
        if self.writes == self.die_on:
            raise SystemExit("worker killed")
        return self.real.put_item(**kwargs)


def test_worker_drains_the_queue_and_deletes_after_writing(aws):
    keys = enqueue_crops(aws, 12)
    stats = run_worker(aws.queue_url, analyzer=local_analyzer(aws), sqs=aws.sqs, **FAST)
    assert stats.received == 12 and stats.deleted == 12 and stats.retried == 0
    assert stats.faces_written == 12 and len(all_items(aws)) == 12
    assert queue_depth(aws) == 0
    assert not any(crop_exists(aws, key) for key in keys)


def test_a_worker_killed_mid_batch_loses_nothing(aws):
    keys = enqueue_crops(aws, 5)
    analyzer = local_analyzer(aws)
    analyzer.dynamodb = Killing(aws.dynamodb, die_on=3)
    with pytest.raises(SystemExit):
        run_worker(aws.queue_url, analyzer=analyzer, sqs=aws.sqs, visibility_timeout_s=0, **FAST)
    # Writes run concurrently, so the others may land before the "kill" stops the batch;
    assert 2 <= len(all_items(aws)) < 5
    assert queue_depth(aws) == 5  # but no message was deleted
    assert all(crop_exists(aws, key) for key in keys)
    # A fresh worker redelivers everything; the two earlier writes count as duplicates.
    stats = run_worker(aws.queue_url, analyzer=local_analyzer(aws), sqs=aws.sqs, **FAST)
    assert stats.received == 5 and stats.deleted == 5
    assert len(all_items(aws)) == 5 and queue_depth(aws) == 0
    assert not any(crop_exists(aws, key) for key in keys)


def test_a_retryable_failure_leaves_only_that_message_in_the_queue(aws):
    keys = enqueue_crops(aws, 4)
    analyzer = local_analyzer(aws)
    real = aws.dynamodb

    class Throttled:
        def put_item(self, **kwargs):
            if kwargs["Item"]["sk"]["S"].split("#")[2] == "2":
                error = {"Error": {"Code": "ProvisionedThroughputExceededException"}}
                raise ClientError(error, "PutItem")
            return real.put_item(**kwargs)

    analyzer.dynamodb = Throttled()
    stats = run_worker(
        aws.queue_url, analyzer=analyzer, sqs=aws.sqs, visibility_timeout_s=60, **FAST
    )
    assert stats.deleted == 3 and stats.retried == 1
    assert queue_depth(aws) == 1 and crop_exists(aws, keys[2])
    assert len(all_items(aws)) == 3


def test_max_messages_stops_the_worker(aws):
    enqueue_crops(aws, 6)
    stats = run_worker(
        aws.queue_url,
        analyzer=local_analyzer(aws),
        sqs=aws.sqs,
        max_messages=2,
        batch_size=2,
        wait_time_s=0,
        batch_window_s=0,
    )
    assert stats.received == 2 and queue_depth(aws) == 4


def test_stop_event_and_sigterm_stop_the_worker_cleanly(aws):
    stop = threading.Event()
    stop.set()
    stats = run_worker(aws.queue_url, analyzer=local_analyzer(aws), sqs=aws.sqs, stop_event=stop)
    assert stats.received == 0

    enqueue_crops(aws, 3)
    analyzer = local_analyzer(aws)
    real_s3 = aws.s3

    class SignalOnFetch:
        """Delivers SIGTERM while the batch is being analyzed, as a deploy would."""

        def __getattr__(self, name):
            return getattr(real_s3, name)

        def get_object(self, **kwargs):
            signal.raise_signal(signal.SIGTERM)
            return real_s3.get_object(**kwargs)

    analyzer.s3 = SignalOnFetch()
    before = signal.getsignal(signal.SIGTERM)
    stats = run_worker(
        aws.queue_url,
        analyzer=analyzer,
        sqs=aws.sqs,
        wait_time_s=0,
        batch_window_s=0,
        handle_signals=True,
    )
    # The batch in hand is finished and acknowledged, then the loop stops instead of polling.
    assert stats.batches == 1 and stats.deleted == stats.received >= 1
    assert signal.getsignal(signal.SIGTERM) == before


def test_worker_needs_a_queue_url():
    from analyzer.config import AnalyzerSettings

    with pytest.raises(ValueError, match="STAGEPULSE_ANALYZER_QUEUE_URL"):
        run_worker(settings=AnalyzerSettings(backend="local"))


def test_one_poison_message_in_a_batch_of_ten_does_not_stop_the_worker(aws):
    """A capture time of digits no date holds used to crash the worker, which then restarted on
    the same messages; now that crop is rejected and the nine others are written."""
    enqueue_crops(aws, 4)
    poison_key = "faces/sunfest/main/cam-1/2025/07/01/12/9999999999999999-99.jpg"
    record = put_crop(aws, poison_key, jpeg_bytes(seed=99))
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(s3_event(record)))
    enqueue_crops(aws, 5, start=4)
    stats = run_worker(aws.queue_url, analyzer=local_analyzer(aws), sqs=aws.sqs, **FAST)
    assert stats.received == 10 and stats.deleted == 10 and stats.batch_errors == 0
    assert len(all_items(aws)) == 9 and queue_depth(aws) == 0
    assert not crop_exists(aws, poison_key)


class CountingSqs:
    """The real (moto) SQS client, counting ReceiveMessage calls."""

    def __init__(self, real):
        self.real, self.receives = real, 0

    def receive_message(self, **kwargs):
        self.receives += 1
        return self.real.receive_message(**kwargs)

    def __getattr__(self, name):
        return getattr(self.real, name)


def test_a_batch_window_waits_for_more_crops_without_hammering_sqs(aws):
    """One crop in the queue and a 0.5 s window: the worker tops the batch up a few times (SQS
    waits whole seconds only) instead of asking again at once until the window closes (it made
    ~100 calls a window, most of the demo's moto CPU, and each call is billed on AWS)."""
    from analyzer.worker import gather

    enqueue_crops(aws, 1)
    sqs = CountingSqs(aws.sqs)
    batch = gather(
        sqs, aws.queue_url, batch_size=32, wait_time_s=0, batch_window_s=0.5,
        visibility_timeout_s=30, stop_event=threading.Event(),
    )  # fmt: skip
    assert len(batch) == 1  # the crop in hand is analyzed when the window closes
    assert sqs.receives <= 8, sqs.receives
