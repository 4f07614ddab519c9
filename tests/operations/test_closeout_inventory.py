"""A whole demo topology in one account, then closeout, then everything in the account listed:
nothing of the closed festival is left, and the other festival's resources are all still there.

moto holds S3 (versioned), DynamoDB, CloudWatch, SQS, IoT, IAM, Lambda and Greengrass v1.
Greengrass v2 is not in moto: its calls go through botocore's Stubber with AWS's response shapes
(tests/devices/test_deployments.py for the deployment side; closeout's own below).
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from unittest import mock

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.greengrass.models import greengrass_backends

import awsclients as aws
from devices import services
from devices.models import Deployment, DeploymentState, Device, Platform
from devices.services import deployments as deployments_module
from edge_package.contracts import (
    CropKey,
    build_crop_key,
    build_observation_item,
    observation_table_definition,
    to_dynamodb,
)
from emotions.cloudwatch_dashboards import put_festival_dashboard
from operations.closeout import Closeout
from stages.models import Stage
from tests.devices.conftest import LAMBDA_TRUST
from tests.devices.test_deployments import stub_component, stub_deployment, stub_status

pytestmark = pytest.mark.django_db
ACCOUNT = "123456789012"
REGION = "eu-west-1"
WHEN_MS = 1_783_700_000_000


def thing_arn(thing: str) -> str:
    return f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/{thing}"


# --- building the topology ----------------------------------------------------------------------
def camera(world, thing: str, platform: str) -> Device:
    return Device.objects.create(
        organization=world.organization,
        festival=world.festival,
        stage=world.stage,
        name=thing,
        thing_name=thing,
        platform=platform,
    )


def s3_event(bucket: str, key: str) -> str:
    return json.dumps(
        {
            "Records": [
                {
                    "eventSource": "aws:s3",
                    "eventName": "ObjectCreated:Put",
                    "s3": {"bucket": {"name": bucket}, "object": {"key": key, "size": 1}},
                }
            ]
        }
    )


def put_data(world, stages: list[str], settings, queue_url: str) -> None:
    """Crops (one overwritten, one deleted: versions and a delete marker), items, a dashboard,
    an alarm and analysis messages, for each stage named (existing or not)."""
    s3, sqs = aws.client("s3"), aws.client("sqs")
    table = aws.resource("dynamodb").Table(settings.OBSERVATIONS_TABLE)
    slug, thing = world.festival.slug, world.device.thing_name
    for stage in stages:
        for seq in range(2):
            key = build_crop_key(slug, stage, thing, WHEN_MS + seq, seq)
            s3.put_object(Bucket=settings.CROPS_BUCKET, Key=key, Body=b"x")
            sqs.send_message(QueueUrl=queue_url, MessageBody=s3_event(settings.CROPS_BUCKET, key))
            crop = CropKey(slug, stage, thing, WHEN_MS + seq, seq)
            item = build_observation_item(
                crop=crop,
                face_index=0,
                scores={"HAPPY": 60},
                face_confidence=90,
                source="local",
                analyzed_at_ms=WHEN_MS,
            )
            table.put_item(Item=to_dynamodb(item))
        s3.put_object(Bucket=settings.CROPS_BUCKET, Key=key, Body=b"y")  # a second version
    s3.delete_object(Bucket=settings.CROPS_BUCKET, Key=key)  # and a delete marker
    put_festival_dashboard(world.festival)
    aws.client("cloudwatch").put_metric_alarm(
        AlarmName=f"StagePulse-{slug}-main-silent",
        MetricName="FacesAnalyzed",
        Namespace="StagePulse",
        Statistic="Sum",
        Period=60,
        EvaluationPeriods=1,
        Threshold=1,
        ComparisonOperator="LessThanThreshold",
    )


def deeplens_reports(deployment: Deployment, status: str) -> None:
    """Play the DeepLens core: moto keeps every group deployment InProgress."""
    deployment.refresh_from_db()
    backend = greengrass_backends[ACCOUNT][REGION]
    backend.deployments[deployment.resources["deployment_id"]].deployment_status = status


def deploy_deeplens(device: Device, release) -> Deployment:
    """Two deployments (each makes its own definitions); the last one is left polling.

    DeepLens deployments are refused now (AWS ended Greengrass V1), but festivals deployed before
    that still own their groups, definitions and Lambdas: the refusal is lifted here only, so the
    old steps leave exactly what they left then, and closeout must still find and remove it."""
    with mock.patch.object(
        deployments_module,
        "Platform",
        SimpleNamespace(
            DEEPLENS="(deployed before the refusal)", GREENGRASS_V2=Platform.GREENGRASS_V2
        ),
    ):
        return _legacy_deeplens_deployments(device, release)


def _legacy_deeplens_deployments(device: Device, release) -> Deployment:
    first = services.start_deployment(device, release, enqueue=False)
    services.run_deployment(first.pk)
    deeplens_reports(first, "Success")
    services.run_deployment(first.pk)
    first.refresh_from_db()
    assert first.state == DeploymentState.SUCCEEDED
    second = services.start_deployment(device, release, enqueue=False)
    services.run_deployment(second.pk)
    second.refresh_from_db()
    assert second.state == DeploymentState.POLL
    return second


def deploy_greengrass_v2(stubber, device: Device, release, deployment_id: str) -> Deployment:
    deployment = services.start_deployment(device, release, enqueue=False)
    stub_component(stubber, release)
    stub_deployment(stubber, deployment, release, device, deployment_id)
    stub_status(stubber, device, "IN_PROGRESS", deployment_id)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == DeploymentState.POLL
    return deployment


# --- listing the whole account ------------------------------------------------------------------
def account_inventory(settings, queue_url: str) -> dict[str, set[str]]:
    """Every resource in the account, named so that its festival or thing shows."""
    s3, ddb, cw = aws.client("s3"), aws.client("dynamodb"), aws.client("cloudwatch")
    iot, iam, lam, gg = (
        aws.client("iot"),
        aws.client("iam"),
        aws.client("lambda"),
        aws.client("greengrass"),
    )
    versions = s3.list_object_versions(Bucket=settings.CROPS_BUCKET)
    found = {
        "s3 versions": {
            f"{v['Key']}@{v['VersionId']}"
            for v in versions.get("Versions", []) + versions.get("DeleteMarkers", [])
        },
        "dynamodb items": {
            f"{i['pk']['S']}#{i['sk']['S']}"
            for i in ddb.scan(TableName=settings.OBSERVATIONS_TABLE)["Items"]
        },
        "dashboards": {d["DashboardName"] for d in cw.list_dashboards()["DashboardEntries"]},
        "alarms": {a["AlarmName"] for a in cw.describe_alarms()["MetricAlarms"]},
        "things": {t["thingName"] for t in iot.list_things()["things"]},
        "policies": {p["policyName"] for p in iot.list_policies()["policies"]},
        "role aliases": set(iot.list_role_aliases()["roleAliases"]),
        "roles": {r["RoleName"] for r in iam.list_roles()["Roles"]},
        "functions": {f["FunctionName"] for f in lam.list_functions()["Functions"]},
        "groups": {g["Name"] for g in gg.list_groups()["Groups"]},
    }
    for kind in ("core", "function", "resource", "subscription"):
        listed = getattr(gg, f"list_{kind}_definitions")()["Definitions"]
        found[f"{kind} definitions"] = {d["Name"] for d in listed}
    # Certificates by the thing they serve; one serving none is an orphan.
    certificates = {c["certificateArn"] for c in iot.list_certificates()["certificates"]}
    serving = {}
    for thing in found["things"]:
        for arn in iot.list_thing_principals(thingName=thing)["principals"]:
            serving[arn] = thing
    found["certificates"] = {f"{serving.get(arn, 'orphan')}:{arn}" for arn in certificates}
    # Messages: received all, then made visible again.
    messages = []
    while (
        batch := aws.client("sqs")
        .receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=30)
        .get("Messages")
    ):
        messages += batch
    for message in messages:
        aws.client("sqs").change_message_visibility(
            QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    found["sqs messages"] = {
        json.loads(m["Body"])["Records"][0]["s3"]["object"]["key"] for m in messages
    }
    return found


def closeout_gg2_calls(stubber) -> None:
    """What closeout asks Greengrass v2, in order, with AWS's answers: the unfinished deployment
    cancelled first; then per Greengrass v2 thing (the half-registered one too) the deployments
    targeting it and its core device; the deletions; and the inventory's second look."""
    things = ["ours-cam-1", "ours-half-1"]
    stubber.add_response("cancel_deployment", {}, {"deploymentId": "d-ours"})

    def lookups(deployments: dict[str, list[str]], cores: set[str]) -> None:
        for thing in things:
            stubber.add_response(
                "list_deployments",
                {
                    "deployments": [
                        {
                            "targetArn": thing_arn(thing),
                            "deploymentId": d,
                            "deploymentName": f"stagepulse {thing}",
                            "deploymentStatus": "ACTIVE",
                            "isLatestForTarget": True,
                        }
                        for d in deployments.get(thing, [])
                    ]
                },
                {"targetArn": thing_arn(thing), "historyFilter": "ALL"},
            )
        for thing in things:
            if thing in cores:
                stubber.add_response(
                    "get_core_device",
                    {"coreDeviceThingName": thing, "status": "HEALTHY", "platform": "linux"},
                    {"coreDeviceThingName": thing},
                )
            else:
                stubber.add_client_error(
                    "get_core_device",
                    "ResourceNotFoundException",
                    http_status_code=404,
                    expected_params={"coreDeviceThingName": thing},
                )

    lookups({"ours-cam-1": ["d-ours"]}, {"ours-cam-1"})
    for call in ("cancel_deployment", "delete_deployment"):
        stubber.add_response(call, {}, {"deploymentId": "d-ours"})
    stubber.add_response("delete_core_device", {}, {"coreDeviceThingName": "ours-cam-1"})
    lookups({}, set())


