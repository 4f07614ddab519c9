"""One bad record fails alone; UNKNOWN is not HAPPY; a 403 on a gone crop is a duplicate delivery;
the Lambda keeps its mosaic batching over an SQS batch (issue 12)."""

from __future__ import annotations

import pytest
from botocore.stub import ANY, Stubber

from analyzer.handler import handle_event
from analyzer.mosaic import MosaicLimits
from edge_package.contracts import UNKNOWN_EXPRESSION, top_emotion

from .test_analysis_handler import metric_names, rejected_reasons
from .test_analysis_support import (
    BUCKET,
    T0_MS,
    all_items,
    analyzer_stack,
    crop_exists,
    detect_response,
    face_detail,
    jpeg_bytes,
    key_for,
    local_analyzer,
    mosaics_for,
    observations,
    put_crop,
    rekognition_analyzer,
    rekognition_stub,
    s3_event,
    s3_record,
    sqs_event,
    sqs_message,
)


@pytest.fixture
def aws(moto_aws):
    return analyzer_stack()


def metric_dimensions(aws, name: str) -> list[list[dict]]:
    metrics = aws.cloudwatch.list_metrics(Namespace="StagePulse", MetricName=name)["Metrics"]
    return [m["Dimensions"] for m in metrics]


def ten_messages(aws, poison_record: dict | None = None, poison_at: int = 4):
    """Ten SQS messages of one crop each; message `poison_at` carries `poison_record` if given."""
    messages, keys = [], []
    for i in range(10):
        if i == poison_at and poison_record is not None:
            messages.append(sqs_message(s3_event(poison_record), f"m-{i}"))
            continue
        key = key_for(i)
        keys.append(key)
        messages.append(sqs_message(s3_event(put_crop(aws, key, jpeg_bytes(seed=i))), f"m-{i}"))
    return sqs_event(*messages), keys


def test_capture_time_out_of_range_is_a_bad_key_and_the_nine_others_are_written(aws):
    # Digits the key layout accepts, but no datetime holds them: it used to raise ValueError out
    # of the handler, so the whole SQS batch was retried and ended in the dead-letter queue.
    poison_key = "faces/sunfest/main/cam-1/2025/07/01/12/9999999999999999-4.jpg"
    poison = put_crop(aws, poison_key, jpeg_bytes(seed=4))
    event, keys = ten_messages(aws, poison)
    result = handle_event(event, local_analyzer(aws))
    assert result == {"batchItemFailures": []}  # a contract error is final: not retried
    assert len(all_items(aws)) == 9
    assert "bad_key" in rejected_reasons(aws)
    assert not crop_exists(aws, poison_key)  # rejected crops are deleted (privacy)
    assert not any(crop_exists(aws, key) for key in keys)


def test_an_unexpected_exception_on_one_record_fails_that_message_alone(aws):
    """A bug hit by one crop (here cv2.error out of the model for one odd-sized crop) used to
    escape the handler: no batchItemFailures, so all ten messages were retried."""
    import cv2

    from .test_analysis_support import classifier

    real = classifier()

    class OneCropBreaksTheModel:
        model_name = real.model_name

        def classify(self, face_bgr):
            if face_bgr.shape[:2] == (97, 97):
                raise cv2.error("OpenCV(4.x) resize.cpp: error: (-215:Assertion failed)")
            return real.classify(face_bgr)

    messages, keys = [], []
    for i in range(10):
        key = key_for(i)
        keys.append(key)
        size = 97 if i == 4 else 120
        record = put_crop(aws, key, jpeg_bytes(size, size, seed=i))
        messages.append(sqs_message(s3_event(record), f"m-{i}"))
    analyzer = local_analyzer(aws)
    analyzer.backend.classifier = OneCropBreaksTheModel()
    result = handle_event(sqs_event(*messages), analyzer)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-4"}]}
    assert len(all_items(aws)) == 9
    assert crop_exists(aws, keys[4])  # kept for the retry
    assert sum(crop_exists(aws, key) for key in keys) == 1
    assert [{"Name": "Reason", "Value": "internal_error"}] in metric_dimensions(
        aws, "AnalyzerErrors"
    )


def test_a_backend_crash_fails_its_crops_without_raising(aws):
    event, _ = ten_messages(aws)
    analyzer = local_analyzer(aws)

    class Broken:
        source, model = "local", "fer-broken"

        def analyze(self, images, confidences=None):
            raise RuntimeError("interpreter exploded")

    analyzer.backend = Broken()
    result = handle_event(event, analyzer)
    assert sorted(f["itemIdentifier"] for f in result["batchItemFailures"]) == sorted(
        f"m-{i}" for i in range(10)
    )
    assert all_items(aws) == []


def test_top_emotion_of_no_reading_is_unknown_not_happy():
    assert top_emotion(dict.fromkeys(["HAPPY", "SAD"], 0.0)) == UNKNOWN_EXPRESSION
    assert top_emotion({}) == UNKNOWN_EXPRESSION
    assert top_emotion({"SAD": 0.1}) == "SAD"


