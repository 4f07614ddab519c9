"""A comparison run's result is aggregated in the database: for many pairs it is the result the
page showed when every pair was read into Python (tests/emotions/comparison_reference.py), and
the beat's refresh reads no pair into Python and asks the same number of queries at any size."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.apps import apps
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from devices.models import Device
from edge_package.contracts import (
    EMOTIONS,
    CropKey,
    build_comparison_item,
    comparison_reading,
)
from emotions.comparison import services
from emotions.models import ComparisonReading, Observation
from emotions.services import Incoming
from tests.emotions import comparison_reference

pytestmark = pytest.mark.django_db

backfill = __import__(
    "emotions.migrations.0008_comparison_reading_aggregates", fromlist=["backfill"]
).backfill


@pytest.fixture
def world(two_worlds):
    ours, _ = two_worlds
    today = timezone.now().date()
    ours.festival.starts_on, ours.festival.ends_on = today - timedelta(days=1), today + timedelta(1)
    ours.festival.save()
    ours.edge_device = Device.objects.create(
        organization=ours.organization, festival=ours.festival, stage=ours.stage,
        name="edge cam", thing_name="ours-cam-edge",
    )  # fmt: skip
    return ours


def _run(world, now, hours=3):
    starts = now - timedelta(hours=hours)
    return services.start_comparison(
        world.festival, [world.device, world.edge_device], starts_at=starts,
        ends_at=now + timedelta(minutes=10), sample_rate=0.25, now=starts,
    )  # fmt: skip


def _scores(rng, decimals: int | None) -> dict:
    """Scores as Rekognition gives them (decimals=None), or rounded: rounded scores make means
    that fall on a tie (27.05 to one decimal), where the order of a float sum shows."""

    def score(low: float, high: float) -> float:
        value = rng.uniform(low, high)
        return value if decimals is None else round(value, decimals)

    values = {name: score(0, 20) for name in EMOTIONS}
    values[rng.choice(EMOTIONS)] = score(30, 95)
    return values


def _fill(world, run, pairs: int, *, seed: int, observations: int = 0, decimals=None) -> None:
    """`pairs` pairs over the run's window, through the ingest's path: both modes, Rekognition
    missing on some, crops without a face or with two, faces a backend could not read, edge-mode
    readings without a time; and `observations` faces the cameras sent."""
    rng = random.Random(seed)
    span_ms = (run.ends_at - run.starts_at).total_seconds() * 1000 - 11 * 60_000
    start_ms = int(run.starts_at.timestamp() * 1000)
    cameras = [(world.device, "cloud"), (world.edge_device, "edge")]
    page = []
    for i in range(pairs):
        device, mode = rng.choice(cameras)
        captured_ms = start_ms + int(rng.uniform(0, span_ms))
        seq = seed * 100_000 + i
        crop = CropKey(world.festival.slug, world.stage.slug, device.thing_name, captured_ms, seq)
        if rng.random() < 0.1:
            rek = comparison_reading(available=False, reason=rng.choice(["no_rekognition", "x"]))
        else:
            faces = rng.choices([0, 1, 2, 3], weights=[3, 14, 2, 1])[0]
            read = {} if rng.random() < 0.05 else _scores(rng, decimals)
            rek = comparison_reading(
                available=True, faces=faces, scores=read,
                done_ms=captured_ms + rng.randint(1500, 4000), calls=1 / rng.choice([3, 16, 64]),
            )  # fmt: skip
        local = comparison_reading(
            available=rng.random() > 0.05, reason="no_local_model", faces=1,
            scores={} if rng.random() < 0.05 else _scores(rng, decimals),
            done_ms=0 if rng.random() < 0.05 else captured_ms + rng.randint(80, 300),
        )  # fmt: skip
        item = build_comparison_item(
            crop=crop, run=run.key, mode=mode, organization=world.organization.slug,
            rekognition=rek, local=local, crop_bytes=rng.choice([0, rng.randint(6000, 12000)]),
            edge_bytes=rng.choice([0, rng.randint(560, 640)]), analyzed_at_ms=captured_ms + 2500,
        )  # fmt: skip
        page.append(Incoming(item=item, received_ms=captured_ms + rng.randint(200, 6000)))
        if len(page) == 250:
            when = datetime.fromtimestamp(captured_ms / 1000 + rng.uniform(1, 9), tz=UTC)
            assert services.store_pairs(page, now=when)[0] == len(page)
            page = []
    if page:
        services.store_pairs(page)
    Observation.objects.bulk_create(
        Observation(
            organization=world.organization,
            festival=world.festival,
            stage=world.stage,
            device=rng.choice(cameras)[0],
            dynamo_pk="p",
            dynamo_sk=f"s{seed}-{i}",
            captured_at=run.starts_at + timedelta(milliseconds=rng.uniform(0, span_ms)),
            source="local",
            top_emotion="HAPPY",
        )  # fmt: skip
        for i in range(observations)
    )


def _without_new_figures(result: dict) -> dict:
    """The result less what the Python computation did not have (camera_reading_missing)."""
    return {k: v for k, v in result.items() if k != "camera_reading_missing"}


def test_many_pairs_give_the_result_every_pair_in_python_gave(world):
    now = timezone.now()
    run = _run(world, now)
    _fill(world, run, 3000, seed=18, observations=4000, decimals=2)
    result = services.compute_result(run, now=now)
    assert _without_new_figures(result) == comparison_reference.build_result(run, now=now)
    missing = ComparisonReading.objects.filter(run=run, local_available=False).count()
    assert result["camera_reading_missing"] == {"pairs": missing, "reasons": ["no_local_model"]}
    # the data reached every branch: both modes, Rekognition missing, faces missing and extra,
    # unread faces, several hours, compared minutes, and a verdict
    assert result["pairs"] == 3000 and result["modes"]["edge"] > 1000
    assert result["rekognition_missing_reasons"] == ["no_rekognition", "x"]
    seen = result["faces_seen"]
    assert seen["camera_only"] and seen["rekognition_extra"] and seen["rekognition_unread"]
    assert seen["camera_model_unread"] and len(result["hours"]) >= 3
    assert result["vibe"]["compared_minutes"] > 100 and result["latency"]["edge"]["n"] > 1000


def test_a_finished_run_is_the_same_and_the_demo_without_rekognition_too(world):
    now = timezone.now()
    run = _run(world, now, hours=1)
    _fill(world, run, 400, seed=7, observations=100)
    ComparisonReading.objects.update(rekognition_available=False, rekognition_calls=0)
    later = run.ends_at + timedelta(minutes=30)
    result = services.compute_result(run, now=later)
    assert _without_new_figures(result) == comparison_reference.build_result(run, now=later)
    assert result["status"] == "finished" and result["agreement"]["share"] is None


def test_pairs_stored_before_the_aggregates_existed_are_worked_out_by_the_migration(world):
    now = timezone.now()
    run = _run(world, now)
    _fill(world, run, 600, seed=3, decimals=2)
    expected = comparison_reference.build_result(run, now=now)
    ComparisonReading.objects.update(
        latency_s=None, rekognition_lively=0, rekognition_read=False, local_lively=0,
        local_read=False,
    )  # fmt: skip
    stale = _without_new_figures(services.compute_result(run, now=now))
    assert stale != expected  # what the new columns carry
    backfill(apps, None)
    assert _without_new_figures(services.compute_result(run, now=now)) == expected


def _refresh_cost(now) -> tuple[int, int]:
    """(queries, pairs read into Python) of one beat refresh."""
    loaded = []
    original = ComparisonReading.from_db.__func__

    def counting_from_db(cls, *args, **kwargs):
        loaded.append(1)
        return original(cls, *args, **kwargs)

    with (
        mock.patch.object(ComparisonReading, "from_db", classmethod(counting_from_db)),
        CaptureQueriesContext(connection) as queries,
    ):
        assert services.refresh_comparison_runs(now=now) == 1
    return len(queries), len(loaded)


def test_the_refresh_reads_no_pair_and_its_queries_do_not_grow_with_the_pairs(world):
    now = timezone.now()
    run = _run(world, now)
    _fill(world, run, 20, seed=1, observations=50)
    small_queries, small_loaded = _refresh_cost(now)
    _fill(world, run, 2000, seed=2, observations=2000)
    run.refresh_from_db()
    assert run.pairs == 2020
    big_queries, big_loaded = _refresh_cost(now)
    assert small_loaded == big_loaded == 0
    assert big_queries == small_queries <= 20
    run.refresh_from_db()
    assert run.result["pairs"] == 2020
