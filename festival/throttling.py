"""A throttle for the polled public endpoints that costs one cache round trip per request.

DRF's built-in throttles keep a per-client list of timestamps (a read and a write of a growing
list each request); a fixed one-window counter needs a single INCR, which matters on the fan
API's hot path. The limit is a little less smooth at window edges, which is fine for polling.
"""

from __future__ import annotations

from rest_framework.throttling import SimpleRateThrottle


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
        try:
            count = self.cache.incr(key)
        except ValueError:  # first request of this window
            self.cache.add(key, 0, self.duration + 1)
            count = self.cache.incr(key)
        self.wait_seconds = self.duration - (now % self.duration)
        return count <= self.num_requests

    def wait(self) -> float:
        return self.wait_seconds
