"""Comparison runs in the analyzer: a sampled crop read by both backends, the pair written next to
the observations. Rekognition is botocore's Stubber with DetectFaces' real response and error
shapes (moto has no DetectFaces); the camera's model is the real fer TFLite model."""

from __future__ import annotations

import pytest
from botocore.stub import ANY

from analyzer.analyzer import COMPARED, NO_FACE, REJECTED, RETRY, WRITTEN, Analyzer
from analyzer.backends import LocalBackend, RekognitionBackend
from analyzer.handler import process_event
from edge_package.contracts import (
    COMPARISON_PK_PREFIX,
    META_COMPARISON_MODE,
    META_COMPARISON_RUN,
    META_DETECTOR_SCORE,
    META_EDGE_ANALYZED_AT_MS,
    META_EDGE_BYTES,
    META_EDGE_MODEL,
    META_EDGE_SCORES,
    META_ORGANIZATION,
    encode_scores,
)

from .test_analysis_support import (
    BUCKET,
    T0_MS,
    analyzer_stack,
    astronaut_face_jpeg,
    classifier,
    crop_exists,
    detect_response,
    face_detail,
    jpeg_bytes,
    key_for,
    observations,
    rekognition_stub,
    s3_event,
    s3_record,
    settings,
)

PARAMS = {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]}
RUN = "a1b2c3d4e5f6a7b8"
WHOLE_TILE = {"Left": 0.1, "Top": 0.1, "Width": 0.8, "Height": 0.8}


@pytest.fixture
def aws(moto_aws):
    return analyzer_stack()


def aws_error(code: str, message: str, status: int = 400) -> dict:
    """What botocore's Stubber needs to answer like AWS does (Error.Code, HTTP status)."""
    return {"service_error_code": code, "service_message": message, "http_status_code": status}


def put_sampled(aws, key: str, data: bytes, mode: str, **extra_meta) -> dict:
    metadata = {
        META_ORGANIZATION: "org-1",
        META_DETECTOR_SCORE: "0.97",
        META_COMPARISON_RUN: RUN,
        META_COMPARISON_MODE: mode,
        **extra_meta,
    }
    aws.s3.put_object(
        Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg", Metadata=metadata
    )
    return s3_record(key, size=len(data))


def edge_meta(top: str = "SAD") -> dict:
    scores = {"HAPPY": 5.0, "SAD": 5.0, "CALM": 5.0}
    scores[top] = 85.0
    return {
        META_EDGE_SCORES: encode_scores(scores),
        META_EDGE_MODEL: "fer-tflite",
        META_EDGE_ANALYZED_AT_MS: str(T0_MS + 300),
        META_EDGE_BYTES: "612",
    }


def rekognition(aws, client) -> Analyzer:
    return Analyzer(
        settings=settings(backend="rekognition"),
        backend=RekognitionBackend(client, sleep=lambda _s: None),
        s3=aws.s3,
        dynamodb=aws.dynamodb,
        cloudwatch=aws.cloudwatch,
        comparison_classifier=classifier(),
    )


def local(aws) -> Analyzer:
    return Analyzer(
        settings=settings(backend="local"),
        backend=LocalBackend(classifier()),
        s3=aws.s3,
        dynamodb=aws.dynamodb,
        cloudwatch=aws.cloudwatch,
    )


def pairs(aws) -> list[dict]:
    return [i for i in observations(aws) if i["pk"].startswith(COMPARISON_PK_PREFIX)]


def faces(aws) -> list[dict]:
    return [i for i in observations(aws) if not i["pk"].startswith(COMPARISON_PK_PREFIX)]


