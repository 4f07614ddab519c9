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
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field

from django.conf import settings
from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


def redis_client_of(cache):
    """The redis-py client behind a django-redis cache, or None for any other backend."""
    client = getattr(cache, "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


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

    def __init__(self):  # the scope comes from the view, as in ScopedRateThrottle
        pass

    def allow_request(self, request, view) -> bool:
        self.scope = getattr(view, self.scope_attr, None)
        if not self.scope:
            return True
        self.rate = self.get_rate()
        if self.rate is None:
            return True
        self.num_requests, self.duration = self.parse_rate(self.rate)
        now = self.timer()
        window = int(now // self.duration)
        key = f"throttle_{self.scope}_{self.get_ident(request)}_{window}"
        self.wait_seconds = self.duration - (now % self.duration)
        return self.count_hit(key, window) <= self.num_requests

    def count_hit(self, key: str, window: int) -> int:
        """This window's hits so far, this one included."""
        redis = redis_client_of(self.cache)
        if redis is None:
            try:
                return self.cache.incr(key)
            except ValueError:  # first request of this window
                self.cache.add(key, 0, self.duration + 1)
                return self.cache.incr(key)

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

        sync_every = max(1, int(getattr(settings, "THROTTLE_SYNC_EVERY", 1)))
        return process_counter.hit(key, window, self.duration, self.num_requests, sync_every, send)

    def wait(self) -> float:
        return self.wait_seconds
