"""awsclients reuses one boto3 Session per region and credentials (botocore parses its service
models once per session), yet every test's moto stays its own and a changed environment is seen."""

from __future__ import annotations

import threading

import boto3
from moto import mock_aws

import awsclients as aws


def test_clients_share_one_session_and_its_parsed_models(moto_aws, monkeypatch):
    aws.forget_sessions()
    created = []
    real = boto3.session.Session

    def counting(*args, **kwargs):
        created.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(boto3.session, "Session", counting)
    aws.client("s3")
    aws.client("sqs")
    aws.resource("dynamodb")
    assert len(created) == 1


def test_a_changed_region_or_credentials_gets_its_own_session(monkeypatch):
    aws.forget_sessions()
    first = aws.client("s3")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-2")
    assert aws.client("s3").meta.region_name == "us-east-2"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "another-key")
    aws.client("s3")
    assert len(aws._sessions) == 3
    assert first.meta.region_name == "eu-west-1"


def test_each_moto_starts_empty_though_the_session_is_shared():
    with mock_aws():
        aws.client("s3").create_bucket(
            Bucket="left-behind", CreateBucketConfiguration={"LocationConstraint": aws.region()}
        )
        cached = aws.cached_client("s3")
        assert "left-behind" in [b["Name"] for b in cached.list_buckets()["Buckets"]]
    with mock_aws():
        assert aws.client("s3").list_buckets()["Buckets"] == []
        assert cached.list_buckets()["Buckets"] == []


def test_clients_can_be_made_from_many_threads(moto_aws):
    aws.forget_sessions()
    errors = []

    def make():
        try:
            aws.client("sqs").list_queues()
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=make) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
