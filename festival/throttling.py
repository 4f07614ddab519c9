"""A throttle for the polled public endpoints that costs one cache round trip per request.

DRF's built-in throttles keep a per-client list of timestamps (a read and a write of a growing
list each request); a fixed one-window counter needs a single INCR, which matters on the fan
API's hot path. The limit is a little less smooth at window edges, which is fine for polling.
On Redis the INCR and its expiry go out as one pipelined round trip; a Redis outage lets
requests through (the cache is configured to degrade, never to break the site).
"""

from __future__ import annotations

import logging

from rest_framework.throttling import SimpleRateThrottle

logger = logging.getLogger(__name__)


def redis_client_of(cache):
    """The redis-py client behind a django-redis cache, or None for any other backend."""
    client = getattr(cache, "client", None)
    if client is None or not hasattr(client, "get_client"):
        return None
    return client.get_client(write=True)


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
        return self.count_hit(key) <= self.num_requests

    def count_hit(self, key: str) -> int:
        """This window's hits so far, this one included."""
        redis = redis_client_of(self.cache)
        if redis is None:
            try:
                return self.cache.incr(key)
            except ValueError:  # first request of this window
                self.cache.add(key, 0, self.duration + 1)
                return self.cache.incr(key)
        redis_key = self.cache.make_key(key)
        try:
            pipe = redis.pipeline(transaction=False)
            pipe.incr(redis_key)
            pipe.expire(redis_key, self.duration + 1)
            return pipe.execute()[0]
        except Exception:  # noqa: BLE001 - an unreachable cache must not take the API down
            logger.warning("throttle not counted: the cache is unreachable", exc_info=True)
            return 0

    def wait(self) -> float:
        return self.wait_seconds
