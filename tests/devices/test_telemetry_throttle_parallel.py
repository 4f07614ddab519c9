"""The telemetry limit holds under parallel clients (issue 11, item 7).

32 threads post one device's reports at once through the whole stack (authentication, the
throttle, the view, the database), on each cache the service runs on: the tests' local memory,
the embedded default's file cache (shared by processes) and Redis (production). Before the
counter was atomic, 136-167 of them got through a 30-per-minute limit.
"""

from __future__ import annotations

import threading
import time
from unittest import mock

import pytest
import redis
from django.db import connections
from rest_framework.test import APIClient
from rest_framework.throttling import SimpleRateThrottle

from devices import services
from tests.isolation import redis_url

pytestmark = pytest.mark.django_db(transaction=True)

REDIS_URL = redis_url()  # this test process's own database (tests/isolation.py)
CLIENTS, REPORTS_EACH, LIMIT = 32, 5, 30


def post_in_parallel(device, token: str) -> list[int]:
    """Every client's answers; all clients start together (a barrier) to collide in the throttle."""
    start = threading.Barrier(CLIENTS)
    codes: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        try:
            post_reports()
        finally:
            connections.close_all()  # this thread's own connection (PostgreSQL keeps it open)

    def post_reports() -> None:
        api = APIClient()
        start.wait()
        for _ in range(REPORTS_EACH):
            payload = {
                "device_id": device.thing_name,
                "software_version": "0.1.0",
                "sent_at_ms": int(time.time() * 1000),
                "analysis_mode": "cloud",
            }
            response = api.post(
                "/api/v1/telemetry/", payload, format="json", HTTP_AUTHORIZATION=f"Device {token}"
            )
            with lock:
                codes.append(response.status_code)

    threads = [threading.Thread(target=client) for _ in range(CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


@pytest.fixture(autouse=True)
def sqlite_shared_by_threads():
    """The test database (SQLite in memory, shared cache) refuses a second thread's statement
    on a table another is using ("table is locked") where PostgreSQL would wait: readers skip
    table locks (read_uncommitted) and writing statements take turns. Only the database waits
    for its turn; the throttle under test runs fully in parallel."""
    from django.db import connection
    from django.db.backends.signals import connection_created
    from django.db.backends.sqlite3.base import SQLiteCursorWrapper

    if connection.vendor != "sqlite":
        yield
        return
    writes = threading.Lock()
    execute = SQLiteCursorWrapper.execute

    def one_writer_at_a_time(cursor, query, params=None):
        if query.lstrip()[:6].upper() in ("SELECT", "PRAGMA"):
            return execute(cursor, query, params)
        with writes:
            return execute(cursor, query, params)

    def uncommitted_reads(sender, connection, **kwargs):
        connection.cursor().execute("PRAGMA read_uncommitted = 1")

    connection_created.connect(uncommitted_reads)
    try:
        with mock.patch.object(SQLiteCursorWrapper, "execute", one_writer_at_a_time):
            yield
    finally:
        connection_created.disconnect(uncommitted_reads)


@pytest.fixture
def device(two_worlds):
    device = two_worlds[0].device
    return device, services.issue_device_token(device)


@pytest.fixture(autouse=True)
def one_window(mid_minute):
    """A fixed clock mid-minute (no run straddles a window) and a 30/minute limit."""
    rates = {**SimpleRateThrottle.THROTTLE_RATES, "telemetry": f"{LIMIT}/minute"}
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", rates):
        yield


def assert_exact(codes: list[int]) -> None:
    assert len(codes) == CLIENTS * REPORTS_EACH
    assert codes.count(202) == LIMIT, sorted(set(codes))
    assert codes.count(429) == CLIENTS * REPORTS_EACH - LIMIT


def test_local_memory_cache(device):
    assert_exact(post_in_parallel(*device))


def test_the_embedded_file_cache(device, settings, tmp_path):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
            "LOCATION": str(tmp_path / "cache"),
        }
    }
    assert_exact(post_in_parallel(*device))


def test_redis(device, settings):
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379")
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.5},
            "KEY_PREFIX": "stagepulse-test",
        }
    }
    settings.THROTTLE_SYNC_EVERY = 5  # the fan API's batching never applies to telemetry
    try:
        assert_exact(post_in_parallel(*device))
    finally:
        client.flushdb()


def _hammer(location: str, hits: int) -> None:
    from django.core.cache.backends.filebased import FileBasedCache

    from festival.throttling import atomic_incr

    cache = FileBasedCache(location, {})
    for _ in range(hits):
        atomic_incr(cache, "throttle_telemetry_x_1", 61)


def test_the_file_cache_counter_is_atomic_across_processes(tmp_path):
    """The embedded default's web and worker processes share the file cache: four processes
    adding 50 hits each count 200, none lost to a read-add-write race."""
    import multiprocessing

    from django.core.cache.backends.filebased import FileBasedCache

    location = str(tmp_path / "cache")
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_hammer, args=(location, 50)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert [w.exitcode for w in workers] == [0, 0, 0, 0]
    assert FileBasedCache(location, {}).get("throttle_telemetry_x_1") == 200
