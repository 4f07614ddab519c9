"""Crop geometry, masks, quality gate, and the dedupe/throttle that keeps uploads frugal."""

import cv2
import numpy as np
import pytest

from edge_package.crop import MaskSet, QualityGate, crop_region, encode_jpeg, make_crop
from edge_package.detect import Detection
from edge_package.synthetic import PORTRAIT_FACES
from edge_package.tracker import Throttle, UploadBudget

GATE = QualityGate(min_face_px=48)


@pytest.mark.parametrize(
    ("det", "expected"),
    [
        (Detection(100, 100, 80, 80, 0.9), (80, 80, 120, 120)),  # margin all round
        (Detection(0, 0, 80, 80, 0.9), (0, 0, 100, 100)),  # top-left corner: clamped
        (Detection(600, 420, 40, 60, 0.9), (590, 405, 50, 75)),  # bottom-right: clamped
        (Detection(-10, 200, 60, 60, 0.9), (0, 185, 65, 90)),  # box partly outside the frame
    ],
)
def test_crop_region_grows_by_the_margin_and_stays_inside_the_frame(det, expected):
    assert crop_region(det, 640, 480, 0.25) == expected


def test_crop_at_the_frame_border_is_a_real_slice_of_the_face(astronaut):
    x, y, w, h = PORTRAIT_FACES["astronaut"]
    frame = astronaut[y + 20 :, x + 30 :]  # the face is cut by the top-left border
    crop, reason = make_crop(frame, Detection(0, 0, w - 30, h - 20, 0.9), margin=0.25, gate=GATE)
    assert reason == ""
    assert crop.region[:2] == (0, 0)
    rw, rh = crop.region[2:]
    assert np.array_equal(crop.image, frame[:rh, :rw])


def test_large_crops_are_capped_and_encode_to_a_small_jpeg(grace_hopper):
    x, y, w, h = PORTRAIT_FACES["grace_hopper"]
    big = cv2.resize(grace_hopper, None, fx=2, fy=2)
    crop, _ = make_crop(big, Detection(2 * x, 2 * y, 2 * w, 2 * h, 0.9), margin=0.25, gate=GATE)
    assert max(crop.image.shape[:2]) == 320
    jpeg = encode_jpeg(crop.image, 85)
    assert jpeg[:2] == b"\xff\xd8" and len(jpeg) < 40_000
    assert len(encode_jpeg(crop.image, 40)) < len(jpeg)


def test_quality_gate_rejects_small_blurry_dark_and_bright_faces(astronaut):
    x, y, w, h = PORTRAIT_FACES["astronaut"]
    det = Detection(x, y, w, h, 0.9)
    assert make_crop(astronaut, det, margin=0.2, gate=GATE)[1] == ""
    small = Detection(x, y, 40, 40, 0.9)
    assert make_crop(astronaut, small, margin=0.2, gate=GATE) == (None, "small")
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 6)
    assert make_crop(blurred, det, margin=0.2, gate=GATE) == (None, "blurry")
    dark = (astronaut * 0.1).astype(np.uint8)
    assert make_crop(dark, det, margin=0.2, gate=GATE) == (None, "dark")
    bright = np.full_like(astronaut, 250)
    assert make_crop(bright, det, margin=0.2, gate=GATE) == (None, "bright")


def test_a_detection_covering_most_of_the_frame_is_never_sent(astronaut):
    whole = Detection(20, 20, 470, 470, 0.99)
    assert make_crop(astronaut, whole, margin=0.25, gate=GATE) == (None, "frame-sized")


def test_masks_cover_faces_whose_centre_is_inside_a_polygon():
    bar = MaskSet([[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]])  # top-left quarter
    assert bar.covers(Detection(100, 100, 50, 50, 0.9), 1000, 1000)
    assert not bar.covers(Detection(600, 100, 50, 50, 0.9), 1000, 1000)
    # A face straddling the edge counts by its centre: here the centre is outside.
    assert not bar.covers(Detection(480, 100, 60, 60, 0.9), 1000, 1000)
    assert not MaskSet([]).covers(Detection(100, 100, 50, 50, 0.9), 1000, 1000)


