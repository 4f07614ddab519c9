"""What each test process may use on a shared machine: its own Redis database and its own slice
of this checkout's TCP ports, whether the suite runs in one process or in pytest-xdist workers
(`make test` runs three). Django-free, so subprocess helpers can import it too.

Environment (defaults in brackets): STAGEPULSE_TEST_REDIS_DBS, one database per worker ["11,12,13"];
STAGEPULSE_TEST_PORTS, this checkout's port range, split evenly between workers ["18400-18499"].
"""

from __future__ import annotations

import os
import socket


def worker_index() -> int:
    """0 in a plain run; N in xdist worker gwN."""
    name = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    return int(name.removeprefix("gw") or 0)


def worker_count() -> int:
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))


def redis_url() -> str:
    """This worker's Redis database (each test that uses it flushes it first)."""
    dbs = [db.strip() for db in os.environ.get("STAGEPULSE_TEST_REDIS_DBS", "11,12,13").split(",")]
    index = worker_index()
    if index >= len(dbs):
        raise RuntimeError(
            f"xdist worker {index} has no Redis database: STAGEPULSE_TEST_REDIS_DBS={dbs} names "
            "fewer databases than there are workers"
        )
    return f"redis://127.0.0.1:6379/{dbs[index]}"


def ports() -> range:
    """This worker's slice of the checkout's port range."""
    low, high = (int(p) for p in os.environ.get("STAGEPULSE_TEST_PORTS", "18400-18499").split("-"))
    size = (high + 1 - low) // worker_count()
    start = low + worker_index() * size
    return range(start, start + size)


def free_port() -> int:
    """A port of this worker's slice that nothing listens on now."""
    for port in ports():
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port in {ports()}")
