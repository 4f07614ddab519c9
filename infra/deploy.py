"""Deploy, inspect and tear down the StagePulse stack through boto3 CloudFormation.

Django-free so that `manage.py infra`, the demo runner and tests share one code path. Every client
comes from awsclients (AWS_ENDPOINT_URL points it at a moto server in the embedded mode).

Two things here exist only because of real-world constraints, and are documented in docs/infra.md:
- Lambda mode needs the analyzer bundle in the artifacts bucket, which the stack itself creates: a
  first deploy leaves the function out (empty AnalyzerCodeKey), then the bundle is uploaded and the
  stack updated with its key.
- moto's CloudFormation creates S3 buckets and DynamoDB tables but ignores most of their settings
  (public access block, ownership, versioning, lifecycle, notifications, TTL). With Embedded=true
  the deployer applies exactly what the template declares for those resources through the S3 and
  DynamoDB APIs. On real AWS (Embedded=false) CloudFormation applies them and this step never runs.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from botocore.exceptions import ClientError, WaiterError

import awsclients as aws

log = logging.getLogger("stagepulse.infra")

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
TEMPLATE_PATH = INFRA_DIR / "stagepulse.yaml"
DEFAULT_STACK_NAME = "stagepulse"
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]  # role names are fixed per environment
ANALYZER_BUNDLE_PREFIX = "analyzer/"
# Service environment variable -> template parameter (settings.py reads the same names).
ENV_TO_PARAMETER = {
    "CROPS_BUCKET": "CropsBucketName",
    "ARTIFACTS_BUCKET": "ArtifactsBucketName",
    "OBSERVATIONS_TABLE": "ObservationsTableName",
    "ANALYSIS_QUEUE_NAME": "AnalysisQueueName",
    "CLOUDWATCH_NAMESPACE": "MetricsNamespace",
}
NO_CHANGES_MARKERS = ("didn't contain changes", "No updates are to be performed")
FAILED_SUFFIXES = ("_FAILED",)
# Packages the analyzer imports that the Lambda Python runtime lacks (boto3 is provided). Not pinned
# to this venv's versions: the python3.11 runtime (Amazon Linux 2, glibc 2.26) needs manylinux2014
# wheels, which recent numpy releases no longer publish; pip picks the newest that fit.
ANALYZER_DEPENDENCIES = ("numpy>=1.26", "Pillow>=10")
WAITER_CONFIG = {"Delay": 5, "MaxAttempts": 720}  # up to an hour; moto answers at once


class DeployError(RuntimeError):
    """A deploy, status or teardown that did not work; the message is meant for a person."""


@dataclass
class DeployResult:
    stack_name: str
    action: str  # "created", "updated" or "unchanged"
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    applied: list[str] = field(default_factory=list)  # settings applied for moto (Embedded)
    analyzer_bundle_key: str = ""


# --- Template ------------------------------------------------------------------------------------
class _CfnLoader(yaml.SafeLoader):
    """PyYAML loader for CloudFormation short forms (!Ref, !Sub, !If ...)."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path | str = TEMPLATE_PATH) -> dict:
    return yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 (safe subclass)


def parameters_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Template parameters for the names the service reads from its environment."""
    return {param: environ[name] for name, param in ENV_TO_PARAMETER.items() if environ.get(name)}


def service_env(outputs: Mapping[str, str]) -> dict[str, str]:
    """What to put in the service's (and the worker's) environment for a deployed stack."""
    mapping = {
        "CROPS_BUCKET": "CropsBucketName",
        "ARTIFACTS_BUCKET": "ArtifactsBucketName",
        "OBSERVATIONS_TABLE": "ObservationsTableName",
        "ANALYSIS_QUEUE_NAME": "AnalysisQueueName",
        "CLOUDWATCH_NAMESPACE": "MetricsNamespace",
        "AWS_DEFAULT_REGION": "Region",
        "STAGEPULSE_ANALYZER_QUEUE_URL": "AnalysisQueueUrl",
        "STAGEPULSE_OBSERVATIONS_TABLE": "ObservationsTableName",
        "STAGEPULSE_METRICS_NAMESPACE": "MetricsNamespace",
        "TELEMETRY_IOT_RULE_SECRET_ARN": "TelemetryRuleSecretArn",
        "DEVICE_ROLE_BOUNDARY_ARN": "DeviceRoleBoundaryArn",
        "CROP_RETENTION_HOURS": "CropRetentionHours",
    }
    return {env: outputs[key] for env, key in mapping.items() if outputs.get(key)}


# --- Before anything is created: does this region have what the stack needs? ------------------
# Resource types a real (not Embedded) deploy needs, and the condition under which it needs them.
REGIONAL_TYPES = {
    "AWS::IoT::RoleAlias": lambda params: True,  # the credentials provider (crop uploads)
    "AWS::IoT::TopicRuleDestination": lambda params: bool(params.get("TelemetryUrl")),
}


def check_region(params: Mapping[str, str], *, cfn=None) -> None:
    """Refuse a region without IoT role aliases or HTTPS rule destinations before CloudFormation
    gets halfway and rolls back: CloudFormation's registry (DescribeType) knows per region."""
    if params.get("Embedded") == "true":
        return
    cfn = cfn or aws.client("cloudformation")
    missing = []
    for type_name, needed in REGIONAL_TYPES.items():
        if not needed(params):
            continue
        try:
            cfn.describe_type(Type="RESOURCE", TypeName=type_name)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TypeNotFoundException":
                raise
            missing.append(type_name)
    if missing:
        region = cfn.meta.region_name
        raise DeployError(
            f"region {region} does not offer {', '.join(missing)}, which StagePulse needs (AWS IoT "
            "credentials provider role aliases for crop uploads; HTTPS topic rule destinations "
            "for telemetry). Deploy to a region that has them (e.g. eu-west-1, us-east-1), or "
            "leave TelemetryUrl empty if only the rule destination is missing. Nothing was created."
        )


