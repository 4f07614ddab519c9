"""Brute-force guard for every password login (the API token endpoint and the admin).

Failed logins are counted per account and per client address in the shared cache, in a fixed
window that starts at the first failure. Once either count reaches its limit, logins for that
account (or from that address) are refused, even with the right password, until the window
ends. Unknown usernames are counted like real ones, so the guard tells nobody which accounts
exist. A successful login clears the account's count, not the address's (or an attacker could
clear it by logging in to an account of their own between guesses).

The counters are atomic where the cache is (Redis INCR in production, the local-memory cache);
the embedded file cache may lose a count under concurrent failures.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle


def _limits() -> tuple[int, int, int]:
    return (
        settings.LOGIN_FAILURES_PER_ACCOUNT,
        settings.LOGIN_FAILURES_PER_ADDRESS,
        settings.LOGIN_LOCKOUT_SECONDS,
    )


def client_address(request) -> str:
    """The client's address as the throttles see it (X-Forwarded-For only behind NUM_PROXIES)."""
    return BaseThrottle().get_ident(request) if request is not None else "unknown"


def _account_key(username: str) -> str:
    digest = hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]
    return f"login-failures:account:{digest}"


def _address_key(request) -> str:
    return f"login-failures:address:{client_address(request)}"


def _keys(request, username: str) -> list[tuple[str, int]]:
    per_account, per_address, _ = _limits()
    return [(_account_key(username), per_account), (_address_key(request), per_address)]


def locked_for(request, username: str) -> int:
    """Seconds until this account may log in again from this address (0: it may now)."""
    wait = 0
    now = time.time()
    for key, limit in _keys(request, username):
        if (cache.get(key) or 0) >= limit:
            until = cache.get(f"{key}:until") or now + _limits()[2]
            wait = max(wait, int(until - now) + 1)
    return wait


def record_failure(request, username: str) -> None:
    window = _limits()[2]
    for key, _ in _keys(request, username):
        if cache.add(key, 1, window):  # the first failure opens the window
            cache.set(f"{key}:until", time.time() + window, window)
            continue
        try:
            cache.incr(key)
        except ValueError:  # the window closed in between: this failure opens the next one
            cache.add(key, 1, window)
            cache.set(f"{key}:until", time.time() + window, window)


def clear_account(username: str) -> None:
    key = _account_key(username)
    cache.delete_many([key, f"{key}:until"])
