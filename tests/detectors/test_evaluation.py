"""detectors.evaluation: one scoring loop over any frames (synthetic or a recorded, labelled
video), and the annotation format's checks with messages that say what is wrong."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from detectors import evaluation
from detectors.evaluation import Clip, parse_annotations
from tests.clips import MEDIUM_FACES, write_labelled_clip

SMALL_CLIP = Clip.parse("frames=2,width=480,height=270,faces=3,min_face=24,max_face=96,seed=7")
KEYS = {
    "fps",
    "recall",
    "precision",
    "recall_at_0_6",
    "precision_at_0_6",
    "faces_scored",
    "true_positives",
    "false_positives",
    "uploads",
    "budget_refusals",
    "naive_uploads",
    "bytes_sent",
    "throttle_interval_s",
    "jpeg_quality",
    "cpu_fps",
}


def test_the_synthetic_clip_goes_through_the_generic_loop(blazeface):
    figures = evaluation.evaluate(blazeface, SMALL_CLIP, threshold=0.45)
    assert set(figures) == KEYS  # the bench and the gate read these
    again = evaluation.evaluate_frames(
        blazeface,
        evaluation.synthetic_frames(SMALL_CLIP),
        fps=SMALL_CLIP.fps,
        threshold=0.45,
        min_face=SMALL_CLIP.min_face,
    )
    for timing in ("fps", "cpu_fps"):
        figures.pop(timing), again.pop(timing)
    assert figures == again and figures["faces_scored"] == 6


def test_a_recorded_clip_reads_back_with_its_labels(tmp_path):
    path = tmp_path / "clip.avi"
    _, document = write_labelled_clip(path, frames=3, labelled={0, 2}, **MEDIUM_FACES)
    info = evaluation.probe_video(str(path))
    assert (info.width, info.height, info.frames, info.fps) == (480, 270, 3, 15.0)
    annotations = parse_annotations(json.dumps(document), frames=3, width=480, height=270)
    assert annotations.labelled_frames == 2 and annotations.faces == 6
    frames = list(evaluation.recorded_frames(str(path), annotations, fps=15.0))
    assert [f.index for f in frames] == [0, 1, 2]
    assert frames[1].truth is None  # played, not scored
    assert frames[0].truth == [(n, *box) for n, box in enumerate(document["frames"]["0"])]
    assert frames[2].captured_at_ms == 133


def test_unlabelled_frames_are_played_but_not_scored(tmp_path, blazeface):
    path = tmp_path / "clip.avi"
    _, document = write_labelled_clip(path, frames=3, labelled={1}, **MEDIUM_FACES)
    annotations = parse_annotations(document, frames=3, width=480, height=270)
    figures = evaluation.evaluate_recording(blazeface, str(path), annotations, threshold=0.45)
    assert figures["faces_scored"] == 3  # frame 1's faces only
    assert figures["recall"] == 1.0 and figures["precision"] == 1.0
    assert figures["naive_uploads"] >= 8  # the detector ran on all three frames
    assert (figures["frames"], figures["labelled_frames"], figures["clip_fps"]) == (3, 1, 15.0)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"{not json", "annotations are not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (
            {"frames": {"0": [[10, 10, -5, 20]]}},
            "frame 0, box 0: width and height must be positive",
        ),
        ({"frames": {"1": [[10, 10, 20, 0]]}}, "frame 1, box 0: width and height must be positive"),
        ({"frames": {"0": [[300, 10, 40, 40]]}}, "is outside the 320x240 frame"),
        ({"frames": {"0": [[-1, 10, 40, 40]]}}, "is outside the 320x240 frame"),
        ({"frames": {"9": []}}, "frame 9 is outside the video, which has 5 frames (0..4)"),
        ({"frames": {"-1": []}}, "frame index '-1' is not a whole number"),
        ({"frames": {}}, "no labelled frame"),
        ({"frames": {"0": [[1, 2, 3]]}}, "expected [x, y, w, h] in pixels"),
        ({"fps": 0, "frames": {"0": []}}, "fps 0 must be a number above 0"),
        ({"boxes": {}}, "unknown annotation keys boxes"),
    ],
)
def test_bad_annotations_say_what_is_wrong(raw, message):
    with pytest.raises(ValueError) as caught:
        parse_annotations(raw, frames=5, width=320, height=240)
    assert message in str(caught.value)


def test_a_labelled_frame_without_faces_counts_every_detection_as_false(tmp_path):
    annotations = parse_annotations({"frames": {"0": []}}, frames=1, width=64, height=64)
    assert annotations.truth(0) == [] and annotations.truth(1) is None
    assert annotations.as_json() == {"min_face": evaluation.MIN_FACE, "frames": {"0": []}}


def test_a_file_that_is_not_a_video_is_refused(tmp_path):
    path = tmp_path / "clip.avi"
    path.write_bytes(b"RIFF\x00\x00\x00\x00AVI " + b"\x00" * 200)
    with pytest.raises(ValueError, match="cannot be opened|no frame"):
        evaluation.probe_video(str(path))


@pytest.mark.parametrize(
    "raw, message",
    [
        ('{"frames": {"0": [[NaN, 10, 40, 40]]}}', "NaN is not allowed"),
        ('{"fps": Infinity, "frames": {"0": []}}', "Infinity is not allowed"),
        ('{"frames": {"0": [[10, 10, -Infinity, 40]]}}', "-Infinity is not allowed"),
        ('{"frames": {"0": [[10, 10, 1e400, 40]]}}', "must be finite numbers"),
        ({"frames": {"0": [[float("nan"), 10, 40, 40]]}}, "must be finite numbers"),
        ({"frames": {"0": [[10, 10, 40, float("inf")]]}}, "must be finite numbers"),
        ({"fps": float("nan"), "frames": {"0": []}}, "fps nan must be a number"),
    ],
)
def test_non_finite_numbers_are_refused(raw, message):
    with pytest.raises(ValueError) as caught:
        parse_annotations(raw, frames=5, width=320, height=240)
    assert message in str(caught.value)


@pytest.mark.parametrize("raw", ["[" * 100_000 + "]" * 100_000, '{"a":' * 100_000])
def test_deeply_nested_annotations_are_a_value_error(raw):
    with pytest.raises(ValueError, match="nested too deeply"):
        parse_annotations(raw, frames=5, width=320, height=240)


def test_decoding_stops_after_the_frame_cap(tmp_path, monkeypatch):
    path = tmp_path / "clip.avi"
    write_labelled_clip(path, frames=6, **MEDIUM_FACES)
    reads = []
    real = evaluation.cv2.VideoCapture

    class Counting:
        def __init__(self, *args):
            self.capture = real(*args)

        def read(self):
            reads.append(1)
            return self.capture.read()

        def __getattr__(self, name):
            return getattr(self.capture, name)

    monkeypatch.setattr(evaluation.cv2, "VideoCapture", Counting)
    with pytest.raises(evaluation.VideoTooLarge, match="more than 4 frames"):
        evaluation.probe_video(str(path), max_frames=4)
    assert len(reads) == 5
    reads.clear()
    assert evaluation.probe_video(str(path), max_frames=6).frames == 6 and len(reads) == 7


def test_frames_larger_than_4k_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "clip.avi"
    write_labelled_clip(path, frames=2, **MEDIUM_FACES)
    with pytest.raises(evaluation.VideoTooLarge, match="480x270 frames are larger than"):
        evaluation.probe_video(str(path), max_pixels=480 * 269)
    big = tmp_path / "big.avi"
    writer = cv2.VideoWriter(str(big), cv2.VideoWriter_fourcc(*"MJPG"), 15, (3840, 2176))
    writer.write(np.zeros((2176, 3840, 3), np.uint8))
    writer.release()
    with pytest.raises(evaluation.VideoTooLarge, match="3840x2176 frames are larger than"):
        evaluation.probe_video(str(big))
    # The header is checked before any frame is decoded.
    monkeypatch.setattr(cv2.VideoCapture, "read", lambda self: pytest.fail("decoded a frame"))
    with pytest.raises(evaluation.VideoTooLarge):
        evaluation.probe_video(str(big))


def test_frames_before_score_from_go_through_the_loop_unscored(blazeface):
    """A scheduled detector's first sweep can be left out of the score; the loop still sees it."""
    scored = evaluation.evaluate(blazeface, SMALL_CLIP, threshold=0.45)
    later = evaluation.evaluate_frames(
        blazeface,
        evaluation.synthetic_frames(SMALL_CLIP),
        fps=SMALL_CLIP.fps,
        threshold=0.45,
        min_face=SMALL_CLIP.min_face,
        score_from=SMALL_CLIP.frames - 1,
    )
    assert later["faces_scored"] < scored["faces_scored"]
    assert later["naive_uploads"] == scored["naive_uploads"]  # every frame was still detected