# --- Analyzer bundle -----------------------------------------------------------------------------
# The two Django-free packages the analyzer needs, whole, and the camera's contracts: nothing of
# a Django app is shipped, so no package marker has to be stubbed.
BUNDLE_SOURCES = (
    "analyzer/*.py",
    "awsclients/*.py",
    "edge_package/__init__.py",
    "edge_package/contracts.py",
    "edge_package/emotion_model.py",
)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same sources give the same bytes and the same key


def _add_file(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _vendor_dependencies(target: Path) -> None:
    """Linux wheels for the python3.11 x86_64 Lambda runtime."""
    pins = list(ANALYZER_DEPENDENCIES)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--platform", "manylinux2014_x86_64", "--implementation", "cp",
        "--python-version", "3.11", "--only-binary=:all:", "--no-compile", *pins,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(
            "could not download the analyzer's dependencies "
            f"({' '.join(pins)}):\n{result.stderr.strip()}\n"
            "Build without them (--no-vendor) and pass Lambda layers in AnalyzerLayerArns instead."
        )


def build_analyzer_bundle(*, repo_root: Path = REPO_ROOT, vendor: bool = False) -> bytes:
    """The Lambda zip: analyzer + the contracts it imports + awsclients (+ deps)."""
    files: dict[str, bytes] = {}
    for pattern in BUNDLE_SOURCES:
        matches = sorted(repo_root.glob(pattern))
        if not matches:
            raise DeployError(f"analyzer bundle: nothing matches {pattern} under {repo_root}")
        for path in matches:
            files[path.relative_to(repo_root).as_posix()] = path.read_bytes()
    if vendor:
        with tempfile.TemporaryDirectory() as tmp:
            _vendor_dependencies(Path(tmp))
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    files.setdefault(path.relative_to(tmp).as_posix(), path.read_bytes())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            _add_file(archive, name, files[name])
    return buffer.getvalue()


def upload_analyzer_bundle(bundle: bytes, bucket: str, *, s3=None) -> str:
    """Upload under a content-addressed key, so unchanged code means an unchanged stack."""
    key = (
        f"{ANALYZER_BUNDLE_PREFIX}stagepulse-analyzer-{hashlib.sha256(bundle).hexdigest()[:16]}.zip"
    )
    (s3 or aws.client("s3")).put_object(
        Bucket=bucket, Key=key, Body=bundle, ContentType="application/zip"
    )
    return key


# --- Stack helpers -------------------------------------------------------------------------------
def describe_stack(stack_name: str, *, cfn=None) -> dict | None:
    cfn = cfn or aws.client("cloudformation")
    try:
        stacks = cfn.describe_stacks(StackName=stack_name)["Stacks"]
    except ClientError as exc:
        if "does not exist" in str(exc):
            return None
        raise
    return stacks[0] if stacks else None


def stack_outputs(stack: Mapping) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs") or []}


def stack_parameters(stack: Mapping) -> dict[str, str]:
    return {p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters") or []}


def failure_events(stack_name: str, *, since: datetime | None = None, cfn=None) -> list[str]:
    """Readable lines for every failed resource event (oldest first), e.g. after a rollback."""
    cfn = cfn or aws.client("cloudformation")
    lines: list[str] = []
    try:
        pages = cfn.get_paginator("describe_stack_events").paginate(StackName=stack_name)
        events = [event for page in pages for event in page["StackEvents"]]
    except ClientError as exc:
        return [f"(could not read stack events: {exc})"]
    for event in reversed(events):  # the API lists newest first
        if since and event["Timestamp"] < since:
            continue
        status = event.get("ResourceStatus", "")
        reason = event.get("ResourceStatusReason") or ""
        if status.endswith(FAILED_SUFFIXES) or (status.endswith("ROLLBACK_IN_PROGRESS") and reason):
            lines.append(
                f"{event['LogicalResourceId']} ({event.get('ResourceType', '?')}): {status}"
                + (f" - {reason}" if reason else "")
            )
    return lines


def _wait(cfn, waiter_name: str, stack_name: str, *, since: datetime, what: str) -> None:
    try:
        cfn.get_waiter(waiter_name).wait(StackName=stack_name, WaiterConfig=WAITER_CONFIG)
    except WaiterError as exc:
        stack = describe_stack(stack_name, cfn=cfn) or {}
        status = stack.get("StackStatus", "GONE")
        reason = stack.get("StackStatusReason", "")
        lines = failure_events(stack_name, since=since, cfn=cfn)
        detail = "\n  ".join(lines) or f"(no failed resource events; waiter said: {exc})"
        raise DeployError(
            f"{what} of stack {stack_name} failed: {status}"
            + (f" ({reason})" if reason else "")
            + f"\n  {detail}"
        ) from None


def _resolve_parameters(
    template: dict, requested: Mapping[str, str], existing: Mapping[str, str] | None
) -> tuple[list[dict], dict[str, str]]:
    """CloudFormation Parameters (keeping previous values on update) and the effective values."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(requested) - set(declared))
    if unknown:
        raise DeployError(
            f"unknown parameter(s) {', '.join(unknown)}; the template takes: {', '.join(declared)}"
        )
    api: list[dict] = []
    effective: dict[str, str] = {}
    for name, spec in declared.items():
        if name in requested:
            api.append({"ParameterKey": name, "ParameterValue": str(requested[name])})
            effective[name] = str(requested[name])
        elif existing is not None and name in existing:
            api.append({"ParameterKey": name, "UsePreviousValue": True})
            effective[name] = existing[name]
        else:
            effective[name] = str(spec.get("Default", ""))
    problems = [p for name in requested if (p := _check_parameter(name, declared[name], requested))]
    if problems:
        raise DeployError("invalid parameter(s):\n  " + "\n  ".join(problems))
    return api, effective


def _check_parameter(name: str, spec: Mapping, values: Mapping[str, str]) -> str:
    """The template's own constraints, checked before CloudFormation (moto does not check)."""
    value = str(values[name])
    allowed = spec.get("AllowedValues")
    if allowed and value not in [str(a) for a in allowed]:
        return f"{name}={value!r}: must be one of {', '.join(map(str, allowed))}"
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        return f"{name}={value!r}: must match {pattern} ({spec.get('Description', '').strip()})"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return f"{name}={value!r}: must be a number"
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < low) or (high is not None and number > high):
            return f"{name}={value}: must be between {low} and {high}"
    return ""


def _create_stack(cfn, stack_name: str, template_body: str, api_params: list[dict], *, emit) -> str:
    """A new stack is created directly: a change set would only list "Add" for everything."""
    since = datetime.now(UTC)
    try:
        cfn.create_stack(
            StackName=stack_name,
            TemplateBody=template_body,
            Parameters=api_params,
            Capabilities=CAPABILITIES,
            OnFailure="ROLLBACK",
            Tags=[{"Key": "stagepulse:stack", "Value": stack_name}],
        )
    except ClientError as exc:
        raise DeployError(f"CloudFormation refused to create {stack_name}: {exc}") from None
    emit(f"{stack_name}: creating")
    _wait(cfn, "stack_create_complete", stack_name, since=since, what="creation")
    return "created"


def _update_stack(cfn, stack_name: str, template_body: str, api_params: list[dict], *, emit) -> str:
    """Update through a change set, so the changes are listed before they run."""
    name = f"stagepulse-{datetime.now(UTC):%Y%m%d-%H%M%S-%f}"
    since = datetime.now(UTC)
    try:
        change_set_id = cfn.create_change_set(
            StackName=stack_name,
            ChangeSetName=name,
            ChangeSetType="UPDATE",
            TemplateBody=template_body,
            Parameters=api_params,
            Capabilities=CAPABILITIES,
        )["Id"]
    except ClientError as exc:
        if any(marker in str(exc) for marker in NO_CHANGES_MARKERS):
            emit(f"{stack_name}: no changes")
            return "unchanged"
        raise DeployError(
            f"CloudFormation refused the change set for {stack_name}: {exc}"
        ) from None
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            ChangeSetName=change_set_id, StackName=stack_name, WaiterConfig=WAITER_CONFIG
        )
    except WaiterError:
        described = cfn.describe_change_set(ChangeSetName=change_set_id, StackName=stack_name)
        reason = described.get("StatusReason", "")
        if any(marker in reason for marker in NO_CHANGES_MARKERS):
            cfn.delete_change_set(ChangeSetName=change_set_id, StackName=stack_name)
            emit(f"{stack_name}: no changes")
            return "unchanged"
        raise DeployError(f"change set for {stack_name} failed: {reason}") from None
    described = cfn.describe_change_set(ChangeSetName=change_set_id, StackName=stack_name)
    for change in described.get("Changes", []):
        rc = change.get("ResourceChange", {})
        emit(
            f"  {rc.get('Action', '?'):<7} {rc.get('LogicalResourceId')} ({rc.get('ResourceType')})"
        )
    try:
        cfn.execute_change_set(ChangeSetName=change_set_id, StackName=stack_name)
    except ClientError as exc:
        raise DeployError(f"executing the change set for {stack_name} failed: {exc}") from None
    _wait(cfn, "stack_update_complete", stack_name, since=since, what="update")
    return "updated"


