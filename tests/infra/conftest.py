"""A StagePulse stack deployed into moto (Embedded=true, as the demo does) for each test
(moto_aws: tests/conftest.py)."""

import pytest

from infra import deploy

NAMES = {
    "CropsBucketName": "test-crops",
    "ArtifactsBucketName": "test-artifacts",
    "ObservationsTableName": "test-observations",
    "AnalysisQueueName": "test-analysis",
}


@pytest.fixture
def stack(moto_aws):
    messages: list[str] = []
    result = deploy.deploy(
        "stagepulse-test",
        {"Embedded": "true", "EnvironmentName": "test", **NAMES},
        emit=messages.append,
    )
    result.messages = messages
    return result
