"""pipeline.facefree_rank_spearman: in face-free mode, does the live ranking follow the crowds?

Runs `manage.py run_demo --face-free` (the whole demo topology; the four simulated cameras run
the real edge_package on synthetic crowds that dance with the amplitude and rhythm of their
stage's scripted mood, operations.demo.CROWDS, and detect no face) for `BENCH_FACEFREE_S` seconds
(default 240) on a throwaway SQLite database. Every `POLL_S` seconds after the first ranked
answer it reads `GET /api/v1/public/festivals/pulse-2026/live/` and computes Spearman's rank
correlation between the stages' `vibe_v2` and their scripted moods (stages without a number
left out; a sample needs three). The figure is the mean over the samples; target >= 0.8.

No face is involved: the run also checks that no observation row and no crop exists. A run
where no stage ever gets a number (the cameras send no crowd signal) ends without recording.
"""

from __future__ import annotations

import json
import os
import sqlite3
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.bench_freshness import FESTIVAL, finished_demo, start_demo, stop_demo

ROOT = Path(__file__).resolve().parent.parent
FACEFREE_SECONDS = int(os.environ.get("BENCH_FACEFREE_S", 240))
CAMERA_FPS = float(os.environ.get("BENCH_FACEFREE_CAMERA_FPS", 2.0))
POLL_S = 5.0
TARGET = 0.8


def ranks(values: list[float]) -> list[float]:
    """1-based ranks, ties sharing their average rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
    result = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            result[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return result


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's correlation of the ranks (handles ties); None when either side is constant."""
    rx, ry = ranks(xs), ranks(ys)
    n = len(xs)
    mx, my = sum(rx) / n, sum(ry) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(rx, ry, strict=True))
    sxx = sum((a - mx) ** 2 for a in rx)
    syy = sum((b - my) ** 2 for b in ry)
    if sxx == 0 or syy == 0:
        return None
    return sxy / (sxx * syy) ** 0.5


def sample(payload: dict, moods: dict[str, float]) -> float | None:
    ranked = [
        (row["vibe_v2"], moods[row["stage"]["slug"]])
        for row in payload.get("stages", [])
        if row.get("vibe_v2") is not None and row["stage"]["slug"] in moods
    ]
    if len(ranked) < 3:
        return None
    return spearman([v for v, _ in ranked], [m for _, m in ranked])


def poll_live(url: str) -> dict | None:
    try:
        with urllib.request.urlopen(url, timeout=3) as response:
            return json.load(response) if response.status == 200 else None
    except (OSError, ValueError):
        return None


def main() -> int:
    sys.path.insert(0, str(ROOT))
    from bench.results import record, stamp

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagepulse.settings")
    import django

    django.setup()  # operations.demo imports models; the bench itself touches no database
    from operations.demo import CROWDS

    moods = {slug: crowd["mood"] for slug, crowd in CROWDS.items()}
    started = time.monotonic()
    samples: list[float] = []
    components_seen: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="bench-facefree-") as tmp:
        demo, db_path, web_port, _, log_path = start_demo(
            Path(tmp), FACEFREE_SECONDS, "--face-free", "--camera-fps", str(CAMERA_FPS)
        )
        url = f"http://127.0.0.1:{web_port}/api/v1/public/festivals/{FESTIVAL}/live/"
        try:
            while demo.poll() is None:
                tick = time.monotonic()
                if tick - started > FACEFREE_SECONDS + 400:
                    raise SystemExit("the demo did not stop in time")
                payload = poll_live(url)
                if payload is not None:
                    value = sample(payload, moods)
                    if value is not None:
                        samples.append(value)
                    for row in payload.get("stages", []):
                        components_seen |= {
                            name for name, part in (row.get("components") or {}).items() if part
                        }
                time.sleep(max(0.0, POLL_S - (time.monotonic() - tick)))
        finally:
            stop_demo(demo)
        log_text, faces_in_db = finished_demo(demo, log_path, db_path)
        with sqlite3.connect(f"file:{db_path}?mode=ro", uri=True) as db:
            windows = db.execute("SELECT COUNT(*) FROM emotions_crowdsignal").fetchone()[0]
    elapsed = time.monotonic() - started
    if not samples:
        print(log_text[-3000:], file=sys.stderr)
        print(
            f"no ranked sample: {windows} crowd windows ingested; the cameras sent no crowd "
            "signal (is edge_package's motion/crowd signal side there?)",
            file=sys.stderr,
        )
        return 1
    mean = sum(samples) / len(samples)
    figures = {
        "facefree_rank_spearman": round(mean, 3),
        "facefree_rank_spearman_min": round(min(samples), 3),
        "facefree_samples": len(samples),
        "facefree_crowd_windows": windows,
        "facefree_face_rows": faces_in_db,
        "facefree_components": sorted(components_seen),
        "facefree_demo_s": FACEFREE_SECONDS,
        "facefree_bench_wall_s": round(elapsed, 1),
        "facefree_target": TARGET,
        **stamp("facefree_"),
        "facefree_method": (
            "run_demo --face-free (4 simulated cameras, real edge_package, no face detected); "
            f"every {POLL_S:g} s /live's vibe_v2 per stage against operations.demo.CROWDS moods: "
            "Spearman per answer (stages with a number, >= 3), mean over the answers"
        ),
    }
    print(json.dumps(record("pipeline", figures, merge=True), indent=2))
    return 0 if mean >= TARGET and faces_in_db == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