@pytest.fixture
def account(settings, two_worlds, monkeypatch):
    """Both festivals deployed side by side in one account; returns (ours, theirs, queue url)."""
    ours, theirs = two_worlds
    settings.CLOUDWATCH_DASHBOARDS = True
    with mock_aws():
        s3 = aws.client("s3")
        for bucket in (settings.CROPS_BUCKET, settings.ARTIFACTS_BUCKET):
            s3.create_bucket(
                Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": REGION}
            )
        s3.put_bucket_versioning(
            Bucket=settings.CROPS_BUCKET, VersioningConfiguration={"Status": "Enabled"}
        )
        aws.client("dynamodb").create_table(
            **observation_table_definition(settings.OBSERVATIONS_TABLE)
        )
        sqs = aws.client("sqs")
        sqs.create_queue(QueueName=f"{settings.ANALYSIS_QUEUE_NAME}-dlq")
        queue_url = sqs.create_queue(QueueName=settings.ANALYSIS_QUEUE_NAME)["QueueUrl"]
        role = aws.client("iam").create_role(
            RoleName="stagepulse-deeplens-lambda", AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST)
        )["Role"]
        settings.DEEPLENS_LAMBDA_ROLE_ARN = role["Arn"]
        # Greengrass v2 for the deployments (closeout gets its own stubbed client below).
        gg2 = aws.client("greengrassv2")
        stubber = Stubber(gg2)
        real = aws.cached_client
        monkeypatch.setattr(aws, "cached_client", lambda n: gg2 if n == "greengrassv2" else real(n))
        stubber.activate()
        release = services.build_edge_release()
        for world in (ours, theirs):
            prefix = world.festival.slug.split("-")[0]
            deeplens = camera(world, f"{prefix}-dl-1", Platform.DEEPLENS)
            standalone = camera(world, f"{prefix}-sa-1", Platform.STANDALONE)
            for device in (world.device, deeplens, standalone):
                services.register_device(device)
                device.refresh_from_db()
            deploy_deeplens(deeplens, release)
            deploy_greengrass_v2(stubber, world.device, release, f"d-{prefix}")
            put_data(world, ["main", "old-stage"], settings, queue_url)
        # A stage renamed long ago: its items and crops are under a slug no stage has now.
        Stage.objects.filter(festival=ours.festival, slug="main").update(slug="main-renamed")
        # A registration killed after its certificate was created (the worker died mid-way).
        half = camera(ours, "ours-half-1", Platform.GREENGRASS_V2)
        iot = aws.cached_client("iot")
        with (
            mock.patch.object(iot, "create_policy", side_effect=SystemExit("worker killed")),
            pytest.raises(SystemExit),
        ):
            services.register_device(half)
        half.refresh_from_db()
        assert half.certificate_arn == ""  # the database never learnt of the certificate
        stubber.assert_no_pending_responses()
        stubber.deactivate()
        yield ours, theirs, queue_url


