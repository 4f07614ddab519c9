"""Deploy the StagePulse stack through boto3 CloudFormation, Django-free so that `manage.py
infra`, the demo runner and tests share one code path. Every client comes from awsclients
(AWS_ENDPOINT_URL points it at a moto server in the embedded mode).

The pieces, one module each: `cfn_template` (the template and its parameters), `analyzer_bundle`
(the Lambda zip), `stacks` (describe, create, update, status), `embedded` (what moto's
CloudFormation skips), `teardown`. This module is the order they run in:

- Lambda mode needs the analyzer bundle in the artifacts bucket, which the stack itself creates: a
  first deploy leaves the function out (empty AnalyzerCodeKey), then the bundle is uploaded and the
  stack updated with its key (docs/infra.md).
- With Embedded=true the bucket and table settings are applied after the stack (infra.embedded).
- A telemetry rule destination is confirmed before deploy returns.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from botocore.exceptions import ClientError

import awsclients as aws
from infra.analyzer_bundle import build_analyzer_bundle, upload_analyzer_bundle
from infra.cfn_template import TEMPLATE_PATH, load_template, resolve_parameters
from infra.embedded import apply_embedded_settings, embedded_template_body
from infra.errors import DeployError
from infra.stacks import (
    DEFAULT_STACK_NAME,
    check_region,
    create_stack,
    describe_stack,
    stack_outputs,
    stack_parameters,
    update_stack,
)
from infra.teardown import teardown

log = logging.getLogger("stagepulse.infra")


@dataclass
class DeployResult:
    stack_name: str
    action: str  # "created", "updated" or "unchanged"
    status: str
    outputs: dict[str, str]
    parameters: dict[str, str]
    applied: list[str] = field(default_factory=list)  # settings applied for moto (Embedded)
    analyzer_bundle_key: str = ""


def retained_artifacts_bucket(name: str, *, s3=None) -> bool:
    """Whether the artifacts bucket already exists in this account: teardown retains it (edge
    releases, models, labelled clips), so the next stack must take it over by name, not create
    it (CloudFormation would stop at BucketAlreadyExists). A name that exists in another account
    (403) can never be ours: that is a clear error before anything is created."""
    s3 = s3 or aws.client("s3")
    try:
        s3.head_bucket(Bucket=name)
    except ClientError as exc:
        code = aws.error_code(exc)
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
    api_params, effective = resolve_parameters(template, requested, existing)
    check_region(effective, cfn=cfn)
    adopt = not exists and "ArtifactsBucketExists" not in requested
    if adopt and retained_artifacts_bucket(effective["ArtifactsBucketName"], s3=s3):
        emit(
            f"{stack_name}: using the retained artifacts bucket "
            f"{effective['ArtifactsBucketName']} (it outlived an earlier stack)"
        )
        requested["ArtifactsBucketExists"] = "true"
        api_params, effective = resolve_parameters(template, requested, existing)

    bundle_key = ""
    wants_bundle = (
        effective.get("AnalyzerMode") == "lambda"
        and effective.get("Embedded") != "true"
        and "AnalyzerCodeKey" not in requested
    )
    if wants_bundle and not exists:
        emit(f"{stack_name}: first pass without the analyzer function (its code bucket is new)")
        first = {**requested, "AnalyzerCodeKey": ""}
        api_first, _ = resolve_parameters(template, first, None)
        create_stack(cfn, stack_name, template_body, api_first, emit=emit)
        exists = True
    if wants_bundle:
        bundle = build_analyzer_bundle(vendor=vendor_dependencies)
        bundle_key = upload_analyzer_bundle(bundle, effective["ArtifactsBucketName"], s3=s3)
        emit(f"analyzer bundle s3://{effective['ArtifactsBucketName']}/{bundle_key}")
        requested["AnalyzerCodeKey"] = bundle_key
        existing = stack_parameters(describe_stack(stack_name, cfn=cfn) or {})
        api_params, effective = resolve_parameters(template, requested, existing)

    if effective.get("Embedded") == "true":
        template_body = embedded_template_body(template, effective)
    if exists:
        action = update_stack(cfn, stack_name, template_body, api_params, emit=emit)
    else:
        action = create_stack(cfn, stack_name, template_body, api_params, emit=emit)
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
