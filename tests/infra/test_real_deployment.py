"""The first deploy into a real account: a confirmed telemetry destination at the end, regions
without what the stack needs refused before anything is created, the service's own permissions
stated and checked against its code, reserved concurrency and crops access logging.

moto has no topic rule destinations and no CloudFormation registry (DescribeType), so those calls
are answered with botocore's Stubber in AWS's response and error shapes (docs/infra.md)."""

from __future__ import annotations

import fnmatch
import json
import re
from datetime import UTC, datetime

import boto3
import botocore.session
import pytest
from botocore import xform_name
from botocore.stub import ANY, Stubber

import awsclients as aws
from infra import cfn_template, deploy, embedded, errors, stacks, teardown
from tests.infra.conftest import NAMES
from tests.infra.test_failures_and_bundle import ROLE_ALIAS_REQUEST, ROLE_ALIAS_TYPE, STACK_ID

DESTINATION = "arn:aws:iot:eu-west-1:123456789012:ruledestination/http/6f1f7e3c-0000-4a4a-9b9b-1"
URL = "https://stagepulse.example.org/api/v1/telemetry/"


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_template.load_template()


def destination(status: str, reason: str = "") -> dict:
    """GetTopicRuleDestination's answer, as AWS IoT gives it."""
    body = {
        "arn": DESTINATION,
        "status": status,
        "createdAt": datetime(2026, 12, 1, tzinfo=UTC),
        "lastUpdatedAt": datetime(2026, 12, 1, tzinfo=UTC),
        "httpUrlProperties": {"confirmationUrl": URL},
    }
    if reason:
        body["statusReason"] = reason
    return {"topicRuleDestination": body}


def stubbed_iot() -> tuple:
    client = boto3.client("iot", region_name="eu-west-1")
    return client, Stubber(client)


# --- the telemetry rule destination -------------------------------------------------------------
def test_the_template_creates_the_destination_unconfirmed(template):
    """AWS: a new destination is IN_PROGRESS until confirmed; only a confirmed one can be
    ENABLED. Creating it ENABLED, as before, is not what AWS accepts."""
    props = template["Resources"]["TelemetryDestination"]["Properties"]
    assert props["Status"] == "IN_PROGRESS"
    assert template["Outputs"]["TelemetryDestinationArn"]["Value"] == {
        "Fn::GetAtt": ["TelemetryDestination", "Arn"]
    }


def test_the_first_deploy_ends_with_a_confirmed_destination(monkeypatch):
    """Create, then wait while the service confirms AWS's token; deploy returns only then."""
    monkeypatch.setattr(deploy.time, "sleep", lambda _: None)
    cfn = boto3.client("cloudformation", region_name="eu-west-1")
    iot, iot_stub = stubbed_iot()
    created = {
        "StackId": STACK_ID,
        "StackName": "stagepulse",
        "StackStatus": "CREATE_COMPLETE",
        "CreationTime": datetime.now(UTC),
        "Outputs": [{"OutputKey": "TelemetryDestinationArn", "OutputValue": DESTINATION}],
    }
    s3 = boto3.client("s3", region_name="eu-west-1")
    with Stubber(cfn) as cfn_stub, iot_stub, Stubber(s3) as s3_stub:
        # no artifacts bucket retained from an earlier stack
        s3_stub.add_client_error("head_bucket", "404", "Not Found", 404, {"Bucket": ANY})
        cfn_stub.add_client_error(
            "describe_stacks", "ValidationError", "Stack with id stagepulse does not exist"
        )
        cfn_stub.add_response("describe_type", ROLE_ALIAS_TYPE, ROLE_ALIAS_REQUEST)
        cfn_stub.add_response(
            "describe_type",
            {**ROLE_ALIAS_TYPE, "TypeName": "AWS::IoT::TopicRuleDestination"},
            {"Type": "RESOURCE", "TypeName": "AWS::IoT::TopicRuleDestination"},
        )
        cfn_stub.add_response("create_stack", {"StackId": STACK_ID}, {
            "StackName": "stagepulse", "TemplateBody": ANY, "Parameters": ANY,
            "Capabilities": ["CAPABILITY_NAMED_IAM"], "OnFailure": "ROLLBACK", "Tags": ANY,
        })  # fmt: skip
        cfn_stub.add_response("describe_stacks", {"Stacks": [created]})  # the waiter
        cfn_stub.add_response("describe_stacks", {"Stacks": [created]})
        iot_stub.add_response("get_topic_rule_destination", destination("IN_PROGRESS"))
        iot_stub.add_response("get_topic_rule_destination", destination("ENABLED"))
        messages: list[str] = []
        result = deploy.deploy(
            "stagepulse",
            {"Embedded": "false", "TelemetryUrl": URL},
            cfn=cfn,
            iot=iot,
            s3=s3,
            emit=messages.append,
        )
        iot_stub.assert_no_pending_responses()
    assert result.action == "created"
    assert any("confirmed and enabled" in m for m in messages)