def test_cloud_mode_crop_is_read_by_rekognition_and_by_the_cameras_model(aws):
    key = key_for(1)
    record = put_sampled(aws, key, astronaut_face_jpeg(), "cloud")
    client, stubber = rekognition_stub()
    stubber.add_response(
        "detect_faces", detect_response([face_detail(WHOLE_TILE, "HAPPY")]), PARAMS
    )
    with stubber:
        report = process_event(s3_event(record), rekognition(aws, client))
    stubber.assert_no_pending_responses()
    assert report.outcomes[0].status == WRITTEN
    (observation,) = faces(aws)  # the usual observation, from Rekognition
    assert observation["source"] == "rekognition" and observation["top_emotion"] == "HAPPY"
    (pair,) = pairs(aws)
    assert pair["run"] == RUN and pair["mode"] == "cloud" and pair["device"] == "cam-1"
    assert pair["pk"] == f"{COMPARISON_PK_PREFIX}sunfest/main"
    assert pair["rekognition"]["available"] and pair["rekognition"]["faces"] == 1
    assert pair["rekognition"]["top"] == "HAPPY"
    assert pair["rekognition"]["calls"] == 1.0  # one crop, one DetectFaces call
    assert pair["local"]["available"] and pair["local"]["faces"] == 1
    assert pair["local"]["top"] in {"HAPPY", "SAD", "ANGRY", "DISGUSTED", "SURPRISED", "CALM",
                                    "FEAR"}  # fmt: skip
    assert sum(pair["local"]["scores"].values()) > 50  # a real reading by the real model
    assert pair["crop_bytes"] == len(astronaut_face_jpeg())
    assert 200 < pair["edge_bytes"] < 1500  # what the camera would have sent: its scores item
    assert not crop_exists(aws, key)  # deleted after analysis, as any crop


def test_edge_mode_crop_pairs_the_cameras_own_reading_with_rekognition_and_adds_no_face(aws):
    key = key_for(2)
    record = put_sampled(aws, key, astronaut_face_jpeg(), "edge", **edge_meta("SAD"))
    client, stubber = rekognition_stub()
    stubber.add_response("detect_faces", detect_response([face_detail(WHOLE_TILE, "CALM")]), PARAMS)
    with stubber:
        report = process_event(s3_event(record), rekognition(aws, client))
    assert report.outcomes[0].status == COMPARED
    assert faces(aws) == []  # the camera already sent this face's scores: no second count
    (pair,) = pairs(aws)
    assert pair["mode"] == "edge"
    assert pair["local"]["top"] == "SAD" and pair["local"]["done_ms"] == T0_MS + 300
    assert pair["local"]["model"] == "fer-tflite" and pair["edge_bytes"] == 612
    assert pair["rekognition"]["top"] == "CALM"
    assert not crop_exists(aws, key)


def test_rekognition_seeing_no_face_is_a_pair_too(aws):
    key = key_for(3)
    record = put_sampled(aws, key, jpeg_bytes(seed=3), "edge", **edge_meta())
    client, stubber = rekognition_stub()
    stubber.add_response("detect_faces", detect_response([]), PARAMS)
    with stubber:
        process_event(s3_event(record), rekognition(aws, client))
    (pair,) = pairs(aws)
    assert pair["rekognition"]["available"] and pair["rekognition"]["faces"] == 0
    assert pair["rekognition"]["top"] == ""
    assert pair["local"]["faces"] == 1


def test_a_throttled_call_keeps_the_crop_and_the_retry_writes_the_pair(aws):
    key = key_for(4)
    record = put_sampled(aws, key, astronaut_face_jpeg(), "edge", **edge_meta())
    client, stubber = rekognition_stub()
    for _ in range(5):  # every attempt of the first delivery is throttled
        stubber.add_client_error(
            "detect_faces",
            **aws_error("ThrottlingException", "Rate exceeded"),
            expected_params=PARAMS,
        )
    with stubber:
        first = process_event(s3_event(record), rekognition(aws, client))
    assert first.outcomes[0].status == RETRY and first.outcomes[0].reason == (
        "rekognition_quota_exhausted"
    )
    assert crop_exists(aws, key) and pairs(aws) == []  # nothing lost: the message comes back
    client, stubber = rekognition_stub()
    stubber.add_client_error(
        "detect_faces",
        **aws_error(
            "ProvisionedThroughputExceededException", "Provisioned rate exceeded", status=400
        ),
        expected_params=PARAMS,
    )
    stubber.add_response(
        "detect_faces", detect_response([face_detail(WHOLE_TILE, "HAPPY")]), PARAMS
    )
    with stubber:
        second = process_event(s3_event(record), rekognition(aws, client))
    stubber.assert_no_pending_responses()
    assert second.outcomes[0].status == COMPARED
    (pair,) = pairs(aws)
    assert pair["rekognition"]["top"] == "HAPPY"
    assert pair["rekognition"]["calls"] == 2.0  # the throttled attempt is a call too
    assert not crop_exists(aws, key)


