"""The template itself: cfn-lint clean, and the privacy/least-privilege promises it makes."""

import io
import json
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

from analyzer.config import AnalyzerSettings
from analyzer.mosaic import MosaicLimits
from edge_package import contracts
from edge_package.telemetry import TOPIC_TEMPLATE
from infra import cfn_template, embedded

TEMPLATES = sorted(cfn_template.INFRA_DIR.glob("*.yaml"))


def cfn_lint(path: Path) -> subprocess.CompletedProcess:
    """`cfn-lint PATH`: the command line's own entry point (cfnlint.runner.main, what the
    cfn-lint script calls: the same options, config discovery, rules, output and exit status),
    run in this process. As a subprocess each run paid ~1.3 s of interpreter start and imports
    on top of its ~0.9 s of linting."""
    from cfnlint.runner import main as cfn_lint_main  # here: its import (sympy, networkx) is
    # ~0.6 s, which every pytest-xdist worker paid collecting this module

    out, err = io.StringIO(), io.StringIO()
    argv, sys.argv = sys.argv, ["cfn-lint", str(path)]
    try:
        with redirect_stdout(out), redirect_stderr(err):
            cfn_lint_main()
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    finally:
        sys.argv = argv
    return subprocess.CompletedProcess(sys.argv, code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def template() -> dict:
    return cfn_template.load_template()


def statements(resource: dict) -> list[dict]:
    props = resource["Properties"]
    if "PolicyDocument" in props:
        return props["PolicyDocument"]["Statement"]
    return [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_cfn_lint_passes(path):
    result = cfn_lint(path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cfn_lint_catches_a_broken_template(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        cfn_template.TEMPLATE_PATH.read_text().replace("!Ref ObservationsTableName", "!Ref Nope")
    )
    result = cfn_lint(broken)
    assert result.returncode != 0 and "Nope" in result.stdout


def test_face_crops_expire_within_a_day(template):
    rules = template["Resources"]["CropsBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    faces = [r for r in rules if r.get("Prefix") == f"{contracts.CROP_PREFIX}/"]
    assert faces and faces[0]["Status"] == "Enabled" and faces[0]["ExpirationInDays"] <= 1


def test_table_keys_follow_the_observation_contract(template):
    props = template["Resources"]["ObservationsTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert {a["AttributeName"]: a["AttributeType"] for a in props["AttributeDefinitions"]} == {
        contracts.OBSERVATION_PK: "S",
        contracts.OBSERVATION_SK: "S",
    }
    assert props["TimeToLiveSpecification"] == {
        "AttributeName": contracts.OBSERVATION_TTL_ATTRIBUTE,
        "Enabled": True,
    }


def test_device_role_can_only_put_crops_under_its_own_thing_name(template):
    role = template["Resources"]["DeviceRole"]
    trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust == [
        {
            "Effect": "Allow",
            "Principal": {"Service": "credentials.iot.amazonaws.com"},
            "Action": "sts:AssumeRole",
            "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}},
        }
    ]
    (statement,) = statements(role)
    assert statement["Action"] == "s3:PutObject"
    resource = statement["Resource"]["Fn::Sub"]
    assert resource.endswith("/faces/*/*/${!credentials-iot:ThingName}/*")
    # The device segment is the 4th of the crop key layout: faces/<festival>/<stage>/<device>/
    key = contracts.build_crop_key("fest", "main", "cam-7", 1767225600000, 1)
    assert key.split("/")[3] == "cam-7"


def test_analyzer_policy_is_least_privilege(template):
    actions = {}
    for statement in statements(template["Resources"]["AnalyzerPolicy"]):
        for action in (
            [statement["Action"]] if isinstance(statement["Action"], str) else statement["Action"]
        ):
            actions[action] = statement
    assert set(actions) == {
        "s3:GetObject",
        "s3:DeleteObject",
        "s3:ListBucket",
        "rekognition:DetectFaces",
        "dynamodb:PutItem",
        "cloudwatch:PutMetricData",
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    assert actions["s3:GetObject"]["Resource"]["Fn::Sub"].endswith("${CropsBucketName}/faces/*")
    # ListBucket on the crops bucket itself (unconditioned: S3's 404-or-403 check for a missing
    # key carries no s3:prefix), so a duplicate delivery finds 404 instead of AccessDenied.
    assert actions["s3:ListBucket"]["Resource"]["Fn::Sub"].endswith(":s3:::${CropsBucketName}")
    assert "Condition" not in actions["s3:ListBucket"]
    assert actions["dynamodb:PutItem"]["Resource"] == {"Fn::GetAtt": ["ObservationsTable", "Arn"]}
    assert "Condition" in actions["cloudwatch:PutMetricData"]  # namespace-scoped


def test_no_statement_grants_every_action(template):
    for name, resource in template["Resources"].items():
        if resource["Type"] in ("AWS::IAM::Role", "AWS::IAM::ManagedPolicy", "AWS::IoT::Policy"):
            for statement in statements(resource):
                if statement["Effect"] == "Allow":
                    action = statement["Action"]
                    assert "*" not in (action if isinstance(action, list) else [action]), name


def test_iot_policy_scopes_each_device_to_its_own_topic(template):
    by_sid = {s["Sid"]: s for s in statements(template["Resources"]["DevicePolicy"])}
    assert by_sid["ConnectAsOwnThing"]["Resource"]["Fn::Sub"].endswith(
        ":client/${!iot:Connection.Thing.ThingName}"
    )
    publish = by_sid["PublishOwnTelemetry"]["Resource"]["Fn::Sub"]
    device_topic = TOPIC_TEMPLATE.format(device="${!iot:Connection.Thing.ThingName}")
    assert publish.endswith(f":topic/{device_topic}")


def test_telemetry_rule_reads_the_topic_the_edge_publishes_to(template):
    sql = template["Resources"]["TelemetryRule"]["Properties"]["TopicRulePayload"]["Sql"]
    topic_filter = TOPIC_TEMPLATE.format(device="+")
    assert f"FROM '{topic_filter}'" in sql
    # The device id segment of the topic must be the payload's device_id (no spoofing).
    segment = TOPIC_TEMPLATE.split("/").index("{device}") + 1
    assert f"device_id = topic({segment})" in sql


SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:stagepulse/dev/telemetry-rule-Ab"
RULE_ROLE_ARN = "arn:aws:iam::123456789012:role/stagepulse-dev-telemetry-rule"


def rule_headers(template, thing: str, token: str) -> dict[str, str]:
    """The rule's headers as AWS IoT sends them: CloudFormation resolves the !Sub, then IoT
    substitutes ${topic(3)} and ${get_secret(...)} (the secret's "token" key) at send time."""
    action = template["Resources"]["TelemetryRule"]["Properties"]["TopicRulePayload"]["Actions"]
    resolver = embedded.Resolver(template, {}, {}, {}, None)
    resolver.ref = lambda name: SECRET_ARN  # the secret's Ref is its ARN
    resolver.get_att = lambda logical, attribute: RULE_ROLE_ARN
    headers = {}
    for header in action[0]["Http"]["Headers"]:
        value = resolver.value(header["Value"])
        sent = value.replace("${topic(3)}", thing)
        call = f"${{get_secret('{SECRET_ARN}', 'SecretString', 'token', '{RULE_ROLE_ARN}')}}"
        headers[header["Key"]] = (value, sent.replace(call, token))
    return headers


def test_the_rule_token_is_in_no_parameter_and_not_in_the_rule(template):
    """GetTopicRule returns the headers as stored: they hold the secret's ARN, not the token."""
    assert not [n for n, p in template["Parameters"].items() if p.get("NoEcho")]
    stored, _ = rule_headers(template, "cam-1", "t0ken")["Authorization"]
    assert stored == (
        f"IotRule ${{get_secret('{SECRET_ARN}', 'SecretString', 'token', '{RULE_ROLE_ARN}')}}"
    )
    secret = template["Resources"]["TelemetryRuleSecret"]["Properties"]
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "token"
    role = template["Resources"]["TelemetryRuleRole"]["Properties"]
    (grant,) = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert grant["Action"] == "secretsmanager:GetSecretValue"
    assert grant["Resource"] == {"Ref": "TelemetryRuleSecret"}


@pytest.mark.django_db
def test_telemetry_rule_headers_are_what_the_service_authenticates(template, two_worlds, settings):
    """The rule's HTTPS action, its substitutions played as AWS plays them, is accepted by the
    real telemetry endpoint as the device whose topic it came from."""
    from rest_framework.test import APIClient

    from tests.devices.test_telemetry import URL, report

    device = two_worlds[0].device
    settings.TELEMETRY_IOT_RULE_SECRET = "rule-secret-0123456789"
    headers = {
        "HTTP_" + key.upper().replace("-", "_"): sent
        for key, (_, sent) in rule_headers(
            template, device.thing_name, "rule-secret-0123456789"
        ).items()
    }
    headers.pop("HTTP_CONTENT_TYPE")
    response = APIClient().post(URL, report(device), format="json", **headers)
    assert response.status_code == 202, response.json()
    assert response.json()["device"] == device.thing_name


def test_lambda_runs_the_real_handler_with_settings_it_understands(template):
    function = template["Resources"]["AnalyzerFunction"]["Properties"]
    module_name, func_name = function["Handler"].rsplit(".", 1)
    module = __import__(module_name, fromlist=[func_name])
    assert callable(getattr(module, func_name))
    env = {
        "STAGEPULSE_ANALYZER_BACKEND": "rekognition",
        "STAGEPULSE_OBSERVATIONS_TABLE": "t-obs",
        "STAGEPULSE_METRICS_NAMESPACE": "NS",
        "STAGEPULSE_CROP_RETENTION_HOURS": "3",
    }
    assert set(function["Environment"]["Variables"]) == set(env)
    settings = AnalyzerSettings.from_env(env)
    assert (settings.backend, settings.table_name, settings.metrics_namespace) == (
        "rekognition",
        "t-obs",
        "NS",
    )
    assert settings.retention_hours == 3


def test_lambda_mode_reads_the_queue_in_batches_with_partial_failures(template):
    """S3 -> SQS -> Lambda: one invocation per batch (full mosaic); failed messages retried."""
    resources = template["Resources"]
    notification = resources["CropsBucket"]["Properties"]["NotificationConfiguration"]
    assert set(notification) == {"QueueConfigurations"}  # no S3 -> Lambda, in either mode
    (target,) = notification["QueueConfigurations"]
    assert target["Queue"] == {"Fn::GetAtt": ["AnalysisQueue", "Arn"]}
    mapping = resources["AnalyzerEventSourceMapping"]
    assert mapping["Type"] == "AWS::Lambda::EventSourceMapping"
    assert mapping["Condition"] == resources["AnalyzerFunction"]["Condition"]
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["AnalysisQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "AnalyzerFunction"}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    # A batch of 64 fills one DetectFaces mosaic (MosaicLimits.max_tiles); over 10 needs a window.
    assert props["BatchSize"] == MosaicLimits().max_tiles
    assert 1 <= props["MaximumBatchingWindowInSeconds"] <= 5
    queue = resources["AnalysisQueue"]["Properties"]
    timeout = resources["AnalyzerFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["RedrivePolicy"]["deadLetterTargetArn"] == {
        "Fn::GetAtt": ["AnalysisDeadLetterQueue", "Arn"]
    }
    assert not any(r["Type"] == "AWS::Lambda::Permission" for r in resources.values())


def test_observations_table_stream_matches_the_contract(template):
    """The template and the table the tests and the edge create stream the same view."""
    table = template["Resources"]["ObservationsTable"]["Properties"]
    contract = contracts.observation_table_definition("x")["StreamSpecification"]
    assert table["StreamSpecification"]["StreamViewType"] == contract["StreamViewType"]
    assert contract == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}


def test_camera_boundary_allows_only_the_attributes_cameras_write(template):
    """The ceiling of every camera role: both item kinds' attributes (faces, crowd signals) and
    nothing else, so the contract and the template cannot drift apart."""
    boundary = template["Resources"]["DeviceRoleBoundary"]
    (put,) = [s for s in statements(boundary) if s["Sid"] == "PutObservations"]
    only = put["Condition"]["ForAllValues:StringEquals"]["dynamodb:Attributes"]
    assert sorted(only) == sorted(contracts.DEVICE_WRITABLE_ATTRIBUTES)
    assert set(contracts.CROWD_SIGNAL_ATTRIBUTES) <= set(only)
    assert put["Condition"]["StringEqualsIfExists"] == {"dynamodb:ReturnValues": "NONE"}


TRAINING_ROLES = [
    "arn:aws:iam::123456789012:role/ours-sagemaker",
    "arn:aws:iam::123456789012:role/ours-sagemaker-gpu",
]


def test_the_service_passes_only_the_named_training_roles_and_only_to_sagemaker(template):
    """PassRole is the one IAM grant that reaches outside the stack: without TrainingRoleArns
    the policy does not exist at all; with it, only those roles, only to SageMaker."""
    _, defaults = cfn_template.resolve_parameters(template, {}, None)
    without = json.loads(embedded.embedded_template_body(template, defaults))
    assert "ServiceTrainingPolicy" not in without["Resources"]
    assert "ServiceTrainingPolicyArn" not in without["Outputs"]
    _, params = cfn_template.resolve_parameters(
        template, {"TrainingRoleArns": ",".join(TRAINING_ROLES)}, None
    )
    with_roles = json.loads(embedded.embedded_template_body(template, params))
    policy = with_roles["Resources"]["ServiceTrainingPolicy"]
    resolver = embedded.Resolver(template, params, {}, {}, None)
    (grant,) = [resolver.value(statement) for statement in statements(policy)]
    assert grant["Action"] == "iam:PassRole"
    assert grant["Resource"] == TRAINING_ROLES
    assert grant["Condition"] == {
        "StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}
    }
    passes = [
        statement
        for name, resource in template["Resources"].items()
        if resource["Type"] in ("AWS::IAM::ManagedPolicy", "AWS::IAM::Role", "AWS::IAM::Policy")
        and name != "ServiceTrainingPolicy"
        for statement in statements(resource)
        if "iam:PassRole" in str(statement.get("Action"))
    ]
    assert all("cam-" in str(statement["Resource"]) for statement in passes), passes
