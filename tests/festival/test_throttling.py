"""The fan throttle on the production cache (Redis): one pipelined round trip per request, a
limit that holds across requests, and an unreachable Redis that lets fans through."""

from unittest import mock

import pytest
import redis
from rest_framework.throttling import SimpleRateThrottle

pytestmark = pytest.mark.django_db

REDIS_URL = "redis://127.0.0.1:6379/12"


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


def test_live_fast_path_counts_with_one_round_trip(api_client, two_worlds, local_redis):
    from emotions.selectors import store_live_ranking

    ours, _ = two_worlds
    store_live_ranking(ours.festival)
    api_client.get("/api/v1/public/festivals/ours-fest/live/")  # memoizes the cached entry
    with (
        mock.patch.object(
            redis.client.Pipeline,
            "execute",
            autospec=True,
            side_effect=redis.client.Pipeline.execute,
        ) as pipelined,
        mock.patch.object(redis.Redis, "execute_command", autospec=True) as single,
    ):
        response = api_client.get("/api/v1/public/festivals/ours-fest/live/")
    assert response.status_code == 200
    assert response.json()["festival"] == "ours-fest"
    assert pipelined.call_count == 1 and single.call_count == 0


def test_an_unreachable_redis_lets_fans_through(api_client, two_worlds, settings):
    redis_cache(settings, "redis://127.0.0.1:9/0")  # nothing listens on the discard port
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"fan": "1/minute"}):
        codes = [
            api_client.get("/api/v1/public/festivals/ours-fest/").status_code for _ in range(3)
        ]
    assert codes == [200, 200, 200]