def test_a_face_with_only_unknown_or_no_emotions_is_counted_with_unknown_expression(aws):
    keys = [key_for(i) for i in range(3)]
    records = [put_crop(aws, key, jpeg_bytes(100, 130, seed=i)) for i, key in enumerate(keys)]
    (mosaic,) = mosaics_for([(100, 130)] * 3)
    only_unknown = face_detail(mosaic.box_for_tile(mosaic.tiles[0]))
    only_unknown["Emotions"] = [{"Type": "UNKNOWN", "Confidence": 99.2}]
    no_emotions = face_detail(mosaic.box_for_tile(mosaic.tiles[1]))
    del no_emotions["Emotions"]
    sad = face_detail(mosaic.box_for_tile(mosaic.tiles[2]), top="SAD")
    client, stubber = rekognition_stub()
    stubber.add_response(
        "detect_faces",
        detect_response([only_unknown, no_emotions, sad]),
        {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]},
    )
    with stubber:
        result = handle_event(
            sqs_event(sqs_message(s3_event(*records), "m-1")), rekognition_analyzer(aws, client)
        )
    assert result == {"batchItemFailures": []}
    tops = {i["sk"].split("#")[2]: i["top_emotion"] for i in observations(aws)}
    assert tops == {"0": UNKNOWN_EXPRESSION, "1": UNKNOWN_EXPRESSION, "2": "SAD"}
    emotions = metric_dimensions(aws, "TopEmotionFaces")
    assert any({"Name": "Emotion", "Value": "UNKNOWN"} in dims for dims in emotions)
    assert not any({"Name": "Emotion", "Value": "HAPPY"} in dims for dims in emotions)
    assert "FacesAnalyzed" in metric_names(aws)


def access_denied(stubber: Stubber, key: str) -> None:
    """What real S3 answers a GetObject on a missing key when the caller lacks s3:ListBucket."""
    stubber.add_client_error(
        "get_object",
        service_error_code="AccessDenied",
        service_message="Access Denied",
        http_status_code=403,
        expected_params={"Bucket": BUCKET, "Key": key},
        response_meta={"RequestId": "7Q2K1X0Y3ZEXAMPLE", "HostId": "f0fJXw2kEXAMPLE="},
    )


def test_a_403_on_a_gone_crop_is_a_duplicate_delivery_acked_not_retried(aws):
    import boto3

    gone = key_for(3)
    s3 = boto3.client("s3", region_name="eu-west-1")
    stubber = Stubber(s3)
    access_denied(stubber, gone)
    analyzer = local_analyzer(aws)
    analyzer.s3 = s3
    with stubber:
        result = handle_event(sqs_event(sqs_message(s3_event(s3_record(gone)), "m-dup")), analyzer)
    stubber.assert_no_pending_responses()
    assert result == {"batchItemFailures": []}  # acknowledged: not five retries then the DLQ
    assert all_items(aws) == []
    assert "DuplicateDeliveries" in metric_names(aws)
    assert [{"Name": "Reason", "Value": "access_denied_as_gone"}] in metric_dimensions(
        aws, "CropsTakenAsGone"
    )


def test_lambda_handler_batches_detectfaces_across_the_sqs_batch(aws):
    """An SQS event of 64 messages (the mapping's BatchSize), one S3 event each: one mosaic."""
    limits = MosaicLimits()
    count = limits.max_tiles
    records = [put_crop(aws, key_for(i), jpeg_bytes(100, 130, seed=i)) for i in range(count)]
    (mosaic,) = mosaics_for([(100, 130)] * count)
    client, stubber = rekognition_stub()
    stubber.add_response(
        "detect_faces",
        detect_response([face_detail(mosaic.box_for_tile(tile)) for tile in mosaic.tiles]),
        {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]},
    )
    event = sqs_event(*(sqs_message(s3_event(r), f"m-{i}") for i, r in enumerate(records)))
    analyzer = rekognition_analyzer(aws, client)
    with stubber:
        result = handle_event(event, analyzer)
    stubber.assert_no_pending_responses()
    assert result == {"batchItemFailures": []}
    assert analyzer.backend.calls == 1
    assert len(all_items(aws)) == count
    assert {i["captured_at_ms"] for i in observations(aws)} == {
        T0_MS + i * 1000 for i in range(count)
    }


def test_a_model_score_that_breaks_the_contract_rejects_that_crop_only(aws):
    """A NaN score fails the same way on every retry: rejected (counted), not retried 5 times."""
    from .test_analysis_support import classifier

    real = classifier()

    class NaNForOneCrop:
        model_name = real.model_name

        def classify(self, face_bgr):
            scores = real.classify(face_bgr)
            if face_bgr.shape[:2] == (97, 97):
                scores["SAD"] = float("nan")
            return scores

    records = [
        put_crop(aws, key_for(i), jpeg_bytes(97 if i == 2 else 120, 97 if i == 2 else 120, seed=i))
        for i in range(5)
    ]
    event = sqs_event(*(sqs_message(s3_event(r), f"m-{i}") for i, r in enumerate(records)))
    analyzer = local_analyzer(aws)
    analyzer.backend.classifier = NaNForOneCrop()
    assert handle_event(event, analyzer) == {"batchItemFailures": []}
    assert len(all_items(aws)) == 4
    assert "contract_error" in rejected_reasons(aws)
