"""Comparison runs: the CPU time of one beat refresh (`refresh_comparison_runs`) of a running run.

Run: .venv/bin/python -m bench.bench_comparison  (merges keys into the "comparison" section of
results.json; BENCH_COMPARISON_PAIRS="5000,50000" chooses the sizes, BENCH_COMPARISON_TAG a suffix
for the keys, e.g. "_before" when measuring an older commit).

For each size, a fresh SQLite database (in memory, as the demo's single-file SQLite would be in
the page cache) gets one festival with two cameras (one cloud mode, one edge mode) and a 3-hour
run at sample rate 0.25 that is still running: N pairs stored through the ingest's own path
(`store_pairs`, pages of 500) with Rekognition readings like production's (some crops without
a face, some with two, some unread), and 4 x N observations of the same cameras (every face they
sent; the run sampled a quarter). Timed: one `refresh_comparison_runs()` (the beat task's body),
CPU time of this process (time.process_time: user + sys, which is what the demo's two cores
are short of), the median of RUNS; then one more under tracemalloc for the Python heap's peak.
"""

from __future__ import annotations

import os

import django

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagepulse.settings")
os.environ["DATABASE_URL"] = "sqlite:///:memory:"
django.setup()

import random  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from datetime import UTC, date, datetime, timedelta  # noqa: E402

from django.core.management import call_command  # noqa: E402

from bench.results import record  # noqa: E402

SIZES = [int(n) for n in os.environ.get("BENCH_COMPARISON_PAIRS", "5000,50000").split(",")]
TAG = os.environ.get("BENCH_COMPARISON_TAG", "")
RUNS = 3
OBSERVATIONS_PER_PAIR = 4  # sample rate 0.25


def _flush_tables() -> None:
    call_command("flush", interactive=False, verbosity=0)


def _world(pairs: int):
    from devices.models import Device
    from emotions.comparison import services
    from festival.models import Festival, Organization
    from stages.models import Stage

    org = Organization.objects.create(name="Bench", slug="bench")
    festival = Festival.objects.create(
        organization=org, name="Bench", slug="bench-fest", starts_on=date(2026, 7, 10),
        ends_on=date(2026, 7, 12),
    )  # fmt: skip
    stage = Stage.objects.create(organization=org, festival=festival, name="Main", slug="main")
    cameras = [
        Device.objects.create(
            organization=org,
            festival=festival,
            stage=stage,
            name=f"cam {i}",
            thing_name=f"bench-cam-{i}",
        )  # fmt: skip
        for i in range(2)
    ]
    now = datetime.now(UTC).replace(microsecond=0)
    starts = now - timedelta(hours=3)
    run = services.start_comparison(
        festival, cameras, starts_at=starts, ends_at=now + timedelta(minutes=5),
        sample_rate=0.25, now=starts,
    )  # fmt: skip
    return org, festival, stage, cameras, run, starts, now


def _fill(pairs: int, org, festival, stage, cameras, run, starts) -> None:
    from edge_package.contracts import (
        EMOTIONS,
        CropKey,
        build_comparison_item,
        comparison_reading,
    )
    from emotions.comparison import services
    from emotions.models import Observation
    from emotions.services import Incoming

    rng = random.Random(18)
    step_ms = 3 * 3600 * 1000 / pairs
    page = []
    for i in range(pairs):
        camera = cameras[i % 2]
        mode = "cloud" if i % 2 == 0 else "edge"
        captured_ms = int(starts.timestamp() * 1000 + i * step_ms)
        crop = CropKey(festival.slug, stage.slug, camera.thing_name, captured_ms, i + 1)

        def scores():
            values = {name: round(rng.uniform(0, 20), 2) for name in EMOTIONS}
            values[rng.choice(EMOTIONS)] = round(rng.uniform(40, 95), 2)
            return values

        faces = rng.choices([0, 1, 2], weights=[1, 17, 2])[0]
        rek = comparison_reading(
            available=True, faces=faces, scores=scores(), confidence=99.0,
            done_ms=captured_ms + rng.randint(1500, 4000), calls=round(1 / rng.choice([16, 64]), 4),
        )  # fmt: skip
        local = comparison_reading(
            available=True, faces=1, scores=scores() if rng.random() > 0.05 else {},
            done_ms=captured_ms + rng.randint(80, 300),
        )  # fmt: skip
        item = build_comparison_item(
            crop=crop, run=run.key, mode=mode, organization=org.slug, rekognition=rek,
            local=local, crop_bytes=rng.randint(6000, 12000), edge_bytes=rng.randint(560, 640),
            analyzed_at_ms=captured_ms + 2500,
        )  # fmt: skip
        page.append(Incoming(item=item, received_ms=captured_ms + rng.randint(500, 5000)))
        if len(page) == 500:
            services.store_pairs(page, now=datetime.fromtimestamp(captured_ms / 1000 + 4, tz=UTC))
            page = []
    if page:
        services.store_pairs(page)
    observations = []
    for i in range(pairs * OBSERVATIONS_PER_PAIR):
        captured = starts + timedelta(milliseconds=i * step_ms / OBSERVATIONS_PER_PAIR)
        observations.append(
            Observation(organization=org, festival=festival, stage=stage, device=cameras[i % 2],
                        dynamo_pk=f"{festival.slug}/{stage.slug}", dynamo_sk=f"{i:013d}",
                        captured_at=captured, source="local", top_emotion="HAPPY", happy=50.0)
        )  # fmt: skip
        if len(observations) == 5000:
            Observation.objects.bulk_create(observations)
            observations = []
    Observation.objects.bulk_create(observations)


def _measure(pairs: int) -> dict:
    from emotions.comparison import services
    from emotions.models import ComparisonReading

    _flush_tables()
    org, festival, stage, cameras, run, starts, now = _world(pairs)
    _fill(pairs, org, festival, stage, cameras, run, starts)
    assert ComparisonReading.objects.filter(run=run).count() == pairs
    cpu = []
    for _ in range(RUNS):
        started = time.process_time()
        assert services.refresh_comparison_runs(now=now) == 1
        cpu.append(time.process_time() - started)
    if os.environ.get("BENCH_COMPARISON_PROFILE"):
        import cProfile
        import pstats

        profile = cProfile.Profile()
        profile.runcall(services.refresh_comparison_runs, now=now)
        pstats.Stats(profile).sort_stats("cumulative").print_stats(25)
    tracemalloc.start()
    services.refresh_comparison_runs(now=now)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    run.refresh_from_db()
    assert run.result["pairs"] == pairs
    return {
        f"refresh_cpu_ms_{pairs}_pairs{TAG}": round(statistics.median(cpu) * 1000, 1),
        f"refresh_peak_python_mib_{pairs}_pairs{TAG}": round(peak / 2**20, 2),
    }


def main() -> dict:
    call_command("migrate", verbosity=0)
    figures = {
        "refresh_setup": (
            "one running 3-hour run, 2 cameras (cloud + edge mode), N pairs via store_pairs, "
            "4 x N observations; SQLite in memory; CPU time (process_time), median of 3"
        ),
    }
    for pairs in SIZES:
        measured = _measure(pairs)
        print(measured, flush=True)
        figures.update(measured)
    print(record("comparison", figures, merge=True))
    return figures


if __name__ == "__main__":
    main()
