"""Fixtures for the device fleet: every AWS call goes to moto (IoT, IAM, S3, Lambda,
Greengrass v1, IoT data, CloudWatch); Greengrass v2 (not in moto) is stubbed per test.

The services use awsclients.cached_client (process-wide clients); moto intercepts at the HTTP
layer, so cached clients talk to each test's fresh moto state."""

from __future__ import annotations

import json

import pytest

import awsclients as aws

LAMBDA_TRUST = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Principal": {"Service": ["lambda.amazonaws.com", "greengrass.amazonaws.com"]},
            "Action": "sts:AssumeRole",
        }
    ],
}


@pytest.fixture
def moto_resources(settings):
    """In moto (tests/conftest.py moto_aws): the artifacts bucket and the DeepLens Lambda role."""
    aws.cached_client("s3").create_bucket(
        Bucket=settings.ARTIFACTS_BUCKET,
        CreateBucketConfiguration={"LocationConstraint": aws.region()},
    )
    role = aws.cached_client("iam").create_role(
        RoleName="stagepulse-deeplens-lambda",
        AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST),
    )["Role"]
    settings.DEEPLENS_LAMBDA_ROLE_ARN = role["Arn"]


@pytest.fixture
def registered(moto_aws, two_worlds):
    """Our world's device, registered in moto IoT; returns (device, bundle)."""
    from devices import services

    device = two_worlds[0].device
    bundle = services.register_device(device)
    device.refresh_from_db()
    return device, bundle


@pytest.fixture(scope="session")
def edge_artifact():
    """The release zip of edge_package/ and its manifest, built once per session: the sources do
    not change while the suite runs (tests/devices/test_releases.py builds its own, from copies
    it changes)."""
    from devices.services.releases import build_artifact

    return build_artifact()


@pytest.fixture
def release(moto_aws, db, edge_artifact, monkeypatch):
    """The current release, uploaded to this test's moto and recorded, from the session's zip."""
    from devices import services
    from devices.services import releases

    with monkeypatch.context() as patch:
        patch.setattr(releases, "build_artifact", lambda root=releases.EDGE_ROOT: edge_artifact)
        return services.build_edge_release()


@pytest.fixture
def ggv2(monkeypatch):
    """A real botocore greengrassv2 client wrapped in a Stubber (moto has no Greengrass v2);
    every other service still goes to moto through awsclients.client."""
    from botocore.stub import Stubber

    client = aws.client("greengrassv2")
    stubber = Stubber(client)
    real = aws.cached_client

    def pick(name):
        return client if name == "greengrassv2" else real(name)

    monkeypatch.setattr(aws, "cached_client", pick)
    with stubber:
        yield stubber
    stubber.assert_no_pending_responses()


@pytest.fixture(autouse=True)
def private_cache(settings):
    """Throttle counters live in the cache: give each test its own, empty one."""
    from django.core.cache import cache

    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    cache.clear()
    yield
    cache.clear()
