"""A failed deploy explains itself; the analyzer bundle holds what the Lambda needs, no more."""

import io
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from botocore.stub import ANY, Stubber

from infra import analyzer_bundle, deploy, errors, stacks

STACK_ID = "arn:aws:cloudformation:eu-west-1:123456789012:stack/stagepulse/abc"
ROLE_ALIAS_REQUEST = {"Type": "RESOURCE", "TypeName": "AWS::IoT::RoleAlias"}
ROLE_ALIAS_TYPE = {
    "Arn": "arn:aws:cloudformation:eu-west-1::type/resource/AWS-IoT-RoleAlias",
    "Type": "RESOURCE",
    "TypeName": "AWS::IoT::RoleAlias",
    "Visibility": "PUBLIC",
    "ProvisioningType": "FULLY_MUTABLE",
}


def stack(status: str, reason: str = "") -> dict:
    body = {
        "StackId": STACK_ID,
        "StackName": "stagepulse",
        "StackStatus": status,
        "CreationTime": datetime.now(UTC),
    }
    if reason:
        body["StackStatusReason"] = reason
    return {"Stacks": [body]}


def event(logical: str, kind: str, status: str, reason: str = "", *, age_s: int = 0) -> dict:
    body = {
        "StackId": STACK_ID,
        "EventId": f"{logical}-{status}",
        "StackName": "stagepulse",
        "LogicalResourceId": logical,
        "ResourceType": kind,
        "ResourceStatus": status,
        "Timestamp": datetime.now(UTC) + timedelta(seconds=5 - age_s),
    }
    if reason:
        body["ResourceStatusReason"] = reason
    return body


def test_failed_creation_raises_with_the_failed_resources_and_reasons():
    """Real CloudFormation response shapes for a creation that rolled back."""
    cfn = boto3.client("cloudformation", region_name="eu-west-1")
    stub = Stubber(cfn)
    stub.add_client_error(
        "describe_stacks", "ValidationError", "Stack with id stagepulse does not exist"
    )
    stub.add_response("describe_type", ROLE_ALIAS_TYPE, ROLE_ALIAS_REQUEST)  # region check
    stub.add_response("create_stack", {"StackId": STACK_ID}, {
        "StackName": "stagepulse", "TemplateBody": ANY, "Parameters": ANY,
        "Capabilities": ["CAPABILITY_NAMED_IAM"], "OnFailure": "ROLLBACK", "Tags": ANY,
    })  # fmt: skip
    stub.add_response("describe_stacks", stack("ROLLBACK_COMPLETE"))  # the waiter's poll
    stub.add_response(
        "describe_stacks",
        stack("ROLLBACK_COMPLETE", "The following resource(s) failed to create: [CropsBucket]."),
    )
    stub.add_response(
        "describe_stack_events",
        {
            "StackEvents": [  # newest first, as the API returns them
                event("stagepulse", "AWS::CloudFormation::Stack", "ROLLBACK_COMPLETE"),
                event(
                    "CropsBucket",
                    "AWS::S3::Bucket",
                    "CREATE_FAILED",
                    "stagepulse-crops already exists",
                    age_s=2,
                ),
                event("CropsBucket", "AWS::S3::Bucket", "CREATE_IN_PROGRESS", age_s=3),
                event("Old", "AWS::SQS::Queue", "CREATE_FAILED", "last week", age_s=10**6),
            ]
        },
    )
    s3 = boto3.client("s3", region_name="eu-west-1")
    no_bucket = Stubber(s3)  # no artifacts bucket retained from an earlier stack: HeadBucket 404
    no_bucket.add_client_error("head_bucket", "404", "Not Found", 404, {"Bucket": ANY})
    with stub, no_bucket, pytest.raises(errors.DeployError) as caught:
        deploy.deploy("stagepulse", {"Embedded": "false"}, cfn=cfn, s3=s3, emit=lambda _: None)
    message = str(caught.value)
    assert "creation of stack stagepulse failed: ROLLBACK_COMPLETE" in message
    assert "failed to create: [CropsBucket]" in message
    assert (
        "CropsBucket (AWS::S3::Bucket): CREATE_FAILED - stagepulse-crops already exists" in message
    )
    assert "last week" not in message  # events from before this deploy are not this failure
    stub.assert_no_pending_responses()


def test_invalid_parameters_are_refused_before_anything_changes(stack):
    with pytest.raises(errors.DeployError) as caught:
        deploy.deploy(
            "stagepulse-test",
            {"AnalyzerMode": "sideways", "CropRetentionHours": "48", "TelemetryUrl": "http://x"},
            emit=lambda _: None,
        )
    message = str(caught.value)
    assert "AnalyzerMode='sideways': must be one of worker, lambda" in message
    assert "CropRetentionHours=48: must be between 0 and 24" in message
    assert "TelemetryUrl='http://x': must match" in message
    assert stacks.status("stagepulse-test").parameters["AnalyzerMode"] == "worker"


@pytest.fixture(scope="module")
def bundle() -> bytes:
    return analyzer_bundle.build_analyzer_bundle(vendor=False)


def test_bundle_holds_the_analyzer_and_its_contracts(bundle):
    names = set(zipfile.ZipFile(io.BytesIO(bundle)).namelist())
    assert {
        "analyzer/__init__.py",
        "analyzer/handler.py",
        "edge_package/contracts.py",
        "edge_package/emotion_model.py",
        "awsclients/__init__.py",
    } <= names
    # nothing of a Django app or the project: the two Django-free packages need no stubbed marker
    assert not any(n.startswith(("stagepulse/", "festival/", "emotions/", "tests/")) for n in names)


def test_bundle_is_reproducible(bundle):
    assert analyzer_bundle.build_analyzer_bundle(vendor=False) == bundle


def test_bundle_handler_imports_without_django_or_the_repository(bundle, tmp_path):
    zipfile.ZipFile(io.BytesIO(bundle)).extractall(tmp_path)
    code = (
        "import sys, analyzer.handler as h; "
        "assert callable(h.lambda_handler); "
        "assert not [m for m in sys.modules if m.split('.')[0] == 'django'], 'django imported'; "
        "print(h.__file__)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().startswith(str(tmp_path))