def test_a_corrupt_sampled_crop_is_rejected_and_deleted_without_a_pair(aws):
    key = key_for(5)
    truncated = astronaut_face_jpeg()[:600]
    record = put_sampled(aws, key, truncated, "edge", **edge_meta())
    client, stubber = rekognition_stub()
    with stubber:  # never called: the crop does not decode
        report = process_event(s3_event(record), rekognition(aws, client))
    assert report.outcomes[0].status == REJECTED and report.outcomes[0].reason == "corrupt_image"
    assert pairs(aws) == [] and not crop_exists(aws, key)


def test_rekognition_refusing_the_image_rejects_that_crop_only(aws):
    key = key_for(6)
    record = put_sampled(aws, key, astronaut_face_jpeg(), "cloud")
    client, stubber = rekognition_stub()
    stubber.add_client_error(
        "detect_faces",
        **aws_error("InvalidImageFormatException", "Request has invalid image format"),
        expected_params=PARAMS,
    )
    with stubber:
        report = process_event(s3_event(record), rekognition(aws, client))
    assert report.outcomes[0].status == REJECTED and report.outcomes[0].reason == "invalid_image"
    assert pairs(aws) == [] and faces(aws) == [] and not crop_exists(aws, key)


def test_bad_edge_metadata_is_a_permanent_refusal_not_a_made_up_reading(aws):
    key = key_for(7)
    meta = {**edge_meta(), META_EDGE_SCORES: "1,2,three"}
    record = put_sampled(aws, key, astronaut_face_jpeg(), "edge", **meta)
    client, stubber = rekognition_stub()
    stubber.add_response("detect_faces", detect_response([face_detail(WHOLE_TILE)]), PARAMS)
    with stubber:
        report = process_event(s3_event(record), rekognition(aws, client))
    assert report.outcomes[0].status == REJECTED and report.outcomes[0].reason == "contract_error"
    assert pairs(aws) == [] and not crop_exists(aws, key)


def test_a_replayed_pair_writes_nothing_new(aws):
    key = key_for(8)
    data = astronaut_face_jpeg()
    record = put_sampled(aws, key, data, "cloud")
    analyzer = local(aws)
    process_event(s3_event(record), analyzer)
    first = pairs(aws)
    put_sampled(aws, key, data, "cloud")  # the same crop delivered again (e.g. a re-upload)
    process_event(s3_event(record), analyzer)
    assert pairs(aws) == first and len(faces(aws)) == 1


def test_without_rekognition_the_pair_says_so_instead_of_inventing_a_reading(aws):
    """The demo's analyzer runs the local model only: the pair carries bytes and times, and
    marks the Rekognition side unavailable."""
    key = key_for(9)
    record = put_sampled(aws, key, astronaut_face_jpeg(), "cloud")
    report = process_event(s3_event(record), local(aws))
    assert report.outcomes[0].status == WRITTEN
    (pair,) = pairs(aws)
    assert pair["rekognition"] == {**pair["rekognition"], "available": False,
                                   "reason": "no_rekognition", "faces": 0, "top": ""}  # fmt: skip
    assert pair["local"]["available"] and pair["local"]["faces"] == 1
    assert pair["crop_bytes"] > 0 and pair["edge_bytes"] > 0


def test_an_unsampled_crop_gets_no_pair(aws):
    key = key_for(10)
    data = jpeg_bytes(seed=10)
    aws.s3.put_object(Bucket=BUCKET, Key=key, Body=data, Metadata={META_ORGANIZATION: "org-1"})
    client, stubber = rekognition_stub()
    stubber.add_response("detect_faces", detect_response([]), PARAMS)
    with stubber:
        report = process_event(s3_event(s3_record(key, len(data))), rekognition(aws, client))
    assert report.outcomes[0].status == NO_FACE
    assert pairs(aws) == []
