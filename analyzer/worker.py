"""SQS worker mode: the Lambda's handler driven by a long-polling loop (embedded mode, no Lambda).

A receiver thread long-polls SQS ahead of the analysis, so the next batch is in hand when the
current one ends; each batch gathers up to `batch_size` messages (several receives within
`batch_window_s`) so that the Rekognition backend can fill its mosaics. The batch runs through the
same process_event as the Lambda (downloads and writes on the analyzer's thread pool) and a message
is deleted only after its observations are written; deletes run in the background while the next
batch is analyzed. A worker killed at any point therefore loses nothing: undeleted messages
reappear after the visibility timeout and the conditional writes make the replay harmless, which
is also why several workers can consume one queue side by side. A failed receive (read timeout,
endpoint unreachable, throttling) is retried with exponential backoff; the worker never exits
for it.
"""

from __future__ import annotations

import logging
import queue
import random
import signal
import threading
import time
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass

from awsclients import client

from .analyzer import Analyzer
from .config import AnalyzerSettings
from .handler import build_analyzer, process_event

log = logging.getLogger("stagepulse.analysis")

SQS_MAX_PER_RECEIVE = 10
SQS_MAX_WAIT_S = 20
RECEIVE_BACKOFF_BASE_S = 0.5
RECEIVE_BACKOFF_MAX_S = 30.0
# SQS long-polls in whole seconds only, so a batch window under a second cannot wait on SQS: an
# empty top-up pauses this long instead of asking again at once. Without it the worker asked
# SQS ~40 times a second while crops trickled in (each ReceiveMessage is billed, and moto's
# cost grows with the queue: most of the demo's moto CPU).
TOP_UP_PAUSE_S = 0.1
_END = None  # the receiver's last item: no more batches


@dataclass
class WorkerStats:
    received: int = 0
    deleted: int = 0
    retried: int = 0
    batches: int = 0
    faces_written: int = 0
    detectfaces_calls: int = 0
    receive_errors: int = 0
    batch_errors: int = 0
    released: int = 0


def _receive(sqs, queue_url: str, count: int, wait_s: int, visibility_s: int) -> list[dict]:
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(SQS_MAX_PER_RECEIVE, count)),
        WaitTimeSeconds=max(0, min(SQS_MAX_WAIT_S, wait_s)),
        VisibilityTimeout=visibility_s,
    )
    return response.get("Messages", [])


class Backoff:
    """Exponential backoff with jitter, reset by a success; sleeps on the stop event."""

    def __init__(
        self,
        stop_event: threading.Event,
        base_s: float = RECEIVE_BACKOFF_BASE_S,
        max_s: float = RECEIVE_BACKOFF_MAX_S,
    ):
        self.stop_event, self.base_s, self.max_s = stop_event, base_s, max_s
        self.failures = 0
        self.delays: list[float] = []

    def reset(self) -> None:
        self.failures = 0

    def wait(self) -> None:
        self.failures += 1
        delay = min(self.max_s, self.base_s * 2 ** (self.failures - 1)) * random.uniform(0.5, 1.0)
        self.delays.append(delay)
        self.stop_event.wait(delay)