def test_a_destination_left_disabled_is_enabled():
    iot, stub = stubbed_iot()
    with stub:
        stub.add_response("get_topic_rule_destination", destination("DISABLED"))
        stub.add_response(
            "update_topic_rule_destination", {}, {"arn": DESTINATION, "status": "ENABLED"}
        )
        stub.add_response("get_topic_rule_destination", destination("ENABLED"))
        assert deploy.ensure_destination_confirmed(DESTINATION, iot=iot, emit=print) == "ENABLED"
        stub.assert_no_pending_responses()


def test_an_unconfirmed_destination_gets_a_new_challenge_then_a_clear_error():
    iot, stub = stubbed_iot()
    with stub:
        for _ in range(3):
            stub.add_response("get_topic_rule_destination", destination("IN_PROGRESS"))
        stub.add_response(
            "update_topic_rule_destination", {}, {"arn": DESTINATION, "status": "IN_PROGRESS"}
        )
        for _ in range(2):
            stub.add_response("get_topic_rule_destination", destination("IN_PROGRESS"))
        with pytest.raises(errors.DeployError) as caught:
            deploy.ensure_destination_confirmed(
                DESTINATION, iot=iot, emit=print, wait_s=20, poll_s=5, sleep=lambda _: None
            )
        stub.assert_no_pending_responses()
    message = str(caught.value)
    assert "still unconfirmed" in message and "confirm-topic-rule-destination" in message


def test_a_destination_in_error_says_why():
    iot, stub = stubbed_iot()
    with stub:
        stub.add_response(
            "get_topic_rule_destination",
            destination("ERROR", "The confirmation URL returned HTTP 403"),
        )
        with pytest.raises(
            errors.DeployError, match="ERROR: The confirmation URL returned HTTP 403"
        ):
            deploy.ensure_destination_confirmed(DESTINATION, iot=iot, emit=print)


# --- regions ------------------------------------------------------------------------------------
def test_a_region_without_iot_role_aliases_is_refused_before_anything_is_created():
    """DescribeType answers TypeNotFoundException where a type is not offered; nothing else is
    called (the Stubber fails on any unexpected call, create_stack included)."""
    cfn = boto3.client("cloudformation", region_name="ap-southeast-5")
    with Stubber(cfn) as stub:
        stub.add_client_error(
            "describe_stacks", "ValidationError", "Stack with id stagepulse does not exist"
        )
        stub.add_client_error(
            "describe_type",
            "TypeNotFoundException",
            "The type 'AWS::IoT::RoleAlias' cannot be found.",
            404,
            expected_params=ROLE_ALIAS_REQUEST,
        )
        stub.add_client_error(
            "describe_type",
            "TypeNotFoundException",
            "The type 'AWS::IoT::TopicRuleDestination' cannot be found.",
            404,
        )
        with pytest.raises(errors.DeployError) as caught:
            deploy.deploy(
                "stagepulse", {"Embedded": "false", "TelemetryUrl": URL}, cfn=cfn, emit=print
            )
        stub.assert_no_pending_responses()
    message = str(caught.value)
    assert "region ap-southeast-5 does not offer" in message
    assert "AWS::IoT::RoleAlias" in message and "AWS::IoT::TopicRuleDestination" in message
    assert "Nothing was created" in message


def test_the_embedded_mode_does_not_ask_the_registry():
    with Stubber(boto3.client("cloudformation", region_name="eu-west-1")) as stub:
        stacks.check_region({"Embedded": "true"}, cfn=stub.client)  # no call, no error


