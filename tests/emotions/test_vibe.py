"""The live vibe and ranking on constructed rollups, with hand-computed expectations."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from emotions.live_cache import (
    cached_live_entry,
    live_cache_key,
    live_ranking,
    live_refresh_claim_key,
    store_live_ranking,
)
from emotions.models import MinuteRollup
from emotions.selectors import compute_live_ranking, stage_timeline
from stages.models import Stage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 7, 10, 18, 30, tzinfo=UTC)  # exactly on a minute: window = 5 full minutes


def add_minutes(stage, start, minutes, faces_per_minute, happy, calm, surprised=0.0):
    """Each face scores `happy`/`calm`/`surprised`; top expression is the largest."""
    top = max(("HAPPY", happy), ("CALM", calm), ("SURPRISED", surprised), key=lambda p: p[1])[0]
    for i in range(minutes):
        MinuteRollup.objects.create(
            organization=stage.organization,
            festival=stage.festival,
            stage=stage,
            minute=start + timedelta(minutes=i),
            faces=faces_per_minute,
            counts={top: faces_per_minute},
            sums={
                "HAPPY": happy * faces_per_minute,
                "CALM": calm * faces_per_minute,
                "SURPRISED": surprised * faces_per_minute,
            },
        )


@pytest.fixture
def stages(two_worlds):
    ours, _ = two_worlds
    main = ours.stage
    main.typical_crowd = 10
    main.save()
    tent = Stage.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        name="Tent",
        slug="tent",
        typical_crowd=10,
    )
    tiny = Stage.objects.create(
        organization=ours.organization, festival=ours.festival, name="Tiny", slug="tiny"
    )
    return ours.festival, main, tent, tiny


def test_happy_full_stage_ranks_above_calm_stage_and_small_bucket_is_suppressed(stages):
    festival, main, tent, tiny = stages
    window = NOW - timedelta(minutes=5)
    add_minutes(main, window, 5, 10, happy=90, calm=5)  # energy .9, crowd 10/10 -> 93.0
    add_minutes(tent, window, 5, 5, happy=10, calm=85, surprised=10)  # energy .2, crowd .5 -> 29.0
    add_minutes(tiny, window, 1, 3, happy=99, calm=0)  # 3 faces < 5: suppressed
    ranking = compute_live_ranking(festival, at=NOW)
    rows = {r["stage"]["slug"]: r for r in ranking["stages"]}
    assert rows["main"]["vibe"] == 93.0
    assert rows["tent"]["vibe"] == 29.0
    assert [r["stage"]["slug"] for r in ranking["stages"]] == ["main", "tent", "tiny"]
    assert [r["rank"] for r in ranking["stages"]] == [1, 2, None]
    assert rows["tiny"] == {
        **rows["tiny"],
        "suppressed": True,
        "faces": None,
        "vibe": None,
        "expression_share": None,
    }
    assert rows["main"]["faces"] == 50
    assert rows["main"]["expression_share"]["HAPPY"] == 100.0
    assert rows["main"]["now_playing"] == "Ours Artist"


def test_trend_compares_with_the_previous_window(stages):
    festival, main, tent, _ = stages
    add_minutes(main, NOW - timedelta(minutes=10), 5, 10, happy=30, calm=60)  # before: 51.0
    add_minutes(main, NOW - timedelta(minutes=5), 5, 10, happy=90, calm=5)  # now: 93.0
    add_minutes(tent, NOW - timedelta(minutes=10), 5, 10, happy=50, calm=40)
    add_minutes(tent, NOW - timedelta(minutes=5), 5, 10, happy=48, calm=40)
    rows = {r["stage"]["slug"]: r for r in compute_live_ranking(festival, at=NOW)["stages"]}
    assert (rows["main"]["trend"], rows["main"]["trend_delta"]) == ("rising", 42.0)
    assert rows["tent"]["trend"] == "steady"


def test_crowd_norm_is_learned_when_not_set(stages):
    festival, _, _, tiny = stages
    add_minutes(tiny, NOW - timedelta(minutes=60), 1, 20, happy=50, calm=50)  # busiest: 20/min
    add_minutes(tiny, NOW - timedelta(minutes=5), 5, 10, happy=50, calm=50)  # 10/min now
    rows = {r["stage"]["slug"]: r for r in compute_live_ranking(festival, at=NOW)["stages"]}
    assert rows["tiny"]["vibe"] == round(100 * (0.7 * 0.5 + 0.3 * 0.5), 1)


def test_raising_the_minimum_suppresses_more(stages):
    festival, main, _, _ = stages
    add_minutes(main, NOW - timedelta(minutes=5), 5, 10, happy=90, calm=5)
    festival.min_faces_public = 50
    festival.save()
    rows = compute_live_ranking(festival, at=NOW)["stages"]
    assert all(r["suppressed"] for r in rows)


def test_timeline_per_minute_with_suppression(stages):
    festival, main, _, _ = stages
    add_minutes(main, NOW - timedelta(minutes=3), 1, 8, happy=90, calm=5)
    add_minutes(main, NOW - timedelta(minutes=2), 1, 2, happy=90, calm=5)
    points = stage_timeline(festival, main, at=NOW, minutes=3)
    assert [p["faces"] for p in points] == [8, None, None, None]
    assert [p["suppressed"] for p in points] == [False, True, True, True]


def test_live_endpoint_public_only_and_cacheable(api_client, stages, two_worlds):
    festival, main, _, _ = stages
    response = api_client.get(f"/api/v1/public/festivals/{festival.slug}/live/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=5"
    body = response.json()
    assert {r["stage"]["slug"] for r in body["stages"]} == {"main", "tent", "tiny"}
    assert body["min_faces"] == 5
    _, theirs = two_worlds
    assert (
        api_client.get(f"/api/v1/public/festivals/{theirs.festival.slug}/live/").status_code == 404
    )
    response = api_client.get(f"/api/v1/public/festivals/{festival.slug}/stages/main/timeline/")
    assert response.status_code == 200 and len(response.json()) == 61
    assert (
        api_client.get(
            f"/api/v1/public/festivals/{festival.slug}/stages/nope/timeline/"
        ).status_code
        == 404
    )


def test_a_private_festivals_cached_ranking_never_reaches_the_fan_api(api_client, two_worlds):
    _, theirs = two_worlds
    store_live_ranking(theirs.festival)  # ingest caches every festival's ranking
    assert cached_live_entry(theirs.festival.slug) is not None
    response = api_client.get(f"/api/v1/public/festivals/{theirs.festival.slug}/live/")
    assert response.status_code == 404


def aged(entry: dict, seconds: float) -> dict:
    """Put a copy of `entry`, `seconds` old, in the cache as if another process had stored it."""
    from django.core.cache import cache

    from emotions.live_cache import forget_memoized_live_entries

    old = {**entry, "at": entry["at"] - seconds}
    cache.set(live_cache_key(entry["ranking"]["festival"]), old, 120)
    forget_memoized_live_entries()
    return old


def test_ingest_refresh_is_served_and_stale_copy_covers_a_refresh_in_progress(stages):
    from django.core.cache import cache

    festival, main, _, _ = stages
    first = store_live_ranking(festival)
    assert live_ranking(festival) == first["ranking"]  # fresh: no recompute
    stale = aged(first, 60)
    cache.add(live_refresh_claim_key(festival.slug, stale), 1, 10)  # someone else refreshes it
    add_minutes(main, NOW, 1, 9, happy=90, calm=5)
    assert live_ranking(festival) == first["ranking"]  # the stale copy, not a second recompute
    store_live_ranking(festival)  # ... and their refresh lands
    assert live_ranking(festival)["generated_at"] != first["ranking"]["generated_at"]


def test_an_ageing_ranking_is_refreshed_ahead_by_exactly_one_request(api_client, stages):
    from unittest import mock

    from emotions import selectors

    festival, *_ = stages
    first = store_live_ranking(festival)
    url = f"/api/v1/public/festivals/{festival.slug}/live/"
    aged(first, 1)  # young: served as is
    with mock.patch.object(selectors, "compute_live_ranking", wraps=compute_live_ranking) as calc:
        assert api_client.get(url).status_code == 200
        assert calc.call_count == 0
        aged(first, 4.5)  # still fresh, but due: the first request refreshes it, no one else
        bodies = [api_client.get(url).json() for _ in range(3)]
    assert calc.call_count == 1
    assert bodies[0] != json.loads(first["json"])  # the refreshed ranking ...
    assert bodies[0] == bodies[1] == bodies[2]  # ... served to everyone after


def test_a_failed_recompute_serves_the_last_copy_and_lets_the_next_request_retry(
    api_client, stages, caplog
):
    from unittest import mock

    from django.db import OperationalError

    from emotions import selectors

    festival, *_ = stages
    stale = aged(store_live_ranking(festival), 30)
    url = f"/api/v1/public/festivals/{festival.slug}/live/"
    with mock.patch.object(
        selectors, "compute_live_ranking", side_effect=OperationalError("database is down")
    ):
        response = api_client.get(url)
    assert response.status_code == 200
    assert response.content == stale["json"]  # the last copy, not an error page
    assert "could not be recomputed" in caplog.text
    assert api_client.get(url).content != stale["json"]  # database back: recomputed at once


def test_a_request_that_loses_the_refresh_claim_serves_the_copy_without_recomputing(
    api_client, stages
):
    from unittest import mock

    from django.core.cache import cache

    from emotions import selectors

    festival, *_ = stages
    ageing = aged(store_live_ranking(festival), 4.5)  # due for a refresh
    cache.add(live_refresh_claim_key(festival.slug, ageing), 1, 10)  # another process claimed it
    url = f"/api/v1/public/festivals/{festival.slug}/live/"
    with mock.patch.object(selectors, "compute_live_ranking", wraps=compute_live_ranking) as calc:
        responses = [api_client.get(url) for _ in range(3)]
    assert calc.call_count == 0
    assert [r.content for r in responses] == [ageing["json"]] * 3


def test_a_festival_made_private_loses_its_cached_ranking_at_the_next_refresh(api_client, stages):
    festival, *_ = stages
    aged(store_live_ranking(festival), 4.5)
    festival.public = False
    festival.save()
    response = api_client.get(f"/api/v1/public/festivals/{festival.slug}/live/")
    assert response.status_code == 404
    assert cached_live_entry(festival.slug) is None


def test_the_claimant_serves_its_copy_when_the_database_is_down(api_client, stages):
    from unittest import mock

    from django.db import OperationalError

    from festival.models import Festival

    festival, *_ = stages
    ageing = aged(store_live_ranking(festival), 4.5)
    with mock.patch.object(Festival.objects, "filter", side_effect=OperationalError("down")):
        response = api_client.get(f"/api/v1/public/festivals/{festival.slug}/live/")
    assert response.status_code == 200 and response.content == ageing["json"]
