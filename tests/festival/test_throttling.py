"""The fan throttle on the production cache (Redis): no round trip for a fan who polls now and
then, a limit that holds across web processes within the documented overshoot, and an
unreachable Redis that never takes the API down."""

from unittest import mock

import pytest
import redis
from rest_framework.throttling import SimpleRateThrottle

from tests.isolation import redis_url

# no test here straddles a minute boundary (tests/conftest.py mid_minute)
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("mid_minute")]

# this test process's own database (tests/isolation.py: STAGEPULSE_TEST_REDIS_DBS)
REDIS_URL = redis_url()


def redis_cache(settings, url: str) -> None:
    settings.CACHES = {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": url,
            "OPTIONS": {"IGNORE_EXCEPTIONS": True, "SOCKET_CONNECT_TIMEOUT": 0.5},
            "KEY_PREFIX": "stagepulse-test",
        }
    }


@pytest.fixture
def local_redis(settings):
    client = redis.Redis.from_url(REDIS_URL)
    try:
        client.flushdb()
    except redis.ConnectionError:
        pytest.skip("no Redis on 127.0.0.1:6379 (.ci/run starts one)")
    redis_cache(settings, REDIS_URL)
    yield client
    client.flushdb()


def test_limit_holds_on_redis_and_each_window_key_expires(api_client, two_worlds, local_redis):
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"fan": "3/minute"}):
        codes = [
            api_client.get("/api/v1/public/festivals/ours-fest/").status_code for _ in range(4)
        ]
    assert codes == [200, 200, 200, 429]
    (key,) = [k for k in local_redis.keys("*throttle_fan_*")]
    assert int(local_redis.get(key)) == 4
    assert 0 < local_redis.ttl(key) <= 61  # a window's counter never outlives it by much


def test_an_ordinary_fans_polls_of_live_make_no_cache_round_trip(
    api_client, two_worlds, local_redis
):
    from emotions.live_cache import store_live_ranking

    ours, _ = two_worlds
    store_live_ranking(ours.festival)
    api_client.get("/api/v1/public/festivals/ours-fest/live/")  # memoizes the cached entry
    with (
        mock.patch.object(redis.client.Pipeline, "execute", autospec=True) as pipelined,
        mock.patch.object(redis.Redis, "execute_command", autospec=True) as single,
    ):
        responses = [api_client.get("/api/v1/public/festivals/ours-fest/live/") for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert responses[0].json()["festival"] == "ours-fest"
    assert pipelined.call_count == 0 and single.call_count == 0


def test_limit_holds_across_web_processes_within_the_documented_overshoot(
    api_client, two_worlds, local_redis, settings
):
    from festival.throttling import BatchedWindowCounter

    settings.THROTTLE_SYNC_EVERY = 5
    processes = [BatchedWindowCounter(), BatchedWindowCounter()]
    codes = []
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"fan": "20/minute"}):
        for hit in range(60):  # a client hammering two web processes in turn
            with mock.patch("festival.throttling.process_counter", processes[hit % 2]):
                codes.append(api_client.get("/api/v1/public/festivals/ours-fest/").status_code)
    allowed = codes.count(200)
    assert 20 <= allowed <= 20 + len(processes) * (5 - 1)
    assert set(codes[-10:]) == {429}  # and once over, it stays refused


def test_an_unreachable_redis_falls_back_to_each_processs_own_count(
    api_client, two_worlds, settings, caplog
):
    redis_cache(settings, "redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"fan": "2/minute"}):
        codes = [
            api_client.get("/api/v1/public/festivals/ours-fest/").status_code for _ in range(3)
        ]
    assert codes == [200, 200, 429]  # answers, no 500s; this process still limits the client
    assert "throttle not counted" in caplog.text


class SharedCounter:
    """What Redis does for the throttle, in memory: INCRBY that returns the new total."""

    def __init__(self):
        self.totals: dict[str, int] = {}
        self.calls = 0

    def __call__(self, key: str, hits: int) -> int:
        self.calls += 1
        self.totals[key] = self.totals.get(key, 0) + hits
        return self.totals[key]


def test_a_late_hit_of_the_closed_window_does_not_roll_the_tallies_back():
    from festival.throttling import BatchedWindowCounter

    counter, shared = BatchedWindowCounter(), SharedCounter()
    for _ in range(4):
        counter.hit("fan_a_101", 101, 60, 100, 5, shared)  # four hits of window 101, unsent
    assert counter.hit("fan_a_100", 100, 60, 100, 5, shared) == 1  # a thread that was late
    assert shared.totals == {"fan_a_100": 1}
    assert counter.hit("fan_a_101", 101, 60, 100, 5, shared) == 5  # window 101 kept its four
    assert shared.totals["fan_a_101"] == 5


def test_scopes_with_different_window_lengths_keep_their_own_tallies():
    from festival.throttling import BatchedWindowCounter

    counter, shared = BatchedWindowCounter(), SharedCounter()
    totals = []
    for second in range(12):  # a 10/second scope and a 120/minute scope, interleaved
        counter.hit(f"burst_{1000 + second}", 1000 + second, 1, 10, 5, shared)
        totals.append(counter.hit("minute_16", 16, 60, 120, 5, shared))
    assert totals == list(range(1, 13))  # the minute's count never reset by the second's
    assert shared.totals["minute_16"] == 10  # synced every fifth hit (two of 12 still unsent)