def test_one_face_over_100_frames_is_sent_once_per_interval_with_the_sharpest_crop():
    throttle = Throttle(interval_s=2.0, budget_per_min=100, first_wait_s=0.5)
    sent = []
    for frame in range(100):  # 10 fps for 10 s; the face drifts slowly
        now = frame * 0.1
        box = (100 + frame * 0.5, 200, 60, 60)
        sharpness = 100 - abs(frame % 20 - 10)  # peaks mid-window
        sent += [(now, payload) for _, payload in throttle.update(now, [(box, sharpness, frame)])]
    assert 5 <= len(sent) <= 6  # first after 0.5 s, then every 2 s
    times = [t for t, _ in sent]
    assert all(b - a >= 2.0 - 1e-9 for a, b in zip(times[1:], times[2:], strict=False))
    # Each release is the sharpest frame of its window, not simply the latest.
    assert all(payload % 20 == 10 for _, payload in sent[1:])


def test_two_faces_are_tracked_apart_and_a_face_that_leaves_is_flushed():
    throttle = Throttle(interval_s=5.0, budget_per_min=100, first_wait_s=5.0, max_gap_s=0.25)
    a, b = (0, 0, 50, 50), (300, 0, 50, 50)
    out = []
    for frame in range(10):
        out += throttle.update(frame * 0.1, [(a, 1.0, "a"), (b, 2.0, "b")])
    assert out == []  # still within the first window
    for frame in range(10, 14):  # b leaves; 0.3 s later its best crop is released
        out += throttle.update(frame * 0.1, [(a, 1.0, "a")])
    assert [payload for _, payload in out] == ["b"]


def test_upload_budget_caps_releases_per_sliding_minute():
    budget = UploadBudget(per_minute=3)
    assert [budget.allow(t) for t in (0, 1, 2, 3)] == [True, True, True, False]
    assert budget.allow(60.5) and budget.refused == 1


def test_budget_refusal_keeps_the_crop_for_later():
    throttle = Throttle(interval_s=1.0, budget_per_min=1, first_wait_s=0.1)
    boxes = [((i * 100, 0, 50, 50), 1.0, f"face{i}") for i in range(3)]
    first = throttle.update(0.0, boxes) + throttle.update(0.2, boxes)
    assert len(first) == 1
    later = throttle.update(61.0, boxes)
    assert len(later) == 1 and later[0][1] != first[0][1]


def test_a_busy_camera_spends_its_budget_evenly_not_in_the_first_seconds():
    """12 faces re-sent every 3 s want 240 crops a minute against a budget of 120: the releases
    are spread over the minute (a tenth of it may go at once), so no face waits most of a
    minute for the budget to come back."""
    throttle = Throttle(interval_s=3.0, budget_per_min=120, first_wait_s=1.0)
    faces = [((i * 80, 0, 60, 60), 1.0, f"face{i}") for i in range(12)]
    sent_at = []
    for step in range(600):  # 60 s at 10 fps
        now = step / 10
        sent_at += [now for _ in throttle.update(now, faces)]
    assert len(sent_at) == 120  # the minute's budget, no more
    per_ten_s = [sum(1 for t in sent_at if k * 10 <= t < (k + 1) * 10) for k in range(6)]
    assert per_ten_s[0] <= 12 + 20  # a tenth of the minute at once, then 2 a second
    assert all(18 <= n <= 22 for n in per_ten_s[1:5]), per_ten_s
    steady = [t for t in sent_at if 5 <= t <= 50]
    gaps = [b - a for a, b in zip(steady, steady[1:], strict=False)]
    assert max(gaps) <= 1.0  # never a stall: the unpaced budget went silent for ~30 s


def test_a_crop_waiting_for_the_budget_gives_way_to_a_fresher_one():
    throttle = Throttle(interval_s=1.0, budget_per_min=3, first_wait_s=0.1)
    faces = [((i * 100, 0, 50, 50), 1.0, f"face{i}-t0") for i in range(4)]
    assert len(throttle.update(0.0, faces) + throttle.update(0.2, faces)) == 3  # the burst
    waiting = [((300, 0, 50, 50), 0.8, "face3-later")]  # a bit less sharp, much newer
    for step in range(1, 320):  # the face stays in view until the minute's budget is back
        out = throttle.update(0.2 + step * 0.2, waiting)
        if out:
            break
    assert [payload for _, payload in out] == ["face3-later"]
    assert 60.0 <= 0.2 + step * 0.2 <= 61.0  # when the first three leave the minute