def test_closeout_leaves_nothing_of_the_festival_and_all_of_the_other(
    account, settings, django_capture_on_commit_callbacks
):
    ours, theirs, queue_url = account
    before = account_inventory(settings, queue_url)
    for kind, names in before.items():  # the topology really has both festivals in every kind
        assert any("ours" in n for n in names), kind
        assert any("theirs" in n for n in names), kind
    gg2 = boto3.client("greengrassv2", region_name=REGION)
    stubber = Stubber(gg2)
    closeout_gg2_calls(stubber)
    stubber.activate()

    def client(name):
        return gg2 if name == "greengrassv2" else aws.client(name)

    with (
        mock.patch("emotions.tasks.sync_festival_dashboard.apply_async") as dashboard_sync,
        django_capture_on_commit_callbacks(execute=True),
    ):
        closeout = Closeout(ours.festival, client=client)
        reports = closeout.run()
    assert not any(r.errors for r in reports), [r.errors for r in reports]
    stubber.assert_no_pending_responses()

    # Cameras are stopped before anything is deleted.
    assert [r.step for r in reports][:3] == [
        "cameras paused",
        "unfinished deployments stopped",
        "analysis queue",
    ]
    assert all(d.paused for d in Device.objects.filter(festival=ours.festival))
    # Nothing of ours is left in the account; every resource of theirs is.
    after = account_inventory(settings, queue_url)
    for kind, names in before.items():
        assert after[kind] == {n for n in names if "ours" not in n}, kind
    assert not any(n.startswith("orphan:") for n in after["certificates"])
    # The inventory says the same: what it removed, and that nothing remains.
    inventory = {line.kind: line for line in closeout.inventory}
    assert all(not line.remains for line in closeout.inventory), [
        line.line() for line in closeout.inventory if line.remains
    ]
    assert inventory["IoT things"].removed == 4  # the half-registered one included
    assert inventory["IoT certificates"].removed == 4
    assert inventory["Lambda functions"].removed == 1
    assert inventory["Greengrass v1 definitions"].removed == 7  # 1 core, 2 x 3 per deployment
    assert inventory["SQS messages naming its crops"].removed == 4
    assert inventory["Greengrass v2 core devices"].removed == 1
    # The dashboard does not come back: closeout queued no sync, and a sync queued before
    # closeout (it runs ~30 s later) does nothing for a closed festival.
    assert ours.festival.pk not in [c.args[0][0] for c in dashboard_sync.call_args_list]
    from emotions.tasks import sync_festival_dashboard

    assert sync_festival_dashboard.run(ours.festival.pk) == ""
    dashboards = aws.client("cloudwatch").list_dashboards()["DashboardEntries"]
    assert [d["DashboardName"] for d in dashboards] == ["StagePulse-theirs-fest"]
    # Deployments that were still polling are over, so a re-registered camera deploys again.
    unfinished = Deployment.objects.filter(device__festival=ours.festival).exclude(
        state__in=[DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.TIMED_OUT]
    )
    assert not unfinished.exists()
    camera = Device.objects.get(pk=ours.device.pk)  # its Greengrass v2 deployment was polling
    services.register_device(camera)
    camera.refresh_from_db()
    release = Deployment.objects.filter(device=camera).first().release
    again = services.start_deployment(camera, release, enqueue=False)
    assert again.state == DeploymentState.CREATE_COMPONENT and not again.finished
    # Theirs still work: their deployment is still polling, untouched.
    assert Deployment.objects.get(resources__deployment_id="d-theirs").state == "poll"
