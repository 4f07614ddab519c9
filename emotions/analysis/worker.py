"""SQS worker mode: the Lambda's handler driven by a long-polling loop (embedded mode, no Lambda).

It gathers up to `batch_size` messages (several receives within `batch_window_s`) so that the
Rekognition backend can fill its mosaics, runs the same process_event as the Lambda, and deletes a
message only after its observations are written. A worker killed mid-batch therefore loses
nothing: undeleted messages reappear after the visibility timeout and the conditional writes make
the replay harmless. Messages that failed with a retryable error are left for that redelivery.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from dataclasses import dataclass

from festival.aws import client

from .analyzer import Analyzer
from .config import AnalyzerSettings
from .handler import build_analyzer, process_event

log = logging.getLogger("stagepulse.analysis")

SQS_MAX_PER_RECEIVE = 10
SQS_MAX_WAIT_S = 20


@dataclass
class WorkerStats:
    received: int = 0
    deleted: int = 0
    retried: int = 0
    batches: int = 0
    faces_written: int = 0
    detectfaces_calls: int = 0


def _receive(sqs, queue_url: str, count: int, wait_s: int, visibility_s: int) -> list[dict]:
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(SQS_MAX_PER_RECEIVE, count)),
        WaitTimeSeconds=max(0, min(SQS_MAX_WAIT_S, wait_s)),
        VisibilityTimeout=visibility_s,
    )
    return response.get("Messages", [])


def gather(
    sqs,
    queue_url: str,
    *,
    batch_size: int,
    wait_time_s: int,
    batch_window_s: float,
    visibility_timeout_s: int,
    stop_event: threading.Event,
) -> list[dict]:
    """Long-poll for the first message, then top the batch up for at most batch_window_s."""
    batch: dict[str, dict] = {}
    for message in _receive(sqs, queue_url, batch_size, wait_time_s, visibility_timeout_s):
        batch[message["MessageId"]] = message
    if not batch:
        return []
    deadline = time.monotonic() + batch_window_s
    while len(batch) < batch_size and not stop_event.is_set():
        remaining = deadline - time.monotonic()
        more = _receive(
            sqs,
            queue_url,
            batch_size - len(batch),
            1 if remaining >= 1 else 0,
            visibility_timeout_s,
        )
        new = [m for m in more if m["MessageId"] not in batch]
        for message in more:
            batch[message["MessageId"]] = message  # a re-received message keeps its newest handle
        # Keep going while a backlog yields new messages; otherwise only until the window closes.
        if not new and remaining <= 0:
            break
    return list(batch.values())


def process_messages(messages: list[dict], analyzer: Analyzer, sqs, queue_url: str, stats=None):
    """Analyze one batch of received messages; delete exactly those that need no retry."""
    stats = stats if stats is not None else WorkerStats()
    event = {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m.get("Body", ""),
                "eventSource": "aws:sqs",
            }
            for m in messages
        ]
    }
    report = process_event(event, analyzer)
    failed = set(report.failed_message_ids())
    done = [m for m in messages if m["MessageId"] not in failed]
    for start in range(0, len(done), SQS_MAX_PER_RECEIVE):
        chunk = done[start : start + SQS_MAX_PER_RECEIVE]
        try:
            response = sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            stats.deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                log.error("message not deleted (will be redelivered, harmlessly): %s", failure)
        except Exception as exc:
            log.error("could not delete %d messages (redelivery is harmless): %r", len(chunk), exc)
    stats.received += len(messages)
    stats.retried += len(failed)
    stats.batches += 1
    stats.faces_written += report.faces_written
    stats.detectfaces_calls += report.detectfaces_calls
    return report


def run_worker(
    queue_url: str | None = None,
    *,
    analyzer: Analyzer | None = None,
    sqs=None,
    settings: AnalyzerSettings | None = None,
    batch_size: int = 64,
    batch_window_s: float = 2.0,
    wait_time_s: int = SQS_MAX_WAIT_S,
    visibility_timeout_s: int = 300,
    max_messages: int | None = None,
    idle_exit: bool = False,
    stop_event: threading.Event | None = None,
    handle_signals: bool = False,
) -> WorkerStats:
    """Consume the analyzer queue until stopped.

    Stops when `stop_event` is set (checked between polls, so within wait_time_s), on SIGTERM or
    SIGINT when handle_signals is true (main thread only), once max_messages were received, or,
    with idle_exit, after the first poll that finds the queue empty.
    """
    settings = settings or AnalyzerSettings.from_env()
    queue_url = queue_url or settings.queue_url
    if not queue_url:
        raise ValueError("no queue URL: pass queue_url or set STAGEPULSE_ANALYZER_QUEUE_URL")
    analyzer = analyzer or build_analyzer(settings)
    sqs = sqs or client("sqs")
    stop_event = stop_event or threading.Event()
    previous = {}
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
    stats = WorkerStats()
    log.info("analyzer worker polling %s", queue_url)
    try:
        while not stop_event.is_set():
            want = batch_size
            if max_messages is not None:
                want = min(want, max_messages - stats.received)
                if want <= 0:
                    break
            messages = gather(
                sqs,
                queue_url,
                batch_size=want,
                wait_time_s=wait_time_s,
                batch_window_s=batch_window_s,
                visibility_timeout_s=visibility_timeout_s,
                stop_event=stop_event,
            )
            if not messages:
                if idle_exit:
                    break
                continue
            process_messages(messages, analyzer, sqs, queue_url, stats)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("analyzer worker stopped: %s", stats)
    return stats