def gather(
    sqs,
    queue_url: str,
    *,
    batch_size: int,
    wait_time_s: int,
    batch_window_s: float,
    visibility_timeout_s: int,
    stop_event: threading.Event,
    backoff: Backoff | None = None,
    stats: WorkerStats | None = None,
) -> list[dict]:
    """Long-poll for the first message, then top the batch up for at most batch_window_s.

    A failed first receive is retried with backoff until it succeeds or the worker stops; a failed
    top-up keeps the messages already in hand (they are analyzed, not dropped)."""
    backoff = backoff or Backoff(stop_event)
    batch: dict[str, dict] = {}
    while not stop_event.is_set():
        try:
            first = _receive(sqs, queue_url, batch_size, wait_time_s, visibility_timeout_s)
        except Exception as exc:
            if stats is not None:
                stats.receive_errors += 1
            log.warning(
                "SQS receive failed (%s: %s); retrying with backoff", type(exc).__name__, exc
            )
            backoff.wait()
            continue
        backoff.reset()
        for message in first:
            batch[message["MessageId"]] = message
        break
    if not batch:
        return []
    deadline = time.monotonic() + batch_window_s
    while len(batch) < batch_size and not stop_event.is_set():
        remaining = deadline - time.monotonic()
        try:
            more = _receive(
                sqs,
                queue_url,
                batch_size - len(batch),
                1 if remaining >= 1 else 0,
                visibility_timeout_s,
            )
        except Exception as exc:
            if stats is not None:
                stats.receive_errors += 1
            log.warning("SQS top-up receive failed (%s); going on with %d", exc, len(batch))
            break
        new = [m for m in more if m["MessageId"] not in batch]
        for message in more:
            batch[message["MessageId"]] = message  # a re-received message keeps its newest handle
        # Keep going while a backlog yields new messages; otherwise only until the window closes.
        if not new:
            if remaining <= 0:
                break
            stop_event.wait(min(remaining, TOP_UP_PAUSE_S))
    return list(batch.values())


def delete_messages(sqs, queue_url: str, messages: list[dict]) -> int:
    """Acknowledge messages whose work is done; a failed delete only means a harmless replay.
    Returns how many were deleted (counted by the caller: deletes may run on several threads)."""
    deleted = 0
    for start in range(0, len(messages), SQS_MAX_PER_RECEIVE):
        chunk = messages[start : start + SQS_MAX_PER_RECEIVE]
        try:
            response = sqs.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(chunk)
                ],
            )
            deleted += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                log.error("message not deleted (will be redelivered, harmlessly): %s", failure)
        except Exception as exc:
            log.error("could not delete %d messages (redelivery is harmless): %r", len(chunk), exc)
    return deleted


def release_messages(sqs, queue_url: str, messages: list[dict]) -> int:
    """Hand prefetched, unprocessed messages back at once (visibility 0) when the worker stops,
    so that another worker takes them now rather than after the visibility timeout."""
    released = 0
    for start in range(0, len(messages), SQS_MAX_PER_RECEIVE):
        chunk = messages[start : start + SQS_MAX_PER_RECEIVE]
        try:
            response = sqs.change_message_visibility_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for i, m in enumerate(chunk)
                ],
            )
            released += len(response.get("Successful", []))
        except Exception as exc:
            log.warning("could not release %d messages (they come back later): %r", len(chunk), exc)
    return released


def process_messages(
    messages: list[dict],
    analyzer: Analyzer,
    sqs,
    queue_url: str,
    stats=None,
    *,
    background: bool = False,
) -> tuple:
    """Analyze one batch of received messages; delete exactly those that need no retry.

    Returns (report, ack): ack is the Future of the deletes when `background`, else None."""
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
    stats.received += len(messages)
    stats.retried += len(failed)
    stats.batches += 1
    stats.faces_written += report.faces_written
    stats.detectfaces_calls += report.detectfaces_calls
    if background:
        return report, analyzer.executor.submit(delete_messages, sqs, queue_url, done)
    stats.deleted += delete_messages(sqs, queue_url, done)
    return report, None


