"""Closeout: remove everything a festival created in AWS, and optionally its data.

Every step lists what is left and deletes it, tolerating what is already gone, so a closeout that
was interrupted is finished by running it again, and a dry run shows the same list without
deleting. The festival's aggregates (rollups, set reports) stay unless `purge` is asked for.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from edge_package.contracts import CROP_PREFIX, observation_partition
from festival import aws
from festival.models import Festival

log = logging.getLogger(__name__)
GONE = {
    "ResourceNotFoundException",
    "NoSuchEntity",
    "NoSuchEntityException",
    "NoSuchKey",
    "NoSuchBucket",
    "IdNotFoundException",
    "ResourceNotFound",
    "NotFoundException",
    "ConflictException",  # a GGv2 deployment that already finished cannot be cancelled
}


@dataclass
class StepReport:
    step: str
    items: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def line(self, dry_run: bool) -> str:
        verb = "would remove" if dry_run else "removed"
        shown = ", ".join(self.items[:5]) + (" …" if len(self.items) > 5 else "")
        text = f"{self.step}: {verb} {len(self.items)}" + (f" ({shown})" if self.items else "")
        return text + "".join(f"\n    ! {error}" for error in self.errors)


def _gone(error: ClientError) -> bool:
    return error.response.get("Error", {}).get("Code", "") in GONE


class Closeout:
    def __init__(
        self,
        festival: Festival,
        *,
        dry_run: bool = False,
        purge: bool = False,
        stack_name: str | None = None,
        client: Callable[[str], object] = aws.client,
    ):
        self.festival = festival
        self.dry_run = dry_run
        self.purge = purge
        self.stack_name = stack_name
        self.client = client

    def run(self) -> list[StepReport]:
        steps = [
            ("crops in S3", self.crops),
            ("observations in DynamoDB", self.observations),
            ("CloudWatch dashboard and alarms", self.cloudwatch),
            ("Greengrass v2 deployments and components", self.greengrass_v2),
            ("Greengrass v1 (DeepLens) groups", self.greengrass_v1),
            ("IoT things, certificates and policies", self.iot),
        ]
        if self.purge:
            steps.append(("aggregates and reports in the database", self.database))
        if self.stack_name:
            steps.append((f"CloudFormation stack {self.stack_name}", self.stack))
        reports = []
        for name, step in steps:
            report = StepReport(name)
            try:
                step(report)
            except ClientError as error:
                report.errors.append(
                    f"{error.response.get('Error', {}).get('Code')}: {error} — run again to resume"
                )
            reports.append(report)
        return reports

    # --- steps -----------------------------------------------------------------------------------
    def crops(self, report: StepReport) -> None:
        s3 = self.client("s3")
        prefix = f"{CROP_PREFIX}/{self.festival.slug}/"
        try:
            pages = s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.festival.bucket, Prefix=prefix
            )
            keys = [item["Key"] for page in pages for item in page.get("Contents", [])]
        except ClientError as error:
            if _gone(error):
                return
            raise
        report.items.extend(keys)
        if self.dry_run:
            return
        for start in range(0, len(keys), 1000):
            chunk = keys[start : start + 1000]
            answer = s3.delete_objects(
                Bucket=self.festival.bucket,
                Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
            )
            report.errors.extend(f"{e['Key']}: {e['Message']}" for e in answer.get("Errors", []))

    def observations(self, report: StepReport) -> None:
        dynamodb = self.client("dynamodb")
        table = self.festival.table
        for stage in self.festival.stages.all():
            keys = list(self._observation_keys(dynamodb, table, stage.slug))
            report.items.extend(f"{k['pk']['S']}#{k['sk']['S']}" for k in keys)
            if self.dry_run:
                continue
            for start in range(0, len(keys), 25):
                requests = [{"DeleteRequest": {"Key": key}} for key in keys[start : start + 25]]
                pending = {table: requests}
                for _ in range(8):  # unprocessed items are retried, then reported
                    pending = dynamodb.batch_write_item(RequestItems=pending).get(
                        "UnprocessedItems", {}
                    )
                    if not pending:
                        break
                if pending:
                    report.errors.append(f"{len(pending[table])} items throttled; run again")

    def _observation_keys(self, dynamodb, table: str, stage: str) -> Iterable[dict]:
        try:
            pages = dynamodb.get_paginator("query").paginate(
                TableName=table,
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={
                    ":pk": {"S": observation_partition(self.festival.slug, stage)}
                },
                ProjectionExpression="pk, sk",
            )
            for page in pages:
                yield from page.get("Items", [])
        except ClientError as error:
            if not _gone(error):
                raise

    def cloudwatch(self, report: StepReport) -> None:
        from emotions.cloudwatch_dashboards import dashboard_name

        cloudwatch = self.client("cloudwatch")
        name = dashboard_name(self.festival)
        existing = cloudwatch.list_dashboards(DashboardNamePrefix=name).get("DashboardEntries", [])
        if any(entry["DashboardName"] == name for entry in existing):
            report.items.append(f"dashboard {name}")
            if not self.dry_run:
                cloudwatch.delete_dashboards(DashboardNames=[name])
        alarms = cloudwatch.describe_alarms(AlarmNamePrefix=name).get("MetricAlarms", [])
        names = [alarm["AlarmName"] for alarm in alarms]
        report.items.extend(f"alarm {n}" for n in names)
        if names and not self.dry_run:
            for start in range(0, len(names), 100):
                cloudwatch.delete_alarms(AlarmNames=names[start : start + 100])

    def _deployments(self, platform: str):
        from devices.models import Deployment

        return Deployment.objects.filter(device__festival=self.festival, platform=platform)

    def greengrass_v2(self, report: StepReport) -> None:
        from devices.models import Deployment, Platform

        deployments = self._deployments(Platform.GREENGRASS_V2)
        ids = sorted({d.resources.get("deployment_id") for d in deployments} - {None, ""})
        arns = sorted({d.resources.get("component_arn") for d in deployments} - {None, ""})
        shared = set(
            Deployment.objects.exclude(device__festival=self.festival)
            .filter(platform=Platform.GREENGRASS_V2)
            .values_list("resources__component_arn", flat=True)
        )
        own_components = [arn for arn in arns if arn not in shared]
        if not ids and not own_components:
            return
        gg = self.client("greengrassv2")
        for deployment_id in ids:
            report.items.append(f"deployment {deployment_id}")
            if self.dry_run:
                continue
            for call in (gg.cancel_deployment, gg.delete_deployment):
                try:
                    call(deploymentId=deployment_id)
                except ClientError as error:
                    if not _gone(error):
                        raise
        for arn in own_components:
            report.items.append(f"component {arn.rsplit(':', 2)[-2]}:{arn.rsplit(':', 1)[-1]}")
            if not self.dry_run:
                try:
                    gg.delete_component(arn=arn)
                except ClientError as error:
                    if not _gone(error):
                        raise

    def greengrass_v1(self, report: StepReport) -> None:
        from devices.models import Device

        groups = sorted(
            set(
                Device.objects.filter(festival=self.festival)
                .exclude(greengrass_group_id="")
                .values_list("greengrass_group_id", flat=True)
            )
        )
        if not groups:
            return
        gg = self.client("greengrass")
        for group_id in groups:
            report.items.append(f"group {group_id}")
            if self.dry_run:
                continue
            try:  # stop what runs on the core first; a group never deployed has nothing
                gg.reset_deployments(GroupId=group_id, Force=True)
            except ClientError as error:
                log.info("group %s: no deployments to reset (%s)", group_id, error)
            try:
                gg.delete_group(GroupId=group_id)
            except ClientError as error:
                if not _gone(error):
                    raise
            Device.objects.filter(festival=self.festival, greengrass_group_id=group_id).update(
                greengrass_group_id=""
            )

    def iot(self, report: StepReport) -> None:
        from devices.models import Device
        from devices.services.registration import deregister_device

        registered = Device.objects.filter(festival=self.festival).exclude(certificate_arn="")
        for device in registered:
            report.items.append(f"thing {device.thing_name}")
            if not self.dry_run:
                deregister_device(device)

    def database(self, report: StepReport) -> None:
        from emotions.models import (
            IngestRejection,
            IngestWatermark,
            MinuteRollup,
            Observation,
            SetReport,
        )

        for model in (SetReport, MinuteRollup, Observation, IngestWatermark, IngestRejection):
            rows = model.objects.filter(**self._festival_filter(model))
            count = rows.count()
            if count:
                report.items.append(f"{count} {model._meta.verbose_name_plural}")
                if not self.dry_run:
                    rows.delete()

    def _festival_filter(self, model) -> dict:
        names = {f.name for f in model._meta.get_fields()}
        return (
            {"festival": self.festival}
            if "festival" in names
            else {"stage__festival": self.festival}
        )

    def stack(self, report: StepReport) -> None:
        from infra import deploy as infra

        if infra.status(self.stack_name) is None:
            return
        report.items.append(self.stack_name)
        if not self.dry_run:
            infra.teardown(self.stack_name, emit=log.info)