# --- Deploy --------------------------------------------------------------------------------------
def retained_artifacts_bucket(name: str, *, s3=None) -> bool:
    """Whether the artifacts bucket already exists in this account: teardown retains it (edge
    releases, models, labelled clips), so the next stack must take it over by name, not create
    it (CloudFormation would stop at BucketAlreadyExists). A name that exists in another account
    (403) can never be ours: that is a clear error before anything is created."""
    s3 = s3 or aws.client("s3")
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise DeployError(
                f"the artifacts bucket name {name} belongs to another AWS account (HeadBucket "
                "answered 403): choose another ArtifactsBucketName"
            ) from exc
        raise
    return True


def deploy(
    stack_name: str = DEFAULT_STACK_NAME,
    parameters: Mapping[str, str] | None = None,
    *,
    template_path: Path | str = TEMPLATE_PATH,
    create_defaults: Mapping[str, str] | None = None,
    vendor_dependencies: bool = True,
    emit: Callable[[str], None] | None = None,
    cfn=None,
    s3=None,
    dynamodb=None,
    sqs=None,
    iot=None,
) -> DeployResult:
    """Create or update the stack through a change set and return its outputs.

    Parameters not given keep their previous value on update; on create they come from
    create_defaults, then the template defaults (so a later deploy never silently renames a
    bucket). In lambda mode with no AnalyzerCodeKey the analyzer bundle is built, uploaded and
    wired in.
    """
    emit = emit or log.info
    cfn = cfn or aws.client("cloudformation")
    template_path = Path(template_path)
    template = load_template(template_path)
    template_body = template_path.read_text()
    requested = dict(parameters or {})

    stack = describe_stack(stack_name, cfn=cfn)
    if stack and stack["StackStatus"] in ("ROLLBACK_COMPLETE", "ROLLBACK_FAILED"):
        emit(f"{stack_name} is {stack['StackStatus']} after a failed creation; deleting it first")
        teardown(stack_name, cfn=cfn, s3=s3, emit=emit)
        stack = None
    if (
        stack
        and stack["StackStatus"].endswith("_IN_PROGRESS")
        and not stack["StackStatus"].startswith("REVIEW")
    ):
        raise DeployError(f"{stack_name} is busy ({stack['StackStatus']}); try again when it ends")
    exists = bool(stack) and stack["StackStatus"] != "REVIEW_IN_PROGRESS"
    if not exists:
        requested = {**(create_defaults or {}), **requested}
    existing = stack_parameters(stack) if exists else None
    api_params, effective = _resolve_parameters(template, requested, existing)
    check_region(effective, cfn=cfn)
    adopt = not exists and "ArtifactsBucketExists" not in requested
    if adopt and retained_artifacts_bucket(effective["ArtifactsBucketName"], s3=s3):
        emit(
            f"{stack_name}: using the retained artifacts bucket "
            f"{effective['ArtifactsBucketName']} (it outlived an earlier stack)"
        )
        requested["ArtifactsBucketExists"] = "true"
        api_params, effective = _resolve_parameters(template, requested, existing)

    bundle_key = ""
    wants_bundle = (
        effective.get("AnalyzerMode") == "lambda"
        and effective.get("Embedded") != "true"
        and "AnalyzerCodeKey" not in requested
    )
    if wants_bundle and not exists:
        emit(f"{stack_name}: first pass without the analyzer function (its code bucket is new)")
        first = {**requested, "AnalyzerCodeKey": ""}
        api_first, _ = _resolve_parameters(template, first, None)
        _create_stack(cfn, stack_name, template_body, api_first, emit=emit)
        exists = True
    if wants_bundle:
        bundle = build_analyzer_bundle(vendor=vendor_dependencies)
        bundle_key = upload_analyzer_bundle(bundle, effective["ArtifactsBucketName"], s3=s3)
        emit(f"analyzer bundle s3://{effective['ArtifactsBucketName']}/{bundle_key}")
        requested["AnalyzerCodeKey"] = bundle_key
        existing = stack_parameters(describe_stack(stack_name, cfn=cfn) or {})
        api_params, effective = _resolve_parameters(template, requested, existing)

    if effective.get("Embedded") == "true":
        template_body = embedded_template_body(template, effective)
    if exists:
        action = _update_stack(cfn, stack_name, template_body, api_params, emit=emit)
    else:
        action = _create_stack(cfn, stack_name, template_body, api_params, emit=emit)
    if wants_bundle and action == "unchanged" and bundle_key:
        action = "updated"  # the first pass created it; the second found nothing new
    stack = describe_stack(stack_name, cfn=cfn) or {}
    effective = stack_parameters(stack) or effective
    applied: list[str] = []
    if effective.get("Embedded") == "true":
        applied = apply_embedded_settings(
            template, effective, stack_name, cfn=cfn, s3=s3, dynamodb=dynamodb, sqs=sqs
        )
        for item in applied:
            emit(f"  applied for moto: {item}")
    destination = stack_outputs(stack).get("TelemetryDestinationArn")
    if destination:
        ensure_destination_confirmed(destination, iot=iot, emit=emit)
    result = DeployResult(
        stack_name=stack_name,
        action=action,
        status=stack.get("StackStatus", ""),
        outputs=stack_outputs(stack),
        parameters=effective,
        applied=applied,
        analyzer_bundle_key=bundle_key,
    )
    emit(f"{stack_name}: {action} ({result.status})")
    return result


