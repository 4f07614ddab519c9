"""Teardown: the crops emptied, the stack deleted, what it leaves behind removed (access logs,
managed policies moto keeps); the artifacts bucket retained unless purged."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from botocore.exceptions import ClientError, WaiterError

import awsclients as aws
from infra.errors import DeployError
from infra.stacks import (
    DEFAULT_STACK_NAME,
    WAITER_CONFIG,
    describe_stack,
    failure_events,
    stack_outputs,
    stack_parameters,
)

log = logging.getLogger("stagepulse.infra")


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
        if aws.error_code(exc) != "NoSuchBucket":
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
            if aws.error_code(exc) != "NoSuchBucket":
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
            if aws.error_code(exc) != "NoSuchEntity":
                raise
    return deleted


def _ignore_no_bucket(call) -> None:
    try:
        call()
    except ClientError as exc:
        if aws.error_code(exc) != "NoSuchBucket":
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
            code = aws.error_code(exc)
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
