"""Embedded mode (moto): apply what the template declares and moto's CloudFormation skips.

moto's CloudFormation creates S3 buckets and DynamoDB tables but ignores most of their settings
(public access block, ownership, versioning, lifecycle, notifications, TTL). With Embedded=true
the deployer applies exactly what the template declares for those resources through the S3 and
DynamoDB APIs, reading the template with a small resolver of CloudFormation's intrinsic
functions. On real AWS (Embedded=false) CloudFormation applies them and this never runs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import awsclients as aws
from infra.errors import DeployError
from infra.stacks import describe_stack


def embedded_template_body(template: dict, params: Mapping[str, str]) -> str:
    """The template without the resources and outputs whose condition is false.

    Equivalent for CloudFormation; needed for moto, whose stack updates ignore conditions and fail
    on a switched-off resource (e.g. the Lambda function) that refers to a changed parameter.
    """
    resolver = Resolver(template, params, {}, {}, None)
    pruned = dict(template)
    for section in ("Resources", "Outputs"):
        pruned[section] = {
            name: spec
            for name, spec in template.get(section, {}).items()
            if not spec.get("Condition") or resolver.condition(spec["Condition"])
        }
    return json.dumps(pruned, indent=1)


_PSEUDO = ("AWS::Region", "AWS::AccountId", "AWS::Partition", "AWS::StackName")


class Resolver:
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
            return [v for v in (self.value(item) for item in node) if v is not NO_VALUE]
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
            if resolved is not NO_VALUE:
                out[key] = resolved
        return out

    def ref(self, name: str) -> Any:
        if name == "AWS::NoValue":
            return NO_VALUE
        if name in self.params:
            declared = self.template.get("Parameters", {}).get(name, {})
            if declared.get("Type") == "CommaDelimitedList":  # as CloudFormation: a list
                return str(self.params[name]).split(",")
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


NO_VALUE = object()


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
    resolver = Resolver(template, params, resources, pseudo, sqs)
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
        props = {key: value for key, value in props.items() if value is not NO_VALUE}
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
