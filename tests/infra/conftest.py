"""A StagePulse stack deployed into moto (Embedded=true, as the demo does) for each test."""

import warnings

import pytest
from moto import mock_aws

from infra import deploy as infra

NAMES = {
    "CropsBucketName": "test-crops",
    "ArtifactsBucketName": "test-artifacts",
    "ObservationsTableName": "test-observations",
    "AnalysisQueueName": "test-analysis",
}


@pytest.fixture
def moto_aws():
    with warnings.catch_warnings():
        # moto warns for every resource type its CloudFormation skips (policies, IoT rule, ...)
        warnings.simplefilter("ignore", UserWarning)
        with mock_aws():
            yield


@pytest.fixture
def stack(moto_aws):
    messages: list[str] = []
    result = infra.deploy(
        "stagepulse-test",
        {"Embedded": "true", "EnvironmentName": "test", **NAMES},
        emit=messages.append,
    )
    result.messages = messages
    return result
