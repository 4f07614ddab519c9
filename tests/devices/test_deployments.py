"""Deployments as a resumable state machine: Greengrass v2 (botocore Stubber on the real API
shapes; moto has no Greengrass v2) through success, failure, timeout, rollback and a worker killed
mid-way; DeepLens / Greengrass v1 refused everywhere, with the reason."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from botocore.stub import ANY
from django.core.exceptions import ValidationError
from django.utils import timezone

import awsclients as aws
from devices import services, tasks
from devices.models import Deployment, DeploymentState, Device, EdgeRelease, Platform
from devices.services import deployments
from devices.services.deployments import component_recipe
from devices.services.registration import device_config

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


def stub_deployment(stubber, deployment, release, device, deployment_id="d-1", source="0"):
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
                        "reset": ["/stagepulse", "/source"],
                        "merge": json.dumps(
                            {"stagepulse": device_config(device), "source": source},
                            sort_keys=True,
                        ),
                    },
                }
            },
            "deploymentPolicies": ANY,
            "iotJobConfiguration": {"timeoutConfig": {"inProgressTimeoutInMinutes": 30}},
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


NASTY_PASSWORD = "p$(touch pwned)`id`'\"q#@"
NASTY_SOURCE = f"rtsp://cam:{NASTY_PASSWORD}@10.0.0.5:554/stream1"


def test_each_camera_gets_its_own_video_source_in_its_component_configuration(
    registered, release, ggv2
):
    """The Stubber checks the request: the device's source, byte for byte, in the configuration
    merge (which the component reads through IPC), not in any script; the Deployment row the
    crew reads never shows the password."""
    device, _ = registered
    Device.objects.filter(pk=device.pk).update(video_source=NASTY_SOURCE)
    device.refresh_from_db()
    deployment = services.start_deployment(device, release, enqueue=False)
    stub_component(ggv2, release)
    stub_deployment(ggv2, deployment, release, device, source=NASTY_SOURCE)
    stub_status(ggv2, device, "SUCCEEDED")
    assert services.run_deployment(deployment.pk) is None
    ggv2.assert_no_pending_responses()
    deployment.refresh_from_db()
    assert deployment.state == S.SUCCEEDED
    shown = json.dumps([deployment.history, deployment.resources, deployment.reason])
    assert "touch pwned" not in shown and "10.0.0.5" not in shown
    assert NASTY_SOURCE not in component_recipe(release)  # one recipe for every camera


def test_the_api_takes_a_video_source_but_only_ever_shows_it_redacted(
    registered, api_client, two_worlds
):
    device, _ = registered
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    url = f"/api/v1/devices/{device.pk}/"
    response = api_client.patch(url, {"video_source": NASTY_SOURCE}, format="json")
    assert response.status_code == 200, response.json()
    device.refresh_from_db()
    assert device.video_source == NASTY_SOURCE
    for body in (response.json(), api_client.get(url).json()):
        assert "video_source" not in body
        assert body["video_source_redacted"] == "rtsp://cam:***@10.0.0.5:554/stream1"


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


# --- DeepLens / Greengrass v1: refused -----------------------------------------------------------
@pytest.fixture
def deeplens(registered):
    device, _ = registered
    device.platform = Platform.DEEPLENS
    device.save()
    return device


def _aws_calls(monkeypatch) -> list:
    calls = []
    monkeypatch.setattr(aws, "cached_client", lambda name: calls.append(name))
    return calls


def test_a_deeplens_deployment_is_refused_with_the_reason_and_the_way_that_works(
    deeplens, release, monkeypatch
):
    calls = _aws_calls(monkeypatch)
    with pytest.raises(ValidationError) as refused:
        services.start_deployment(deeplens, release, enqueue=False)
    message = " ".join(refused.value.messages)
    assert "discontinued Greengrass V1 on 2026-10-07" in message
    assert "--source deeplens" in message and "systemd" in message
    assert not Deployment.objects.exists() and calls == []


def test_a_deeplens_deployment_queued_before_the_refusal_ends_without_calling_aws(
    deeplens, release, monkeypatch
):
    Device.objects.filter(pk=deeplens.pk).update(current_release=old_release())
    queued = Deployment.objects.create(
        organization_id=deeplens.organization_id,
        device=deeplens,
        release=release,
        platform=Platform.DEEPLENS,
        state=S.LAMBDA_FUNCTION,
        deadline_at=timezone.now() + timedelta(minutes=30),
    )
    calls = _aws_calls(monkeypatch)
    assert services.run_deployment(queued.pk) is None
    queued.refresh_from_db()
    assert queued.state == S.FAILED and "discontinued Greengrass V1" in queued.reason
    assert calls == []
    # the rollback to the last good release is refused the same way, and says so
    assert "no rollback to 0.0.9: DeepLens deployments are refused" in queued.history[-1]["note"]
    assert Deployment.objects.count() == 1


def test_the_api_and_the_admin_refuse_a_deeplens_deployment_alike(
    deeplens, release, api_client, client, two_worlds
):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    response = api_client.post("/api/v1/deployments/", {"device": deeplens.pk})
    assert response.status_code == 400
    assert "discontinued Greengrass V1" in json.dumps(response.json())
    client.force_login(ours.operator)
    page = client.post(
        "/admin/devices/device/",
        {"action": "deploy_latest", "_selected_action": [deeplens.pk]},
        follow=True,
    )
    assert "discontinued Greengrass V1" in page.content.decode()
    assert not Deployment.objects.exists()


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