# --- After the stack: the telemetry rule's HTTPS destination must be confirmed -----------------
CONFIRM_WAIT_S = 180  # AWS posts the token within seconds; the service confirms it at once
CONFIRM_POLL_S = 5


def ensure_destination_confirmed(
    arn: str,
    *,
    iot=None,
    emit: Callable[[str], None] = log.info,
    wait_s: float = CONFIRM_WAIT_S,
    poll_s: float = CONFIRM_POLL_S,
    sleep: Callable[[float], None] | None = None,
) -> str:
    """Wait until the destination is ENABLED; returns its status.

    IN_PROGRESS: AWS has posted (or will post) the confirmation token to the service, which
    confirms it (devices.services.telemetry.confirm_rule_destination). Half-way through the wait
    the challenge is sent again (UpdateTopicRuleDestination to IN_PROGRESS), for a service that
    was not up yet. DISABLED: confirmed but switched off, so it is enabled (only a confirmed
    destination can be). ERROR, or still unconfirmed at the end: DeployError saying what to do;
    running deploy again resumes here.
    """
    iot = iot or aws.client("iot")
    sleep = sleep or time.sleep
    waited, resent = 0.0, False
    while True:
        got = iot.get_topic_rule_destination(arn=arn)["topicRuleDestination"]
        state, reason = got.get("status", ""), got.get("statusReason", "")
        if state == "ENABLED":
            emit(f"telemetry rule destination confirmed and enabled ({arn})")
            return state
        if state == "DISABLED":
            iot.update_topic_rule_destination(arn=arn, status="ENABLED")
            emit(f"telemetry rule destination was DISABLED; enabled it ({arn})")
            continue
        if state in ("ERROR", "DELETING"):
            raise DeployError(f"telemetry rule destination {arn} is {state}: {reason or '?'}")
        if waited >= wait_s:
            raise DeployError(
                f"telemetry rule destination {arn} is still unconfirmed after {int(waited)} s "
                f"({reason or 'no reason given'}). The service must answer at the TelemetryUrl "
                "and may call iot:ConfirmTopicRuleDestination (ServicePolicyArn); it logs the "
                "token it received (logger devices.services.telemetry) for `aws iot "
                "confirm-topic-rule-destination --confirmation-token <token>`. Run deploy again to "
                "send a new challenge and wait again."
            )
        if not resent and waited >= wait_s / 2:
            iot.update_topic_rule_destination(arn=arn, status="IN_PROGRESS")  # a new challenge
            emit("telemetry rule destination: no confirmation yet; challenge sent again")
            resent = True
        emit(f"telemetry rule destination: waiting for the service to confirm ({int(waited)} s)")
        sleep(poll_s)
        waited += poll_s


