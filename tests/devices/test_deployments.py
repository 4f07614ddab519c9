"""Deployments as a resumable state machine: Greengrass v2 (botocore Stubber on the real API
shapes; moto has no Greengrass v2) and DeepLens / Greengrass v1 (moto: IoT, IAM, S3, Lambda,
Greengrass), through success, failure, timeout, rollback and a worker killed mid-way."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import ANY
from django.core.exceptions import ValidationError
from django.utils import timezone
from moto.greengrass.models import greengrass_backends

from devices import services, tasks
from devices.models import Deployment, DeploymentState, Device, EdgeRelease, Platform
from devices.services import deployments
from devices.services.deployments import component_recipe
from devices.services.registration import device_config
from edge_package.config import parse_config
from festival import aws

pytestmark = pytest.mark.django_db
S = DeploymentState
ACCOUNT = "123456789012"
NOW = datetime(2026, 7, 10, 12, 0, tzinfo=UTC)


def old_release() -> EdgeRelease:
    return EdgeRelease.objects.create(
        version="0.0.9", sha256="0" * 64, bucket="b", key="k", size_bytes=1, manifest={}
    )


# --- Greengrass v2 stubs (real request and response shapes) ------------------------------------
def stub_component(stubber, release, *, state="DEPLOYABLE"):
    stubber.add_response(
        "create_component_version",
        {
            "arn": f"arn:aws:greengrass:eu-west-1:{ACCOUNT}:components:com.stagepulse.Edge:"
            f"versions:{release.version}",
            "componentName": "com.stagepulse.Edge",
            "componentVersion": release.version,
            "creationTimestamp": NOW,
            "status": {"componentState": state, "message": "NONE", "errors": {}},
        },
        {"inlineRecipe": component_recipe(release).encode(), "clientToken": ANY},
    )


def stub_deployment(stubber, deployment, release, device, deployment_id="d-1"):
    stubber.add_response(
        "create_deployment",
        {"deploymentId": deployment_id, "iotJobId": "job-1", "iotJobArn": "arn:job-1"},
        {
            "targetArn": f"arn:aws:iot:eu-west-1:{ACCOUNT}:thing/{device.thing_name}",
            "deploymentName": f"stagepulse {device.thing_name} {release.version}",
            "components": {
                "com.stagepulse.Edge": {
                    "componentVersion": release.version,
                    "configurationUpdate": {
                        "reset": ["/stagepulse"],
                        "merge": json.dumps({"stagepulse": device_config(device)}, sort_keys=True),
                    },
                }
            },
            "deploymentPolicies": ANY,
            "tags": {
                "stagepulse:festival": device.festival.slug,
                "stagepulse:thing": device.thing_name,
            },
            "clientToken": f"stagepulse-deployment-{deployment.pk}",
        },
    )


def stub_status(stubber, device, status, deployment_id="d-1", reason=""):
    item = {
        "deploymentId": deployment_id,
        "deploymentName": "stagepulse",
        "targetArn": f"arn:aws:iot:eu-west-1:{ACCOUNT}:thing/{device.thing_name}",
        "coreDeviceExecutionStatus": status,
        "creationTimestamp": NOW,
        "modifiedTimestamp": NOW,
    }
    if reason:
        item["reason"] = reason
        item["statusDetails"] = {"errorStack": ["DEPLOYMENT_FAILURE"], "errorTypes": ["X"]}
    stubber.add_response(
        "list_effective_deployments",
        {"effectiveDeployments": [item]},
        {"coreDeviceThingName": device.thing_name},
    )


def test_greengrass_v2_deploys_and_follows_the_device(registered, release, ggv2, settings):
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)
    assert deployment.state == S.CREATE_COMPONENT
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "IN_PROGRESS")
    assert services.run_deployment(deployment.pk) == settings.DEPLOYMENT_POLL_SECONDS
    deployment.refresh_from_db()
    assert deployment.state == S.POLL and deployment.resources["deployment_id"] == "d-1"
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    device.refresh_from_db()
    assert deployment.state == S.SUCCEEDED and deployment.finished_at
    assert device.current_release == release
    assert [e["state"] for e in deployment.history] == [
        "queued",
        "create_component",
        "create_deployment",
        "poll",
        "succeeded",
    ]


def _role_statements(device: Device) -> set[str]:
    document = aws.client("iam").get_role_policy(RoleName=device.role_name, PolicyName="own-prefix")
    return {statement.get("Sid", "") for statement in document["PolicyDocument"]["Statement"]}


def _registered_before_the_fix(device: Device) -> None:
    """A device registered by an older release: its role could not read releases or its shadow."""
    old = {
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "OwnCropPrefixOnly", "Effect": "Allow", "Action": ["s3:PutObject"],
             "Resource": f"arn:aws:s3:::{device.festival.bucket}/{device.crop_prefix}*"}
        ],
    }  # fmt: skip
    aws.client("iam").put_role_policy(
        RoleName=device.role_name, PolicyName="own-prefix", PolicyDocument=json.dumps(old)
    )


NEW_STATEMENTS = {
    "EdgeReleaseArtifactsReadOnly",
    "ArtifactsBucketLocation",
    "OwnThingShadowReadOnly",
}


def test_greengrass_v2_deployment_gives_an_older_device_role_the_release_and_shadow_reads(
    registered, release, ggv2
):
    device, _ = registered
    _registered_before_the_fix(device)
    assert not NEW_STATEMENTS & _role_statements(device)
    deployment = services.start_deployment(device, release, enqueue=False)
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    assert _role_statements(device) >= NEW_STATEMENTS


def test_existing_component_version_is_reused(registered, release, ggv2):
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)
    ggv2.add_client_error("create_component_version", "ConflictException", "exists", 409)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    assert Deployment.objects.get().state == S.SUCCEEDED


def test_refused_component_fails_with_the_reason(registered, release, ggv2):
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)
    stub_component(ggv2, release, state="FAILED")
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED
    assert deployment.reason.startswith("create_component: component com.stagepulse.Edge")


def test_device_failure_rolls_back_to_the_last_good_release(registered, release, ggv2):
    device, _ = registered
    good = old_release()
    Device.objects.filter(pk=device.pk).update(current_release=good)
    device.refresh_from_db()
    deployment = services.start_deployment(device, release, enqueue=False)
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "FAILED", reason="component com.stagepulse.Edge broke")
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED
    assert "device reports FAILED: component com.stagepulse.Edge broke" in deployment.reason
    rollback = Deployment.objects.get(rollback_of=deployment)
    assert rollback.release == good and rollback.state == S.CREATE_COMPONENT
    # The rollback runs like any deployment and restores the last good release.
    stub_component(ggv2, good)
    stub_deployment(ggv2, rollback, good, device, deployment_id="d-2")
    stub_status(ggv2, device, "SUCCEEDED", deployment_id="d-2")
    services.run_deployment(rollback.pk)
    rollback.refresh_from_db()
    device.refresh_from_db()
    assert rollback.state == S.SUCCEEDED and device.current_release == good


def test_a_failed_rollback_does_not_roll_back_again(registered, release, ggv2):
    device, _ = registered
    good = old_release()
    Device.objects.filter(pk=device.pk).update(current_release=good)
    first = services.start_deployment(device, release, enqueue=False)
    ggv2.add_client_error("create_component_version", "ValidationException", "bad recipe", 400)
    services.run_deployment(first.pk)
    rollback = Deployment.objects.get(rollback_of=first)
    ggv2.add_client_error("create_component_version", "ValidationException", "bad recipe", 400)
    services.run_deployment(rollback.pk)
    rollback.refresh_from_db()
    assert rollback.state == S.FAILED
    assert "ValidationException: bad recipe" in rollback.reason
    assert Deployment.objects.count() == 2


def test_timeout_cancels_and_says_why(registered, release, ggv2):
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "IN_PROGRESS")
    services.run_deployment(deployment.pk)
    Deployment.objects.filter(pk=deployment.pk).update(
        deadline_at=timezone.now() - timedelta(seconds=1)
    )
    stub_status(ggv2, device, "IN_PROGRESS")
    ggv2.add_response("cancel_deployment", {"message": "cancelled"}, {"deploymentId": "d-1"})
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    assert deployment.state == S.TIMED_OUT
    assert "did not finish within 30 min (last status: device: IN_PROGRESS)" in deployment.reason
    assert "cancelled" in deployment.reason


def test_killed_after_create_deployment_resends_the_same_client_token(
    registered, release, ggv2, monkeypatch
):
    """AWS deduplicates by clientToken, so the rerun gets the same deployment back."""
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)
    real_advance = deployments._advance

    def killed(d, outcome):
        if d.state == S.CREATE_DEPLOYMENT:
            raise SystemExit("worker killed")
        real_advance(d, outcome)

    monkeypatch.setattr(deployments, "_advance", killed)
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device)
    with pytest.raises(SystemExit):
        services.run_deployment(deployment.pk)
    monkeypatch.setattr(deployments, "_advance", real_advance)
    deployment.refresh_from_db()
    assert deployment.state == S.CREATE_DEPLOYMENT
    # The redelivered task waits while the dead worker's lease lasts ...
    assert services.run_deployment(deployment.pk) > 0
    # ... then resumes where it stopped (stub_deployment checks the same clientToken).
    Deployment.objects.filter(pk=deployment.pk).update(lease_until=timezone.now())
    stub_deployment(ggv2, deployment, release, device)
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    assert Deployment.objects.get(pk=deployment.pk).state == S.SUCCEEDED


def test_demo_endpoint_without_greengrass_v2_says_so(registered, release, ggv2, monkeypatch):
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:5000")
    ggv2.add_client_error("create_component_version", "404", "Not Found", 404)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED
    assert "CreateComponentVersion is not available at http://127.0.0.1:5000" in deployment.reason


# --- DeepLens / Greengrass v1 on moto ----------------------------------------------------------
@pytest.fixture
def deeplens(registered):
    device, _ = registered
    device.platform = Platform.DEEPLENS
    device.save()
    return device


def _device_reports(deployment: Deployment, status: str) -> None:
    """What the DeepLens core would do: report the group deployment's outcome (moto keeps every
    deployment InProgress, so the test plays the device)."""
    backend = greengrass_backends[ACCOUNT]["eu-west-1"]
    backend.deployments[deployment.resources["deployment_id"]].deployment_status = status


def test_deeplens_builds_the_whole_group_and_deploys(deeplens, release, settings):
    deployment = services.start_deployment(deeplens, release, enqueue=False)
    assert services.run_deployment(deployment.pk) == settings.DEPLOYMENT_POLL_SECONDS
    deployment.refresh_from_db()
    r = deployment.resources
    assert deployment.state == S.POLL
    # Lambda from the artifact, published version, alias.
    lam = aws.client("lambda")
    function = lam.get_function(FunctionName="stagepulse-edge-ours-cam-1")["Configuration"]
    assert function["Handler"] == "edge_package.deeplens.function_handler"
    env = json.loads(function["Environment"]["Variables"]["STAGEPULSE_CONFIG"])
    assert env["device"] == "ours-cam-1" and env["stage"] == "main"
    alias = lam.get_alias(FunctionName="stagepulse-edge-ours-cam-1", Name="live")
    assert alias["FunctionVersion"] == r["function_version"] == "1"
    # Function definition: pinned, long-lived, camera and GPU access.
    gg = aws.client("greengrass")
    fdef_id = r["function_definition_version_arn"].split("/")[-3]
    fdef = gg.get_function_definition_version(
        FunctionDefinitionId=fdef_id,
        FunctionDefinitionVersionId=r["function_definition_version_arn"].split("/")[-1],
    )["Definition"]["Functions"][0]
    assert fdef["FunctionArn"] == r["alias_arn"]
    config = fdef["FunctionConfiguration"]
    assert config["Pinned"] is True
    access = {p["ResourceId"] for p in config["Environment"]["ResourceAccessPolicies"]}
    assert {"camera", "gpu"} <= access
    # The core gives the Lambda only the definition's variables (not the cloud Lambda's).
    on_device = json.loads(config["Environment"]["Variables"]["STAGEPULSE_CONFIG"])
    assert on_device == device_config(deeplens)
    assert on_device["device"] == "ours-cam-1" and on_device["bucket"] == deeplens.festival.bucket
    assert parse_config(on_device).device == "ours-cam-1"  # what the camera's loop starts with
    # Subscriptions: telemetry to the cloud, shadow deltas to the lambda.
    sdef_arn = r["subscription_definition_version_arn"]
    subs = gg.get_subscription_definition_version(
        SubscriptionDefinitionId=sdef_arn.split("/")[-3],
        SubscriptionDefinitionVersionId=sdef_arn.split("/")[-1],
    )["Definition"]["Subscriptions"]
    assert {
        "Id": "telemetry-to-cloud",
        "Source": r["alias_arn"],
        "Subject": "stagepulse/telemetry/ours-cam-1",
        "Target": "cloud",
    } in subs
    # Group version ties it together; the group's role is the device's own-prefix role.
    version = gg.get_group_version(GroupId=r["group_id"], GroupVersionId=r["group_version_id"])
    assert version["Definition"]["FunctionDefinitionVersionArn"] == fdef_arn_of(r)
    role = gg.get_associated_role(GroupId=r["group_id"])["RoleArn"]
    assert role.endswith(f"role/{deeplens.role_name}")
    # The device reports success.
    _device_reports(deployment, "Success")
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED


def test_deeplens_deployment_gives_an_older_group_role_the_shadow_read(deeplens, release):
    _registered_before_the_fix(deeplens)
    deployment = services.start_deployment(deeplens, release, enqueue=False)
    services.run_deployment(deployment.pk)
    assert "OwnThingShadowReadOnly" in _role_statements(deeplens)


def fdef_arn_of(resources: dict) -> str:
    return resources["function_definition_version_arn"]


def test_deeplens_failure_rolls_back(deeplens, release):
    good = old_release()
    Device.objects.filter(pk=deeplens.pk).update(current_release=good)
    deeplens.refresh_from_db()
    deployment = services.start_deployment(deeplens, release, enqueue=False)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    _device_reports(deployment, "Failure")
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED
    assert deployment.reason.startswith("poll: group deployment Failure")
    assert Deployment.objects.get(rollback_of=deployment).release == good


def test_deeplens_worker_killed_mid_way_resumes_without_repeating(deeplens, release, monkeypatch):
    deployment = services.start_deployment(deeplens, release, enqueue=False)
    real_advance = deployments._advance

    def killed(d, outcome):
        if d.state == S.LAMBDA_FUNCTION:  # the function exists, the row does not know yet
            raise SystemExit("worker killed")
        real_advance(d, outcome)

    monkeypatch.setattr(deployments, "_advance", killed)
    with pytest.raises(SystemExit):
        services.run_deployment(deployment.pk)
    monkeypatch.setattr(deployments, "_advance", real_advance)
    deployment.refresh_from_db()
    assert deployment.state == S.LAMBDA_FUNCTION
    Deployment.objects.filter(pk=deployment.pk).update(lease_until=timezone.now())  # lease over
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.POLL
    assert len(aws.client("lambda").list_functions()["Functions"]) == 1
    assert len(aws.client("greengrass").list_groups()["Groups"]) == 1
    notes = [e["note"] for e in deployment.history if e["state"] == "lambda_function"]
    assert notes == ["stagepulse-edge-ours-cam-1 updated"]


def test_second_deployment_reuses_the_devices_group(deeplens, release):
    first = services.start_deployment(deeplens, release, enqueue=False)
    services.run_deployment(first.pk)
    first.refresh_from_db()
    _device_reports(first, "Success")
    services.run_deployment(first.pk)
    second = services.start_deployment(deeplens, release, enqueue=False)
    services.run_deployment(second.pk)
    second.refresh_from_db()
    assert second.state == S.POLL, second.reason
    assert second.resources["group_id"] == first.resources["group_id"]
    assert len(aws.client("greengrass").list_groups()["Groups"]) == 1


def test_missing_lambda_role_is_a_clear_failure(deeplens, release, settings):
    settings.DEEPLENS_LAMBDA_ROLE_ARN = "no-such-role"
    deployment = services.start_deployment(deeplens, release, enqueue=False)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED
    assert "the IAM role 'no-such-role' that the DeepLens Lambda runs as does not exist" in (
        deployment.reason
    )


def test_lambda_role_by_default_name(deeplens, release, settings):
    settings.DEEPLENS_LAMBDA_ROLE_ARN = ""  # the conftest created stagepulse-deeplens-lambda
    deployment = services.start_deployment(deeplens, release, enqueue=False)
    services.run_deployment(deployment.pk)
    deployment.refresh_from_db()
    assert deployment.state == S.POLL, deployment.reason


# --- starting, tasks, API, admin ---------------------------------------------------------------
def test_start_refuses_what_cannot_be_deployed(moto_aws, two_worlds, release):
    device = two_worlds[0].device
    with pytest.raises(ValidationError, match="Register ours-cam-1 in AWS IoT"):
        services.start_deployment(device, release, enqueue=False)
    device.platform = Platform.STANDALONE
    with pytest.raises(ValidationError, match="standalone device"):
        services.start_deployment(device, release, enqueue=False)


def test_one_deployment_at_a_time_per_device(registered, release):
    device, _ = registered
    first = services.start_deployment(device, release, enqueue=False)
    with pytest.raises(ValidationError, match=f"already has deployment #{first.pk}"):
        services.start_deployment(device, release, enqueue=False)


def test_task_comes_back_while_the_device_works(monkeypatch):
    calls = []
    monkeypatch.setattr(services, "run_deployment", lambda pk: 15.0)
    monkeypatch.setattr(
        tasks.deploy_device, "apply_async", lambda args, countdown: calls.append((args, countdown))
    )
    tasks.deploy_device.run(7)
    assert calls == [((7,), 15.0)]
    monkeypatch.setattr(services, "run_deployment", lambda pk: None)
    tasks.deploy_device.run(7)
    assert len(calls) == 1


def test_eager_task_does_not_recurse(monkeypatch):
    runs = []
    monkeypatch.setattr(services, "run_deployment", lambda pk: runs.append(pk) or 15.0)
    tasks.deploy_device.apply((7,))  # eager: the countdown would not wait
    assert runs == [7]


def test_api_starts_and_follows_a_deployment(registered, release, api_client, two_worlds):
    device, _ = registered
    ours, theirs = two_worlds
    api_client.force_authenticate(ours.viewer)
    assert api_client.post("/api/v1/deployments/", {"device": device.pk}).status_code == 403
    api_client.force_authenticate(ours.operator)
    response = api_client.post("/api/v1/deployments/", {"device": device.pk})
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["release_version"] == release.version and body["state"] == "create_component"
    followed = api_client.get(f"/api/v1/deployments/{body['id']}/").json()
    assert followed["history"][0]["state"] == "queued"
    # Another organization's device does not exist for us.
    other = api_client.post("/api/v1/deployments/", {"device": theirs.device.pk})
    assert other.status_code == 400 and "device" in other.json()["error"]["fields"]


def test_other_organizations_deployments_are_404(registered, release, api_client, two_worlds):
    ours, theirs = two_worlds
    mine = services.start_deployment(registered[0], release, enqueue=False)
    api_client.force_authenticate(theirs.owner)
    assert api_client.get(f"/api/v1/deployments/{mine.pk}/").status_code == 404
    assert api_client.get("/api/v1/deployments/").json()["count"] == 0


def test_admin_deploys_many_devices_and_shows_progress(registered, release, client, two_worlds):
    ours, theirs = two_worlds
    unregistered = Device.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        name="spare",
        thing_name="ours-cam-2",
    )
    client.force_login(ours.operator)
    response = client.post(
        "/admin/devices/device/",
        {
            "action": "deploy_latest",
            "_selected_action": [registered[0].pk, unregistered.pk, theirs.device.pk],
        },
        follow=True,
    )
    text = response.content.decode()
    assert "deployment #" in text and "Register ours-cam-2 in AWS IoT" in text
    deployment = Deployment.objects.get()
    assert deployment.device == registered[0]
    page = client.get(f"/admin/devices/deployment/{deployment.pk}/change/")
    assert page.status_code == 200 and "create_component" in page.content.decode()
    client.force_login(theirs.owner)
    assert client.get(f"/admin/devices/deployment/{deployment.pk}/change/").status_code == 404


def test_an_unexpected_error_ends_the_deployment_visibly(registered, release, monkeypatch):
    device, _ = registered
    deployment = services.start_deployment(device, release, enqueue=False)

    def broken(d):
        raise KeyError("componentVersion")

    monkeypatch.setitem(deployments.STEP_FUNCTIONS, S.CREATE_COMPONENT, broken)
    assert services.run_deployment(deployment.pk) is None
    deployment.refresh_from_db()
    assert deployment.state == S.FAILED and deployment.lease_until is None
    assert "create_component: unexpected KeyError" in deployment.reason


def test_stalled_deployments_are_requeued_once_nobody_works_on_them(
    registered, release, monkeypatch
):
    device, _ = registered
    queued = []
    monkeypatch.setattr(deployments, "_enqueue", lambda pk, countdown=None: queued.append(pk))
    deployment = services.start_deployment(device, release, enqueue=False)
    assert services.resume_stalled_deployments() == []  # fresh: its task is still on the way
    later = timezone.now() + timedelta(minutes=10)
    assert services.resume_stalled_deployments(now=later) == [deployment.pk]
    Deployment.objects.filter(pk=deployment.pk).update(lease_until=later + timedelta(minutes=1))
    assert services.resume_stalled_deployments(now=later) == []  # a worker holds it
    Deployment.objects.filter(pk=deployment.pk).update(state=S.FAILED, lease_until=None)
    assert services.resume_stalled_deployments(now=later) == []
    assert queued == [deployment.pk]
