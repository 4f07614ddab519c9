"""A crop put into the (moto) bucket becomes an observation in DynamoDB and Postgres, moves the
stage's vibe, and is gone from S3 — through S3 notifications, SQS, the analysis worker command
(local model) and the ingest."""

import io
import json
from datetime import UTC, datetime, timedelta

import boto3
import cv2
import pytest
from django.core.management import call_command
from moto import mock_aws
from skimage import data as skdata

from edge_package.contracts import (
    META_CAPTURED_AT_MS,
    META_DETECTOR_SCORE,
    build_crop_key,
    observation_table_definition,
)
from emotions import services
from emotions.models import Observation
from emotions.selectors import compute_live_ranking

pytestmark = pytest.mark.django_db
REGION = "eu-west-1"


def astronaut_face_jpeg() -> bytes:
    rgb = skdata.astronaut()[20:230, 140:330]  # the smiling face, with a margin
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    return encoded.tobytes()


@pytest.fixture
def aws_stack(settings):
    with mock_aws():
        s3 = boto3.client("s3", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        s3.create_bucket(
            Bucket=settings.CROPS_BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        queue_url = sqs.create_queue(QueueName=settings.ANALYSIS_QUEUE_NAME)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        s3.put_bucket_notification_configuration(
            Bucket=settings.CROPS_BUCKET,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {
                        "QueueArn": queue_arn,
                        "Events": ["s3:ObjectCreated:*"],
                        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "faces/"}]}},
                    }
                ]
            },
        )
        dynamodb.create_table(**observation_table_definition(settings.OBSERVATIONS_TABLE))
        yield s3, dynamodb, queue_url


def test_crop_to_observation_to_vibe_and_crop_deleted(aws_stack, two_worlds, settings):
    s3, dynamodb, queue_url = aws_stack
    ours, _ = two_worlds
    ours.festival.min_faces_public = 1
    ours.festival.starts_on = ours.festival.ends_on = datetime.now(UTC).date()
    ours.festival.save()
    now = datetime.now(UTC)
    crop = astronaut_face_jpeg()
    keys = []
    for seq in range(3):
        captured_ms = int((now - timedelta(seconds=10 - seq)).timestamp() * 1000)
        key = build_crop_key(
            ours.festival.slug, ours.stage.slug, ours.device.thing_name, captured_ms, seq
        )
        s3.put_object(
            Bucket=settings.CROPS_BUCKET,
            Key=key,
            Body=crop,
            ServerSideEncryption="AES256",
            Metadata={META_CAPTURED_AT_MS: str(captured_ms), META_DETECTOR_SCORE: "0.93"},
        )
        keys.append(key)
    out = io.StringIO()
    call_command(
        "analysis_worker",
        "--backend",
        "local",
        "--queue-url",
        queue_url,
        "--idle-exit",
        "--wait",
        "1",
        "--batch-window",
        "0.2",
        stdout=out,
    )
    assert "3 faces written" in out.getvalue()
    items = dynamodb.scan(TableName=settings.OBSERVATIONS_TABLE)["Items"]
    assert len(items) == 3
    assert {item["top_emotion"]["S"] for item in items} == {"HAPPY"}
    assert all("N" in item["emotions"]["M"]["HAPPY"] for item in items)  # numbers, not strings
    for key in keys:  # privacy: the crops are gone after analysis
        with pytest.raises(s3.exceptions.ClientError):
            s3.head_object(Bucket=settings.CROPS_BUCKET, Key=key)
    streams = boto3.client("dynamodbstreams", region_name=REGION)
    assert services.ingest_streams(dynamodb=dynamodb, streams=streams).created == 3
    assert Observation.objects.filter(stage=ours.stage, top_emotion="HAPPY").count() == 3
    (row,) = compute_live_ranking(ours.festival)["stages"]
    assert row["faces"] == 3 and row["vibe"] > 40
    assert json.dumps(row["expression_share"])  # serializable for the API


def test_worker_mode_honours_the_analyzers_own_settings(
    aws_stack, two_worlds, settings, monkeypatch
):
    """The SQS worker reads the same STAGEPULSE_* variables as the Lambda (docs/analysis.md):
    here a retention of 2 h leaves the crop to the bucket's lifecycle rule."""
    s3, dynamodb, queue_url = aws_stack
    ours, _ = two_worlds
    monkeypatch.setenv("STAGEPULSE_CROP_RETENTION_HOURS", "2")
    captured_ms = int(datetime.now(UTC).timestamp() * 1000)
    key = build_crop_key(
        ours.festival.slug, ours.stage.slug, ours.device.thing_name, captured_ms, 0
    )
    s3.put_object(
        Bucket=settings.CROPS_BUCKET,
        Key=key,
        Body=astronaut_face_jpeg(),
        ServerSideEncryption="AES256",
        Metadata={META_CAPTURED_AT_MS: str(captured_ms), META_DETECTOR_SCORE: "0.93"},
    )
    out = io.StringIO()
    call_command(
        "analysis_worker",
        *("--backend", "local", "--queue-url", queue_url, "--idle-exit", "--wait", "1"),
        stdout=out,
    )
    assert "1 faces written" in out.getvalue()
    assert s3.head_object(Bucket=settings.CROPS_BUCKET, Key=key)  # kept: retention applies