# --- Embedded (moto): apply what the template declares and moto's CloudFormation skips ---------
def embedded_template_body(template: dict, params: Mapping[str, str]) -> str:
    """The template without the resources and outputs whose condition is false.

    Equivalent for CloudFormation; needed for moto, whose stack updates ignore conditions and fail
    on a switched-off resource (e.g. the Lambda function) that refers to a changed parameter.
    """
    resolver = _Resolver(template, params, {}, {}, None)
    pruned = dict(template)
    for section in ("Resources", "Outputs"):
        pruned[section] = {
            name: spec
            for name, spec in template.get(section, {}).items()
            if not spec.get("Condition") or resolver.condition(spec["Condition"])
        }
    return json.dumps(pruned, indent=1)


_PSEUDO = ("AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName")


class _Resolver:
    """Enough of CloudFormation's intrinsic functions to read this template's bucket/table props."""

    def __init__(self, template: dict, params: Mapping[str, str], resources: Mapping[str, dict],
                 pseudo: Mapping[str, str], sqs):  # fmt: skip
        self.template, self.params, self.resources = template, params, resources
        self.pseudo, self.sqs = pseudo, sqs
        self.conditions: dict[str, bool] = {}

    def condition(self, name: str) -> bool:
        if name not in self.conditions:
            self.conditions[name] = bool(self.value(self.template["Conditions"][name]))
        return self.conditions[name]

    def value(self, node: Any) -> Any:  # noqa: C901 (one branch per intrinsic)
        if isinstance(node, list):
            return [v for v in (self.value(item) for item in node) if v is not _NO_VALUE]
        if not isinstance(node, dict):
            return node
        if len(node) == 1:
            (key, arg), = node.items()  # fmt: skip
            if key == "Ref":
                return self.ref(arg)
            if key == "Condition":
                return self.condition(arg)
            if key == "Fn::If":
                return self.value(arg[1] if self.condition(arg[0]) else arg[2])
            if key == "Fn::Equals":
                return str(self.value(arg[0])) == str(self.value(arg[1]))
            if key == "Fn::Not":
                return not self.value(arg[0])
            if key == "Fn::And":
                return all(self.value(a) for a in arg)
            if key == "Fn::Or":
                return any(self.value(a) for a in arg)
            if key == "Fn::Join":
                return arg[0].join(str(v) for v in self.value(arg[1]))
            if key == "Fn::Split":
                return str(self.value(arg[1])).split(arg[0])
            if key == "Fn::Sub":
                return self.sub(arg)
            if key == "Fn::GetAtt":
                return self.get_att(*arg)
        out = {}
        for key, item in node.items():
            resolved = self.value(item)
            if resolved is not _NO_VALUE:
                out[key] = resolved
        return out

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return _NO_VALUE
        if name in self.params:
            return self.params[name]
        if name in self.pseudo:
            return self.pseudo[name]
        return self.resources[name]["PhysicalResourceId"]

    def sub(self, arg: Any) -> str:
        text, extra = (arg, {}) if isinstance(arg, str) else (arg[0], self.value(arg[1]))
        out, i = [], 0
        while i < len(text):
            if text.startswith("${!", i):
                out.append("${")
                i += 3
            elif text.startswith("${", i):
                end = text.index("}", i)
                name = text[i + 2 : end]
                if name in extra:
                    out.append(str(extra[name]))
                elif "." in name:
                    out.append(str(self.get_att(*name.split(".", 1))))
                else:
                    out.append(str(self.ref(name)))
                i = end + 1
            else:
                out.append(text[i])
                i += 1
        return "".join(out)

    def get_att(self, logical_id: str, attribute: str) -> str:
        resource = self.resources[logical_id]
        if resource["ResourceType"] == "AWS::SQS::Queue" and attribute == "Arn":
            url = resource["PhysicalResourceId"]
            return self.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
                "Attributes"
            ]["QueueArn"]
        raise DeployError(f"cannot resolve {logical_id}.{attribute} for the embedded settings")


