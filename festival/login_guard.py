"""Brute-force guard for every password login (the API token endpoint and the admin).

Failed logins are counted in the shared cache, each count in a fixed window that starts at its
first failure, at three scopes:

- an account from one address (LOGIN_FAILURES_PER_ACCOUNT): someone guessing one password;
- an address over every account (LOGIN_FAILURES_PER_ADDRESS): one address trying many accounts;
- an account over every address (LOGIN_FAILURES_PER_ACCOUNT_ALL_ADDRESSES, much higher): guesses
  spread over many addresses.

While a count is at its limit, the logins it covers are refused, the right password too, until
its window ends. The first scope locks only the guesser's address out of that account, so
failing on purpose cannot lock the owner out from elsewhere. The third locks the account only
for addresses it has never logged in from (a successful login remembers its address for
LOGIN_KNOWN_ADDRESS_DAYS): the owner's usual places still get in, subject to their own count.

Unknown usernames are counted like real ones, so the guard tells nobody which accounts exist. A
successful login clears its own account-and-address count, not the address's (or an attacker
could clear it by logging in to an account of their own between guesses) nor the account's
over every address (or one correct login would reset a distributed guess).

The counters are atomic where the cache is (Redis INCR in production, the local-memory cache);
the embedded file cache may lose a count under concurrent failures.
"""

from __future__ import annotations

import hashlib
import time

from django.conf import settings
from django.core.cache import cache
from rest_framework.throttling import BaseThrottle


def client_address(request) -> str:
    """The client's address as the throttles see it (X-Forwarded-For only behind NUM_PROXIES)."""
    return BaseThrottle().get_ident(request) if request is not None else "unknown"


def _account(username: str) -> str:
    return hashlib.sha256((username or "").strip().lower().encode()).hexdigest()[:32]


def _pair_key(request, username: str) -> str:
    return f"login-failures:account-address:{_account(username)}:{client_address(request)}"


def _address_key(request) -> str:
    return f"login-failures:address:{client_address(request)}"


def _account_key(username: str) -> str:
    return f"login-failures:account:{_account(username)}"


def _known_key(request, username: str) -> str:
    return f"login-known:{_account(username)}:{client_address(request)}"


def _counts(request, username: str) -> list[tuple[str, int]]:
    """The counts a login is checked against, with their limits."""
    counts = [
        (_pair_key(request, username), settings.LOGIN_FAILURES_PER_ACCOUNT),
        (_address_key(request), settings.LOGIN_FAILURES_PER_ADDRESS),
    ]
    if not cache.get(_known_key(request, username)):
        counts.append((_account_key(username), settings.LOGIN_FAILURES_PER_ACCOUNT_ALL_ADDRESSES))
    return counts


def locked_for(request, username: str) -> int:
    """Seconds until this account may log in again from this address (0: it may now)."""
    wait = 0
    now = time.time()
    for key, limit in _counts(request, username):
        if (cache.get(key) or 0) >= limit:
            until = cache.get(f"{key}:until") or now + settings.LOGIN_LOCKOUT_SECONDS
            wait = max(wait, int(until - now) + 1)
    return wait


def record_failure(request, username: str) -> None:
    window = settings.LOGIN_LOCKOUT_SECONDS
    keys = (_pair_key(request, username), _address_key(request), _account_key(username))
    for key in keys:  # every scope counts, known address or not
        if cache.add(key, 1, window):  # the first failure opens the window
            cache.set(f"{key}:until", time.time() + window, window)
            continue
        try:
            cache.incr(key)
        except ValueError:  # the window closed in between: this failure opens the next one
            cache.add(key, 1, window)
            cache.set(f"{key}:until", time.time() + window, window)


def record_success(request, username: str) -> None:
    """A correct password: this address's count for the account starts again, and the address
    is remembered as one the account logs in from."""
    key = _pair_key(request, username)
    cache.delete_many([key, f"{key}:until"])
    cache.set(_known_key(request, username), 1, settings.LOGIN_KNOWN_ADDRESS_DAYS * 86400)
