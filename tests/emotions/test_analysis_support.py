"""Shared builders for the analyzer tests: real-shaped S3/SQS events, JPEG crops, moto fixtures.

Holds no tests itself; the test_analysis_* modules import from it.
"""

from __future__ import annotations

import io
import json
from types import SimpleNamespace
from urllib.parse import quote_plus

import boto3
import numpy as np
from botocore.stub import Stubber
from PIL import Image

from analyzer.analyzer import Analyzer
from analyzer.backends import LocalBackend, RekognitionBackend
from analyzer.config import AnalyzerSettings
from analyzer.mosaic import MosaicLimits, plan
from edge_package.contracts import (
    EMOTIONS,
    META_DETECTOR_SCORE,
    META_ORGANIZATION,
    build_crop_key,
    observation_table_definition,
)

BUCKET = "stagepulse-crops"
TABLE = "stagepulse-observations"
REGION = "eu-west-1"
T0_MS = 1_751_371_200_000  # 2025-07-01 12:00:00 UTC


def jpeg_bytes(width: int = 120, height: int = 120, seed: int = 0, quality: int = 85) -> bytes:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def astronaut_face_jpeg() -> bytes:
    """A real smiling face crop (skimage's astronaut portrait), as the edge would upload it."""
    import skimage.data

    face = skimage.data.astronaut()[55:185, 170:285]
    buffer = io.BytesIO()
    Image.fromarray(face).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def key_for(seq: int, festival: str = "sunfest", stage: str = "main", device: str = "cam-1") -> str:
    return build_crop_key(festival, stage, device, T0_MS + seq * 1000, seq)


def s3_record(key: str, size: int | None = 1234, bucket: str = BUCKET, name: str = "Put") -> dict:
    """One record exactly as S3 sends it: the key is URL-encoded (spaces become '+')."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": REGION,
        "eventTime": "2025-07-01T12:00:01.000Z",
        "eventName": f"ObjectCreated:{name}",
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.10"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "crop-created",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": "d41d8cd98f00b204e9800998ecf8427e",
                "sequencer": "0055AED6DCD90281E5",
            },
        },
    }


def s3_event(*records: dict) -> dict:
    return {"Records": list(records)}


S3_TEST_EVENT = {
    "Service": "Amazon S3",
    "Event": "s3:TestEvent",
    "Time": "2025-07-01T12:00:00.000Z",
    "Bucket": BUCKET,
    "RequestId": "5582815E1AEA5ADF",
    "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
}


def sqs_message(body, message_id: str) -> dict:
    """One SQS record as Lambda's SQS event source delivers it."""
    return {
        "messageId": message_id,
        "receiptHandle": f"AQEB{message_id}",
        "body": body if isinstance(body, str) else json.dumps(body),
        "attributes": {
            "ApproximateReceiveCount": "1",
            "SentTimestamp": "1751371201000",
            "SenderId": "AIDAIENQZJOLO23YVJ4VO",
            "ApproximateFirstReceiveTimestamp": "1751371201005",
        },
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:stagepulse-analyzer",
        "awsRegion": REGION,
    }


def sqs_event(*messages: dict) -> dict:
    return {"Records": list(messages)}


def emotions_payload(top: str, top_score: float = 90.0) -> list[dict]:
    """Rekognition's Emotions list: all eight types plus UNKNOWN, `top` scoring highest."""
    rest = (100.0 - top_score) / len(EMOTIONS)
    payload = [
        {"Type": name, "Confidence": top_score if name == top else rest} for name in EMOTIONS
    ]
    payload.append({"Type": "UNKNOWN", "Confidence": 0.0})
    return payload


def face_detail(box: dict, top: str = "HAPPY", confidence: float = 99.9) -> dict:
    """A DetectFaces FaceDetail with Attributes=["EMOTIONS"], shaped like the real response."""
    return {
        "BoundingBox": box,
        "Landmarks": [
            {"Type": "eyeLeft", "X": box["Left"] + box["Width"] * 0.3, "Y": box["Top"] + 0.1},
            {"Type": "eyeRight", "X": box["Left"] + box["Width"] * 0.7, "Y": box["Top"] + 0.1},
        ],
        "Pose": {"Roll": 1.2, "Yaw": -3.4, "Pitch": 5.6},
        "Quality": {"Brightness": 80.1, "Sharpness": 78.6},
        "Confidence": confidence,
        "Emotions": emotions_payload(top),
    }


