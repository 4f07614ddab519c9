"""Crowd signals on the camera: what motion energy costs, and whether stage lights fake it.

- `edge.motion_cost_share`: the crowd signal's share of EdgeRunner.process_frame time at 1080p,
  15 fps media time, with the real BlazeFace detector (target <= 0.10); also its milliseconds per
  second of video (`edge.motion_ms_per_s_1080p`) and per frame in face-free mode.
- `edge.strobe_false_energy_rate`: share of the measured seconds of a still crowd under strobes or
  colour washes whose energy reaches ENERGETIC (target <= 0.1); `edge.strobe_unmeasured_share`:
  the seconds of those scenes with no usable pair (skipped across a flash, not read as 0).
- `edge.motion_energy`: mean and max per-second energy per case (a still crowd: nobody comes,
  goes or drifts; still, still+strobe,
  still+wash, light dancing, hard dancing), at 1080p and 15 fps.

Records into the "edge" section (stamped `motion_measured_at`) without removing bench_edge's
figures; bench_edge, which replaces the section, carries these over (FIGURE_KEYS).
`python -m bench.bench_edge_motion [--seconds N]`.
"""

from __future__ import annotations

import argparse
import time

from bench.results import record, stamp
from edge_package.config import parse_config
from edge_package.crowd import CrowdSignals
from edge_package.detect import BlazeFaceDetector
from edge_package.motion import MotionMeter
from edge_package.pipeline import EdgeRunner
from edge_package.sources import Frame
from edge_package.synthetic import SyntheticCrowdSource

FPS = 15.0
ENERGETIC = 0.2  # a second at or above this reads as dancing (light dancing is ~0.4)
CASES = {
    "still": {},
    "still_strobe": {"lighting": "strobe"},
    "still_wash": {"lighting": "wash"},
    "light_dancing": {"dance": 0.3},
    "hard_dancing": {"dance": 1.0},
}
# What this module writes into the "edge" section (bench_edge keeps them when it rewrites it).
FIGURE_KEYS = (
    "motion_cost_share",
    "motion_ms_per_s_1080p",
    "motion_loop_ms_per_frame_1080p",
    "facefree_loop_ms_per_frame_1080p",
    "facefree_motion_share",
    "strobe_false_energy_rate",
    "strobe_unmeasured_share",
    "motion_energy",
    "motion_settings",
    "motion_measured_at",
    "motion_machine",
)
BASE = {"device": "bench-cam", "festival": "bench", "stage": "main", "bucket": "b"}


def scene(**kwargs) -> SyntheticCrowdSource:
    params = dict(
        width=1920, height=1080, faces=12, fps=FPS, seed=11, noise=3.0, dwell=10**6, drift=0.0
    )
    return SyntheticCrowdSource(**{**params, **kwargs})


def per_second(source, seconds: int) -> tuple[list[float], int]:
    """Per-second energies of `seconds` of the scene, and how many seconds had none."""
    meter = MotionMeter()
    by_second: dict[int, list[float]] = {}
    for index in range(int(seconds * FPS)):
        now = index / FPS
        measured = meter.update(source.render(index).image, now)
        if measured is not None:
            by_second.setdefault(int(now), []).append(measured[0])
    values = [sum(v) / len(v) for v in by_second.values()]
    return values, seconds - len(values)


class Timed(CrowdSignals):
    """The runner's crowd signal, timed."""

    spent = 0.0

    def update(self, image, now, wall_ms):
        started = time.perf_counter()
        try:
            return super().update(image, now, wall_ms)
        finally:
            Timed.spent += time.perf_counter() - started


class Keep:
    def send(self, release):
        pass


def loop_cost(frames: int, face_free: bool) -> tuple[float, float]:
    """(seconds in process_frame, seconds in the crowd signal) over `frames` 1080p frames."""
    source = scene(dance=0.6)
    images = [source.render(i).image for i in range(min(frames, 45))]
    config = parse_config({**BASE, "face_free": face_free})
    detector = None if face_free else BlazeFaceDetector(threads=1)
    runner = EdgeRunner(config, detector=detector, sink=Keep())
    runner.crowd = Timed(config)
    Timed.spent = 0.0
    total = 0.0
    wall0 = 1_764_633_600_000
    for i in range(frames):
        frame = Frame(
            image=images[i % len(images)], index=i, captured_at_ms=wall0 + int(i * 1000 / FPS)
        )
        started = time.perf_counter()
        runner.process_frame(frame, i / FPS)
        total += time.perf_counter() - started
    return total, Timed.spent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=20, help="seconds of each lighting case")
    parser.add_argument("--frames", type=int, default=150, help="1080p frames timed in the loop")
    args = parser.parse_args()
    energy = {}
    false_seconds = measured_seconds = unmeasured = 0
    for name, params in CASES.items():
        values, missing = per_second(scene(**params), args.seconds)
        energy[name] = {
            "mean": round(sum(values) / len(values), 3) if values else None,
            "max": round(max(values), 3) if values else None,
            "seconds_measured": len(values),
            "seconds_unmeasured": missing,
        }
        if name in ("still_strobe", "still_wash"):
            false_seconds += sum(v >= ENERGETIC for v in values)
            measured_seconds += len(values)
            unmeasured += missing
        print(name, energy[name], flush=True)
    loop_s, motion_s = loop_cost(args.frames, face_free=False)
    free_loop_s, free_motion_s = loop_cost(args.frames, face_free=True)
    media_s = args.frames / FPS
    figures = {
        **stamp("motion_"),
        "motion_cost_share": round(motion_s / loop_s, 4),
        "motion_ms_per_s_1080p": round(1000 * motion_s / media_s, 2),
        "motion_loop_ms_per_frame_1080p": round(1000 * loop_s / args.frames, 2),
        "facefree_loop_ms_per_frame_1080p": round(1000 * free_loop_s / args.frames, 2),
        "facefree_motion_share": round(free_motion_s / free_loop_s, 4),
        "strobe_false_energy_rate": round(false_seconds / measured_seconds, 4)
        if measured_seconds
        else None,
        "strobe_unmeasured_share": round(unmeasured / (unmeasured + measured_seconds), 4),
        "motion_energy": energy,
        "motion_settings": {
            "fps": FPS,
            "resolution": "1920x1080",
            "energetic_threshold": ENERGETIC,
            "seconds_per_case": args.seconds,
            "frames_timed": args.frames,
            "detector": "blazeface (1 thread)",
        },
    }
    assert set(figures) == set(FIGURE_KEYS), set(figures) ^ set(FIGURE_KEYS)
    print(record("edge", figures, merge=True))


if __name__ == "__main__":
    main()
