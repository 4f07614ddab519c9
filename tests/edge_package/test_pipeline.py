"""The capture loop end to end: CLI on a video file into (moto) S3, masks, pause, edge mode."""

import json
import subprocess
import sys
from pathlib import Path

import boto3
import cv2
import numpy as np
import pytest
from moto import mock_aws

from edge_package import cli
from edge_package.config import parse_config
from edge_package.contracts import EMOTIONS, parse_crop_key
from edge_package.pipeline import EdgeRunner
from edge_package.sinks import ObservationSink, S3CropSink
from edge_package.spool import Spool
from edge_package.synthetic import SyntheticCrowdSource

BASE = {"device": "cam-1", "festival": "fest", "stage": "main", "bucket": "crops"}
REPO = Path(__file__).resolve().parents[2]


class Recorder:
    """Test double sink: remembers releases (the real sinks are tested in test_sinks)."""

    def __init__(self):
        self.releases = []

    def send(self, release):
        self.releases.append(release)


def small_crowd(**kwargs):
    params = dict(width=960, height=540, faces=4, min_face=70, max_face=110, seed=3)
    return SyntheticCrowdSource(**{**params, **kwargs})


def _bucket():
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    return s3


@mock_aws
def test_cli_on_a_video_file_puts_crops_under_the_contract_keys(tmp_path, capsys):
    s3 = _bucket()
    video = tmp_path / "crowd.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 15, (960, 540))
    people = set()
    for frame in small_crowd(frames=20):
        writer.write(frame.image)
        people.update(face_id for face_id, *_ in frame.truth)
    writer.release()
    config = tmp_path / "device.json"
    # faces of 70-110 px: no full-resolution tiles needed (min_face_px 64, as above)
    config.write_text(
        json.dumps({**BASE, "spool_dir": str(tmp_path / "spool"), "fps_cap": 60, "min_face_px": 64})
    )
    code = cli.main(["run", "--source", str(video), "--config", str(config), "--quiet"])
    assert code == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["frames"] == 20  # stopped cleanly at the end of the file
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="crops").get("Contents", [])]
    # ~one per person, not one per frame (80 faces seen): each person's first crop after 1 s,
    # and the best crop still waiting when the file ends.
    assert 3 <= len(keys) == summary["uploads"] <= 2 * len(people)
    for key in keys:
        crop = parse_crop_key(key)
        assert (crop.festival, crop.stage, crop.device) == ("fest", "main", "cam-1")
        body = s3.get_object(Bucket="crops", Key=key)["Body"].read()
        image = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR)
        assert max(image.shape[:2]) < 300  # a face crop, never the 960x540 frame


def test_cli_bad_config_and_bad_source_exit_with_a_clear_message(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"device": "cam-1"}))
    assert cli.main(["run", "--source", "0", "--config", str(bad)]) == 2
    assert "festival: missing" in capsys.readouterr().err
    good = tmp_path / "good.json"
    good.write_text(json.dumps(BASE))
    missing = str(tmp_path / "nope.mp4")
    assert cli.main(["run", "--source", missing, "--config", str(good)]) == 3
    assert "video file not found" in capsys.readouterr().err
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video")
    assert cli.main(["run", "--source", str(junk), "--config", str(good)]) == 3
    assert "cannot open" in capsys.readouterr().err
    assert cli.main(["run", "--source", "synthetic:mood=2", "--config", str(good)]) == 3


def test_masked_faces_are_never_cropped():
    left_half = [[0, 0], [0.5, 0], [0.5, 1], [0, 1]]
    cfg = parse_config({**BASE, "masks": [left_half], "throttle_interval_s": 1.0})
    sink = Recorder()
    runner = EdgeRunner(cfg, sink=sink)
    for frame in small_crowd(frames=20):
        runner.process_frame(frame, frame.index / 10)
    runner.flush(99)
    assert runner.masked > 0 and sink.releases
    assert all(r.box[0] + r.box[2] / 2 > 480 for r in sink.releases)


