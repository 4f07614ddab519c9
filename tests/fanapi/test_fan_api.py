"""The public fan API: anonymous, read-only, only for public festivals, with now/next."""

from datetime import timedelta

import pytest
from django.utils import timezone

from stages.models import Set

pytestmark = pytest.mark.django_db


def test_lists_only_public_festivals(api_client, two_worlds):
    response = api_client.get("/api/v1/public/festivals/")
    assert response.status_code == 200
    assert [f["slug"] for f in response.json()] == ["ours-fest"]


def test_private_festival_is_404_everywhere(api_client, two_worlds):
    for suffix in ("", "stages/", "lineup/"):
        response = api_client.get(f"/api/v1/public/festivals/theirs-fest/{suffix}")
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"


def test_lineup_has_now_and_next_per_stage(api_client, two_worlds):
    ours, _ = two_worlds
    now = timezone.now()
    Set.objects.all().delete()
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Playing",
        starts_at=now - timedelta(minutes=30),
        ends_at=now + timedelta(minutes=30),
    )
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Up next",
        starts_at=now + timedelta(minutes=45),
        ends_at=now + timedelta(minutes=90),
    )
    body = api_client.get("/api/v1/public/festivals/ours-fest/lineup/").json()
    (row,) = body["now_next"]
    assert row["stage"]["slug"] == "main"
    assert row["now"]["artist"] == "Playing"
    assert row["next"]["artist"] == "Up next"
    assert [s["artist"] for s in body["sets"]] == ["Playing", "Up next"]


def test_no_personal_or_internal_fields(api_client, two_worlds):
    body = api_client.get("/api/v1/public/festivals/ours-fest/").json()
    assert set(body) == {"slug", "name", "timezone", "starts_on", "ends_on", "stages"}


def test_writes_are_not_allowed(api_client, two_worlds):
    response = api_client.post("/api/v1/public/festivals/ours-fest/lineup/", {})
    assert response.status_code == 405


def test_fan_api_is_throttled_with_the_common_error_format(api_client, two_worlds, mid_minute):
    from unittest import mock

    from rest_framework.throttling import SimpleRateThrottle

    rates = {"fan": "3/minute", "telemetry": "30/minute"}
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", rates):
        codes = [
            api_client.get("/api/v1/public/festivals/ours-fest/").status_code for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        response = api_client.get("/api/v1/public/festivals/ours-fest/")
    assert response.json()["error"]["code"] == "throttled"
    assert "Retry-After" in response


def test_live_fast_path_is_throttled_too(api_client, two_worlds, mid_minute):
    from unittest import mock

    from rest_framework.throttling import SimpleRateThrottle

    from emotions.live_cache import store_live_ranking

    ours, _ = two_worlds
    store_live_ranking(ours.festival)  # a fresh cached ranking: the fast path answers
    url = "/api/v1/public/festivals/ours-fest/live/"
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"fan": "2/minute"}):
        codes = [api_client.get(url).status_code for _ in range(3)]
        refused = api_client.get(url)
    assert codes == [200, 200, 429]
    assert refused.json()["error"]["code"] == "throttled"
