"""Camera input health on synthetic frames: a covered lens, a stream stuck on one frame and a dark
stage are told apart from a live crowd, cheaply, and reach telemetry inside the contract."""

from __future__ import annotations

import numpy as np
from jsonschema import Draft202012Validator

from edge_package.config import parse_config
from edge_package.contracts import TELEMETRY_CONTRACT_VERSION, TELEMETRY_SCHEMA
from edge_package.input_health import InputHealth, thumbnail
from edge_package.pipeline import EdgeRunner, NullSink
from edge_package.sources import Frame
from edge_package.synthetic import SyntheticCrowdSource

BASE = {"device": "cam-1", "festival": "fest", "stage": "main", "bucket": "crops"}
RNG = np.random.default_rng(7)


def noisy(level: float, sigma: float = 3.0, shape=(270, 480, 3)) -> np.ndarray:
    """A flat picture of `level` with sensor noise, as a live camera delivers even a still scene."""
    return np.clip(RNG.normal(level, sigma, shape), 0, 255).astype(np.uint8)


class NoFaces:
    threshold = 0.5

    def detect(self, image):
        return []


def test_a_live_crowd_is_healthy():
    """A slow crowd repeats a frame now and then (the demo's synthetic one does, for up to a few
    seconds), far from the minute the service calls frozen."""
    health = InputHealth()
    longest = 0.0
    crowd = SyntheticCrowdSource(width=960, height=540, faces=3, frames=300, seed=3)
    for t, frame in enumerate(crowd):
        health.update(frame.image, t / 15)
        longest = max(longest, health.stats()["input_frozen_s"])
        assert health.stats()["input_black_s"] == 0
    assert longest < 5
    assert health.stats()["input_luma"] > 40 and health.stats()["input_motion"] > 0


def test_a_covered_lens_counts_black_seconds_and_a_lit_frame_ends_it():
    health = InputHealth()
    for second in range(41):
        health.update(noisy(3), float(second))
    assert health.stats()["input_black_s"] == 40
    health.update(noisy(120), 41.0)
    assert health.stats()["input_black_s"] == 0


def test_a_stream_stuck_on_one_frame_is_frozen_but_a_still_noisy_scene_is_not():
    stuck = noisy(120)
    health = InputHealth()
    for second in range(61):
        health.update(stuck, float(second))
    assert health.stats()["input_frozen_s"] == 59  # from the first repeat on
    still = InputHealth()
    for second in range(61):
        still.update(noisy(120), float(second))  # same scene, a real sensor's noise
    assert still.stats()["input_frozen_s"] == 0


def test_a_dark_stage_reads_dark_not_black():
    health = InputHealth()
    for second in range(5):
        health.update(noisy(25), float(second))
    stats = health.stats()
    assert 20 < stats["input_luma"] < 30 and stats["input_black_s"] == 0


def test_the_measure_looks_at_a_thumbnail_not_the_whole_frame():
    thumb = thumbnail(noisy(100, shape=(1080, 1920, 3)))
    assert thumb.shape == (36, 64) and thumb.dtype == np.float32  # of 1920 x 1080
    assert thumbnail(np.zeros((480, 640), dtype=np.uint8)).shape == (48, 64)  # grey input too


def test_the_runner_reports_input_health_in_telemetry_within_the_contract():
    runner = EdgeRunner(parse_config(BASE), detector=NoFaces(), sink=NullSink())
    stuck = noisy(4)
    for index in range(40):
        runner.process_frame(Frame(image=stuck, index=index, captured_at_ms=0), float(index))
    payload = runner.telemetry()
    assert payload["contract"] == TELEMETRY_CONTRACT_VERSION >= 2
    assert payload["input_black_s"] == 39 and payload["input_luma"] < 12
    assert list(Draft202012Validator(TELEMETRY_SCHEMA).iter_errors(payload)) == []


def test_a_paused_camera_does_not_look_at_its_frames_for_input_health_either():
    runner = EdgeRunner(parse_config({**BASE, "paused": True}), detector=NoFaces(), sink=NullSink())
    for index in range(5):
        runner.process_frame(Frame(image=noisy(4), index=index, captured_at_ms=0), float(index))
    payload = runner.telemetry()
    assert not {k for k in payload if k.startswith("input_")}


def test_the_schema_bounds_the_input_fields():
    validator = Draft202012Validator(TELEMETRY_SCHEMA)
    base = {"device_id": "c", "software_version": "1", "sent_at_ms": 1, "analysis_mode": "cloud"}
    for bad in ({"input_luma": 256}, {"input_motion": -1}, {"input_frozen_s": 10**20}):
        assert list(validator.iter_errors({**base, **bad})), bad
