"""Small faces on the camera: BlazeFace with the camera's tile schedule (CAMERA_SCHEDULE), in
1080p frames. The fine tiles are searched a few a frame, so these tests check what a user of the
camera cares about: a small face is found soon after it appears, is kept between visits without
being sent twice, masked areas are never searched, and empty frames stay empty."""

from __future__ import annotations

import numpy as np
import pytest

from edge_package.config import parse_config
from edge_package.detect import (
    CAMERA_SCHEDULE,
    FULL_RESOLUTION_MIN_SCORE,
    MAX_RUNS,
    TRACKED_MIN_SCORE,
    BlazeFaceDetector,
    area_resize,
    camera_schedule,
    iou,
)
from edge_package.pipeline import EdgeRunner
from edge_package.sources import Frame
from edge_package.synthetic import CrowdFace, make_background

W, H = 1920, 1080
BASE = {"device": "cam-1", "festival": "fest", "stage": "main", "bucket": "crops"}


class Recorder:
    def __init__(self):
        self.releases = []

    def send(self, release):
        self.releases.append(release)


@pytest.fixture
def camera():
    return BlazeFaceDetector(threshold=0.45, **CAMERA_SCHEDULE)


@pytest.fixture(scope="module")
def background():
    return make_background(W, H, np.random.default_rng(5))


