"""A throttle for the polled public endpoints that is nearly free for ordinary fans.

DRF's built-in throttles keep a per-client list of timestamps (a read and a write of a growing
list on every request); this one keeps a fixed one-window counter per client. On Redis (the
production cache, shared by every web process) each process tallies a client's hits locally and
adds them to the shared counter with one pipelined INCRBY+EXPIRE every `THROTTLE_SYNC_EVERY`
hits, and on every hit once the client nears its limit. A fan polling every few seconds then
costs no cache round trip at all, while a client hammering the API is counted exactly near the
limit; the price is a bounded overshoot of at most (web processes × (THROTTLE_SYNC_EVERY - 1))
requests per window. THROTTLE_SYNC_EVERY=1 makes every hit a round trip (exact). A Redis outage
lets requests through: the cache is configured to degrade, never to break the site. On other
caches (the embedded file cache, tests' local memory) every hit is counted in the cache.

Every count is atomic, so parallel clients cannot slip past a limit: Redis INCRBY; the local
memory cache's incr (under its lock; per process); memcached's incr. The embedded file cache's
incr is a read and a write of a file, so there the read-add-write runs under an exclusive file
lock in the cache directory, which every process on the machine shares (the file cache is one
machine's folder anyway). Scopes with `exact = True` (telemetry) skip the batching: every hit
is one INCR, and the limit holds exactly.
"""

from __future__ import annotations

import fcntl
import logging
import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import caches
from django.core.cache.backends.filebased import FileBasedCache
from django.core.cache.backends.locmem import LocMemCache
from django.utils.connection import ConnectionProxy
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


def redis_client_of(cache):
    """The redis-py client behind a django-redis cache, or None for any other backend."""
    client = getattr(cache, "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


def _backend(cache):
    """The cache backend itself (django.core.cache.cache is a proxy to it)."""
    return caches[cache._alias] if isinstance(cache, ConnectionProxy) else cache


_ATOMIC_INCR = (LocMemCache,)  # plus memcached (incr is a server command), checked by name
_process_lock = threading.Lock()


@contextmanager
def _cache_lock(cache):
    """Exclusive access to the throttle counters of a cache whose incr is not atomic: a file
    lock in the file cache's directory (all processes of the machine), else this process's."""
    directory = getattr(cache, "_dir", None)
    if not isinstance(cache, FileBasedCache) or not directory:
        with _process_lock:
            yield
        return
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "throttle.lock"), "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def atomic_incr(cache, key: str, timeout: int) -> int:
    """Add one hit to `key` (created with `timeout`) and return the new total, atomically."""
    backend = _backend(cache)
    if isinstance(backend, _ATOMIC_INCR) or "memcache" in type(backend).__module__.lower():
        backend.add(key, 0, timeout)
        try:
            return backend.incr(key)
        except ValueError:  # expired between add and incr
            backend.add(key, 0, timeout)
            return backend.incr(key)
    with _cache_lock(backend):
        total = (backend.get(key) or 0) + 1
        backend.set(key, total, timeout)
        return total


@dataclass
class WindowTallies:
    window: int
    unsent: dict[str, int] = field(default_factory=dict)  # hits not yet sent to the counter
    known: dict[str, int] = field(default_factory=dict)  # the shared total as last read


class BatchedWindowCounter:
    """This process's tallies of the current window, one set per window length (a scope of
    10/second and one of 120/minute number their windows differently). Thread-safe (gthread)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.forget()

    def forget(self) -> None:
        self.current: dict[int, WindowTallies] = {}  # window length (s) -> tallies

    def hit(self, key: str, window: int, period: int, limit: int, sync_every: int, send) -> int:
        """Count one hit of `key` in `window` (of `period` seconds); returns the best estimate
        of the window's total. `send(key, n)` adds n hits to the shared counter and returns its
        new total, or None when the counter is unreachable."""
        with self.lock:
            tallies = self.current.get(period)
            if tallies is None or window > tallies.window:  # a new window: forget the old one
                tallies = self.current[period] = WindowTallies(window)
            late = window < tallies.window  # a hit of the window just closed, counted directly,
            if not late:  # never touching (or rolling back) the current window's tallies
                unsent = tallies.unsent.get(key, 0) + 1
                known = tallies.known.get(key, 0)
                if unsent < sync_every and known + unsent < limit:
                    tallies.unsent[key] = unsent
                    return known + unsent
                tallies.unsent[key] = 0  # these hits are ours to send
        if late:
            return send(key, 1) or 1
        total = send(key, unsent)
        with self.lock:
            if total is None:  # not counted (cache down): keep them for the next sync
                tallies.unsent[key] = tallies.unsent.get(key, 0) + unsent
                return known + unsent
            tallies.known[key] = max(tallies.known.get(key, 0), total)
        return total


process_counter = BatchedWindowCounter()


class FixedWindowRateThrottle(SimpleRateThrottle):
    """Scope-based like DRF's ScopedRateThrottle (rates from DEFAULT_THROTTLE_RATES)."""

    scope_attr = "throttle_scope"
    exact = False  # True: no batched tallies on Redis, every hit is counted where it is shared

    def __init__(self):  # the scope comes from the view, as in ScopedRateThrottle
        pass

    def get_scope(self, view) -> str | None:
        return getattr(view, self.scope_attr, None)

    def client_ident(self, request) -> str:
        """Who is counted: the client address (X-Forwarded-For per NUM_PROXIES)."""
        return self.get_ident(request)

    def allow_request(self, request, view) -> bool:
        self.scope = self.get_scope(view)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        now = self.timer()
        window = int(now // self.duration)
        key = f"throttle_{self.scope}_{self.client_ident(request)}_{window}"
        self.wait_seconds = self.duration - (now % self.duration)
        return self.count_hit(key, window) <= self.num_requests

    def count_hit(self, key: str, window: int) -> int:
        """This window's hits so far, this one included."""
        redis = redis_client_of(self.cache)
        if redis is None:
            return atomic_incr(self.cache, key, self.duration + 1)

        def send(key: str, hits: int) -> int | None:
            redis_key = self.cache.make_key(key)
            try:
                pipe = redis.pipeline(transaction=False)
                pipe.incrby(redis_key, hits)
                pipe.expire(redis_key, self.duration + 1)
                return pipe.execute()[0]
            except Exception:  # noqa: BLE001 - an unreachable cache must not take the API down
                logger.warning("throttle not counted: the cache is unreachable", exc_info=True)
                return None

        sync_every = 1 if self.exact else max(1, int(getattr(settings, "THROTTLE_SYNC_EVERY", 1)))
        return process_counter.hit(key, window, self.duration, self.num_requests, sync_every, send)

    def wait(self) -> float:
        return self.wait_seconds
