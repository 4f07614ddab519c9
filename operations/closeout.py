"""Closeout: stop a festival's cameras, then remove everything it created in AWS, and optionally
its data.

The order matters. Cameras are paused (database and shadow) and unfinished deployments stopped
first, since a camera still online writes crops and items after they were deleted, and a
deployment still polling blocks the next deployment to a re-registered camera. The analysis
queue is then cleared of messages naming the festival's crops, and only then does anything go.

Resources are found by what they are, not only by the database rows that point at them: crops
by the festival's key prefix (every version), DynamoDB items by the festival's partition prefix
(stages renamed or deleted included), IoT things by their `festival` attribute (a registration
killed half-way is found through its thing), IAM roles and Lambda functions and Greengrass
definitions by the `stagepulse:festival` tag or by the names derived from the festival's things.

Every step lists what is left and deletes it, tolerating what is already gone, so a closeout
that was interrupted is finished by running it again, and a dry run shows the same list without
deleting. A real run ends with an inventory: per resource type, how many were removed and what
remains (found again from scratch). The festival's aggregates (rollups, set reports) stay unless
`purge` is asked for.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from botocore.config import Config
from botocore.exceptions import ClientError
from django.conf import settings
from django.utils import timezone

import awsclients as aws
from analyzer.events import crops_from_sqs_event
from devices.services import closeout as fleet
from edge_package.contracts import CROP_PREFIX
from emotions import closeout as emotions_closeout
from festival.models import Festival
from infra import stacks, teardown

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
    "AWS.SimpleQueueService.NonExistentQueue",
    "QueueDoesNotExist",
    "DashboardNotFound",
}
SHOWN_ITEMS = 1000  # a report keeps this many names; the count covers all of them
SCAN_SEGMENTS = 8  # parallel DynamoDB scan segments, each deleting as it reads
DELETE_WORKERS = 8
QUEUE_MAX_RECEIVES = 2000  # 20 000 messages per queue per run; more is "run again"
QUEUE_HOLD_S = 120  # messages of other festivals are held this long while we look, then released

# The inventory's resource types, in the order closeout removes them.
S3_OBJECTS = "S3 crop objects and versions"
DDB_ITEMS = "DynamoDB items"
SQS_MESSAGES = "SQS messages naming its crops"
DASHBOARDS = "CloudWatch dashboards"
ALARMS = "CloudWatch alarms"
GG2_DEPLOYMENTS = "Greengrass v2 deployments"
GG2_COMPONENTS = "Greengrass v2 components"
GG2_CORES = "Greengrass v2 core devices"
GG1_GROUPS = "Greengrass v1 groups"
GG1_DEFINITIONS = "Greengrass v1 definitions"
LAMBDAS = "Lambda functions"
THINGS = "IoT things"
CERTIFICATES = "IoT certificates"
POLICIES = "IoT policies"
ROLE_ALIASES = "IoT role aliases"
ROLES = "IAM roles"
GG2_KINDS = (GG2_DEPLOYMENTS, GG2_COMPONENTS, GG2_CORES)
GG2_UNAVAILABLE = "Greengrass v2 is not available at this endpoint (moto has none)"
KINDS = [
    S3_OBJECTS,
    DDB_ITEMS,
    SQS_MESSAGES,
    DASHBOARDS,
    ALARMS,
    GG2_DEPLOYMENTS,
    GG2_COMPONENTS,
    GG2_CORES,
    GG1_GROUPS,
    GG1_DEFINITIONS,
    LAMBDAS,
    THINGS,
    CERTIFICATES,
    POLICIES,
    ROLE_ALIASES,
    ROLES,
]
GG1_KINDS = {
    "core": ("list_core_definitions", "delete_core_definition", "CoreDefinitionId"),
    "functions": (
        "list_function_definitions",
        "delete_function_definition",
        "FunctionDefinitionId",
    ),
    "resources": (
        "list_resource_definitions",
        "delete_resource_definition",
        "ResourceDefinitionId",
    ),
    "subscriptions": (
        "list_subscription_definitions",
        "delete_subscription_definition",
        "SubscriptionDefinitionId",
    ),
}


@dataclass
class StepReport:
    step: str
    items: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    more: int = 0  # found beyond the SHOWN_ITEMS names kept in `items`

    @property
    def count(self) -> int:
        return len(self.items) + self.more

    def add(self, name: str) -> None:
        if len(self.items) < SHOWN_ITEMS:
            self.items.append(name)
        else:
            self.more += 1

    def line(self, dry_run: bool) -> str:
        verb = "would remove" if dry_run else "removed"
        shown = ", ".join(self.items[:5]) + (" …" if self.count > 5 else "")
        text = f"{self.step}: {verb} {self.count}" + (f" ({shown})" if self.items else "")
        text += "".join(f"\n    · {note}" for note in self.notes)
        return text + "".join(f"\n    ! {error}" for error in self.errors)


@dataclass
class InventoryLine:
    """One resource type after closeout: how many it removed, and what is still there."""

    kind: str
    removed: int
    remains: list[str]
    unchecked: str = ""  # why this type could not be looked at
    more: int = 0  # remaining beyond the names listed

    def line(self) -> str:
        if self.unchecked:
            return f"{self.kind}: removed {self.removed}, not checked ({self.unchecked})"
        count = len(self.remains) + self.more
        left = f"{count} remain" if count else "none remain"
        shown = ", ".join(self.remains[:5]) + (" …" if len(self.remains) > 5 else "")
        return f"{self.kind}: removed {self.removed}, {left}" + (f" ({shown})" if shown else "")


def _gone(error: ClientError) -> bool:
    return aws.error_code(error) in GONE


UNAVAILABLE = {"404", "NotImplemented", "UnknownOperation", "UnknownOperationException"}


def _unavailable(error: ClientError) -> bool:
    """The service is not at this endpoint at all (moto has no Greengrass v2): a bare 404,
    not a ResourceNotFoundException."""
    return aws.error_code(error) in UNAVAILABLE


def _ignore_gone(call: Callable, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except ClientError as error:
        if not _gone(error):
            raise
        return None


def _partition(region: str) -> str:
    return aws.partition(region)  # botocore's endpoint data, the one source for every ARN


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
        self._make_client = client
        self._clients: dict[str, object] = {}
        self.removed: Counter[str] = Counter()
        self.inventory: list[InventoryLine] = []
        self._lock = threading.Lock()

    def client(self, name: str):
        if name not in self._clients:
            if name == "dynamodb" and self._make_client is aws.client:
                # one connection per scanning segment and per writer
                pool = Config(max_pool_connections=SCAN_SEGMENTS + DELETE_WORKERS)
                self._clients[name] = aws.client(name, config=aws.RETRY_CONFIG.merge(pool))
            else:
                self._clients[name] = self._make_client(name)
        return self._clients[name]

    @property
    def slug(self) -> str:
        return self.festival.slug

    def run(self) -> list[StepReport]:
        steps = [
            ("cameras paused", self.pause_cameras),
            ("unfinished deployments stopped", self.stop_deployments),
            ("analysis queue", self.analysis_queue),
            ("crops in S3", self.crops),
            ("observations in DynamoDB", self.observations),
            ("CloudWatch dashboard and alarms", self.cloudwatch),
            ("Greengrass v2 deployments and components", self.greengrass_v2),
            ("Greengrass v1 (DeepLens) groups", self.greengrass_v1),
            ("DeepLens Lambda functions", self.lambdas),
            ("IoT things, certificates and policies", self.iot),
            ("IAM roles", self.roles),
        ]
        if self.purge:
            steps.append(("aggregates and reports in the database", self.database))
        if self.stack_name:
            steps.append((f"CloudFormation stack {self.stack_name}", self.stack))
        if not self.dry_run:
            # From now on the dashboard sync is a no-op; update() fires no signal.
            Festival.objects.filter(pk=self.festival.pk, closed_at__isnull=True).update(
                closed_at=timezone.now()
            )
        reports = [self._run_step(name, step) for name, step in steps]
        if not self.dry_run:
            self.inventory = self.take_inventory()
        return reports

    def _run_step(self, name: str, step: Callable[[StepReport], None]) -> StepReport:
        report = StepReport(name)
        try:
            step(report)
        except ClientError as error:
            report.errors.append(f"{aws.error_code(error)}: {error} — run again to resume")
        return report

    def _removed(self, kind: str, count: int = 1) -> None:
        if not self.dry_run:
            with self._lock:
                self.removed[kind] += count

    # --- what the festival has, found by what it is -----------------------------------------------
    def _devices(self):
        return fleet.festival_devices(self.festival)

    def _aws_things(self) -> list[str]:
        """Things carrying the festival attribute (registration sets it before anything else)."""
        pages = (
            self.client("iot")
            .get_paginator("list_things")
            .paginate(attributeName="festival", attributeValue=self.slug)
        )
        return [thing["thingName"] for page in pages for thing in page.get("things", [])]

    def things(self) -> list[str]:
        """Every thing name of the festival: in AWS by attribute, or in the database."""
        names = set(self._aws_things())
        names |= {d.thing_name for d in self._devices()}
        return sorted(names)

    def _account(self) -> str:
        if not hasattr(self, "_account_id"):
            self._account_id = self.client("sts").get_caller_identity()["Account"]
        return self._account_id

    def _thing_arn(self, thing: str) -> str:
        region = aws.region()
        return f"arn:{_partition(region)}:iot:{region}:{self._account()}:thing/{thing}"

    # --- 1. stop the cameras ----------------------------------------------------------------------
    def pause_cameras(self, report: StepReport) -> None:
        """Paused in the database (standalone cameras hear it in their next telemetry answer)
        and pushed to the shadow (Greengrass v2 and DeepLens). update(), not save(): a device
        save would queue the dashboard sync that closeout is about to delete.

        A camera may not hear it at once (offline, between telemetry answers), and credentials
        it already holds stay valid for up to an hour, so its role also loses its write policy
        now: IAM checks every request, and nothing it uploads lands after this step."""

        paused, notes = fleet.pause_cameras(self.festival, dry_run=self.dry_run)
        report.items.extend(paused)
        report.notes.extend(notes)
        if self.dry_run:
            return
        iam = self.client("iam")
        roles = fleet.camera_role_names(self.festival)
        roles |= {self._device_names(thing)["role"] for thing in self._registered_things()}
        for role in sorted(roles):
            listed = _ignore_gone(iam.list_role_policies, RoleName=role) or {}
            for policy in listed.get("PolicyNames", []):
                _ignore_gone(iam.delete_role_policy, RoleName=role, PolicyName=policy)

    def stop_deployments(self, report: StepReport) -> None:
        """Unfinished deployments end as failed without a rollback (the camera is going), and a
        Greengrass v2 one is cancelled in AWS, so nothing keeps polling or blocks the next."""

        report.items.extend(
            fleet.stop_unfinished_deployments(
                self.festival, dry_run=self.dry_run, cancel_greengrass_v2=self._cancel_gg2
            )
        )

    def _cancel_gg2(self, deployment_id: str) -> None:
        try:
            _ignore_gone(self.client("greengrassv2").cancel_deployment, deploymentId=deployment_id)
        except ClientError as error:
            if not _unavailable(error):
                raise

    # --- 2. the analysis queue --------------------------------------------------------------------
    def _queue_urls(self) -> list[str]:
        sqs = self.client("sqs")
        urls = []
        for name in (settings.ANALYSIS_QUEUE_NAME, f"{settings.ANALYSIS_QUEUE_NAME}-dlq"):
            found = _ignore_gone(sqs.get_queue_url, QueueName=name)
            if found:
                urls.append(found["QueueUrl"])
        return urls

    def _sweep_queue(self, url: str, *, delete: bool) -> tuple[list[str], bool]:
        """Messages whose every crop is the festival's; deleted when `delete`. Everything else
        seen is made visible again at once. Returns (message ids, whether the sweep was cut short).
        Messages a worker holds right now are invisible here; it finds their crop gone."""

        sqs = self.client("sqs")
        prefix = f"{CROP_PREFIX}/{self.slug}/"
        ours: dict[str, str] = {}
        others: dict[str, str] = {}
        cut_short = True
        for _ in range(QUEUE_MAX_RECEIVES):
            messages = sqs.receive_message(
                QueueUrl=url,
                MaxNumberOfMessages=10,
                VisibilityTimeout=QUEUE_HOLD_S,
                WaitTimeSeconds=0,
            ).get("Messages", [])
            if not messages:
                cut_short = False
                break
            for message in messages:
                crops, _, _ = crops_from_sqs_event(
                    {"Records": [{"messageId": message["MessageId"], "body": message["Body"]}]}
                )
                mine = bool(crops) and all(crop.key.startswith(prefix) for crop in crops)
                (ours if mine else others)[message["MessageId"]] = message["ReceiptHandle"]
        release = dict(others) if delete else {**others, **ours}
        if delete:
            self._batch(sqs.delete_message_batch, url, ours, lambda e: e)
        self._batch(
            sqs.change_message_visibility_batch,
            url,
            release,
            lambda e: e | {"VisibilityTimeout": 0},
        )
        return sorted(ours), cut_short

    @staticmethod
    def _batch(call, url: str, handles: dict[str, str], shape) -> None:
        entries = [
            shape({"Id": str(i), "ReceiptHandle": h}) for i, h in enumerate(handles.values())
        ]
        for start in range(0, len(entries), 10):
            call(QueueUrl=url, Entries=entries[start : start + 10])

    def analysis_queue(self, report: StepReport) -> None:
        """Discard analysis messages naming the festival's crops (they are deleted next)."""
        for url in self._queue_urls():
            ids, cut_short = self._sweep_queue(url, delete=not self.dry_run)
            for message_id in ids:
                report.add(f"message {message_id}")
            self._removed(SQS_MESSAGES, len(ids))
            if cut_short:
                report.errors.append(f"{url}: more messages than one run reads; run again")

    # --- 3. data ----------------------------------------------------------------------------------
    def _crop_versions(self) -> Iterable[dict]:
        s3 = self.client("s3")
        prefix = f"{CROP_PREFIX}/{self.slug}/"
        try:
            pages = s3.get_paginator("list_object_versions").paginate(
                Bucket=self.festival.bucket, Prefix=prefix
            )
            for page in pages:
                for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
                    yield {"Key": entry["Key"], "VersionId": entry.get("VersionId") or "null"}
        except ClientError as error:
            if not _gone(error):
                raise

    def crops(self, report: StepReport) -> None:
        """Every version and delete marker under faces/<festival>/ (a versioned bucket keeps
        deleted objects as noncurrent versions; an unversioned one lists them as version null)."""
        s3 = self.client("s3")
        entries = list(self._crop_versions())
        for entry in entries:
            suffix = "" if entry["VersionId"] == "null" else f"?versionId={entry['VersionId']}"
            report.add(entry["Key"] + suffix)
        if self.dry_run:
            return
        for start in range(0, len(entries), 1000):
            chunk = entries[start : start + 1000]
            answer = s3.delete_objects(
                Bucket=self.festival.bucket, Delete={"Objects": chunk, "Quiet": True}
            )
            errors = answer.get("Errors", [])
            report.errors.extend(f"{e['Key']}: {e['Message']}" for e in errors)
            self._removed(S3_OBJECTS, len(chunk) - len(errors))

    def _scan_segment(self, segment: int, on_page: Callable[[list[dict]], None]) -> None:
        pages = (
            self.client("dynamodb")
            .get_paginator("scan")
            .paginate(
                TableName=self.festival.table,
                Segment=segment,
                TotalSegments=SCAN_SEGMENTS,
                FilterExpression="begins_with(pk, :prefix)",
                ExpressionAttributeValues={":prefix": {"S": f"{self.slug}/"}},
                ProjectionExpression="pk, sk",
            )
        )
        for page in pages:
            if page.get("Items"):
                on_page(page["Items"])

    def _scan_items(self, on_page: Callable[[list[dict]], None]) -> None:
        """Every item under "<festival>/…", whichever stage (existing or not) it names, read by
        SCAN_SEGMENTS parallel segments; `on_page` gets each page's keys as it is read."""
        try:
            with ThreadPoolExecutor(SCAN_SEGMENTS) as pool:
                futures = [
                    pool.submit(self._scan_segment, s, on_page) for s in range(SCAN_SEGMENTS)
                ]
                for future in futures:
                    future.result()
        except ClientError as error:
            if not _gone(error):
                raise

    def _festival_item_names(self, limit: int = SHOWN_ITEMS) -> tuple[list[str], int]:
        """(up to `limit` item names, how many there are)."""
        names: list[str] = []
        total = Counter()

        def on_page(items: list[dict]) -> None:
            with self._lock:
                total["items"] += len(items)
                room = limit - len(names)
                names.extend(f"{k['pk']['S']}#{k['sk']['S']}" for k in items[: max(0, room)])

        self._scan_items(on_page)
        return names, total["items"]

    def _delete_items(self, keys: list[dict]) -> int:
        """One batch of up to 25; unprocessed items are retried with backoff. Returns those left."""
        dynamodb = self.client("dynamodb")
        table = self.festival.table
        pending = {table: [{"DeleteRequest": {"Key": key}} for key in keys]}
        for attempt in range(8):
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems", {})
            if not pending:
                return 0
            time.sleep(min(2.0, 0.05 * 2**attempt))
        return len(pending[table])

    def observations(self, report: StepReport) -> None:
        """A parallel scan by the festival's partition prefix (a stage renamed or deleted long
        ago is found too); each page read is deleted at once by a pool of batch writers, with a
        bounded backlog, so memory stays flat at any size (items also expire by their TTL)."""
        if self.dry_run:
            names, count = self._festival_item_names()
            report.items.extend(names)
            report.more = count - len(names)
            return
        slots = threading.BoundedSemaphore(DELETE_WORKERS * 4)
        totals: Counter[str] = Counter()
        failures: list[BaseException] = []

        def delete(batch: list[dict]) -> None:
            try:
                left = self._delete_items(batch)
                with self._lock:
                    totals["left"] += left
                    totals["deleted"] += len(batch) - left
            except BaseException as error:  # re-raised below, after the pool is drained
                failures.append(error)
            finally:
                slots.release()

        with ThreadPoolExecutor(DELETE_WORKERS) as deleters:

            def on_page(items: list[dict]) -> None:
                with self._lock:
                    for key in items:
                        report.add(f"{key['pk']['S']}#{key['sk']['S']}")
                for start in range(0, len(items), 25):
                    slots.acquire()  # backpressure: the scan waits for the writers
                    deleters.submit(delete, items[start : start + 25])

            self._scan_items(on_page)
        self._removed(DDB_ITEMS, totals["deleted"])
        if failures:
            raise failures[0]
        if totals["left"]:
            report.errors.append(f"{totals['left']} items throttled; run again")

    # --- 4. CloudWatch ----------------------------------------------------------------------------
    def _dashboard_and_alarms(self) -> tuple[list[str], list[str]]:
        return emotions_closeout.dashboards_and_alarms(self.festival, self.client("cloudwatch"))

    def cloudwatch(self, report: StepReport) -> None:
        cloudwatch = self.client("cloudwatch")
        dashboards, alarms = self._dashboard_and_alarms()
        report.items.extend(f"dashboard {n}" for n in dashboards)
        report.items.extend(f"alarm {n}" for n in alarms)
        if self.dry_run:
            return
        if dashboards:
            emotions_closeout.remove_dashboard(self.festival, cloudwatch)
            self._removed(DASHBOARDS, len(dashboards))
        emotions_closeout.remove_alarms(alarms, cloudwatch)
        self._removed(ALARMS, len(alarms))

    # --- 5. Greengrass v2 -------------------------------------------------------------------------
    def _gg2_things(self) -> list[str]:
        """Greengrass v2 cameras, and things whose platform the database no longer knows."""
        return fleet.greengrass_v2_things(self.festival, self._aws_things())

    def _gg2_found(self) -> tuple[list[str], list[str], list[str]]:
        """(deployment ids, own component ARNs, core device names) that still exist."""

        gg = self.client("greengrassv2")
        things = self._gg2_things()
        ids = set()
        for thing in things:
            pages = gg.get_paginator("list_deployments").paginate(
                targetArn=self._thing_arn(thing), historyFilter="ALL"
            )
            ids |= {d["deploymentId"] for page in pages for d in page.get("deployments", [])}
        cores = [t for t in things if _ignore_gone(gg.get_core_device, coreDeviceThingName=t)]
        components = [
            arn
            for arn in fleet.greengrass_v2_component_arns(self.festival)
            if _ignore_gone(gg.describe_component, arn=arn) is not None
        ]
        return sorted(ids), components, cores

    def greengrass_v2(self, report: StepReport) -> None:
        """Deployments targeting the festival's things (listed in AWS, not only those the
        database knows), the component versions no other festival deployed, and the core
        devices the nucleus registered."""
        if not self._gg2_things():
            return
        gg = self.client("greengrassv2")
        try:
            ids, components, cores = self._gg2_found()
        except ClientError as error:
            if not _unavailable(error):
                raise
            report.notes.append(f"{GG2_UNAVAILABLE}: nothing to remove there")
            return
        for deployment_id in ids:
            report.add(f"deployment {deployment_id}")
            if not self.dry_run:
                _ignore_gone(gg.cancel_deployment, deploymentId=deployment_id)
                _ignore_gone(gg.delete_deployment, deploymentId=deployment_id)
                self._removed(GG2_DEPLOYMENTS)
        for arn in components:
            report.add(f"component {arn.rsplit(':', 2)[-2]}:{arn.rsplit(':', 1)[-1]}")
            if not self.dry_run:
                _ignore_gone(gg.delete_component, arn=arn)
                self._removed(GG2_COMPONENTS)
        for thing in cores:
            report.add(f"core device {thing}")
            if not self.dry_run:
                _ignore_gone(gg.delete_core_device, coreDeviceThingName=thing)
                self._removed(GG2_CORES)

    # --- 6. Greengrass v1 (DeepLens) --------------------------------------------------------------
    def _gg1_resources(self) -> dict:
        """Group ids and definition ids of the festival, from tags, names and the database."""

        things = self.things()
        group_ids, definition_ids = fleet.greengrass_v1_ids(self.festival)
        gg = self.client("greengrass")
        group_names = {f"stagepulse-{thing}" for thing in things}
        groups = {}
        for page in gg.get_paginator("list_groups").paginate():
            for group in page.get("Groups", []):
                if group["Id"] in group_ids or group.get("Name") in group_names:
                    groups[group["Id"]] = group.get("Name", "")
        definitions: dict[str, dict[str, str]] = {}
        for kind, (lister, _, _) in GG1_KINDS.items():
            names = {f"stagepulse-{thing}-{kind}" for thing in things}
            ids = definition_ids[kind]
            definitions[kind] = {}
            for page in gg.get_paginator(lister).paginate():
                for item in page.get("Definitions", []):
                    tagged = (item.get("Tags") or {}).get(aws.FESTIVAL_TAG) == self.slug
                    if tagged or item["Id"] in ids or item.get("Name") in names:
                        definitions[kind][item["Id"]] = item.get("Name", "")
        return {"groups": groups, "definitions": definitions}

    def greengrass_v1(self, report: StepReport) -> None:
        """Groups first (their deployments reset, so the core stops), then the core, function,
        resource and subscription definitions with their versions; every deployment made new
        ones, so there are as many as there were deployments."""

        if not self.things() and not fleet.has_deeplens_deployments(self.festival):
            return
        gg = self.client("greengrass")
        found = self._gg1_resources()
        for group_id, name in sorted(found["groups"].items()):
            report.add(f"group {name or group_id}")
            if self.dry_run:
                continue
            try:  # stop what runs on the core first; a group never deployed has nothing
                gg.reset_deployments(GroupId=group_id, Force=True)
            except ClientError as error:
                log.info("group %s: no deployments to reset (%s)", group_id, error)
            _ignore_gone(gg.delete_group, GroupId=group_id)
            self._removed(GG1_GROUPS)
            fleet.forget_greengrass_group(self.festival, group_id)
        for kind, items in found["definitions"].items():
            _, deleter, id_param = GG1_KINDS[kind]
            for definition_id, name in sorted(items.items()):
                report.add(f"{kind} definition {name or definition_id}")
                if not self.dry_run:
                    _ignore_gone(getattr(gg, deleter), **{id_param: definition_id})
                    self._removed(GG1_DEFINITIONS)

    # --- 7. DeepLens Lambda functions -------------------------------------------------------------
    def _functions(self) -> list[str]:
        lam = self.client("lambda")
        expected = fleet.edge_function_names(self.festival, self._aws_things())
        names = []
        for page in lam.get_paginator("list_functions").paginate():
            for function in page.get("Functions", []):
                name = function["FunctionName"]
                if not name.startswith("stagepulse-edge-"):
                    continue
                tags = lam.list_tags(Resource=function["FunctionArn"]).get("Tags", {})
                if name in expected or tags.get(aws.FESTIVAL_TAG) == self.slug:
                    names.append(name)
        return sorted(names)

    def lambdas(self, report: StepReport) -> None:
        """The function each DeepLens camera's deployments made, with every published version
        and the `live` alias (whose environment holds the camera's config)."""
        lam = self.client("lambda")
        for name in self._functions():
            pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
            versions = [
                v["Version"] for p in pages for v in p["Versions"] if v["Version"] != "$LATEST"
            ]
            aliases = [a["Name"] for a in lam.list_aliases(FunctionName=name).get("Aliases", [])]
            report.add(f"function {name} ({len(versions)} versions, aliases {aliases or 'none'})")
            if self.dry_run:
                continue
            for alias in aliases:
                _ignore_gone(lam.delete_alias, FunctionName=name, Name=alias)
            _ignore_gone(lam.delete_function, FunctionName=name)  # every version with it
            self._removed(LAMBDAS)

    # --- 8. IoT and IAM ---------------------------------------------------------------------------
    def _registered_things(self) -> list[str]:
        """Things in AWS by the festival attribute, plus those the database says are registered
        (a row can outlive its thing, or a thing its row)."""
        names = set(self._aws_things())
        names |= fleet.registered_things(self.festival)
        return sorted(names)

    def _principals(self, thing: str) -> list[str]:
        found = _ignore_gone(self.client("iot").list_thing_principals, thingName=thing)
        return (found or {}).get("principals", [])

    def _remove_certificate(self, thing: str, cert_arn: str) -> None:
        """AWS's order: detach from the thing and from every policy, deactivate, delete."""
        iot = self.client("iot")
        cert_id = cert_arn.rsplit("/", 1)[-1]
        _ignore_gone(iot.detach_thing_principal, thingName=thing, principal=cert_arn)
        attached = _ignore_gone(iot.list_attached_policies, target=cert_arn) or {}
        for policy in attached.get("policies", []):
            _ignore_gone(iot.detach_policy, policyName=policy["policyName"], target=cert_arn)
        _ignore_gone(iot.update_certificate, certificateId=cert_id, newStatus="INACTIVE")
        for attempt in range(4):  # DetachThingPrincipal takes a few seconds to propagate
            try:
                _ignore_gone(iot.delete_certificate, certificateId=cert_id)
                break
            except ClientError as error:
                if aws.error_code(error) != "DeleteConflictException" or attempt == 3:
                    raise
                time.sleep(2 * (attempt + 1))
        self._removed(CERTIFICATES)

    def _remove_policy(self, name: str) -> None:
        """Detached from every target and its non-default versions deleted first, as AWS needs."""
        iot = self.client("iot")
        if _ignore_gone(iot.get_policy, policyName=name) is None:
            return
        targets = _ignore_gone(iot.list_targets_for_policy, policyName=name) or {}
        for target in targets.get("targets", []):
            _ignore_gone(iot.detach_policy, policyName=name, target=target)
        versions = _ignore_gone(iot.list_policy_versions, policyName=name) or {}
        for version in versions.get("policyVersions", []):
            if not version.get("isDefaultVersion"):
                _ignore_gone(
                    iot.delete_policy_version, policyName=name, policyVersionId=version["versionId"]
                )
        _ignore_gone(iot.delete_policy, policyName=name)
        self._removed(POLICIES)

    def _remove_role(self, name: str) -> bool:
        """Inline policies deleted, managed ones detached, instance profiles left, then the role."""
        iam = self.client("iam")
        if _ignore_gone(iam.get_role, RoleName=name) is None:
            return False
        for policy in iam.list_role_policies(RoleName=name).get("PolicyNames", []):
            _ignore_gone(iam.delete_role_policy, RoleName=name, PolicyName=policy)
        attached = iam.list_attached_role_policies(RoleName=name).get("AttachedPolicies", [])
        for policy in attached:
            _ignore_gone(iam.detach_role_policy, RoleName=name, PolicyArn=policy["PolicyArn"])
        profiles = iam.list_instance_profiles_for_role(RoleName=name).get("InstanceProfiles", [])
        for profile in profiles:
            _ignore_gone(
                iam.remove_role_from_instance_profile,
                InstanceProfileName=profile["InstanceProfileName"],
                RoleName=name,
            )
        _ignore_gone(iam.delete_role, RoleName=name)
        self._removed(ROLES)
        return True

    def _device_names(self, thing: str) -> dict[str, str]:
        return fleet.default_thing_resources(thing)

    def iot(self, report: StepReport) -> None:
        """Each thing of the festival with its certificates (revoked first), its policy, role
        alias and role; a half-done registration (no certificate in the database) included.
        The rows are updated with update(), so no dashboard sync is queued."""

        iot = self.client("iot")
        for thing in self._registered_things():
            report.add(f"thing {thing}")
            if self.dry_run:
                continue
            names = fleet.thing_resources(self.festival, thing)
            certificates = set(self._principals(thing)) | {names["certificate_arn"]} - {""}
            for cert_arn in sorted(certificates):
                self._remove_certificate(thing, cert_arn)
            self._remove_policy(names["policy"])
            alias = names["role_alias"]
            if _ignore_gone(iot.describe_role_alias, roleAlias=alias) is not None:
                _ignore_gone(iot.delete_role_alias, roleAlias=alias)
                self._removed(ROLE_ALIASES)
            self._remove_role(names["role"])
            if _ignore_gone(iot.describe_thing, thingName=thing) is not None:
                _ignore_gone(iot.delete_thing, thingName=thing)
                self._removed(THINGS)
            fleet.retire_device(self.festival, thing)

    def _tagged_roles(self) -> list[str]:
        """Camera roles tagged with the festival, whether or not a thing still leads to them."""
        iam = self.client("iam")
        names = []
        for page in iam.get_paginator("list_roles").paginate():
            for role in page.get("Roles", []):
                if not role["RoleName"].startswith("stagepulse-"):  # older and per-env names
                    continue
                tags = _ignore_gone(iam.list_role_tags, RoleName=role["RoleName"]) or {}
                if any(
                    t["Key"] == aws.FESTIVAL_TAG and t["Value"] == self.slug
                    for t in tags.get("Tags", [])
                ):
                    names.append(role["RoleName"])
        return names

    def roles(self, report: StepReport) -> None:
        """Roles no thing led to any more (the IoT step removed the others)."""
        for name in self._tagged_roles():
            report.add(f"role {name}")
            if not self.dry_run:
                self._remove_role(name)

    # --- the database and the stack ---------------------------------------------------------------
    def database(self, report: StepReport) -> None:
        report.items.extend(emotions_closeout.purge_rows(self.festival, dry_run=self.dry_run))

    def stack(self, report: StepReport) -> None:
        if stacks.status(self.stack_name) is None:
            return
        report.items.append(self.stack_name)
        if not self.dry_run:
            teardown.teardown(self.stack_name, emit=log.info)

    # --- the inventory ----------------------------------------------------------------------------
    def _remaining(self) -> dict[str, list[str]]:
        """Everything of the festival found again from scratch, per resource type."""
        self.unchecked: dict[str, str] = {}
        self.uncounted: Counter[str] = Counter()
        iot = self.client("iot")
        left: dict[str, list[str]] = {kind: [] for kind in KINDS}
        left[S3_OBJECTS] = [e["Key"] for e in self._crop_versions()]
        left[DDB_ITEMS], self.uncounted[DDB_ITEMS] = self._festival_item_names()
        self.uncounted[DDB_ITEMS] -= len(left[DDB_ITEMS])
        for url in self._queue_urls():
            left[SQS_MESSAGES] += self._sweep_queue(url, delete=False)[0]
        left[DASHBOARDS], left[ALARMS] = self._dashboard_and_alarms()
        if self._gg2_things():
            try:
                left[GG2_DEPLOYMENTS], left[GG2_COMPONENTS], left[GG2_CORES] = self._gg2_found()
            except ClientError as error:
                if not _unavailable(error):
                    raise
                self.unchecked.update(dict.fromkeys(GG2_KINDS, GG2_UNAVAILABLE))
        gg1 = self._gg1_resources()
        left[GG1_GROUPS] = sorted(gg1["groups"])
        left[GG1_DEFINITIONS] = sorted(i for d in gg1["definitions"].values() for i in d)
        left[LAMBDAS] = self._functions()
        for thing in self.things():
            names = self._device_names(thing)
            if _ignore_gone(iot.describe_thing, thingName=thing) is not None:
                left[THINGS].append(thing)
            left[CERTIFICATES] += self._principals(thing)
            if _ignore_gone(iot.get_policy, policyName=names["policy"]) is not None:
                left[POLICIES].append(names["policy"])
            if _ignore_gone(iot.describe_role_alias, roleAlias=names["role_alias"]) is not None:
                left[ROLE_ALIASES].append(names["role_alias"])
            if _ignore_gone(self.client("iam").get_role, RoleName=names["role"]) is not None:
                left[ROLES].append(names["role"])
        left[ROLES] = sorted(set(left[ROLES]) | set(self._tagged_roles()))
        return left

    def take_inventory(self) -> list[InventoryLine]:
        try:
            left = self._remaining()
        except ClientError as error:
            return [
                InventoryLine(
                    f"inventory failed ({aws.error_code(error)}); run again", 0, [str(error)]
                )
            ]
        return [
            InventoryLine(
                kind,
                self.removed[kind],
                left[kind],
                self.unchecked.get(kind, ""),
                self.uncounted[kind],
            )
            for kind in KINDS
        ]
