"""The analyzer end to end on moto (S3, DynamoDB, CloudWatch) through the Lambda handler."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY
from PIL import Image

from analyzer import handler
from analyzer.handler import RetryableBatchError, handle_event
from analyzer.metrics import MetricBatch
from edge_package.contracts import build_crop_key

from .test_analysis_support import (
    S3_TEST_EVENT,
    T0_MS,
    all_items,
    analyzer_stack,
    astronaut_face_jpeg,
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

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def aws(moto_aws):
    return analyzer_stack()


class Proxy:
    """Wraps a real moto client, failing or counting chosen calls (simulates AWS trouble)."""

    def __init__(self, real, fail=None):
        self.real, self.fail, self.calls = real, fail or {}, []

    def __getattr__(self, name):
        method = getattr(self.real, name)

        def call(**kwargs):
            self.calls.append((name, kwargs))
            check = self.fail.get(name)
            if check is not None:
                error = check(kwargs)
                if error is not None:
                    raise error
            return method(**kwargs)

        return call


def client_error(code: str, op: str = "PutItem") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, op)


def rejected_reasons(aws) -> set[str]:
    metrics = aws.cloudwatch.list_metrics(Namespace="StagePulse", MetricName="CropsRejected")
    return {m["Dimensions"][0]["Value"] for m in metrics["Metrics"]}


def metric_names(aws) -> set[str]:
    return {m["MetricName"] for m in aws.cloudwatch.list_metrics(Namespace="StagePulse")["Metrics"]}


def test_a_real_face_under_an_awkward_key_is_written_counted_and_deleted(aws):
    key = build_crop_key("sun fest+", "scène principale", "cam ü", T0_MS, 7)
    record = put_crop(aws, key, astronaut_face_jpeg())
    result = handle_event(s3_event(record), local_analyzer(aws))
    assert result["faces_written"] == 1 and result["statuses"] == {"written": 1}
    (item,) = observations(aws)
    assert item["pk"] == "sun fest+/scène principale"
    assert item["device"] == "cam ü" and item["captured_at_ms"] == T0_MS
    assert item["source"] == "local" and item["model"].startswith("fer")
    assert item["top_emotion"] == "HAPPY" and item["emotions"]["CONFUSED"] == 0
    assert item["organization"] == "org-1" and item["face_confidence"] == 97.0
    assert not crop_exists(aws, key)  # privacy: gone after analysis
    names = metric_names(aws)
    assert {"FacesAnalyzed", "CropsAnalyzed", "TopEmotionFaces", "EmotionScore"} <= names
    dims = aws.cloudwatch.list_metrics(Namespace="StagePulse", MetricName="FacesAnalyzed")
    assert dims["Metrics"][0]["Dimensions"] == [
        {"Name": "Festival", "Value": "sun fest+"},
        {"Name": "Stage", "Value": "scène principale"},
    ]


def test_replayed_event_writes_nothing_new(aws):
    key = key_for(1)
    record = put_crop(aws, key, astronaut_face_jpeg())
    keep = local_analyzer(aws, retention_hours=2)
    first = keep.process(*_crops(s3_event(record)))
    second = keep.process(*_crops(s3_event(record)))  # crop retained, so analyzed again
    assert first.faces_written == 1 and second.faces_written == 0
    assert second.outcomes[0].status == "duplicate" and second.outcomes[0].duplicates == 1
    assert len(all_items(aws)) == 1
    assert crop_exists(aws, key)  # retention > 0: the lifecycle rule deletes it later
    assert "DuplicateObservations" in metric_names(aws)
    # Default retention deletes the crop; a later duplicate delivery finds it gone: no error.
    analyzer = local_analyzer(aws)
    assert analyzer.process(*_crops(s3_event(record))).outcomes[0].status == "duplicate"
    assert not crop_exists(aws, key)
    third = analyzer.process(*_crops(s3_event(record)))
    assert third.outcomes[0].status == "missing" and third.failed_message_ids() == []
    assert len(all_items(aws)) == 1


def _crops(event):
    from analyzer.events import crops_from_s3_event

    return crops_from_s3_event(event)


def _big_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (5000, 40), (200, 10, 10)).save(buffer, format="JPEG")
    return buffer.getvalue()


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_every_kind_of_bad_input_is_counted_and_never_stops_the_batch(aws):
    good = jpeg_bytes(seed=1)
    corrupt = good[:200] + bytes(range(256)) * 8 + good[-2:]
    truncated = good[: len(good) // 2]
    cases = {
        "good": (key_for(1), good),
        "not_an_image": (key_for(2), b"hello, I am a text file"),
        "corrupt_image": (key_for(3), corrupt),
        "truncated": (key_for(4), truncated),
        "image_too_large": (key_for(5), _big_jpeg()),
        "not_jpeg": (key_for(6), _png()),
        "empty_object": (key_for(7), b""),
        "unknown_stage": (key_for(8, stage="secret-stage"), good),
        "image_too_small": (key_for(9), jpeg_bytes(8, 8)),
        "bad_key": ("faces/sunfest/main/cam-1/2025/07/01/12/not-a-capture.jpg", good),
        "bad_hour": ("faces/sunfest/main/cam-1/2025/07/01/09/1751371200000-1.jpg", good),
        "outside_prefix": ("uploads/readme.jpg", good),
    }
    records = [put_crop(aws, key, data) for key, data in cases.values()]
    records.append(s3_record(key_for(10)))  # event for an object that does not exist
    analyzer = local_analyzer(aws, stage_allowlist=frozenset({"sunfest/main"}))
    report = analyzer.process(*_crops(s3_event(*records)))
    by_key = {o.ref.key: (o.status, o.reason) for o in report.outcomes}
    status = {name: by_key[key] for name, (key, _) in cases.items()}
    assert status["good"] == ("written", "")
    assert status["not_an_image"] == ("rejected", "not_an_image")
    assert status["corrupt_image"] == ("rejected", "corrupt_image")
    assert status["truncated"] == ("rejected", "corrupt_image")
    assert status["image_too_large"] == ("rejected", "image_too_large")
    assert status["not_jpeg"] == ("rejected", "not_jpeg")
    assert status["empty_object"] == ("rejected", "empty_object")
    assert status["unknown_stage"] == ("rejected", "unknown_stage")
    assert status["image_too_small"] == ("rejected", "image_too_small")
    assert status["bad_key"] == ("rejected", "bad_key")
    assert status["bad_hour"] == ("rejected", "bad_key")
    assert status["outside_prefix"] == ("ignored", "outside_prefix")
    assert by_key[key_for(10)] == ("missing", "already_deleted")
    assert report.failed_message_ids() == [] and len(all_items(aws)) == 1
    # Rejected crops are deleted (privacy); objects outside the crop prefix are not ours.
    for name, (key, _) in cases.items():
        assert crop_exists(aws, key) == (name == "outside_prefix"), name
    assert rejected_reasons(aws) == {
        "not_an_image",
        "corrupt_image",
        "image_too_large",
        "not_jpeg",
        "empty_object",
        "unknown_stage",
        "image_too_small",
        "bad_key",
        "outside_prefix",
    }


def test_crop_larger_than_the_byte_limit_is_refused_before_download(aws):
    data = jpeg_bytes(400, 400, seed=3, quality=95)
    record = put_crop(aws, key_for(1), data)
    s3 = Proxy(aws.s3)
    analyzer = local_analyzer(aws, max_crop_bytes=len(data) - 1)
    analyzer.s3 = s3
    report = analyzer.process(*_crops(s3_event(record)))
    assert report.outcomes[0].reason == "image_too_large"
    assert "get_object" not in [name for name, _ in s3.calls]  # the event's size sufficed


def test_sqs_batch_reports_only_retryable_messages(aws):
    keys = [key_for(i) for i in range(4)]
    records = [put_crop(aws, key, jpeg_bytes(seed=i)) for i, key in enumerate(keys)]
    dynamodb = Proxy(
        aws.dynamodb,
        fail={
            "put_item": lambda kw: (
                client_error("ProvisionedThroughputExceededException")
                if kw["Item"]["device"]["S"] == "cam-1"
                and kw["Item"]["sk"]["S"].split("#")[2] == "2"
                else None
            )
        },
    )
    analyzer = local_analyzer(aws)
    analyzer.dynamodb = dynamodb
    event = sqs_event(
        sqs_message(s3_event(records[0], records[1]), "m-ok"),
        sqs_message(s3_event(records[2]), "m-throttled"),
        sqs_message(S3_TEST_EVENT, "m-test"),
        sqs_message("not json at all", "m-garbage"),
        sqs_message(s3_event(records[3]), "m-ok-2"),
    )
    result = handle_event(event, analyzer)
    assert result == {"batchItemFailures": [{"itemIdentifier": "m-throttled"}]}
    assert len(all_items(aws)) == 3
    assert crop_exists(aws, keys[2])  # kept for the retry
    assert not any(crop_exists(aws, k) for k in (keys[0], keys[1], keys[3]))
    errors = aws.cloudwatch.list_metrics(Namespace="StagePulse", MetricName="AnalyzerErrors")
    assert errors["Metrics"][0]["Dimensions"] == [{"Name": "Reason", "Value": "dynamodb_throttled"}]
    assert "bad_message" in rejected_reasons(aws)
    # The retry succeeds once DynamoDB recovers.
    analyzer.dynamodb = aws.dynamodb
    retry = handle_event(sqs_event(sqs_message(s3_event(records[2]), "m-throttled")), analyzer)
    assert retry == {"batchItemFailures": []} and len(all_items(aws)) == 4


def test_raw_s3_event_with_a_retryable_failure_raises_for_lambda_retry(aws):
    record = put_crop(aws, key_for(1), jpeg_bytes())
    analyzer = local_analyzer(aws)
    analyzer.dynamodb = Proxy(aws.dynamodb, fail={"put_item": lambda kw: client_error("Boom")})
    with pytest.raises(RetryableBatchError, match="dynamodb_error"):
        handle_event(s3_event(record), analyzer)
    assert crop_exists(aws, key_for(1))


def test_s3_test_event_is_accepted_and_does_nothing(aws):
    assert handle_event(S3_TEST_EVENT, local_analyzer(aws))["crops"] == 0


def test_rekognition_backend_end_to_end_with_mosaic(aws):
    keys = [key_for(i) for i in range(3)]
    records = [put_crop(aws, key, jpeg_bytes(100, 130, seed=i)) for i, key in enumerate(keys)]
    (mosaic,) = mosaics_for([(100, 130)] * 3)
    client, stubber = rekognition_stub()
    stubber.add_response(
        "detect_faces",
        detect_response(
            [
                face_detail(mosaic.box_for_tile(mosaic.tiles[0]), top="SURPRISED", confidence=99.1),
                face_detail(mosaic.box_for_tile(mosaic.tiles[2]), top="ANGRY", confidence=98.7),
            ]
        ),
        {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]},
    )
    with stubber:
        result = handle_event(
            sqs_event(sqs_message(s3_event(*records), "m-1")), rekognition_analyzer(aws, client)
        )
    assert result == {"batchItemFailures": []}
    items = sorted(observations(aws), key=lambda item: item["sk"])
    assert [(i["sk"].split("#")[2], i["top_emotion"]) for i in items] == [
        ("0", "SURPRISED"),
        ("2", "ANGRY"),
    ]
    assert all(i["source"] == "rekognition" for i in items)
    assert items[0]["face_confidence"] == pytest.approx(99.1)
    assert not any(crop_exists(aws, k) for k in keys)  # the faceless crop is deleted too
    assert {"CropsWithoutFace", "DetectFacesCalls"} <= metric_names(aws)


def test_metrics_for_many_stages_go_out_in_one_call(aws):
    records = [
        put_crop(aws, key_for(i, stage=f"stage-{i % 5}"), jpeg_bytes(seed=i)) for i in range(20)
    ]
    cloudwatch = Proxy(aws.cloudwatch)
    analyzer = local_analyzer(aws)
    analyzer.cloudwatch = cloudwatch
    analyzer.process(*_crops(s3_event(*records)))
    puts = [kw for name, kw in cloudwatch.calls if name == "put_metric_data"]
    assert len(puts) == 1
    data = puts[0]["MetricData"]
    faces = [d for d in data if d["MetricName"] == "FacesAnalyzed"]
    assert len(faces) == 5 and sum(d["Value"] for d in faces) == 20
    assert puts[0]["Namespace"] == "StagePulse"


def test_metric_batches_split_at_the_put_limit():
    class Recorder:
        def __init__(self):
            self.sizes = []

        def put_metric_data(self, Namespace, MetricData):  # noqa: N803 - boto3's names
            self.sizes.append(len(MetricData))

    batch = MetricBatch("StagePulse")
    for i in range(2500):
        batch.add("FacesAnalyzed", 1, {"Festival": "f", "Stage": f"s{i}"})
    recorder = Recorder()
    assert batch.flush(recorder) == 2500
    assert recorder.sizes == [1000, 1000, 500]


def test_a_failed_metric_put_does_not_fail_the_batch(aws):
    record = put_crop(aws, key_for(1), jpeg_bytes())
    analyzer = local_analyzer(aws)
    analyzer.cloudwatch = Proxy(
        aws.cloudwatch, fail={"put_metric_data": lambda kw: client_error("Throttling")}
    )
    result = handle_event(sqs_event(sqs_message(s3_event(record), "m-1")), analyzer)
    assert result == {"batchItemFailures": []} and len(all_items(aws)) == 1


def test_lambda_handler_builds_its_clients_from_the_environment(aws, monkeypatch):
    monkeypatch.setenv("STAGEPULSE_ANALYZER_BACKEND", "local")
    monkeypatch.setenv("STAGEPULSE_OBSERVATIONS_TABLE", "stagepulse-observations")
    monkeypatch.setattr(handler, "_analyzer", None)
    record = put_crop(aws, key_for(1), astronaut_face_jpeg())
    result = handler.lambda_handler(sqs_event(sqs_message(s3_event(record), "m-1")), None)
    assert result == {"batchItemFailures": []}
    assert len(all_items(aws)) == 1
    assert handler._analyzer.backend.source == "local"
    monkeypatch.setattr(handler, "_analyzer", None)


def test_analyzer_imports_no_django_or_django_app_module():
    code = (
        "import sys\n"
        "import analyzer.handler, analyzer.worker\n"
        "bad = [m for m in sys.modules if m == 'django' or m.startswith('django.')\n"
        "       or m.split('.')[0] in ('stages', 'devices', 'rest_framework', 'celery')\n"
        "       or (m.startswith('festival.') and m != 'awsclients')\n"
        "       or (m.startswith('emotions.') and not m.startswith('analyzer'))]\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