def test_a_paused_device_detects_and_sends_nothing_but_still_reports():
    cfg = parse_config({**BASE, "paused": True, "fps_cap": 60})
    sink = Recorder()
    runner = EdgeRunner(cfg, sink=sink)
    final = runner.run(small_crowd(frames=5))
    assert sink.releases == [] and final["faces_detected"] == 0
    assert runner.telemetry()["paused"] is True


def test_pausing_or_adding_a_mask_drops_crops_already_waiting():
    cfg = parse_config({**BASE, "throttle_interval_s": 10.0})
    for change in ({"paused": True}, {"masks": [[[0, 0], [1, 0], [1, 1], [0, 1]]]}):
        sink = Recorder()
        runner = EdgeRunner(cfg, sink=sink)
        for frame in small_crowd(frames=3):  # faces seen, crops waiting for their first window
            runner.process_frame(frame, frame.index / 10)
        assert runner.throttle.tracks and sink.releases == []
        runner.update_tunables(**change)
        assert runner.flush(99) == [] and sink.releases == []
    runner.update_tunables(paused=False, masks=[])
    runner.process_frame(small_crowd().render(5), 100.0)
    assert runner.throttle.tracks  # unpaused and unmasked: faces are tracked again


def test_every_lingering_face_is_sent_while_uploads_stay_far_below_naive():
    from edge_package.detect import iou

    interval = 2.0
    # Its faces are 70-110 px: min_face_px 64 leaves out the full-resolution tiles (8 of the 11
    # model runs a frame), which only find faces smaller than any here (test_small_faces).
    cfg = parse_config(
        {**BASE, "throttle_interval_s": interval, "detection_threshold": 0.5, "min_face_px": 64}
    )
    sink = Recorder()
    runner = EdgeRunner(cfg, sink=sink)
    positions: dict[int, list] = {}
    naive = 0
    for frame in small_crowd(frames=100, dwell=50, seed=5):  # people come and go
        for face_id, *box in frame.truth:
            positions.setdefault(face_id, []).append(box)
        naive += len(frame.truth)
        runner.process_frame(frame, frame.index / 10)  # 10 fps
    runner.flush(100)
    lingering = [fid for fid, boxes in positions.items() if len(boxes) / 10 >= 2 * interval]
    assert len(lingering) >= 4
    for face_id in lingering:
        assert any(
            iou(release.box, box) > 0.3 for release in sink.releases for box in positions[face_id]
        ), f"face {face_id} was on screen {len(positions[face_id]) / 10:.1f} s but never sent"
    assert len(sink.releases) / naive < 0.1


@mock_aws
def test_edge_mode_sends_scores_and_never_an_image(tmp_path):
    from tests.edge_package.test_sinks import HappyClassifier, _observations_table

    ddb = _observations_table()
    s3 = _bucket()
    cfg = parse_config(
        {
            "device": "cam-1",
            "festival": "fest",
            "stage": "main",
            "mode": "edge",
            "observations_table": "observations",
            "fps_cap": 60,
            "throttle_interval_s": 1.0,
        }
    )
    sink = ObservationSink(
        cfg, Spool(str(tmp_path), 10**7), classifier=HappyClassifier(), client=ddb
    )
    final = EdgeRunner(cfg, sink=sink).run(small_crowd(frames=10))
    items = ddb.scan(TableName="observations")["Items"]
    assert len(items) == final["uploads"] >= 3
    assert all(set(i["emotions"]["M"]) == set(EMOTIONS) for i in items)
    assert s3.list_objects_v2(Bucket="crops").get("KeyCount", 0) == 0


@mock_aws
def test_cloud_runner_counts_bytes_and_reports_them_in_telemetry(tmp_path):
    _bucket()
    cfg = parse_config({**BASE, "fps_cap": 60})
    sink = S3CropSink(cfg, Spool(str(tmp_path), 10**7))
    runner = EdgeRunner(cfg, sink=sink)
    runner.run(small_crowd(frames=8))
    payload = runner.telemetry()
    assert payload["uploads"] == sink.uploads > 0
    assert payload["bytes_sent"] == sink.bytes_sent > 0
    assert payload["spool_depth"] == 0 and payload["errors"] == 0


SERVER_MODULES = ("django", "rest_framework", "festival", "stages", "devices", "emotions", "celery")


