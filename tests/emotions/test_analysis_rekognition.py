"""Mosaic batching and the Rekognition backend, with botocore's Stubber (moto lacks DetectFaces)."""

from __future__ import annotations

import io
import math

import pytest
from botocore.stub import ANY
from PIL import Image

from analyzer.backends import RekognitionBackend, scores_from_rekognition
from analyzer.errors import AnalysisError, PermanentError, RetryableError
from analyzer.mosaic import (
    DETECTFACES_MAX_FACES,
    MAX_IMAGE_SIDE_PX,
    MAX_REQUEST_BYTES,
    MosaicLimits,
    build_mosaic,
    plan,
)
from edge_package.contracts import EMOTIONS

from .test_analysis_support import (
    detect_response,
    face_detail,
    mosaics_for,
    rekognition_stub,
)

PARAMS = {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]}


def crops(count: int, size=(120, 150)) -> list[Image.Image]:
    return [Image.new("RGB", size, (i % 255, 100, 50)) for i in range(count)]


def test_mosaics_respect_detectfaces_limits():
    for count in (1, 2, 7, 64, 65, 130, 1000):
        mosaics = mosaics_for([(120, 150)] * count)
        assert len(mosaics) == math.ceil(count / 64)
        assert sum(len(m.tiles) for m in mosaics) == count
        for mosaic in mosaics:
            assert len(mosaic.tiles) <= 64 < DETECTFACES_MAX_FACES
            assert min(mosaic.width, mosaic.height) >= 80
            assert max(mosaic.width, mosaic.height) <= MAX_IMAGE_SIDE_PX
            assert len(mosaic.jpeg) <= MAX_REQUEST_BYTES
            with Image.open(io.BytesIO(mosaic.jpeg)) as decoded:
                assert decoded.format == "JPEG" and decoded.size == (mosaic.width, mosaic.height)
            # A face fills ~2/3 of its tile; it must stay above Rekognition's minimum face size.
            smallest_tile = min(min(t.width, t.height) for t in mosaic.tiles)
            assert smallest_tile * 0.6 >= mosaic.min_face_px()


def test_tiles_never_overlap_and_keep_the_crop_aspect():
    mosaic = build_mosaic(list(enumerate(crops(9, size=(100, 200)))), MosaicLimits())
    for tile in mosaic.tiles:
        assert tile.height == 160 and tile.width == 80
    for a in mosaic.tiles:
        for b in mosaic.tiles:
            if a is not b:
                assert (
                    a.left + a.width <= b.left
                    or b.left + b.width <= a.left
                    or a.top + a.height <= b.top
                    or b.top + b.height <= a.top
                )


def test_limits_refuse_more_tiles_than_detectfaces_returns_faces():
    with pytest.raises(ValueError):
        MosaicLimits(max_tiles=101)
    with pytest.raises(ValueError):
        MosaicLimits(tile_px=40)
    with pytest.raises(ValueError):
        MosaicLimits(tile_px=500, max_tiles=100)


def test_scores_map_all_eight_emotions_and_drop_unknown():
    for name in EMOTIONS:
        scores = scores_from_rekognition(
            face_detail({"Left": 0, "Top": 0, "Width": 0.1, "Height": 0.1}, top=name)["Emotions"]
        )
        assert list(scores) == list(EMOTIONS)
        assert max(scores, key=scores.get) == name
        assert scores[name] == 90.0
    assert scores_from_rekognition([{"Type": "UNKNOWN", "Confidence": 80.0}]) == dict.fromkeys(
        EMOTIONS, 0.0
    )


def test_each_face_is_attributed_to_its_tile_by_bounding_box():
    images = crops(10)
    (mosaic,) = mosaics_for([im.size for im in images])
    # Faces in tiles 0..7 with a different top emotion each; tile 8 has two faces (the larger
    # first in the result); tile 9 has none. Plus one box in the gutter, attributable to nothing.
    details = [face_detail(mosaic.box_for_tile(mosaic.tiles[i]), top=EMOTIONS[i]) for i in range(8)]
    details.append(face_detail(mosaic.box_for_tile(mosaic.tiles[8], shrink=0.35), top="SAD"))
    details.append(face_detail(mosaic.box_for_tile(mosaic.tiles[8], shrink=0.1), top="FEAR"))
    details.append(
        face_detail(
            {"Left": 0.0, "Top": 0.0, "Width": 4 / mosaic.width, "Height": 4 / mosaic.height}
        )
    )
    details.reverse()  # DetectFaces makes no promise about order
    client, stubber = rekognition_stub()
    stubber.add_response("detect_faces", detect_response(details), PARAMS)
    backend = RekognitionBackend(client, sleep=lambda _s: None)
    with stubber:
        results = backend.analyze(images)
    stubber.assert_no_pending_responses()
    assert backend.calls == 1
    for i in range(8):
        assert len(results[i]) == 1
        top = max(results[i][0].scores, key=results[i][0].scores.get)
        assert top == EMOTIONS[i]
        assert results[i][0].confidence == pytest.approx(99.9)
    assert [max(f.scores, key=f.scores.get) for f in results[8]] == ["FEAR", "SAD"]
    assert results[9] == []
    assert backend.unattributed_faces == 1


