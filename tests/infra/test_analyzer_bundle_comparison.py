"""A cloud-mode comparison pair in production: the analyzer runs in Lambda from its bundle, which
has no local model (fer, ai-edge-litert and opencv are far too big for the bundle), so the
camera's side of the pair is the camera's own reading, sent with the crop. moto cannot run
Lambda code: the bundle is unpacked and its handler called, in a process where the model's
packages cannot be imported; Rekognition is botocore's Stubber with DetectFaces' real shape."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from infra import analyzer_bundle

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import importlib.abc, json, os, sys

BUNDLE, REPO = sys.argv[1], sys.argv[2]
ABSENT = {"fer", "ai_edge_litert", "cv2", "django"}


class NotInTheBundle(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ABSENT:
            raise ImportError(f"{name} is not in the Lambda bundle")
        return None


sys.meta_path.insert(0, NotInTheBundle())
sys.path[:0] = [BUNDLE, REPO]  # the bundle's analyzer first; the repository for test helpers
os.environ.update(STAGEPULSE_ANALYZER_BACKEND="rekognition",
                  STAGEPULSE_OBSERVATIONS_TABLE="stagepulse-observations")

from botocore.stub import ANY
from moto import mock_aws

with mock_aws():
    import analyzer.handler as handler
    from analyzer.config import AnalyzerSettings
    from edge_package.contracts import (
        META_COMPARISON_MODE, META_COMPARISON_RUN, META_DETECTOR_SCORE, META_EDGE_ANALYZED_AT_MS,
        META_EDGE_BYTES, META_EDGE_MODEL, META_EDGE_SCORES, META_ORGANIZATION, encode_scores,
    )
    from tests.emotions.test_analysis_support import (
        BUCKET, T0_MS, analyzer_stack, astronaut_face_jpeg, detect_response, face_detail,
        key_for, observations, rekognition_stub, s3_event, s3_record, sqs_event, sqs_message,
    )

    aws = analyzer_stack()
    client, stubber = rekognition_stub()
    handler._analyzer = handler.build_analyzer(
        AnalyzerSettings.from_env(), rekognition=client, s3=aws.s3, dynamodb=aws.dynamodb,
        cloudwatch=aws.cloudwatch,
    )
    camera = {
        META_EDGE_SCORES: encode_scores({"SAD": 81.5, "CALM": 12.0, "HAPPY": 6.5}),
        META_EDGE_MODEL: "fer-emotion_model_quantized",
        META_EDGE_ANALYZED_AT_MS: str(T0_MS + 1000 + 240),
        META_EDGE_BYTES: "587",
    }
    answers = []
    for seq, extra in ((1, camera), (2, {})):  # a camera that sent its reading; an older one
        key = key_for(seq)
        data = astronaut_face_jpeg()
        aws.s3.put_object(Bucket=BUCKET, Key=key, Body=data, ContentType="image/jpeg", Metadata={
            META_ORGANIZATION: "org-1", META_DETECTOR_SCORE: "0.97",
            META_COMPARISON_RUN: "a1b2c3d4e5f6a7b8", META_COMPARISON_MODE: "cloud", **extra,
        })
        whole = {"Left": 0.1, "Top": 0.1, "Width": 0.8, "Height": 0.8}
        stubber.add_response("detect_faces", detect_response([face_detail(whole, "HAPPY")]),
                             {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]})
        with stubber:
            event = sqs_event(sqs_message(s3_event(s3_record(key, size=len(data))), f"m-{seq}"))
            answers.append(handler.lambda_handler(event, None))
    items = observations(aws)
    pairs = sorted((i for i in items if i["pk"].startswith("cmp#")), key=lambda i: i["sk"])
    print(json.dumps({
        "answers": answers,
        "pairs": [{"local": p["local"], "rekognition": p["rekognition"],
                   "edge_bytes": int(p["edge_bytes"])} for p in pairs],
        "faces": sum(1 for i in items if not i["pk"].startswith("cmp#")),
        "handler": handler.__file__,
        "model_modules": sorted({m.split(".")[0] for m in sys.modules} & ABSENT),
    }, default=float))
"""


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("bundle")
    zipfile.ZipFile(io.BytesIO(analyzer_bundle.build_analyzer_bundle(vendor=False))).extractall(
        target
    )
    return target


def test_the_bundle_ships_no_local_model(unpacked):
    names = {p.relative_to(unpacked).as_posix() for p in unpacked.rglob("*") if p.is_file()}
    assert not [n for n in names if n.split("/")[0] in {"fer", "ai_edge_litert", "cv2"}]
    assert not [n for n in names if n.endswith(".tflite")]


def test_a_cloud_mode_pair_in_lambda_carries_the_cameras_reading_or_says_there_is_none(unpacked):
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(unpacked), str(REPO)],
        cwd=unpacked, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["handler"].startswith(str(unpacked))  # the bundle's code ran, not the repository's
    assert out["model_modules"] == []  # no model package was loaded (none could be)
    assert out["answers"] == [{"batchItemFailures": []}] * 2
    assert out["faces"] == 2  # each crop's observation, from Rekognition, as for any crop
    with_reading, older_camera = out["pairs"]
    for pair in out["pairs"]:
        assert pair["rekognition"]["available"] and pair["rekognition"]["top"] == "HAPPY"
    assert with_reading["local"]["available"] and with_reading["local"]["top"] == "SAD"
    assert with_reading["local"]["model"] == "fer-emotion_model_quantized"
    assert with_reading["edge_bytes"] == 587
    assert older_camera["local"]["available"] is False
    assert older_camera["local"]["reason"] == "no_local_model"