_NO_VALUE = object()


def _filter_rules(cfn_filter: Mapping | None) -> dict:
    rules = (cfn_filter or {}).get("S3Key", {}).get("Rules", [])
    return {"Key": {"FilterRules": [{"Name": r["Name"], "Value": r["Value"]} for r in rules]}}


def _lifecycle_rule(rule: Mapping) -> dict:
    api: dict[str, Any] = {
        "ID": rule.get("Id", ""),
        "Status": rule["Status"],
        "Filter": {"Prefix": rule.get("Prefix", "")},
    }
    if "ExpirationInDays" in rule:
        api["Expiration"] = {"Days": int(rule["ExpirationInDays"])}
    if "AbortIncompleteMultipartUpload" in rule:
        days = int(rule["AbortIncompleteMultipartUpload"]["DaysAfterInitiation"])
        api["AbortIncompleteMultipartUpload"] = {"DaysAfterInitiation": days}
    if "NoncurrentVersionExpiration" in rule:
        days = int(rule["NoncurrentVersionExpiration"]["NoncurrentDays"])
        api["NoncurrentVersionExpiration"] = {"NoncurrentDays": days}
    return api


def _apply_bucket(s3, bucket: str, props: Mapping) -> Iterable[str]:
    if "PublicAccessBlockConfiguration" in props:
        s3.put_public_access_block(
            Bucket=bucket, PublicAccessBlockConfiguration=props["PublicAccessBlockConfiguration"]
        )
        yield f"{bucket}: public access block"
    if "OwnershipControls" in props:
        s3.put_bucket_ownership_controls(
            Bucket=bucket, OwnershipControls=props["OwnershipControls"]
        )
        yield f"{bucket}: ownership controls"
    if "BucketEncryption" in props:
        rules = [
            {
                "ApplyServerSideEncryptionByDefault": rule["ServerSideEncryptionByDefault"],
                "BucketKeyEnabled": bool(rule.get("BucketKeyEnabled", False)),
            }
            for rule in props["BucketEncryption"]["ServerSideEncryptionConfiguration"]
        ]
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": rules})
        yield f"{bucket}: default encryption"
    if "VersioningConfiguration" in props:
        s3.put_bucket_versioning(
            Bucket=bucket,
            VersioningConfiguration={"Status": props["VersioningConfiguration"]["Status"]},
        )
        yield f"{bucket}: versioning"
    if "LifecycleConfiguration" in props:
        rules = [_lifecycle_rule(rule) for rule in props["LifecycleConfiguration"]["Rules"]]
        s3.put_bucket_lifecycle_configuration(
            Bucket=bucket, LifecycleConfiguration={"Rules": rules}
        )
        yield f"{bucket}: lifecycle"
    if "NotificationConfiguration" in props:
        notification = props["NotificationConfiguration"]
        config: dict[str, list] = {}
        for item in notification.get("QueueConfigurations", []):
            config.setdefault("QueueConfigurations", []).append(
                {
                    "QueueArn": item["Queue"],
                    "Events": [item["Event"]],
                    "Filter": _filter_rules(item.get("Filter")),
                }  # fmt: skip
            )
        for item in notification.get("LambdaConfigurations", []):
            config.setdefault("LambdaFunctionConfigurations", []).append(
                {
                    "LambdaFunctionArn": item["Function"],
                    "Events": [item["Event"]],
                    "Filter": _filter_rules(item.get("Filter")),
                }  # fmt: skip
            )
        s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=config)
        yield f"{bucket}: event notifications"
    if props.get("LoggingConfiguration"):
        logging_config = props["LoggingConfiguration"]
        s3.put_bucket_logging(
            Bucket=bucket,
            BucketLoggingStatus={
                "LoggingEnabled": {
                    "TargetBucket": logging_config["DestinationBucketName"],
                    "TargetPrefix": logging_config.get("LogFilePrefix", ""),
                }
            },
        )
        yield f"{bucket}: access logging to {logging_config['DestinationBucketName']}"


_EMBEDDED_PROPERTIES = {
    "AWS::S3::Bucket": (
        "PublicAccessBlockConfiguration", "OwnershipControls", "BucketEncryption",
        "VersioningConfiguration", "LifecycleConfiguration", "NotificationConfiguration",
        "LoggingConfiguration",
    ),
    "AWS::DynamoDB::Table": ("TimeToLiveSpecification",),
}  # fmt: skip