def test_zero_faces_means_no_face_for_every_crop():
    client, stubber = rekognition_stub()
    stubber.add_response("detect_faces", detect_response([]), PARAMS)
    with stubber:
        results = RekognitionBackend(client, sleep=lambda _s: None).analyze(crops(3))
    assert results == [[], [], []]


def test_throttling_then_success_backs_off_and_recovers():
    images = crops(2)
    (mosaic,) = mosaics_for([im.size for im in images])
    client, stubber = rekognition_stub()
    stubber.add_client_error("detect_faces", "ThrottlingException", "Rate exceeded", 400)
    stubber.add_client_error(
        "detect_faces", "ProvisionedThroughputExceededException", "Slow down", 400
    )
    stubber.add_response(
        "detect_faces",
        detect_response([face_detail(mosaic.box_for_tile(t)) for t in mosaic.tiles]),
        PARAMS,
    )
    delays: list[float] = []
    backend = RekognitionBackend(client, sleep=delays.append, base_delay_s=1.0)
    with stubber:
        results = backend.analyze(images)
    assert [len(r) for r in results] == [1, 1]
    assert backend.calls == 3 and backend.throttled == 2
    assert len(delays) == 2 and 0.5 <= delays[0] <= 1.0 and 1.0 <= delays[1] <= 2.0


def test_quota_exhausted_is_a_counted_retryable_error():
    client, stubber = rekognition_stub()
    for _ in range(3):
        stubber.add_client_error("detect_faces", "ThrottlingException", "Rate exceeded", 400)
    backend = RekognitionBackend(client, sleep=lambda _s: None, max_attempts=3)
    with stubber:
        results = backend.analyze(crops(4))
    assert all(isinstance(r, RetryableError) for r in results)
    assert {r.reason for r in results} == {"rekognition_quota_exhausted"}

    client, stubber = rekognition_stub()
    stubber.add_client_error("detect_faces", "LimitExceededException", "Quota", 400)
    with stubber:
        results = RekognitionBackend(client, sleep=lambda _s: None).analyze(crops(1))
    assert isinstance(results[0], RetryableError)
    assert results[0].reason == "rekognition_quota_exhausted"


def test_other_service_errors_are_retryable_and_confined_to_their_mosaic():
    images = crops(70)  # two mosaics: 35 + 35
    first, second = mosaics_for([im.size for im in images])
    client, stubber = rekognition_stub()
    stubber.add_client_error("detect_faces", "AccessDeniedException", "nope", 403)
    stubber.add_response(
        "detect_faces",
        detect_response([face_detail(second.box_for_tile(t)) for t in second.tiles]),
        PARAMS,
    )
    with stubber:
        results = RekognitionBackend(client, sleep=lambda _s: None).analyze(images)
    assert len(first.tiles) == 35
    assert all(isinstance(r, RetryableError) for r in results[:35])
    assert all(len(r) == 1 for r in results[35:])


def test_an_invalid_crop_is_isolated_by_splitting_the_mosaic():
    images = crops(4)
    client, stubber = rekognition_stub()
    stubber.add_client_error("detect_faces", "InvalidImageFormatException", "bad", 400)
    # halves: [0, 1] fails again -> [0] ok, [1] bad; [2, 3] ok
    stubber.add_client_error("detect_faces", "InvalidImageFormatException", "bad", 400)
    stubber.add_response("detect_faces", detect_response([]), PARAMS)
    stubber.add_client_error("detect_faces", "InvalidImageFormatException", "bad", 400)
    stubber.add_response("detect_faces", detect_response([]), PARAMS)
    with stubber:
        results = RekognitionBackend(client, sleep=lambda _s: None).analyze(images)
    assert results[0] == [] and results[2] == [] and results[3] == []
    assert isinstance(results[1], PermanentError) and results[1].reason == "invalid_image"
    assert not isinstance(results[0], AnalysisError)


class CountingRekognition:
    """Answers DetectFaces like Rekognition would for our mosaics: one face centred per tile."""

    def __init__(self):
        self.calls = 0

    def detect_faces(self, Image, Attributes):  # noqa: N803 - boto3's parameter names
        from PIL import Image as PILImage

        self.calls += 1
        assert Attributes == ["EMOTIONS"]
        assert len(Image["Bytes"]) <= MAX_REQUEST_BYTES
        with PILImage.open(io.BytesIO(Image["Bytes"])) as mosaic:
            width, height = mosaic.size
        pitch = 176
        cols, rows = (width - 16) // pitch, (height - 16) // pitch
        details = []
        for row in range(rows):
            for col in range(cols):
                box = {
                    "Left": (16 + col * pitch + 30) / width,
                    "Top": (16 + row * pitch + 30) / height,
                    "Width": 100 / width,
                    "Height": 100 / height,
                }
                details.append(face_detail(box))
        return {"FaceDetails": details}


def test_a_thousand_faces_cost_at_most_fifty_detectfaces_calls():
    client = CountingRekognition()
    backend = RekognitionBackend(client, sleep=lambda _s: None)
    results = backend.analyze(crops(1000, size=(128, 160)))
    assert client.calls <= 50
    assert client.calls == math.ceil(1000 / 64)
    assert all(len(r) == 1 for r in results)


def test_plan_balances_mosaics():
    sizes = [len(m.tiles) for m in plan(list(enumerate(crops(65))), MosaicLimits())]
    assert sizes == [33, 32]
