"""Face detection: real portraits are found, faceless scenes give nothing, a crowd is covered."""

import cv2
import numpy as np
import pytest

from edge_package.detect import (
    BlazeFaceDetector,
    DetectorError,
    FrameShapeError,
    HaarDetector,
    decode_boxes,
    iou,
    non_max_suppression,
    plan_tiles,
    ssd_anchors,
)
from edge_package.haar import group_rectangles
from edge_package.synthetic import PORTRAIT_FACES, SyntheticCrowdSource


def _faceless_images():
    from skimage import data

    return {
        "coffee": cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR),
        "cat": cv2.cvtColor(data.chelsea(), cv2.COLOR_RGB2BGR),
        "bricks": cv2.cvtColor(data.brick(), cv2.COLOR_GRAY2BGR),
        "rocket": cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR),
        "noise": np.random.default_rng(0).integers(0, 255, (720, 1280, 3), dtype=np.uint8),
    }


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_blazeface_finds_the_face_in_each_portrait(name, request, blazeface):
    image = request.getfixturevalue(name)
    found = blazeface.detect(image)
    assert len(found) == 1
    assert iou(found[0].box, PORTRAIT_FACES[name]) > 0.7
    assert found[0].score > 0.8


def test_blazeface_finds_a_face_at_half_size_in_a_flipped_portrait(astronaut, blazeface):
    small = cv2.resize(cv2.flip(astronaut, 1), None, fx=0.5, fy=0.5)
    found = blazeface.detect(small)
    x, y, w, h = PORTRAIT_FACES["astronaut"]
    expected = ((512 - x - w) / 2, y / 2, w / 2, h / 2)
    assert len(found) == 1 and iou(found[0].box, expected) > 0.6


@pytest.mark.parametrize("name", ["coffee", "cat", "bricks", "rocket", "noise"])
def test_blazeface_reports_no_face_on_faceless_images(name, blazeface):
    assert blazeface.detect(_faceless_images()[name]) == []


def test_synthetic_1080p_crowd_recall_and_precision():
    detector = BlazeFaceDetector(threshold=0.5)
    source = SyntheticCrowdSource(faces=14, frames=4, seed=7)
    hits = misses = false = 0
    for frame in source:
        found = detector.detect(frame.image)
        matched = set()
        for det in found:
            best = max(frame.truth, key=lambda t: iou(det.box, t[1:]))
            if iou(det.box, best[1:]) >= 0.3 and best[0] not in matched:
                matched.add(best[0])
            else:
                false += 1
        hits += len(matched)
        misses += len(frame.truth) - len(matched)
    assert hits / (hits + misses) >= 0.85
    assert hits / (hits + false) >= 0.9


def test_anchor_decoding_places_a_box_around_its_anchor():
    anchors = ssd_anchors(192, (4,))
    assert anchors.shape == (2304, 2)
    assert anchors[0] == pytest.approx([2 / 192, 2 / 192])
    raw = np.zeros((2304, 16), np.float32)
    # Anchor 49 is cell (1, 1): centre (6, 6) px. Shift it by (+10, -4) px, size 40x20 px.
    raw[49, :4] = [10, -4, 40, 20]
    box = decode_boxes(raw, anchors, 192)[49] * 192
    assert box == pytest.approx([16 - 20, 2 - 10, 16 + 20, 2 + 10], abs=1e-3)


def test_nms_merges_overlaps_and_keeps_separate_faces():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60]], float)
    kept = non_max_suppression(boxes, np.array([0.9, 0.8, 0.7]), 0.3)
    assert len(kept) == 2
    assert kept[0][1] == pytest.approx(0.9)
    assert kept[0][0][0] == pytest.approx((0 * 0.9 + 1 * 0.8) / 1.7)  # weighted blend
    assert kept[1][0].tolist() == [50, 50, 60, 60]


def test_tiles_cover_the_frame_with_the_requested_overlap():
    tiles = plan_tiles(672, 378, 192, 32)
    covered = np.zeros((378, 672), bool)
    for x, y, w, h in tiles:
        assert x + w <= 672 and y + h <= 378
        covered[y : y + h, x : x + w] = True
    assert covered.all()
    xs = sorted({t[0] for t in tiles})
    assert all(a + 192 - b >= 32 for a, b in zip(xs, xs[1:], strict=False))


@pytest.mark.parametrize(
    "frame",
    [
        np.zeros((100, 100), np.uint8),
        np.zeros((100, 100, 4), np.uint8),
        np.zeros((100, 100, 3), np.float32),
        np.zeros((4, 4, 3), np.uint8),
        "not an image",
    ],
)
def test_a_frame_of_the_wrong_shape_is_refused_clearly(frame, blazeface):
    with pytest.raises(FrameShapeError, match="frame must be"):
        blazeface.detect(frame)


def test_a_missing_model_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.tflite"
    with pytest.raises(DetectorError, match="nope.tflite"):
        BlazeFaceDetector(model_path=str(missing))
    corrupt = tmp_path / "corrupt.tflite"
    corrupt.write_bytes(b"not a model")
    with pytest.raises(DetectorError, match="corrupt.tflite"):
        BlazeFaceDetector(model_path=str(corrupt))


@pytest.fixture(scope="module")
def haar():
    return HaarDetector()


@pytest.mark.parametrize("name", ["astronaut", "grace_hopper"])
def test_cascade_baseline_finds_each_portrait_face(name, request, haar):
    found = haar.detect(request.getfixturevalue(name))
    assert len(found) == 1 and iou(found[0].box, PORTRAIT_FACES[name]) > 0.6


def test_cascade_baseline_finds_nothing_on_bricks_or_a_cat(haar):
    assert haar.detect(_faceless_images()["bricks"]) == []
    assert haar.detect(_faceless_images()["cat"]) == []


def test_cascade_file_errors_are_clear(tmp_path):
    broken = tmp_path / "broken.xml"
    broken.write_text("<opencv_storage><x>")
    with pytest.raises(DetectorError, match="broken.xml"):
        HaarDetector(model_path=str(broken))
    with pytest.raises(DetectorError, match="not found"):
        HaarDetector(model_path=str(tmp_path / "missing.xml"))


def test_group_rectangles_keeps_supported_clusters_and_drops_nested_ones():
    face = [(100 + d, 100 - d, 50, 50) for d in range(6)]  # 6 near-identical windows
    lonely = [(400, 400, 30, 30)]  # one stray window: not enough neighbours
    nested = [(110, 110, 20, 20)] * 4  # a weaker cluster inside the face
    kept = group_rectangles(face + lonely + nested, min_neighbors=3)
    assert kept == [(102, 98, 50, 50)]
