"""Frame sources: synthetic crowd parameters and ground truth, folders, video files, Ctrl-C."""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_package.detect import iou
from edge_package.sources import FolderSource, SourceError, VideoSource, open_source
from edge_package.synthetic import SMILING, SyntheticCrowdSource

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("mood", "smiling"), [(1.0, 1.0), (0.0, 0.0)])
def test_mood_sets_the_share_of_smiling_faces(mood, smiling):
    source = SyntheticCrowdSource(width=640, height=360, faces=10, mood=mood, seed=1)
    share = sum(face.portrait in SMILING for face in source.crowd) / len(source.crowd)
    assert share == smiling


def test_a_mixed_mood_crowd_has_both_kinds():
    source = SyntheticCrowdSource(faces=40, mood=0.5, seed=2, min_face=48, max_face=60)
    share = sum(face.portrait in SMILING for face in source.crowd) / 40
    assert 0.3 < share < 0.7


def test_synthetic_ground_truth_matches_where_faces_are_drawn(blazeface):
    source = SyntheticCrowdSource(
        width=960,
        height=540,
        faces=3,
        min_face=90,
        max_face=120,
        blur=0,
        occlusion=0,
        mood=1,
        seed=4,
    )
    frame = source.render(0)
    assert frame.image.shape == (540, 960, 3) and len(frame.truth) == 3
    found = blazeface.detect(frame.image)
    for _, *box in frame.truth:
        assert max(iou(d.box, box) for d in found) > 0.5


def test_people_leave_and_are_replaced_over_time():
    source = SyntheticCrowdSource(width=640, height=360, faces=4, dwell=10, seed=5)
    first = {t[0] for t in source.render(0).truth}
    later = {t[0] for t in source.render(40).truth}
    assert len(later) == 4 and first != later


def test_synthetic_parameters_parse_and_bad_ones_are_named():
    source = open_source("synthetic:faces=3,mood=0.9,width=320,height=240,frames=2")
    assert [f.index for f in source] == [0, 1]
    with pytest.raises(SourceError, match="unknown synthetic parameter 'colour'"):
        open_source("synthetic:colour=red")
    with pytest.raises(SourceError, match="faces='many' is not a number"):
        open_source("synthetic:faces=many")
    with pytest.raises(SourceError, match="mood must be within 0..1"):
        open_source("synthetic:mood=3")


def test_folder_source_reads_images_in_order_and_skips_broken_files(tmp_path, astronaut):
    cv2.imwrite(str(tmp_path / "b.png"), astronaut)
    cv2.imwrite(str(tmp_path / "a.jpg"), astronaut[:100])
    (tmp_path / "c.jpg").write_bytes(b"broken")
    (tmp_path / "notes.txt").write_text("ignored")
    source = open_source(str(tmp_path))
    assert isinstance(source, FolderSource)
    shapes = [f.image.shape[0] for f in source]
    assert shapes == [100, 512] and source.skipped == [str(tmp_path / "c.jpg")]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no images"):
        FolderSource(str(empty))


def test_video_source_ends_cleanly_or_loops(tmp_path):
    path = str(tmp_path / "clip.mp4")
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    for value in range(5):
        writer.write(np.full((240, 320, 3), value * 40, np.uint8))
    writer.release()
    assert len(list(VideoSource(path))) == 5
    looped = VideoSource(path, loop=True)
    frames = []
    for frame in looped:
        frames.append(frame)
        if len(frames) == 12:
            break
    looped.close()
    assert len(frames) == 12


def spooled_enough(line: str) -> bool:
    """A status line ("fps .. | frames N | .. | spool N | ..") with > 5 frames, >= 3 spooled."""
    fields = dict(part.strip().rsplit(" ", 1) for part in line.split("|") if " " in part.strip())
    try:
        return int(fields.get("frames", 0)) > 5 and int(fields.get("spool", 0)) >= 3
    except ValueError:  # not a status line
        return False


def test_ctrl_c_stops_the_cli_cleanly_and_keeps_unsent_crops(tmp_path):
    config = tmp_path / "device.json"
    spool = tmp_path / "spool"
    config.write_text(
        json.dumps(
            {
                "device": "cam-1",
                "festival": "fest",
                "stage": "main",
                "bucket": "crops",
                "spool_dir": str(spool),
                "throttle_interval_s": 1.0,
            }
        )
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: S3 is "down"
    }
    source = "synthetic:width=640,height=360,faces=3,min_face=60,max_face=90,fps=15"
    proc = subprocess.Popen(
        [sys.executable, "-m", "edge_package", "run", "--source", source, "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    # Ctrl-C once the live status shows frames and 3 crops spooled (polled, not a fixed sleep)
    status = []
    reader = threading.Thread(target=lambda: status.extend(proc.stderr), daemon=True)
    reader.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        if any(spooled_enough(line) for line in list(status)):
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out = proc.communicate(timeout=60)[0]
    reader.join(timeout=10)
    err = "".join(status)
    assert proc.returncode == 0, err
    assert "fps" in err and "uploads" in err  # the live status line
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["frames"] > 5 and summary["uploads"] == 0
    assert summary["spool_depth"] >= 3 and "S3 unreachable" in summary["last_error"]
    assert len(list(spool.glob("*.spool"))) == summary["spool_depth"]


class FakeCapture:
    """Stands in for cv2.VideoCapture on an RTSP stream that drops twice."""

    opened: list = []
    script: list = []

    def __init__(self, target):
        type(self).opened.append(target)
        self.reads = type(self).script.pop(0) if type(self).script else []

    def isOpened(self):  # noqa: N802 (OpenCV's name)
        return self.reads is not None

    def read(self):
        if self.reads:
            return True, self.reads.pop(0)
        return False, None

    def release(self):
        pass


def test_a_dropped_rtsp_stream_is_reopened_and_capture_goes_on(monkeypatch):
    image = np.zeros((48, 64, 3), np.uint8)
    # first connection: 2 frames then a drop; a failed reconnect; then 3 frames and a final drop.
    FakeCapture.opened, FakeCapture.script = [], [[image, image], None, [image] * 3, None, None]
    monkeypatch.setattr("edge_package.sources.cv2.VideoCapture", FakeCapture)
    slept = []
    source = VideoSource("rtsp://cam/stream", max_reconnects=2, sleep=slept.append)
    frames = []
    with pytest.raises(SourceError, match="did not come back after 2 reconnects"):
        for frame in source:
            frames.append(frame.index)
    assert frames == [0, 1, 2, 3, 4]
    assert slept == [1.0, 2.0, 1.0, 2.0]  # exponential backoff, reset after a good reconnect
    assert source.reconnects == 4
