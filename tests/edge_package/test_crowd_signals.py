"""Crowd signals on the camera: motion energy that stage lights cannot fake, masks honoured,
resolution independence, sound level, the DynamoDB sink, and face-free mode."""

from __future__ import annotations

import math
import wave

import boto3
import cv2
import numpy as np
import pytest
from boto3.dynamodb.types import TypeDeserializer
from botocore.exceptions import EndpointConnectionError
from moto import mock_aws

from edge_package import audio
from edge_package.config import parse_config
from edge_package.contracts import (
    build_crowd_signal_item,
    from_dynamodb,
    observation_table_definition,
    validate_crowd_signal_item,
)
from edge_package.crowd import CrowdSignals
from edge_package.motion import MotionMeter
from edge_package.pipeline import EdgeRunner
from edge_package.sinks import CrowdSignalSink
from edge_package.sources import Frame
from edge_package.spool import Spool
from edge_package.synthetic import SyntheticCrowdSource

RATE = 2.5  # frames per second rendered: every frame is 0.4 s on, so each one makes a pair
BASE = {"device": "cam-1", "festival": "fest", "stage": "main", "bucket": "crops"}
T0_MS = 1_764_633_600_000  # a window boundary


def crowd(**kwargs) -> SyntheticCrowdSource:
    params = dict(
        width=960, height=540, faces=12, fps=RATE, seed=5, noise=3.0, dwell=10**6, drift=0.0
    )
    return SyntheticCrowdSource(**{**params, **kwargs})


def energies(frames, masks=None) -> list[float]:
    meter = MotionMeter(masks)
    measured = [meter.update(image, i / RATE) for i, image in enumerate(frames)]
    return [m[0] for m in measured if m is not None]


def mean_energy(frames, masks=None) -> float:
    values = energies(frames, masks)
    assert values, "no pair was measured"
    return sum(values) / len(values)


def frames_of(source, count: int = 20) -> list[np.ndarray]:
    return [source.render(i).image for i in range(count)]


@pytest.fixture(scope="module")
def scenes():
    return {
        "still": frames_of(crowd()),
        "strobe": frames_of(crowd(lighting="strobe")),
        "wash": frames_of(crowd(lighting="wash")),
        "light": frames_of(crowd(dance=0.3)),
        "hard": frames_of(crowd(dance=1.0)),
    }


def test_a_dancing_crowd_reads_high_and_a_harder_one_higher(scenes):
    still, light, hard = (mean_energy(scenes[k]) for k in ("still", "light", "hard"))
    assert still < 0.1
    assert light > 0.25 and hard > light + 0.1


@pytest.mark.parametrize("lights", ["strobe", "wash"])
def test_strobes_and_colour_washes_over_a_still_crowd_read_low(scenes, lights):
    """The lights change every pixel, the people do not move: no energy, pair by pair."""
    values = energies(scenes[lights])
    assert max(values, default=0.0) < 0.2, values
    assert mean_energy(scenes[lights]) < 0.1
    # frame differencing, which the meter does not use, would read these lights as motion
    diffs = [
        np.abs(a.astype(int) - b.astype(int)).mean()
        for a, b in zip(scenes[lights], scenes[lights][1:], strict=False)
    ]
    still = [
        np.abs(a.astype(int) - b.astype(int)).mean()
        for a, b in zip(scenes["still"], scenes["still"][1:], strict=False)
    ]
    assert np.mean(diffs) > 3 * np.mean(still)


def test_a_strobe_does_not_hide_real_dancing():
    hard_strobe = mean_energy(frames_of(crowd(dance=1.0, lighting="strobe")))
    assert hard_strobe > 0.3


def test_a_masked_dancing_area_reads_nothing():
    dancing, still = crowd(dance=1.0, seed=8), crowd(seed=8)
    composite = []
    for i in range(20):
        frame = still.render(i).image.copy()
        frame[:, :480] = dancing.render(i).image[:, :480]  # the left half dances
        composite.append(frame)
    left = [[[0, 0], [0.5, 0], [0.5, 1], [0, 1]]]
    assert mean_energy(composite) > 0.3
    assert mean_energy(composite, masks=left) < 0.1
    everything = [[[0, 0], [1, 0], [1, 1], [0, 1]]]
    assert energies(composite, masks=everything) == []  # nothing left to measure