class Receiver(threading.Thread):
    """Fetches the next batch while the current one is analyzed (at most `prefetch` ahead)."""

    def __init__(
        self,
        sqs,
        queue_url: str,
        *,
        batch_size: int,
        max_messages: int | None,
        idle_exit: bool,
        stop_event: threading.Event,
        gather_kwargs: dict,
        stats: WorkerStats,
        prefetch: int = 1,
        backoff: Backoff | None = None,
    ):
        super().__init__(name="analyzer-receiver", daemon=True)
        self.sqs, self.queue_url = sqs, queue_url
        self.batch_size, self.max_messages, self.idle_exit = batch_size, max_messages, idle_exit
        self.stop_event, self.gather_kwargs, self.stats = stop_event, gather_kwargs, stats
        self.backoff = backoff or Backoff(stop_event)
        self.batches: queue.Queue = queue.Queue(maxsize=max(1, prefetch))
        self.taken = 0

    def _hand_over(self, item) -> bool:
        while not self.stop_event.is_set():
            try:
                self.batches.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def run(self) -> None:
        try:
            while not self.stop_event.is_set():
                want = self.batch_size
                if self.max_messages is not None:
                    want = min(want, self.max_messages - self.taken)
                    if want <= 0:
                        break
                messages = gather(
                    self.sqs,
                    self.queue_url,
                    batch_size=want,
                    stop_event=self.stop_event,
                    backoff=self.backoff,
                    stats=self.stats,
                    **self.gather_kwargs,
                )
                if not messages:
                    if self.idle_exit:
                        break
                    continue
                self.taken += len(messages)
                if not self._hand_over(messages):
                    self.stats.released += release_messages(self.sqs, self.queue_url, messages)
                    return
        except BaseException:
            log.exception("analyzer receiver stopped")
        finally:
            self._hand_over(_END)

    def next_batch(self, timeout: float = 0.5):
        """The next batch, [] when none arrived within timeout, or _END when no more will."""
        try:
            return self.batches.get(timeout=timeout)
        except queue.Empty:
            return [] if self.is_alive() else _END

    def release_pending(self) -> None:
        """After a stop: what was prefetched but never analyzed goes back to the queue."""
        while True:
            try:
                item = self.batches.get_nowait()
            except queue.Empty:
                return
            if item:
                self.stats.released += release_messages(self.sqs, self.queue_url, item)


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
    backoff_base_s: float = RECEIVE_BACKOFF_BASE_S,
    backoff_max_s: float = RECEIVE_BACKOFF_MAX_S,
    prefetch: int = 1,
) -> WorkerStats:
    """Consume the analyzer queue until stopped.

    Stops when `stop_event` is set (the batch in hand is finished and acknowledged first), on
    SIGTERM or SIGINT when handle_signals is true (main thread only), once max_messages were
    received, or, with idle_exit, after the first poll that finds the queue empty. An exception
    while processing a batch is logged and counted and leaves its messages for redelivery.
    """
    settings = settings or AnalyzerSettings.from_env()
    queue_url = queue_url or settings.queue_url
    if not queue_url:
        raise ValueError("no queue URL: pass queue_url or set STAGEPULSE_ANALYZER_QUEUE_URL")
    analyzer = analyzer or build_analyzer(settings)
    sqs = sqs or client("sqs")
    stop_event = stop_event or threading.Event()
    halt = threading.Event()  # ours, for the receiver: the caller's stop_event is never set here
    previous = {}
    if handle_signals:
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop_event.set())
    stats = WorkerStats()
    receiver = Receiver(
        sqs,
        queue_url,
        batch_size=batch_size,
        max_messages=max_messages,
        idle_exit=idle_exit,
        stop_event=halt,
        gather_kwargs={
            "wait_time_s": wait_time_s,
            "batch_window_s": batch_window_s,
            "visibility_timeout_s": visibility_timeout_s,
        },
        stats=stats,
        prefetch=prefetch,
        backoff=Backoff(halt, backoff_base_s, backoff_max_s),
    )
    acks: deque[Future] = deque()
    log.info("analyzer worker polling %s", queue_url)
    try:
        if not stop_event.is_set():
            receiver.start()
        while not stop_event.is_set():
            messages = receiver.next_batch()
            if messages is _END:
                break
            if not messages:
                continue
            try:
                _, ack = process_messages(
                    messages, analyzer, sqs, queue_url, stats, background=True
                )
                acks.append(ack)
            except Exception:
                stats.batch_errors += 1
                log.exception("a batch of %d messages failed; redelivered later", len(messages))
            while len(acks) > 2:  # bounded: at most two batches' deletes in flight
                stats.deleted += acks.popleft().result()
    finally:
        halt.set()
        for ack in acks:
            stats.deleted += ack.result()
        if receiver.is_alive():
            receiver.join(timeout=wait_time_s + 5)
        receiver.release_pending()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    log.info("analyzer worker stopped: %s", stats)
    return stats