def sweep_frames(detector) -> int:
    """Frames the slowest scheduled level needs to search every one of its tiles once (its 1080p
    tile plan, built as the first frame builds it, without running the model on a frame)."""
    levels = detector._plan_scheduled(W, H)
    detector.reset()
    return max(-(-len(level["tiles"]) // level["per_frame"]) for level in levels)


def with_face(background, size: int, x: int, y: int, portrait: str = "astronaut"):
    """The background with one real portrait's face, exactly `size` px wide, at (x, y)."""
    face = CrowdFace(0, portrait, size, x, y, 0, 0, False, 1.0, 0.0, 0.0, 0, 10**9)
    head, alpha, fx, fy = face.sprite()
    image = background.copy()
    ox, oy = int(round(x - fx)), int(round(y - fy))
    hh, hw = head.shape[:2]
    patch = image[oy : oy + hh, ox : ox + hw].astype(np.float32)
    image[oy : oy + hh, ox : ox + hw] = (head * alpha + patch * (1 - alpha)).astype(np.uint8)
    return image, (x, y, size, size)


@pytest.mark.parametrize("size", [24, 32])
def test_a_small_face_is_found_within_one_sweep_of_appearing(camera, background, size):
    sweep = sweep_frames(camera)
    image, truth = with_face(background, size, 1310, 700)
    for _ in range(sweep):  # the camera has been watching the empty scene
        assert camera.detect(background) == []
    found_after = next(
        (
            n
            for n in range(sweep + 1)
            if any(not d.held and iou(d.box, truth) >= 0.4 for d in camera.detect(image))
        ),
        None,
    )
    assert found_after is not None, f"a {size} px face was not found within {sweep} frames"
    # Found well within a sweep: motion sends the fine tiles to it first.
    assert found_after <= 2


def test_masked_areas_are_not_searched(camera, background, monkeypatch):
    image, truth = with_face(background, 32, 300, 500)  # in the left half
    camera.set_masks([[[0.0, 0.0], [0.5, 0.0], [0.5, 1.0], [0.0, 1.0]]])
    searched = []
    real_pass = camera._scheduled_pass

    def spy(frame, found):
        regions = real_pass(frame, found)
        searched.extend(regions)
        return regions

    monkeypatch.setattr(camera, "_scheduled_pass", spy)
    for _ in range(2 * sweep_frames(camera)):
        assert not any(iou(d.box, truth) > 0.1 for d in camera.detect(image))
    assert searched, "the unmasked half is searched"
    assert all(x1 > W * 0.5 - 8 for _, _, x1, *_ in searched)  # no fine tile wholly masked


def test_the_tracker_holds_a_face_between_visits_and_sends_it_once(background):
    cfg = parse_config({**BASE, "min_face_px": 24, "throttle_interval_s": 10})
    sink = Recorder()
    runner = EdgeRunner(cfg, sink=sink)  # the camera's own detector and schedule
    detector = runner.detector
    assert [lv[:2] for lv in detector.scheduled] == [lv[:2] for lv in CAMERA_SCHEDULE["scheduled"]]
    outputs = []
    detect = detector.detect

    def spy(frame):
        outputs.append(detect(frame))
        return outputs[-1]

    detector.detect = spy
    image, truth = with_face(background, 32, 1000, 400)
    for index in range(45):  # 3 s at 15 fps: several sweeps of the fine tiles
        runner.process_frame(Frame(image=image, index=index, captured_at_ms=index * 66), index / 15)
    matches = [[d for d in out if iou(d.box, truth) >= 0.4] for out in outputs]
    first = next(i for i, m in enumerate(matches) if m)
    assert all(len(m) == 1 for m in matches[first:]), "once found, reported once on every frame"
    assert any(m[0].held for m in matches[first:]), "between visits the face is held"
    assert any(not m[0].held for m in matches[first + 1 :]), "and seen again on the next visit"
    assert len(runner.throttle.tracks) == 1  # one person, one track
    assert len(sink.releases) == 1  # and one crop in its first 10 s window, not one per visit
    assert not any(r.box != sink.releases[0].box and iou(r.box, truth) < 0.4 for r in sink.releases)


def test_no_faces_on_crowd_free_frames(camera, background):
    """Precision where there is nobody: a still empty scene, then a changing one."""
    sweep = sweep_frames(camera)
    # Sensor noise of +-8 on every other frame, a different field each time: rows of one larger
    # field, shifted a few rows a frame (drawing 6 M fresh values a frame cost more than the model).
    noise = np.random.default_rng(9).integers(-8, 9, (H + 3 * sweep, W, 3), dtype=np.int16)
    base = background.astype(np.int16)
    for index in range(3 * sweep):
        frame = (
            background
            if index % 2
            else np.clip(base + noise[index : index + H], 0, 255).astype(np.uint8)
        )
        assert camera.detect(frame) == []


def model_runs(detector) -> list[int]:
    """Count the detector's model passes (appended per frame by the caller)."""
    counts = [0]
    infer = detector._infer

    def counting(*args, **kwargs):
        counts[0] += 1
        return infer(*args, **kwargs)

    detector._infer = counting
    return counts


def test_a_still_empty_scene_costs_a_few_model_runs_a_frame(camera, background):
    """Tiles where nothing moved and nobody was seen are idle: searching them again would give
    the same answer, so once every tile was searched twice the camera spends far fewer than its
    11 runs a frame."""
    sweep_frames(camera)
    sweep = -(-120 // (MAX_RUNS - 1 - 2))  # at the budget's pace: 120 fine tiles, 4 a frame
    counts = model_runs(camera)
    per_frame = []
    for _ in range(4 * sweep):
        counts[0] = 0
        assert camera.detect(background) == []
        per_frame.append(counts[0])
    # The first frame: everything is new, and the per-frame budget caps it (1 + 2 + 4 runs, not
    # the 1 + 2 + 8 the levels would take).
    assert per_frame[0] == MAX_RUNS == 7
    settled = per_frame[2 * sweep :]  # each tile searched twice and found empty
    assert sum(settled) / len(settled) < 4


def test_a_new_face_in_a_still_scene_is_found_at_once(camera, background):
    sweep = sweep_frames(camera)
    for _ in range(2 * sweep):  # every tile idle by now
        camera.detect(background)
    image, truth = with_face(background, 24, 700, 820)
    found = [any(iou(d.box, truth) >= 0.4 for d in camera.detect(image)) for _ in range(3)]
    assert any(found[:2]), "the tile where the picture changed is searched on the next frame"


def test_one_missed_visit_does_not_drop_a_still_face_but_leaving_does(camera, background):
    image, truth = with_face(background, 32, 1000, 400)
    sweep = sweep_frames(camera)
    outputs = [camera.detect(image) for _ in range(sweep + 2)]
    assert any(iou(d.box, truth) >= 0.4 for d in outputs[-1]), "found within a sweep"
    # The model misses the face on its next visit (a blink, a flash): the face is still held.
    real = camera._tile_boxes
    missed = []

    def blink(tensor, edges, to_frame, min_score=0.0, **kwargs):
        hit = real(tensor, edges, to_frame, min_score, **kwargs)
        # One frame (every tile searched in it) where the full-resolution level misses the face.
        if hit is not None and missed in ([], [camera._frame_no]) and to_frame[0] == 1.0:
            boxes, scores = hit
            keep = [iou((b[0], b[1], b[2] - b[0], b[3] - b[1]), truth) < 0.1 for b in boxes]
            if not all(keep):
                missed[:] = [camera._frame_no]
                return (boxes[keep], scores[keep]) if any(keep) else None
        return hit

    camera._tile_boxes = blink
    for _ in range(2 * sweep):
        assert any(iou(d.box, truth) >= 0.4 for d in camera.detect(image))
    assert missed, "the face's tile was searched (and missed it) meanwhile"
    camera._tile_boxes = real
    # The person leaves: most of the picture where the face was changes, so it is not held on
    # the very frame it left (before, it waited for its tile to be searched and miss it twice:
    # with the budget's backlog, up to two sweeps of a face counted that was not there).
    assert not any(iou(d.box, truth) > 0.1 for d in camera.detect(background))


def test_a_dancing_face_stays_reported_between_visits(camera, background):
    """A face that moves a few px a frame changes only its edges: it is held between its tiles'
    visits, not taken for a person who left."""
    sweep = sweep_frames(camera)
    frames = [with_face(background, 32, 1000 + 2 * n, 400 + (n % 3)) for n in range(3 * sweep)]
    reported = []
    for image, truth in frames:
        reported.append([d for d in camera.detect(image) if iou(d.box, truth) >= 0.3])
    first = next(n for n, found in enumerate(reported) if found)
    assert first <= 2
    assert all(reported[first:]), "reported on every frame once found"
    assert any(d.held for found in reported[first:] for d in found), "held between visits"


@pytest.mark.parametrize(("size", "sent"), [(44, True), (32, False)])
def test_the_default_config_sends_faces_from_40_px(background, size, sent):
    """min_face_px defaults to Rekognition's documented minimum face size at 1080p (40 px), on
    the detector's box (a few percent either side of the face): a 44 px face is cropped and sent
    (the old default, 48, refused it); a 32 px face is found and tracked but not sent."""
    cfg = parse_config({**BASE, "throttle_interval_s": 10})
    assert cfg.min_face_px == 40
    sink = Recorder()
    runner = EdgeRunner(cfg, sink=sink)
    image, truth = with_face(background, size, 1000, 400, portrait="camera")
    for index in range(30):
        runner.process_frame(Frame(image=image, index=index, captured_at_ms=index * 66), index / 15)
    runner.flush(30 / 15)
    assert runner.faces_detected > 0, "the face is found either way"
    assert any(iou(r.box, truth) >= 0.4 for r in sink.releases) is sent
    if not sent:
        assert runner.rejected.get("small", 0) > 0


def scales(detector) -> list[float]:
    return [level[0] for level in detector.scheduled]


def test_a_camera_sending_only_larger_faces_skips_the_full_resolution_tiles(background):
    """A face of min_face_px is 24 model px at the 0.375 level already: the 1.0 level (8 of 11
    model runs a frame) would only find faces the camera never sends. Lowering min_face_px from
    the service brings the fine tiles back without a restart, and the smallest face sent is
    still found."""
    assert [lv[0] for lv in camera_schedule(48)["scheduled"]] == [0.375, 1.0]
    assert [lv[0] for lv in camera_schedule(64)["scheduled"]] == [0.375]
    runner = EdgeRunner(parse_config({**BASE, "min_face_px": 64}), sink=Recorder())
    assert scales(runner.detector) == [0.375]
    image, truth = with_face(background, 64, 900, 500)
    found = []
    for _ in range(sweep_frames(runner.detector) + 1):
        found += runner.detector.detect(image)
    assert any(iou(d.box, truth) > 0.4 for d in found), "a 64 px face is found without 1.0 tiles"

    runner.update_tunables(min_face_px=32)
    assert scales(runner.detector) == [0.375, 1.0]


def test_where_every_tile_moves_the_camera_keeps_its_budget_and_still_finds_a_small_face(
    camera, background
):
    """Sensor noise (or a dancing crowd) makes every tile read as moving: the camera still runs
    at most MAX_RUNS models a frame (its fps holds), spreads the full-resolution tiles over more
    frames, and a 32 px face anywhere is found within a sweep at that pace and then kept."""
    import cv2

    image, truth = with_face(background, 32, 1310, 700)
    # Fresh Gaussian sensor noise (sigma 8) on every pixel and channel of every frame, drawn and
    # added by OpenCV (rounded, saturating): numpy's float64 normal + clip cost ~100 ms a 1080p
    # frame, more than the frame's model runs; cv2.randn into an int16 buffer ~25 ms.
    cv2.setRNGSeed(3)
    noise = np.empty(image.shape, np.int16)
    counts = model_runs(camera)
    per_frame, found = [], []
    sweep_at_budget = -(-120 // (MAX_RUNS - 1 - 2))  # 120 fine tiles, 4 a frame
    for _ in range(sweep_at_budget + 4):
        cv2.randn(noise, (0, 0, 0), (8, 8, 8))
        noisy = cv2.add(image, noise, dtype=cv2.CV_8U)
        counts[0] = 0
        found.append(any(iou(d.box, truth) >= 0.4 for d in camera.detect(noisy)))
        per_frame.append(counts[0])
    assert max(per_frame) == MAX_RUNS
    first = found.index(True)  # raises if never found
    assert first <= sweep_at_budget
    assert all(found[first:]), "held between visits of its tile"


def test_area_resize_matches_opencvs_area_filter(background):
    """The two-step resize (exact halvings, then the fractional rest) gives the same picture as
    one INTER_AREA resize, to a grey level or so, into the caller's buffer when given one."""
    import cv2

    for src, size in ((background, (192, 108)), (background[:512, :512], (192, 192))):
        direct = cv2.resize(src, size, interpolation=cv2.INTER_AREA).astype(np.int16)
        buf = np.empty((size[1], size[0], 3), np.uint8)
        out = area_resize(src, size, buf)
        assert out is buf and out.shape == direct.shape
        assert np.abs(out.astype(np.int16) - direct).mean() < 2.0


def test_a_tracked_face_is_kept_at_a_lower_score_but_a_new_one_needs_the_level_min(
    camera, background
):
    """A hard face (the seed-7 cameraman portrait) scores just under the full-resolution level's
    min score on some tile placements: once it is tracked it is still found fresh there down to
    TRACKED_MIN_SCORE, while a face never seen before at that score is not reported."""
    under_the_level = (TRACKED_MIN_SCORE + FULL_RESOLUTION_MIN_SCORE) / 2
    image, truth = with_face(background, 32, 1000, 400)
    sweep = sweep_frames(camera)
    real = camera._infer
    capped = [True]

    def hard_face(tile, min_score=0.0, bgr=False):
        boxes, scores = real(tile, 0.0, bgr)
        if bgr and capped[0]:  # the scheduled levels see it just under their min score
            scores = np.minimum(scores, under_the_level)
        keep = scores >= max(camera.threshold, min_score)
        return boxes[keep], scores[keep]

    camera._infer = hard_face
    for _ in range(sweep + 2):
        assert not any(iou(d.box, truth) >= 0.4 for d in camera.detect(image)), "new: not found"
    camera.reset()
    capped[0] = False
    for _ in range(sweep + 2):
        reported = camera.detect(image)
    assert any(iou(d.box, truth) >= 0.4 for d in reported), "found at its full score"
    capped[0] = True
    fresh = 0
    for _ in range(3 * sweep):
        reported = [d for d in camera.detect(image) if iou(d.box, truth) >= 0.4]
        assert reported, "still tracked"
        fresh += any(not d.held for d in reported)
    assert fresh >= 2, "found again (fresh) on its tiles' visits under the level's min"