def test_720p_and_1080p_of_the_same_scene_read_the_same_energy():
    for dance in (0.3, 1.0):
        full_hd = frames_of(
            crowd(width=1920, height=1080, min_face=96, max_face=220, dance=dance), 12
        )
        hd = [cv2.resize(f, (1280, 720), interpolation=cv2.INTER_AREA) for f in full_hd]
        assert mean_energy(full_hd) == pytest.approx(mean_energy(hd), abs=0.05)


def fills(frames) -> list[float]:
    meter = MotionMeter()
    measured = [meter.update(image, i / RATE) for i, image in enumerate(frames)]
    return [m[1] for m in measured if m is not None]


def test_crowd_fill_is_higher_for_a_full_moving_crowd_than_an_empty_floor():
    empty = fills(frames_of(crowd(faces=0)))
    full = fills(frames_of(crowd(faces=20, dance=0.6)))
    assert np.mean(empty) < 0.1 < 0.5 < np.mean(full)


# --- windows and items ----------------------------------------------------------------------


def test_one_item_per_window_with_the_peak_face_count():
    config = parse_config({**BASE, "observations_table": "obs"})
    signals = CrowdSignals(config)
    frames = frames_of(crowd(dance=0.8), 30)  # 12 s at 0.4 s a frame: one window closes
    items = []
    for i, image in enumerate(frames):
        at_ms = T0_MS + int(i * 400)
        items += signals.faces(3 if i == 4 else 1, at_ms)
        items += signals.update(image, i / RATE, at_ms)
    assert len(items) == 1
    item = items[0]
    assert item["captured_at_ms"] == T0_MS + 10_000 and item["faces_seen"] == 3
    assert 0.2 < item["motion_energy"] <= item["motion_energy_max"] <= 1.0
    assert "sound_level_dbfs" not in item  # no microphone
    assert validate_crowd_signal_item(item) == item


# --- sound ----------------------------------------------------------------------------------


def test_dbfs_of_a_full_scale_sine_and_of_silence():
    t = np.arange(16000) / 16000
    sine = np.sin(2 * np.pi * 440 * t)
    assert audio.dbfs(float(np.mean(sine**2))) == pytest.approx(-3.01, abs=0.01)
    assert audio.dbfs(0.0) == -120.0
    assert audio.leq([-10.0, -10.0]) == pytest.approx(-10.0)
    assert audio.leq([-10.0, -120.0]) == pytest.approx(-13.01, abs=0.01)  # power, not dB, mean


