"""The live ranking's cache protocol: what the fan API, the dashboard and the booth screen serve
without recomputing, and what ingest refreshes when data lands.

The ranking itself is computed by emotions.selectors.compute_live_ranking (read through the
module, so a test may wrap it); this module only decides when, and who, recomputes it.
"""

from __future__ import annotations

import json
import logging
import time

from django.core.cache import cache
from django.core.serializers.json import DjangoJSONEncoder

from emotions import selectors
from festival.models import Festival

logger = logging.getLogger(__name__)

# The ranking is cached as an entry {"at", "public", "ranking", "json"}: the fan API serves the
# pre-rendered JSON without touching the database. Ingest writes a fresh entry when data lands.
# An entry is served for LIVE_CACHE_SECONDS; from LIVE_REFRESH_AHEAD_SECONDS on, the one request
# that claims the entry's refresh recomputes it while every other request keeps serving it, so
# fans never queue behind a recompute (no stampede at expiry). Each web process also keeps the
# entry it last read for up to LIVE_MEMO_SECONDS, so the hot path usually does no I/O at all.
LIVE_CACHE_SECONDS = 5
LIVE_KEEP_SECONDS = 120
LIVE_REFRESH_AHEAD_SECONDS = 4
LIVE_MEMO_SECONDS = 1.0
LIVE_REFRESH_CLAIM_SECONDS = 10

_live_memo: dict[str, tuple[float, dict]] = {}  # festival slug -> (read at, entry); per process
_live_claims_asked: dict[str, tuple[float, float]] = {}  # slug -> (generation, asked at)


def live_cache_key(festival_slug: str) -> str:
    return f"stagepulse:live:{festival_slug}"


def live_refresh_claim_key(festival_slug: str, entry: dict) -> str:
    """One claim per cached generation: whoever wins it recomputes; nobody else does."""
    return f"{live_cache_key(festival_slug)}:refresh:{entry['at']}"


def cached_live_entry(festival_slug: str) -> dict | None:
    return cache.get(live_cache_key(festival_slug))


def forget_memoized_live_entries() -> None:
    _live_memo.clear()
    _live_claims_asked.clear()


def memoized_live_entry(festival_slug: str) -> dict | None:
    """The festival's fresh cached entry, from this process's memory when it was read from the
    cache less than LIVE_MEMO_SECONDS ago; None when there is no fresh entry."""
    now = time.monotonic()
    memo = _live_memo.get(festival_slug)
    if memo is not None and now - memo[0] < LIVE_MEMO_SECONDS and is_fresh(memo[1]):
        return memo[1]
    entry = cached_live_entry(festival_slug)
    if not is_fresh(entry):
        _live_memo.pop(festival_slug, None)
        return None
    _live_memo[festival_slug] = (now, entry)  # only slugs with a cached entry: bounded
    return entry


def is_fresh(entry: dict | None) -> bool:
    return entry is not None and time.time() - entry["at"] < LIVE_CACHE_SECONDS


def due_for_refresh(entry: dict) -> bool:
    return time.time() - entry["at"] >= LIVE_REFRESH_AHEAD_SECONDS


def claim_live_refresh(festival_slug: str, entry: dict) -> bool:
    """True for the one request (across all processes) that should recompute `entry`; each
    process asks the cache once per generation, so the hot path stays free of extra I/O."""
    now = time.monotonic()
    generation, asked_at = _live_claims_asked.get(festival_slug, (None, 0.0))
    if generation == entry["at"] and now - asked_at < LIVE_REFRESH_CLAIM_SECONDS:
        return False  # asked already; a claim left by a crashed refresh expires, then we ask again
    _live_claims_asked[festival_slug] = (entry["at"], now)
    return cache.add(
        live_refresh_claim_key(festival_slug, entry), 1, timeout=LIVE_REFRESH_CLAIM_SECONDS
    )


def store_live_ranking(festival: Festival) -> dict:
    ranking = selectors.compute_live_ranking(festival)
    entry = {
        "at": time.time(),
        "public": festival.public,
        "ranking": ranking,
        "json": json.dumps(ranking, cls=DjangoJSONEncoder).encode(),
    }
    cache.set(live_cache_key(festival.slug), entry, LIVE_KEEP_SECONDS)
    _live_memo[festival.slug] = (time.monotonic(), entry)
    return entry


def refresh_claimed_live_entry(
    festival_slug: str, claimed: dict, festival: Festival | None = None
) -> dict | None:
    """Recompute after winning the claim on `claimed`. Without `festival` (the fan API's hot
    path) only a public festival is recomputed; one that went private loses its entry (None).
    A failed recompute (database down) gives the claim back, so the next request retries, and
    still serves the copy we had."""
    try:
        if festival is None:
            festival = Festival.objects.filter(slug=festival_slug, public=True).first()
            if festival is None:
                forget_live_entry(festival_slug)
                return None
        return store_live_ranking(festival)
    except Exception:
        cache.delete(live_refresh_claim_key(festival_slug, claimed))
        _live_claims_asked.pop(festival_slug, None)
        logger.exception("live ranking of %s could not be recomputed", festival_slug)
        return claimed


def forget_live_entry(festival_slug: str) -> None:
    """Drop a festival's cached ranking (it went private or away); other web processes drop
    their memo of it within LIVE_MEMO_SECONDS."""
    cache.delete(live_cache_key(festival_slug))
    _live_memo.pop(festival_slug, None)


def live_entry(festival: Festival) -> dict:
    """The festival's cached entry, recomputed when missing or when this request claims the
    refresh of an ageing one."""
    entry = cached_live_entry(festival.slug)
    if entry is None:
        return store_live_ranking(festival)
    if not due_for_refresh(entry) or not claim_live_refresh(festival.slug, entry):
        return entry  # fresh, or someone else is refreshing it: a few seconds old is fine
    return refresh_claimed_live_entry(festival.slug, entry, festival)


def live_ranking(festival: Festival) -> dict:
    """The festival's ranking, at most a few seconds old."""
    return live_entry(festival)["ranking"]