# --- the service's own permissions --------------------------------------------------------------
SERVICE_CODE = ("devices", "festival", "emotions", "detectors", "stages")
# boto3 service name -> IAM action prefix, where they differ.
IAM_PREFIX = {"greengrassv2": "greengrass", "dynamodbstreams": "dynamodb", "iot-data": "iot"}
# Where an API operation's IAM action has another name.
IAM_ACTION = {
    "s3:DeleteObjects": "s3:DeleteObject",
    "s3:ListObjectVersions": "s3:ListBucketVersions",
    "s3:ListObjectsV2": "s3:ListBucket",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Names the scan finds in a file that also uses the other service, and calls that need no grant.
NOT_CALLED = {
    "iam:CreateGroup", "iam:GetGroup", "iam:DeleteGroup", "iam:ListGroups",  # Greengrass groups
    "iam:CreatePolicy", "iam:DeletePolicy", "iam:GetPolicy", "iam:ListPolicyVersions",
    "iam:DeletePolicyVersion",  # IoT policies, in files that use IAM too
    "sts:GetCallerIdentity",  # allowed to every principal, no grant exists
}  # fmt: skip
# Outside the Django service: the analyzer (AnalyzerPolicy) and the demo's local runner.
NOT_THE_SERVICE = ("analyzer/", "operations/demo.py")


def called_operations() -> dict[str, set[str]]:
    """Every AWS operation the service's code names on a client of a service it builds."""
    session = botocore.session.get_session()
    found: dict[str, set[str]] = {}
    for folder in SERVICE_CODE:
        for path in (cfn_template.REPO_ROOT / folder).rglob("*.py"):
            path = path.relative_to(cfn_template.REPO_ROOT)
            if "migrations" in path.parts or path.as_posix().startswith(NOT_THE_SERVICE):
                continue
            text = (cfn_template.REPO_ROOT / path).read_text()
            services = set(re.findall(r'client\("([a-z0-9-]+)"', text))
            names = set(re.findall(r"\.([a-z_0-9]+)\b", text))
            names |= set(re.findall(r'(?:paginator|waiter)\("([a-z_0-9]+)"\)', text))
            for service in services:
                model = session.get_service_model(service)
                prefix = IAM_PREFIX.get(service, service)
                for operation in model.operation_names:
                    if xform_name(operation) in names:
                        found.setdefault(f"{prefix}:{operation}", set()).add(str(path))
    return found


def service_statements(template) -> list[dict]:
    return template["Resources"]["ServicePolicy"]["Properties"]["PolicyDocument"]["Statement"]


def allowed(statements: list[dict], action: str) -> bool:
    for statement in statements:
        if statement["Effect"] != "Allow":
            continue
        actions = statement["Action"]
        for pattern in [actions] if isinstance(actions, str) else actions:
            if fnmatch.fnmatchcase(action.lower(), pattern.lower()):
                return True
    return False


def test_the_service_policy_allows_every_call_the_service_makes(template):
    calls = called_operations()
    assert len(calls) > 60  # the scan works (registration, deployments, ingest, closeout ...)
    missing = {
        IAM_ACTION.get(op, op): sorted(where)
        for op, where in calls.items()
        if op not in NOT_CALLED
        and not allowed(service_statements(template), IAM_ACTION.get(op, op))
    }
    assert missing == {}


def test_the_service_creates_camera_roles_only_with_the_boundary(template):
    by_sid = {s["Sid"]: s for s in service_statements(template) if "Sid" in s}
    create = by_sid["CameraRolesOnlyWithBoundary"]
    assert "iam:CreateRole" in create["Action"] and "iam:PutRolePolicy" in create["Action"]
    assert create["Condition"] == {
        "StringEquals": {"iam:PermissionsBoundary": {"Ref": "DeviceRoleBoundary"}}
    }
    assert create["Resource"]["Fn::Sub"].endswith(":role/stagepulse-${EnvironmentName}-cam-*")
    # No other statement allows CreateRole or PutRolePolicy (which would bypass the condition).
    others = [s for s in service_statements(template) if s is not create]
    assert not allowed(others, "iam:CreateRole") and not allowed(others, "iam:PutRolePolicy")
    # And the boundary cannot be taken off, nor the stack's own roles changed.
    denied = [s for s in service_statements(template) if s["Effect"] == "Deny"]
    assert any("iam:DeleteRolePermissionsBoundary" in s["Action"] for s in denied)
    stack_roles = by_sid["NotStackRolesNorBoundaries"]["Resource"]
    assert {r["Fn::Sub"].rsplit("-", 1)[-1] for r in stack_roles} == {"device", "analyzer", "rule"}


def test_the_service_policy_fits_in_a_managed_policy(template):
    """IAM's limit is 6,144 characters without whitespace, with the longest names resolved."""
    params = {
        "EnvironmentName": "a" * 20,
        "CropsBucketName": "c" * 63,
        "ArtifactsBucketName": "d" * 63,
    }
    resolver = embedded.Resolver(template, params, {}, {}, None)
    resolver.pseudo = {"AWS::Partition": "aws-us-gov", "AWS::Region": "us-gov-west-1",
                       "AWS::AccountId": "123456789012"}  # fmt: skip
    long_arns = {  # a 100-character table, 80-character queues (SQS's limit)
        "ObservationsTable": "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/"
        + "t" * 100,
        "AnalysisQueue": "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:" + "q" * 76,
        "AnalysisDeadLetterQueue": "arn:aws-us-gov:sqs:us-gov-west-1:123456789012:" + "q" * 80,
    }
    resolver.get_att = lambda logical, attribute: long_arns[logical]
    original = resolver.ref
    resolver.ref = lambda name: (
        "arn:aws-us-gov:iam::123456789012:policy/" + "b" * 60
        if name in ("DeviceRoleBoundary",)
        else original(name)
    )
    document = resolver.value(
        template["Resources"]["ServicePolicy"]["Properties"]["PolicyDocument"]
    )
    assert len(json.dumps(document, separators=(",", ":"))) < 6144


def test_trust_policies_carry_the_source_account(template):
    for name in ("DeviceRole", "TelemetryRuleRole"):
        trust = template["Resources"][name]["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert all(
            s["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
            for s in trust
        ), name


# --- Lambda and the crops bucket -----------------------------------------------------------------
def test_the_analyzer_takes_a_reserved_concurrency(template):
    param = template["Parameters"]["AnalyzerReservedConcurrency"]
    assert param["Default"] == -1  # unreserved unless asked
    reserved = template["Resources"]["AnalyzerFunction"]["Properties"][
        "ReservedConcurrentExecutions"
    ]
    assert reserved == {
        "Fn::If": ["HasReservedConcurrency", {"Ref": "AnalyzerReservedConcurrency"},
                   {"Ref": "AWS::NoValue"}]
    }  # fmt: skip
    resolver = embedded.Resolver(template, {"AnalyzerReservedConcurrency": "20"}, {}, {}, None)
    assert resolver.value(reserved) == "20"
    resolver = embedded.Resolver(template, {"AnalyzerReservedConcurrency": "-1"}, {}, {}, None)
    assert resolver.value(reserved) is embedded.NO_VALUE


def test_crops_access_logging_is_an_option(moto_aws):
    messages: list[str] = []
    deploy.deploy(
        "stagepulse-logs",
        {"Embedded": "true", "EnvironmentName": "test", "CropsAccessLogging": "true", **NAMES},
        emit=messages.append,
    )
    s3 = aws.client("s3")
    logging = s3.get_bucket_logging(Bucket="test-crops")["LoggingEnabled"]
    assert logging == {"TargetBucket": "test-crops-access-logs", "TargetPrefix": "crops/"}
    rules = s3.get_bucket_lifecycle_configuration(Bucket="test-crops-access-logs")["Rules"]
    assert rules[0]["Expiration"]["Days"] == 90
    teardown.teardown("stagepulse-logs", emit=messages.append)
    names = [b["Name"] for b in s3.list_buckets()["Buckets"]]
    assert "test-crops-access-logs" not in names and "test-crops" not in names


def test_crops_access_logging_is_off_by_default(stack):
    assert "LoggingEnabled" not in aws.client("s3").get_bucket_logging(Bucket="test-crops")
    assert "CropsAccessLogsBucketName" not in stack.outputs