def test_edge_package_never_imports_django_or_server_code():
    modules = sorted(
        f"edge_package.{p.stem}"
        for p in (REPO / "edge_package").glob("*.py")
        if p.stem not in ("__main__",)
    )
    assert "edge_package.pipeline" in modules and "edge_package.deeplens" in modules
    script = (
        "import importlib, json, sys\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "from edge_package.synthetic import SyntheticCrowdSource\n"
        "from edge_package.pipeline import EdgeRunner\n"
        "from edge_package.config import parse_config\n"
        "cfg = parse_config({'device': 'd', 'festival': 'f', 'stage': 's', 'bucket': 'b'})\n"
        "class Sink:\n    def send(self, r): pass\n"
        "r = EdgeRunner(cfg, sink=Sink())\n"
        "for f in SyntheticCrowdSource(width=640, height=360, faces=2, frames=3): "
        "r.process_frame(f)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": "/tmp"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd="/"
    )
    assert out.returncode == 0, out.stderr
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    leaked = [m for m in loaded if m.split(".")[0] in SERVER_MODULES]
    assert leaked == []


@pytest.mark.parametrize("module", ["edge_package", "edge_package.greengrass"])
def test_entry_points_show_help(module):
    out = subprocess.run(
        [sys.executable, "-m", module, "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert out.returncode == 0 and "--" in out.stdout


@mock_aws
def test_a_pushed_switch_to_edge_mode_deletes_waiting_crops_and_sends_scores_from_then_on(
    tmp_path,
):
    """A festival switched to edge mode: the running camera swaps its sink, the crops still
    waiting in its spool are deleted (never uploaded), and from then on only scores leave."""
    from edge_package.shadow import apply_pushed
    from tests.edge_package.test_sinks import _observations_table

    s3, ddb = _bucket(), _observations_table()
    cfg = parse_config(
        {**BASE, "observations_table": "observations", "spool_dir": str(tmp_path), "fps_cap": 60}
    )
    runner = EdgeRunner(cfg)  # builds its own production sink, as the entry points do
    assert isinstance(runner.sink, S3CropSink)
    for seq in range(3):  # the link was down: three crops wait in the spool
        runner.sink.spool.put({"captured_at_ms": 1_700_000_000_000 + seq}, b"\xff\xd8jpeg")
    assert apply_pushed(runner, {"mode": "edge"}, "service")
    try:
        assert isinstance(runner.sink, ObservationSink)
        assert runner.sink.spool.depth == 0  # the waiting crops are gone from the disk
        assert not list(tmp_path.glob("*.spool"))
        runner.run(small_crowd(frames=6))
    finally:
        runner.sink.stop()
    assert s3.list_objects_v2(Bucket="crops").get("KeyCount", 0) == 0  # no image ever left
    assert ddb.scan(TableName="observations")["Count"] >= 1


@mock_aws
def test_edge_mode_that_cannot_score_keeps_and_sends_no_crop_and_retries(tmp_path, monkeypatch):
    """The switch to edge mode fails closed: if the camera cannot build its scoring sink (a model
    missing, say), crops are neither kept nor uploaded, the error is reported, and the camera
    tries again later."""
    from edge_package import pipeline
    from edge_package.pipeline import NullSink

    s3 = _bucket()
    cfg = parse_config(
        {**BASE, "observations_table": "observations", "spool_dir": str(tmp_path), "fps_cap": 60}
    )
    runner = EdgeRunner(cfg)
    runner.sink.spool.put({"captured_at_ms": 1}, b"\xff\xd8jpeg")
    real_make_sink = pipeline.make_sink

    def broken(config, spool=None):
        if config.mode == "edge":
            raise RuntimeError("emotion model not installed")
        return real_make_sink(config, spool)

    monkeypatch.setattr(pipeline, "make_sink", broken)
    runner.update_tunables(mode="edge")
    assert isinstance(runner.sink, NullSink) and runner.config.mode == "edge"
    assert "cannot score on the camera" in runner.last_error
    assert not list(tmp_path.glob("*.spool"))  # the waiting crop is gone too
    runner.run(small_crowd(frames=6))
    assert s3.list_objects_v2(Bucket="crops").get("KeyCount", 0) == 0
    assert not list(tmp_path.glob("*.spool"))  # nothing kept while it cannot score
    monkeypatch.setattr(pipeline, "make_sink", real_make_sink)
    runner._sink_retry_at = 0.0
    runner.tick(runner.clock())  # the retry: the model is there now
    try:
        assert isinstance(runner.sink, ObservationSink)
    finally:
        runner.sink.stop()


def test_a_switch_to_edge_mode_without_a_table_is_refused_and_changes_nothing():
    from edge_package.config import ConfigError

    runner = EdgeRunner(parse_config({**BASE, "fps_cap": 60}), sink=Recorder())
    with pytest.raises(ConfigError, match="edge mode needs observations_table"):
        runner.update_tunables(mode="edge")
    assert runner.config.mode == "cloud"


class SteadyFace:
    """Detector double: one face that never moves, so only the throttle decides what is sent."""

    threshold = 0.5

    def detect(self, image):
        from edge_package.detect import Detection

        return [Detection(100.0, 60.0, 90.0, 90.0, 0.9)]


class SteppingClock:
    """A machine of a given speed: every look at the clock costs `step` seconds."""

    def __init__(self, step: float):
        self.step, self.now = step, 1000.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_video_file_sends_the_same_crops_however_fast_the_machine_plays_it(tmp_path):
    """The throttle runs on the file's own timeline: 60 frames at 10 fps are 6 s of a crowd,
    whether this machine needs a second or a minute to play them."""
    from edge_package.sources import VideoSource

    video = tmp_path / "steady.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    rng = np.random.default_rng(1)
    for _ in range(60):
        writer.write(rng.integers(40, 200, (240, 320, 3), dtype=np.uint8))
    writer.release()
    cfg = parse_config({**BASE, "throttle_interval_s": 2, "fps_cap": 60, "min_face_px": 40})
    counts = {}
    for step in (0.0005, 0.5):  # a fast box, then one 1000x slower
        sink = Recorder()
        runner = EdgeRunner(cfg, detector=SteadyFace(), sink=sink, clock=SteppingClock(step))
        assert runner.run(VideoSource(str(video)))["frames"] == 60
        counts[step] = len(sink.releases)
    # first crop after 1 s, then one per 2 s window (3 s, 5 s), and the last one at the end
    assert counts == {0.0005: 4, 0.5: 4}


def test_a_looped_file_keeps_its_timeline_going_forward(tmp_path):
    from edge_package.sources import VideoSource

    video = tmp_path / "short.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    frames = iter(VideoSource(str(video), loop=True))
    times = [next(frames).media_s for _ in range(12)]  # 5 frames a pass, 2.4 passes
    assert times == pytest.approx([i / 10 for i in range(12)])
    assert VideoSource(str(video)).live is False


def test_a_file_after_a_live_camera_is_not_held_by_the_old_timelines_budget(tmp_path):
    from edge_package.sources import VideoSource

    video = tmp_path / "steady.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    rng = np.random.default_rng(2)
    for _ in range(30):
        writer.write(rng.integers(40, 200, (240, 320, 3), dtype=np.uint8))
    writer.release()
    # fps_cap 60: the file plays on its own timeline (media_s) whatever the pace, so the default
    # 15 fps cap only made the 30 frames wait 2 s of wall time
    cfg = parse_config(
        {**BASE, "throttle_interval_s": 1, "upload_budget_per_min": 2, "min_face_px": 40,
         "fps_cap": 60}
    )  # fmt: skip
    sink = Recorder()
    runner = EdgeRunner(cfg, detector=SteadyFace(), sink=sink)
    live = next(iter(VideoSource(str(video))))
    live.media_s = None  # as a camera's frame: on the clock, here at 5000 s
    for second in range(5000, 5010):
        runner.process_frame(live, float(second))
    runner.flush()
    assert len(sink.releases) == 2  # the budget is spent on the clock's timeline
    runner.run(VideoSource(str(video)))  # then a 3 s file, on its own timeline from 0
    assert len(sink.releases) == 4