def apply_embedded_settings(
    template: dict, params: Mapping[str, str], stack_name: str, *, cfn=None, s3=None,
    dynamodb=None, sqs=None,
) -> list[str]:  # fmt: skip
    """Apply the bucket and table settings the template declares (moto's CFN skips them)."""
    cfn = cfn or aws.client("cloudformation")
    s3, dynamodb, sqs = (
        s3 or aws.client("s3"),
        dynamodb or aws.client("dynamodb"),
        sqs or aws.client("sqs"),
    )
    summaries = cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
    resources = {
        r["LogicalResourceId"]: r for page in summaries for r in page["StackResourceSummaries"]
    }
    stack_id = (describe_stack(stack_name, cfn=cfn) or {}).get("StackId", "")
    parts = stack_id.split(":")
    pseudo = {
        "AWS::Partition": parts[1] if len(parts) > 4 else "aws",
        "AWS::Region": parts[3] if len(parts) > 4 else aws.region(),
        "AWS::AccountId": parts[4] if len(parts) > 4 else "",
        "AWS::StackName": stack_name,
    }
    resolver = _Resolver(template, params, resources, pseudo, sqs)
    applied: list[str] = []
    # Bucket policies first: S3 checks the access-log bucket's policy when logging is switched on.
    for spec in template["Resources"].values():
        if spec["Type"] != "AWS::S3::BucketPolicy":
            continue
        if spec.get("Condition") and not resolver.condition(spec["Condition"]):
            continue
        props = resolver.value(spec["Properties"])
        # Allow statements only: moto evaluates a bucket policy's Deny for DeleteObjects but not
        # its conditions, so DenyInsecureTransport would refuse every delete (moto has no TLS
        # distinction to enforce anyway).
        document = dict(props["PolicyDocument"])
        document["Statement"] = [st for st in document["Statement"] if st["Effect"] == "Allow"]
        if not document["Statement"]:
            continue
        s3.put_bucket_policy(Bucket=props["Bucket"], Policy=json.dumps(document))
        applied.append(f"{props['Bucket']}: bucket policy (its Allow statements)")
    for logical_id, spec in template["Resources"].items():
        if spec.get("Condition") and not resolver.condition(spec["Condition"]):
            continue
        if logical_id not in resources:
            continue
        wanted = _EMBEDDED_PROPERTIES.get(spec["Type"], ())
        raw = spec.get("Properties", {})
        props = {key: resolver.value(raw[key]) for key in wanted if key in raw}
        props = {key: value for key, value in props.items() if value is not _NO_VALUE}
        physical = resources[logical_id]["PhysicalResourceId"]
        if spec["Type"] == "AWS::S3::Bucket":
            applied.extend(_apply_bucket(s3, physical, props))
        elif spec["Type"] == "AWS::DynamoDB::Table" and "TimeToLiveSpecification" in props:
            ttl = props["TimeToLiveSpecification"]
            current = dynamodb.describe_time_to_live(TableName=physical)
            if current["TimeToLiveDescription"].get("TimeToLiveStatus") != "ENABLED":
                dynamodb.update_time_to_live(
                    TableName=physical,
                    TimeToLiveSpecification={
                        "AttributeName": ttl["AttributeName"],
                        "Enabled": bool(ttl.get("Enabled", True)),
                    },
                )
                applied.append(f"{physical}: time to live on {ttl['AttributeName']}")
    return applied


# --- Status and teardown -------------------------------------------------------------------------
@dataclass
class StackStatus:
    stack_name: str
    status: str
    reason: str
    updated: datetime | None
    parameters: dict[str, str]
    outputs: dict[str, str]
    resources: list[tuple[str, str, str]]  # logical id, type, status
    failures: list[str]


def status(stack_name: str = DEFAULT_STACK_NAME, *, cfn=None) -> StackStatus | None:
    """The stack's state, outputs and resources; None when it does not exist."""
    cfn = cfn or aws.client("cloudformation")
    stack = describe_stack(stack_name, cfn=cfn)
    if stack is None:
        return None
    pages = cfn.get_paginator("list_stack_resources").paginate(StackName=stack_name)
    resources = [
        (r["LogicalResourceId"], r["ResourceType"], r["ResourceStatus"])
        for page in pages
        for r in page["StackResourceSummaries"]
        if r.get("LogicalResourceId")  # moto lists the types it skipped with no id
    ]
    failed = stack["StackStatus"].endswith(("FAILED", "ROLLBACK_COMPLETE"))
    return StackStatus(
        stack_name=stack_name,
        status=stack["StackStatus"],
        reason=stack.get("StackStatusReason", ""),
        updated=stack.get("LastUpdatedTime") or stack.get("CreationTime"),
        parameters=stack_parameters(stack),
        outputs=stack_outputs(stack),
        resources=sorted(resources),
        failures=failure_events(stack_name, cfn=cfn) if failed else [],
    )


def _empty_bucket(s3, bucket: str) -> int:
    """Delete every object version in a bucket; returns how many were deleted."""
    deleted = 0
    try:
        # An unversioned bucket lists VersionId "null"; S3 accepts it, moto silently does not.
        versioned = "Status" in s3.get_bucket_versioning(Bucket=bucket)
        pages = s3.get_paginator("list_object_versions").paginate(Bucket=bucket)
        for page in pages:
            items = [
                {"Key": v["Key"], "VersionId": v["VersionId"]}
                if versioned or v["VersionId"] != "null"
                else {"Key": v["Key"]}
                for v in page.get("Versions", []) + page.get("DeleteMarkers", [])
            ]
            for start in range(0, len(items), 1000):
                s3.delete_objects(Bucket=bucket, Delete={"Objects": items[start : start + 1000]})
            deleted += len(items)
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise
    return deleted