def test_a_wav_file_gives_one_level_per_second(tmp_path):
    path = tmp_path / "room.wav"
    rate = 8000
    quiet, loud = 0.01, 0.5  # -43 and -9 dBFS (RMS of a sine is amplitude / sqrt 2)
    t = np.arange(rate) / rate
    signal = np.concatenate(
        [quiet * np.sin(2 * np.pi * 200 * t), loud * np.sin(2 * np.pi * 200 * t)]
    )
    with wave.open(str(path), "wb") as out:
        out.setnchannels(2)
        out.setsampwidth(2)
        out.setframerate(rate)
        pcm = (np.repeat(signal, 2) * 32767).astype("<i2")
        out.writeframes(pcm.tobytes())
    source = audio.open_audio(f"wav:{path}")
    meter = audio.SoundMeter()
    for second in range(3):  # the third second loops back to the start
        for chunk in range(10):
            meter.feed(source.read(rate // 10), second * 1000 + chunk * 100)
    meter.feed(np.zeros(1), 3000)  # closes the third second
    levels = [round(level) for _, level in meter.levels]
    assert levels == [round(20 * math.log10(quiet / math.sqrt(2))), -9, -43]
    assert meter.between(1, 2) == [meter.levels[1][1]]


def test_synthetic_sound_is_at_its_level_and_bad_specs_are_refused():
    source = audio.open_audio("synthetic:level=-12,bpm=128")
    samples = source.read(16000)
    assert audio.dbfs(float(np.mean(samples.astype(float) ** 2))) == pytest.approx(-12, abs=1.5)
    for spec in ("synthetic:level=5", "synthetic:volume=3", "mic", "wav:/nope.wav"):
        with pytest.raises(audio.AudioError):
            audio.open_audio(spec)


def test_the_window_carries_the_equivalent_sound_level():
    config = parse_config({**BASE, "observations_table": "obs"})
    meter = audio.SoundMeter()
    meter.levels.extend((T0_MS // 1000 + s, -20.0) for s in range(10))
    signals = CrowdSignals(config, sound=meter)
    frames = frames_of(crowd(dance=0.5), 27)
    items = [
        item
        for i, image in enumerate(frames)
        for item in signals.update(image, i / RATE, T0_MS + int(i * 400))
    ]
    assert items and items[0]["sound_level_dbfs"] == pytest.approx(-20.0)


# --- the sink -------------------------------------------------------------------------------


class FlakyDynamo:
    def __init__(self, client):
        self.client, self.down = client, False

    def put_item(self, **kwargs):
        if self.down:
            raise EndpointConnectionError(endpoint_url="https://dynamodb.example")
        return self.client.put_item(**kwargs)


def _table():
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(**observation_table_definition("obs"))
    return ddb


def _items(ddb) -> list[dict]:
    rows = ddb.scan(TableName="obs")["Items"]
    return [
        from_dynamodb({k: TypeDeserializer().deserialize(v) for k, v in r.items()}) for r in rows
    ]


def signal(end_ms: int) -> dict:
    return build_crowd_signal_item(
        festival="fest", stage="main", device="cam-1", window_end_ms=end_ms, motion_energy=0.4,
        motion_energy_max=0.6, crowd_fill=0.5, faces_seen=0, face_free=True,
    )  # fmt: skip


@mock_aws
def test_the_sink_writes_each_window_once_and_spools_while_offline(tmp_path):
    ddb = FlakyDynamo(_table())
    config = parse_config({**BASE, "observations_table": "obs"})
    sink = CrowdSignalSink(config, Spool(str(tmp_path), 1_000_000), client=ddb, backoff_s=0)
    sink.send(signal(T0_MS))
    sink.send(signal(T0_MS))  # a replay: the conditional put writes nothing new
    ddb.down = True
    sink.send(signal(T0_MS + 10_000))
    assert sink.spool.depth == 1 and sink.errors == 1
    ddb.down = False
    assert sink.pump() == 1 and sink.spool.depth == 0
    items = _items(ddb.client)
    assert sorted(i["sk"] for i in items) == [
        f"{T0_MS:013d}#cam-1#crowd",
        f"{T0_MS + 10_000:013d}#cam-1#crowd",
    ]
    assert all(validate_crowd_signal_item(i) == i for i in items)


# --- face-free mode ---------------------------------------------------------------------------


class NoDetectorAllowed:
    threshold = 0.5

    def detect(self, image):
        raise AssertionError("face-free mode ran the face detector")


class Recorder:
    def __init__(self):
        self.releases = []

    def send(self, release):
        self.releases.append(release)


@mock_aws
def test_face_free_mode_runs_no_detector_sends_no_face_and_still_sends_crowd_signals(tmp_path):
    ddb = _table()
    config = parse_config({**BASE, "observations_table": "obs", "face_free": True})
    recorder = Recorder()
    spool = Spool(str(tmp_path), 1_000_000)
    runner = EdgeRunner(
        config,
        detector=NoDetectorAllowed(),
        sink=recorder,
        signal_sink=CrowdSignalSink(config, spool, client=ddb),
    )
    for i, image in enumerate(frames_of(crowd(dance=0.8), 27)):
        runner.process_frame(Frame(image=image, index=i, captured_at_ms=T0_MS + i * 400), i / RATE)
    runner.flush()
    assert recorder.releases == [] and runner.faces_detected == 0
    items = _items(ddb)
    assert items and all(i["kind"] == "crowd" for i in items)  # no face item at all
    assert all(i["face_free"] is True and i["faces_seen"] == 0 for i in items)
    telemetry = runner.telemetry()
    assert telemetry["face_free"] is True and 0 < telemetry["motion_energy"] <= 1


def test_a_face_free_runner_loads_no_detector_until_faces_are_allowed_again():
    config = parse_config({**BASE, "face_free": True, "detector": "haar"})
    runner = EdgeRunner(config, sink=Recorder())
    assert runner.detector is None
    runner.process_frame(Frame(image=crowd().render(0).image, index=0, captured_at_ms=T0_MS), 0.0)
    assert runner.detector is None
    runner.update_tunables(face_free=False)
    assert runner.detector is not None


def test_switching_face_free_on_deletes_the_faces_waiting_for_upload(tmp_path):
    class SpoolSink(Recorder):
        def __init__(self, spool):
            super().__init__()
            self.spool = spool

    spool = Spool(str(tmp_path), 1_000_000)
    spool.put({"key": "faces/a.jpg"}, b"\xff\xd8crop")
    runner = EdgeRunner(parse_config({**BASE, "detector": "haar"}), sink=SpoolSink(spool))
    runner.update_tunables(face_free=True)
    assert spool.depth == 0
