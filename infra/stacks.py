"""CloudFormation stack operations: describe, create, update through a change set, wait with
the failed events as the reason, and the region check before anything is created."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from botocore.exceptions import ClientError, WaiterError

import awsclients as aws
from infra.errors import DeployError

DEFAULT_STACK_NAME = "stagepulse"
CAPABILITIES = ["CAPABILITY_NAMED_IAM"]  # role names are fixed per environment
NO_CHANGES_MARKERS = ("didn't contain changes", "No updates are to be performed")
FAILED_SUFFIXES = ("_FAILED",)
WAITER_CONFIG = {"Delay": 5, "MaxAttempts": 720}  # up to an hour; moto answers at once


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


def wait(cfn, waiter_name: str, stack_name: str, *, since: datetime, what: str) -> None:
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


def create_stack(cfn, stack_name: str, template_body: str, api_params: list[dict], *, emit) -> str:
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
    wait(cfn, "stack_create_complete", stack_name, since=since, what="creation")
    return "created"


def update_stack(cfn, stack_name: str, template_body: str, api_params: list[dict], *, emit) -> str:
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
    wait(cfn, "stack_update_complete", stack_name, since=since, what="update")
    return "updated"


# Before anything is created: does this region have what the stack needs?
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
            if aws.error_code(exc) != "TypeNotFoundException":
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