def teardown(
    stack_name: str = DEFAULT_STACK_NAME,
    *,
    purge_artifacts: bool = False,
    emit: Callable[[str], None] | None = None,
    cfn=None,
    s3=None,
) -> bool:
    """Delete the stack; returns False when there was none.

    The crops bucket is emptied first (it only ever holds transient face crops, and CloudFormation
    cannot delete a bucket with objects). The artifacts bucket is retained unless purge_artifacts.
    """
    emit = emit or log.info
    cfn = cfn or aws.client("cloudformation")
    s3 = s3 or aws.client("s3")
    stack = describe_stack(stack_name, cfn=cfn)
    if stack is None:
        emit(f"{stack_name}: no such stack")
        return False
    outputs = stack_outputs(stack)
    params = stack_parameters(stack)
    crops = outputs.get("CropsBucketName") or params.get("CropsBucketName")
    if crops:
        count = _empty_bucket(s3, crops)
        emit(f"{crops}: deleted {count} crop object(s)")
    access_logs = outputs.get("CropsAccessLogsBucketName")
    if access_logs and crops:
        _ignore_no_bucket(
            lambda: s3.put_bucket_logging(Bucket=crops, BucketLoggingStatus={})
        )  # no new deliveries; the bucket itself goes after the stack (DeletionPolicy Retain)
    policies = _stack_managed_policies(cfn, stack["StackId"])
    since = datetime.now(UTC)
    cfn.delete_stack(StackName=stack["StackId"])
    _wait_deleted(cfn, stack["StackId"], stack_name, since)
    emit(f"{stack_name}: deleted")
    left = _delete_leftover_policies(policies)
    if left:
        emit(f"{stack_name}: deleted {left} managed polic(ies) the stack deletion left behind")
    if access_logs:
        count = _delete_bucket(s3, access_logs)
        emit(f"{access_logs}: deleted with {count} access log object(s)")
    artifacts = outputs.get("ArtifactsBucketName") or params.get("ArtifactsBucketName")
    if purge_artifacts and artifacts:
        count = _empty_bucket(s3, artifacts)
        try:
            s3.delete_bucket(Bucket=artifacts)
            emit(f"{artifacts}: deleted with {count} object version(s)")
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchBucket":
                raise
    elif artifacts:
        emit(f"{artifacts}: retained (DeletionPolicy Retain; use purge_artifacts to delete)")
    return True


def _stack_managed_policies(cfn, stack_id: str) -> list[str]:
    """ARNs of the IAM managed policies the stack made (read before it is deleted)."""
    arns: list[str] = []
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack_id):
        for resource in page.get("StackResourceSummaries", []):
            if resource.get("ResourceType") == "AWS::IAM::ManagedPolicy":
                arns.append(resource.get("PhysicalResourceId", ""))
    return [arn for arn in arns if arn.startswith("arn:")]


def _delete_leftover_policies(arns: list[str]) -> int:
    """Delete the stack's managed policies if they outlived it, so the same names deploy again.

    AWS deletes them with the stack, so there this finds nothing (NoSuchEntity). moto keeps them,
    and the next create then stops at EntityAlreadyExists (docs/infra.md)."""
    iam = aws.client("iam")
    deleted = 0
    for arn in arns:
        try:
            for kind, key, detach in (
                ("PolicyRoles", "RoleName", iam.detach_role_policy),
                ("PolicyUsers", "UserName", iam.detach_user_policy),
                ("PolicyGroups", "GroupName", iam.detach_group_policy),
            ):
                for entity in iam.list_entities_for_policy(PolicyArn=arn).get(kind, []):
                    detach(PolicyArn=arn, **{key: entity[key]})
            for version in iam.list_policy_versions(PolicyArn=arn)["Versions"]:
                if not version["IsDefaultVersion"]:
                    iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
            iam.delete_policy(PolicyArn=arn)
            deleted += 1
        except ClientError as exc:
            if exc.response["Error"]["Code"] != "NoSuchEntity":
                raise
    return deleted


def _ignore_no_bucket(call) -> None:
    try:
        call()
    except ClientError as exc:
        if exc.response["Error"]["Code"] != "NoSuchBucket":
            raise


def _delete_bucket(s3, bucket: str, attempts: int = 3) -> int:
    """Empty and delete a bucket that may still receive a late log delivery between the two."""
    count = 0
    for attempt in range(attempts):
        count += _empty_bucket(s3, bucket)
        try:
            s3.delete_bucket(Bucket=bucket)
            return count
        except ClientError as exc:
            code = exc.response["Error"]["Code"]
            if code == "NoSuchBucket":
                return count
            if code != "BucketNotEmpty" or attempt == attempts - 1:
                raise
    return count


def _wait_deleted(cfn, stack_id: str, stack_name: str, since: datetime) -> None:
    try:
        cfn.get_waiter("stack_delete_complete").wait(StackName=stack_id, WaiterConfig=WAITER_CONFIG)
    except WaiterError:
        lines = failure_events(stack_id, since=since, cfn=cfn)
        raise DeployError(
            f"deletion of stack {stack_name} failed:\n  " + "\n  ".join(lines or ["(no events)"])
        ) from None