def detect_response(details: list[dict]) -> dict:
    return {"FaceDetails": details}


def mosaics_for(sizes: list[tuple[int, int]], limits: MosaicLimits | None = None):
    """The mosaics the backend will build for crops of these sizes (layout is deterministic)."""
    images = [(i, Image.new("RGB", size)) for i, size in enumerate(sizes)]
    return plan(images, limits or MosaicLimits())


def rekognition_stub():
    client = boto3.client("rekognition", region_name=REGION)
    return client, Stubber(client)


def analyzer_stack() -> SimpleNamespace:
    """For an `aws` fixture, inside the suite's `moto_aws` (tests/conftest.py): S3, DynamoDB,
    CloudWatch and SQS clients, with the bucket, the table and the queue."""
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(**observation_table_definition(TABLE))
    sqs = boto3.client("sqs", region_name=REGION)
    queue_url = sqs.create_queue(QueueName="stagepulse-analyzer")["QueueUrl"]
    cloudwatch = boto3.client("cloudwatch", region_name=REGION)
    return SimpleNamespace(
        s3=s3, dynamodb=dynamodb, sqs=sqs, queue_url=queue_url, cloudwatch=cloudwatch
    )


def put_crop(aws, key: str, data: bytes, organization: str = "org-1", score: str = "0.97"):
    aws.s3.put_object(
        Bucket=BUCKET,
        Key=key,
        Body=data,
        ContentType="image/jpeg",
        Metadata={META_ORGANIZATION: organization, META_DETECTOR_SCORE: score},
    )
    return s3_record(key, size=len(data))


def settings(**overrides) -> AnalyzerSettings:
    values = {"backend": "local", "table_name": TABLE}
    values.update(overrides)
    return AnalyzerSettings(**values)


_CLASSIFIER = None


def classifier():
    """One real EmotionClassifier per test session (loading it takes ~50 ms)."""
    global _CLASSIFIER
    if _CLASSIFIER is None:
        from edge_package.emotion_model import EmotionClassifier

        _CLASSIFIER = EmotionClassifier()
    return _CLASSIFIER


def local_analyzer(aws, **overrides) -> Analyzer:
    return Analyzer(
        settings=settings(**overrides),
        backend=LocalBackend(classifier()),
        s3=aws.s3,
        dynamodb=aws.dynamodb,
        cloudwatch=aws.cloudwatch,
    )


def rekognition_analyzer(aws, client, **overrides) -> Analyzer:
    return Analyzer(
        settings=settings(backend="rekognition", **overrides),
        backend=RekognitionBackend(client, sleep=lambda _s: None),
        s3=aws.s3,
        dynamodb=aws.dynamodb,
        cloudwatch=aws.cloudwatch,
    )


def all_items(aws) -> list[dict]:
    return aws.dynamodb.scan(TableName=TABLE)["Items"]


def observations(aws) -> list[dict]:
    """The table's items as plain Python values, as the ingest side will read them."""
    from boto3.dynamodb.types import TypeDeserializer

    from edge_package.contracts import from_dynamodb

    deserializer = TypeDeserializer()
    return [
        from_dynamodb({k: deserializer.deserialize(v) for k, v in item.items()})
        for item in all_items(aws)
    ]


def crop_exists(aws, key: str) -> bool:
    try:
        aws.s3.head_object(Bucket=BUCKET, Key=key)
        return True
    except aws.s3.exceptions.ClientError:
        return False


def queue_depth(aws) -> int:
    attrs = aws.sqs.get_queue_attributes(
        QueueUrl=aws.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(
        attrs["ApproximateNumberOfMessagesNotVisible"]
    )
