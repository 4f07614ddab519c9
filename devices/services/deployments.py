"""Deploying an edge release to one device, as a resumable state machine on a Deployment row.

`run_deployment` runs steps until the deployment must wait (polling the device) or finishes.
Each step records what it created in `deployment.resources` and moves `state` on in the same
save, and every AWS call is made idempotent (client tokens, "already exists" adopted), so a worker
killed at any point resumes at the step it was on. A short lease keeps two workers apart.

Greengrass v2: component version from the recipe (one per release; the contract defaults), then a
deployment to the device's thing whose configuration merge carries the device's own settings and
its video source. DeepLens (Greengrass v1) deployments are refused (DEEPLENS_REFUSED): AWS
discontinued Greengrass V1, so every one of their steps now fails on AWS.
On failure or timeout the device is redeployed with its last good release.

Deployment locks: the step that reaches the camera (CREATE_DEPLOYMENT) waits while a set plays
on its stage or starts within DEPLOYMENT_SET_MARGIN_MINUTES, unless the deployment is forced; a
rollback never waits (it restores a camera that is already broken). `hold_reason` says why.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from datetime import timedelta

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

import awsclients as aws

# devices.tasks imports this package and this module enqueues its deploy task: both import the
# other's module (not names from it) at module level, which Python resolves in either order.
from devices import selectors, tasks
from devices.models import (
    TERMINAL_STATES,
    Deployment,
    DeploymentState,
    Device,
    EdgeRelease,
    Platform,
)
from devices.services.registration import (
    TELEMETRY_TOPIC,
    device_config,
    update_device_role_policy,
)
from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from edge_package.greengrass import COMPONENT_NAME, render_recipe
from festival.localtime import local_time_label

log = logging.getLogger(__name__)
S = DeploymentState

GREENGRASS_V2_STEPS = [S.CREATE_COMPONENT, S.CREATE_DEPLOYMENT, S.POLL]
DEEPLENS_STEPS = [
    S.ENSURE_GROUP,
    S.LAMBDA_FUNCTION,
    S.LAMBDA_VERSION,
    S.LAMBDA_ALIAS,
    S.RESOURCE_DEFINITION,
    S.FUNCTION_DEFINITION,
    S.SUBSCRIPTION_DEFINITION,
    S.GROUP_VERSION,
    S.GROUP_DEPLOYMENT,
    S.POLL,
]
DEVICE_STEPS = frozenset({S.CREATE_DEPLOYMENT})  # the steps that reach the camera (locks)
STEPS = {Platform.GREENGRASS_V2: GREENGRASS_V2_STEPS, Platform.DEEPLENS: DEEPLENS_STEPS}
LEASE = timedelta(seconds=120)
LAMBDA_ALIAS = "live"
CONFLICT_CODES = ("ResourceConflictException", "ConflictException")
# DeepLens device resources the pinned lambda needs: the camera and the GPU.
DEEPLENS_RESOURCES = [
    ("camera", "/dev/video0"),
    ("gpu", "/dev/dri/renderD128"),
]
DEEPLENS_VOLUMES = [("awscam-out", "/opt/awscam/out")]


# One message wherever a DeepLens deployment is asked for (admin, API, a row already in flight),
# and the same against the demo's moto server: moto still answers Greengrass v1 calls, but a demo
# that walks a path AWS no longer serves would only show something that cannot work. The demo
# seeds no DeepLens camera, so it loses nothing.
DEEPLENS_REFUSED = (
    "DeepLens deployments are refused: AWS discontinued Greengrass V1 on 2026-10-07 (and ended "
    "DeepLens on 2024-01-31), so every step of one (Greengrass v1 group and group deployment, "
    "the Lambda that carries the code) now fails on AWS. Run the release on the unit as a "
    "service instead: the standalone runtime with the awscam source (--source deeplens) under "
    "systemd, sending telemetry over HTTPS with the device token; see docs/edge.md, "
    "'DeepLens today'."
)


class StepFailed(Exception):
    """A step cannot succeed; the message is the deployment's reason."""


@dataclass
class Outcome:
    resources: dict = field(default_factory=dict)
    note: str = ""
    wait_s: float | None = None  # stay in this state and come back later
    done: bool = False  # the deployment succeeded


def timeout() -> timedelta:
    return timedelta(minutes=settings.DEPLOYMENT_TIMEOUT_MINUTES)


# --- starting ------------------------------------------------------------------------------------
def start_deployment(
    device: Device,
    release: EdgeRelease,
    *,
    user=None,
    rollback_of: Deployment | None = None,
    enqueue: bool = True,
    force: bool = False,
    rollout=None,
    wave: str = "",
) -> Deployment:
    """Record a deployment of `release` to `device` and (by default) queue its task. `force`
    deploys even while a set plays on the device's stage (deployment locks)."""
    if device.platform == Platform.DEEPLENS:
        raise ValidationError(DEEPLENS_REFUSED)
    if device.platform not in STEPS:
        raise ValidationError(
            f"{device.thing_name} is a standalone device: install the release on the box "
            "(unzip it, pip install -r its requirements.txt; docs/edge.md, 'Getting the code "
            "onto a box'); there is nothing to deploy through AWS."
        )
    if not device.certificate_arn:
        raise ValidationError(f"Register {device.thing_name} in AWS IoT before deploying to it.")
    with transaction.atomic():
        running = (
            Deployment.objects.select_for_update()
            .filter(device=device)
            .exclude(state__in=TERMINAL_STATES)
            .first()
        )
        if running is not None:
            raise ValidationError(
                f"{device.thing_name} already has deployment #{running.pk} "
                f"({running.release.version}) at step '{running.state}'; wait for it to finish."
            )
        now = timezone.now()
        deployment = Deployment.objects.create(
            organization_id=device.organization_id,
            device=device,
            release=release,
            platform=device.platform,
            state=STEPS[device.platform][0],
            rollback_of=rollback_of,
            deadline_at=now + timeout(),
            created_by=user,
            force=force,
            rollout=rollout,
            wave=wave,
            history=[
                _event(now, "queued", f"release {release.version}" + (" (forced)" if force else ""))
            ],
        )
        hold = _set_hold(deployment, now)
        if hold is not None:
            deployment.held_until, deployment.hold_reason = hold
            deployment.save(update_fields=["held_until", "hold_reason"])
        if enqueue:
            transaction.on_commit(lambda: _enqueue(deployment.pk))
    return deployment


def _enqueue(deployment_id: int, countdown: float | None = None) -> None:
    tasks.deploy_device.apply_async((deployment_id,), countdown=countdown)


def _event(when, state: str, note: str = "") -> dict:
    return {"at": when.isoformat(timespec="seconds"), "state": state, "note": note}


# --- deployment locks ----------------------------------------------------------------------------
def _set_hold(deployment: Deployment, now) -> tuple | None:
    """(held until, why) while a set holds the device's stage, or None (forced, a rollback, no
    stage, no set near)."""

    if deployment.force or deployment.rollback_of_id is not None:
        return None
    device = deployment.device
    margin = timedelta(minutes=settings.DEPLOYMENT_SET_MARGIN_MINUTES)
    holding, free_at = selectors.set_lock(device.stage if device.stage_id else None, now, margin)
    if holding is None:
        return None
    tz = device.festival.tz
    playing = "plays" if holding.starts_at <= now else "starts"
    when = local_time_label(holding.starts_at if playing == "starts" else holding.ends_at, tz)
    what = f"at {when}" if playing == "starts" else f"until {when}"
    reason = (
        f"waits for the gap between sets: {holding.artist} {playing} on {device.stage.name} "
        f"{what}; deploys at {local_time_label(free_at, tz)} (force it to deploy now)"
    )
    return free_at, reason[:300]


def _hold_or_go(deployment: Deployment) -> float | None:
    """Before the step that reaches the camera: seconds to wait while a set holds its stage
    (recorded on the row), or None to go on. Leaving a hold restarts the device timeout, so
    waiting for a gap never counts against it."""
    now = timezone.now()
    hold = _set_hold(deployment, now)
    if hold is None:
        if deployment.held_until is not None or deployment.hold_reason:
            deployment.held_until, deployment.hold_reason = None, ""
            deployment.deadline_at = now + timeout()
            deployment.history.append(_event(now, deployment.state, "gap between sets: deploying"))
            deployment.save(
                update_fields=["held_until", "hold_reason", "deadline_at", "history", "updated_at"]
            )
        return None
    deployment.held_until, deployment.hold_reason = hold
    deployment.deadline_at = deployment.held_until + timeout()
    if not deployment.history or deployment.history[-1]["note"] != deployment.hold_reason:
        deployment.history.append(_event(now, deployment.state, deployment.hold_reason))
    deployment.lease_until = None
    deployment.save(
        update_fields=[
            "held_until",
            "hold_reason",
            "deadline_at",
            "history",
            "lease_until",
            "updated_at",
        ]
    )
    # Come back soon: a set moved or cancelled, or a force, must not wait for the old gap.
    wait = (deployment.held_until - now).total_seconds()
    return max(1.0, min(wait, settings.DEPLOYMENT_HOLD_RECHECK_SECONDS))


# --- running -------------------------------------------------------------------------------------
def run_deployment(deployment_id: int, *, max_steps: int = 50) -> float | None:
    """Advance as far as possible. Returns seconds to wait before calling again, or None when the
    deployment is finished (or gone)."""
    now = timezone.now()
    claimed = (
        Deployment.objects.filter(pk=deployment_id)
        .exclude(state__in=TERMINAL_STATES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_until=now + LEASE)
    )
    if not claimed:
        current = Deployment.objects.filter(pk=deployment_id).first()
        if current is None or current.finished:
            return None
        return max(1.0, (current.lease_until - now).total_seconds())  # another worker holds it
    for _ in range(max_steps):
        deployment = Deployment.objects.select_related(
            "device__festival", "device__stage", "device__organization", "release"
        ).get(pk=deployment_id)
        if deployment.finished:  # stopped meanwhile (closeout): nothing more to run or roll back
            return None
        state = deployment.state
        if deployment.platform == Platform.DEEPLENS:  # queued before deployments were refused
            _finish(deployment, S.FAILED, DEEPLENS_REFUSED)
            return None
        if state in DEVICE_STEPS:
            wait = _hold_or_go(deployment)
            if wait is not None:
                return wait
        try:
            outcome = STEP_FUNCTIONS[state](deployment)
        except StepFailed as exc:
            _finish(deployment, S.FAILED, f"{state}: {exc}")
            return None
        except ClientError as exc:
            _finish(deployment, S.FAILED, f"{state}: {_describe(exc)}")
            return None
        except BotoCoreError as exc:
            if state == S.POLL and timezone.now() < deployment.deadline_at:
                _release(deployment, note=f"poll error, retrying: {exc}")
                return float(settings.DEPLOYMENT_POLL_SECONDS)
            _finish(deployment, S.FAILED, f"{state}: {exc}")
            return None
        except Exception as exc:  # a bug must end the deployment visibly, not leave it stuck
            log.exception("deployment %s failed at %s", deployment_id, state)
            _finish(deployment, S.FAILED, f"{state}: unexpected {type(exc).__name__}: {exc}")
            return None
        if outcome.done:
            deployment.resources.update(outcome.resources)
            _finish(deployment, S.SUCCEEDED, outcome.note)
            return None
        if outcome.wait_s is not None:
            deployment.resources.update(outcome.resources)
            deployment.polls += 1
            if timezone.now() >= deployment.deadline_at:
                _timed_out(deployment, outcome.note)
                return None
            _release(deployment, note=outcome.note, quiet=True)
            return outcome.wait_s
        _advance(deployment, outcome)
    _release(deployment)
    return 0.0


def resume_stalled_deployments(now=None) -> list[int]:
    """Re-queue unfinished deployments nobody is working on (a task lost with its worker or
    broker). Harmless when the task still exists: the lease lets only one of them run."""
    now = now or timezone.now()
    quiet_since = now - timedelta(seconds=2 * settings.DEPLOYMENT_POLL_SECONDS) - LEASE
    stalled = list(
        Deployment.objects.exclude(state__in=TERMINAL_STATES)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .filter(updated_at__lt=quiet_since)
        .values_list("pk", flat=True)
    )
    for pk in stalled:
        _enqueue(pk)
    return stalled


def _advance(deployment: Deployment, outcome: Outcome) -> None:
    steps = STEPS[deployment.platform]
    nxt = steps[steps.index(deployment.state) + 1]
    deployment.resources.update(outcome.resources)
    deployment.history.append(_event(timezone.now(), deployment.state, outcome.note or "done"))
    deployment.state = nxt
    deployment.save(update_fields=["resources", "history", "state", "updated_at"])


def _release(deployment: Deployment, note: str = "", quiet: bool = False) -> None:
    if note and not (quiet and deployment.history and deployment.history[-1]["note"] == note):
        deployment.history.append(_event(timezone.now(), deployment.state, note))
    deployment.lease_until = None
    deployment.save(update_fields=["resources", "history", "polls", "lease_until", "updated_at"])


def _timed_out(deployment: Deployment, last: str) -> None:
    minutes = settings.DEPLOYMENT_TIMEOUT_MINUTES
    reason = f"the device did not finish within {minutes} min (last status: {last or 'unknown'})"
    if deployment.platform == Platform.GREENGRASS_V2 and deployment.resources.get("deployment_id"):
        try:
            aws.cached_client("greengrassv2").cancel_deployment(
                deploymentId=deployment.resources["deployment_id"]
            )
            reason += "; the Greengrass deployment was cancelled"
        except (ClientError, BotoCoreError) as exc:
            reason += f"; cancelling it failed: {exc}"
    _finish(deployment, S.TIMED_OUT, reason)


def _finish(deployment: Deployment, state: str, reason: str) -> None:
    now = timezone.now()
    with transaction.atomic():
        deployment.state = state
        deployment.reason = reason if state != S.SUCCEEDED else ""
        deployment.finished_at = now
        deployment.lease_until = None
        deployment.history.append(_event(now, state, reason))
        deployment.save()
        device = Device.objects.select_for_update().get(pk=deployment.device_id)
        if state == S.SUCCEEDED:
            device.current_release = deployment.release
            device.save(update_fields=["current_release", "updated_at"])
            return
        last_good = device.current_release
        if (
            deployment.rollback_of_id is None
            and last_good is not None
            and last_good.pk != deployment.release_id
        ):
            try:
                rollback = start_deployment(device, last_good, rollback_of=deployment)
                note = f"rolling back to {last_good.version} (#{rollback.pk})"
            except ValidationError as exc:  # e.g. a DeepLens, or a device deregistered meanwhile
                note = f"no rollback to {last_good.version}: {' '.join(exc.messages)}"
            deployment.history.append(_event(now, state, note))
            deployment.save(update_fields=["history"])


def stop_deployment(deployment: Deployment, reason: str) -> bool:
    """End a deployment that has not reached its camera yet (a halted rollout): FAILED with the
    reason, and no rollback, since the camera never changed. False when it had gone further."""
    now = timezone.now()
    with transaction.atomic():
        current = Deployment.objects.select_for_update().get(pk=deployment.pk)
        if current.state not in (S.CREATE_COMPONENT, S.CREATE_DEPLOYMENT):
            return False
        current.state = S.FAILED
        current.reason = reason
        current.finished_at = now
        current.lease_until = None
        current.held_until, current.hold_reason = None, ""
        current.history.append(_event(now, S.FAILED, reason))
        current.save()
    return True


def _describe(exc: ClientError) -> str:
    error = exc.response.get("Error", {})
    code = error.get("Code", "Error")
    message = error.get("Message", str(exc))
    service = exc.operation_name
    endpoint = aws.endpoint_url()
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if endpoint and (status == 404 or code in ("404", "NotImplemented", "UnknownOperation")):
        return (
            f"{service} is not available at {endpoint} (moto has no Greengrass v2); "
            "this step needs real AWS"
        )
    return f"{service}: {code}: {message}"


# --- Greengrass v2 --------------------------------------------------------------------------------
def _thing_arn(deployment: Deployment) -> str:
    if "thing_arn" not in deployment.resources:
        described = aws.cached_client("iot").describe_thing(thingName=deployment.device.thing_name)
        deployment.resources["thing_arn"] = described["thingArn"]
    return deployment.resources["thing_arn"]


def component_recipe(release: EdgeRelease) -> str:
    """One component version per release; its defaults are the contract defaults. Each device's
    own settings arrive through the deployment's configuration merge."""
    defaults = {
        "device": "unassigned",
        "festival": "unassigned",
        "stage": "unassigned",
        "bucket": settings.CROPS_BUCKET,
        **EDGE_CONFIG_DEFAULTS,
    }
    return render_recipe(version=release.version, artifact_uri=release.uri, config=defaults)


def gg2_create_component(deployment: Deployment) -> Outcome:
    release = deployment.release
    client = aws.cached_client("greengrassv2")
    try:
        response = client.create_component_version(
            inlineRecipe=component_recipe(release).encode(),
            clientToken=f"stagepulse-component-{release.sha256[:32]}",
        )
    except ClientError as exc:
        if aws.error_code(exc) == "ConflictException":
            return Outcome({"component_version": release.version}, "component version existed")
        raise
    state = response.get("status", {}).get("componentState", "")
    if state == "FAILED":
        raise StepFailed(
            f"component {COMPONENT_NAME} {release.version} was refused: "
            f"{response['status'].get('message', '')}"
        )
    return Outcome(
        {"component_version": response["componentVersion"], "component_arn": response["arn"]},
        f"component {response['componentName']} {response['componentVersion']} ({state})",
    )


def gg2_create_deployment(deployment: Deployment) -> Outcome:
    """The deployment to the core; the device role's policy is rewritten first (idempotent), so
    a device registered before the role could read releases and its shadow can now."""
    device = deployment.device
    update_device_role_policy(device)
    config = device_config(device)
    # The camera's own video source (an RTSP URL may carry a password) goes into the component
    # configuration, which the component reads through IPC: never into a script or this history.
    merge = {"stagepulse": config, "source": device.video_source or "0"}
    response = aws.cached_client("greengrassv2").create_deployment(
        targetArn=_thing_arn(deployment),
        deploymentName=f"stagepulse {device.thing_name} {deployment.release.version}",
        components={
            COMPONENT_NAME: {
                "componentVersion": deployment.resources["component_version"],
                "configurationUpdate": {
                    "reset": ["/stagepulse", "/source"],
                    "merge": json.dumps(merge, sort_keys=True),
                },
            }
        },
        deploymentPolicies={
            "failureHandlingPolicy": "ROLLBACK",
            "componentUpdatePolicy": {"timeoutInSeconds": 60, "action": "NOTIFY_COMPONENTS"},
        },
        # The IoT job behind the deployment ends by itself if the camera never finishes, even
        # while this service is down (its own timeout also cancels it; _timed_out).
        iotJobConfiguration={
            "timeoutConfig": {"inProgressTimeoutInMinutes": settings.DEPLOYMENT_TIMEOUT_MINUTES}
        },
        tags=_tags(deployment),
        clientToken=f"stagepulse-deployment-{deployment.pk}",
    )
    return Outcome(
        {"deployment_id": response["deploymentId"], "iot_job_id": response.get("iotJobId", "")},
        f"deployment {response['deploymentId']}",
    )


GG2_SUCCESS = {"SUCCEEDED", "COMPLETED"}
GG2_FAILURE = {"FAILED", "CANCELED", "REJECTED", "TIMED_OUT"}


def gg2_poll(deployment: Deployment) -> Outcome:
    wanted = deployment.resources["deployment_id"]
    paginator = aws.cached_client("greengrassv2").get_paginator("list_effective_deployments")
    for page in paginator.paginate(coreDeviceThingName=deployment.device.thing_name):
        for item in page.get("effectiveDeployments", []):
            if item["deploymentId"] != wanted:
                continue
            status = item["coreDeviceExecutionStatus"]
            if status in GG2_SUCCESS:
                return Outcome(done=True, note=f"device reports {status}")
            if status in GG2_FAILURE:
                details = item.get("statusDetails", {})
                why = item.get("reason") or ", ".join(details.get("errorStack", [])) or status
                raise StepFailed(f"device reports {status}: {why}")
            return Outcome(wait_s=settings.DEPLOYMENT_POLL_SECONDS, note=f"device: {status}")
    return Outcome(wait_s=settings.DEPLOYMENT_POLL_SECONDS, note="not yet seen by the device")


# --- DeepLens / Greengrass v1 --------------------------------------------------------------------
# Unreachable since DEEPLENS_REFUSED: start_deployment refuses DeepLens and run_deployment ends a
# DeepLens row before any step. Kept only until concurrent edits to this module have merged;
# then delete these steps with DEEPLENS_STEPS and their DeploymentState values.
def _token(deployment: Deployment, step: str) -> str:
    return f"stagepulse-{deployment.pk}-{step}"


def _tags(deployment: Deployment) -> dict[str, str]:
    """The festival (and thing) on every resource a deployment creates, for closeout."""
    device = deployment.device
    return aws.tag_map(device.festival.slug, device.thing_name)


def gg1_ensure_group(deployment: Deployment) -> Outcome:
    """The device's group (reused); its role is the device role, whose policy is rewritten
    first so an older registration gains the shadow read the camera now does."""
    device = deployment.device
    update_device_role_policy(device)
    gg = aws.cached_client("greengrass")
    role_arn = aws.cached_client("iam").get_role(RoleName=device.role_name)["Role"]["Arn"]
    if device.greengrass_group_id:
        group = gg.get_group(GroupId=device.greengrass_group_id)
        version = gg.get_group_version(
            GroupId=device.greengrass_group_id, GroupVersionId=group["LatestVersion"]
        )
        core_arn = version["Definition"].get("CoreDefinitionVersionArn")
        if not core_arn:
            raise StepFailed(f"group {device.greengrass_group_id} has no core definition")
        group_id = device.greengrass_group_id
    else:
        core = gg.create_core_definition(
            AmznClientToken=_token(deployment, "core"),
            Name=f"stagepulse-{device.thing_name}-core",
            tags=_tags(deployment),
            InitialVersion={
                "Cores": [
                    {
                        "Id": "core",
                        "ThingArn": _thing_arn(deployment),
                        "CertificateArn": device.certificate_arn,
                        "SyncShadow": True,
                    }
                ]
            },
        )
        core_arn = core["LatestVersionArn"]
        group_id = gg.create_group(
            AmznClientToken=_token(deployment, "group"),
            Name=f"stagepulse-{device.thing_name}",
            InitialVersion={"CoreDefinitionVersionArn": core_arn},
            tags=_tags(deployment),
        )["Id"]
        Device.objects.filter(pk=device.pk).update(greengrass_group_id=group_id)
    # The group role gives the lambda its AWS credentials: the device's own-prefix role.
    gg.associate_role_to_group(GroupId=group_id, RoleArn=role_arn)
    return Outcome({"group_id": group_id, "core_definition_version_arn": core_arn}, group_id)


DEFAULT_DEEPLENS_ROLE = "stagepulse-deeplens-lambda"


def deeplens_lambda_role_arn() -> str:
    """DEEPLENS_LAMBDA_ROLE_ARN: an ARN, or a role name (default stagepulse-deeplens-lambda)."""
    configured = settings.DEEPLENS_LAMBDA_ROLE_ARN or DEFAULT_DEEPLENS_ROLE
    if configured.startswith("arn:"):
        return configured
    try:
        return aws.cached_client("iam").get_role(RoleName=configured)["Role"]["Arn"]
    except ClientError as exc:
        if aws.error_code(exc) != "NoSuchEntity":
            raise
        raise StepFailed(
            f"the IAM role {configured!r} that the DeepLens Lambda runs as does not exist: create "
            "it (trusting lambda.amazonaws.com) or set DEEPLENS_LAMBDA_ROLE_ARN"
        ) from exc


def _function_name(device: Device) -> str:
    return f"stagepulse-edge-{device.thing_name}"[:64]


def _edge_environment(device: Device) -> dict:
    """The edge_package config as the DeepLens Lambda's STAGEPULSE_CONFIG variable."""
    return {"STAGEPULSE_CONFIG": json.dumps(device_config(device), sort_keys=True)}


def gg1_lambda_function(deployment: Deployment) -> Outcome:
    """The cloud Lambda holding the release zip. Its environment is informational only:
    Greengrass v1 does not copy it to the core (the function definition carries it)."""
    device, release = deployment.device, deployment.release
    client = aws.cached_client("lambda")
    name = _function_name(device)
    environment = {"Variables": _edge_environment(device)}
    code = {"S3Bucket": release.bucket, "S3Key": release.key}
    role_arn = deeplens_lambda_role_arn()
    try:
        response = client.create_function(
            FunctionName=name,
            Runtime=settings.DEEPLENS_LAMBDA_RUNTIME,
            Role=role_arn,
            Handler="edge_package.deeplens.function_handler",
            Code=code,
            Timeout=3,
            MemorySize=512,
            Environment=environment,
            Description=f"StagePulse edge {release.version} for {device.thing_name}",
            Tags=_tags(deployment),
        )
        note = "created"
    except ClientError as exc:
        if aws.error_code(exc) not in CONFLICT_CODES:
            raise
        client.update_function_code(FunctionName=name, **code)
        client.get_waiter("function_updated_v2").wait(FunctionName=name)
        response = client.update_function_configuration(
            FunctionName=name, Environment=environment, Role=role_arn
        )
        note = "updated"
    return Outcome({"function_arn": response["FunctionArn"]}, f"{name} {note}")


def gg1_lambda_version(deployment: Deployment) -> Outcome:
    client = aws.cached_client("lambda")
    name = _function_name(deployment.device)
    client.get_waiter("function_updated_v2").wait(FunctionName=name)
    version = client.publish_version(FunctionName=name, Description=deployment.release.version)[
        "Version"
    ]
    return Outcome({"function_version": version}, f"version {version}")


def gg1_lambda_alias(deployment: Deployment) -> Outcome:
    client = aws.cached_client("lambda")
    name = _function_name(deployment.device)
    version = deployment.resources["function_version"]
    try:
        alias = client.create_alias(FunctionName=name, Name=LAMBDA_ALIAS, FunctionVersion=version)
    except ClientError as exc:
        # Lambda answers ResourceConflictException (moto: ConflictException) for an existing alias.
        if aws.error_code(exc) not in CONFLICT_CODES:
            raise
        alias = client.update_alias(FunctionName=name, Name=LAMBDA_ALIAS, FunctionVersion=version)
    return Outcome({"alias_arn": alias["AliasArn"]}, f"{LAMBDA_ALIAS} -> {version}")


def gg1_resource_definition(deployment: Deployment) -> Outcome:
    resources = [
        {
            "Id": rid,
            "Name": rid,
            "ResourceDataContainer": {
                "LocalDeviceResourceData": {
                    "SourcePath": path,
                    "GroupOwnerSetting": {"AutoAddGroupOwner": True},
                }
            },
        }
        for rid, path in DEEPLENS_RESOURCES
    ] + [
        {
            "Id": rid,
            "Name": rid,
            "ResourceDataContainer": {
                "LocalVolumeResourceData": {
                    "SourcePath": path,
                    "DestinationPath": path,
                    "GroupOwnerSetting": {"AutoAddGroupOwner": True},
                }
            },
        }
        for rid, path in DEEPLENS_VOLUMES
    ]
    response = aws.cached_client("greengrass").create_resource_definition(
        AmznClientToken=_token(deployment, "resources"),
        Name=f"stagepulse-{deployment.device.thing_name}-resources",
        tags=_tags(deployment),
        InitialVersion={"Resources": resources},
    )
    return Outcome({"resource_definition_version_arn": response["LatestVersionArn"]})


def gg1_function_definition(deployment: Deployment) -> Outcome:
    """How the core runs the Lambda; the only environment the device sees is set here."""
    access = [
        {"ResourceId": rid, "Permission": "rw"} for rid, _ in DEEPLENS_RESOURCES + DEEPLENS_VOLUMES
    ]
    response = aws.cached_client("greengrass").create_function_definition(
        AmznClientToken=_token(deployment, "functions"),
        Name=f"stagepulse-{deployment.device.thing_name}-functions",
        tags=_tags(deployment),
        InitialVersion={
            "DefaultConfig": {"Execution": {"IsolationMode": "GreengrassContainer"}},
            "Functions": [
                {
                    "Id": "stagepulse-edge",
                    "FunctionArn": deployment.resources["alias_arn"],
                    "FunctionConfiguration": {
                        "Pinned": True,  # long-lived: the capture loop runs from import
                        "MemorySize": 1536 * 1024,  # KB
                        "Timeout": 60,
                        "EncodingType": "json",
                        "Environment": {
                            "Variables": _edge_environment(deployment.device),
                            "AccessSysfs": True,
                            "ResourceAccessPolicies": access,
                        },
                    },
                }
            ],
        },
    )
    return Outcome({"function_definition_version_arn": response["LatestVersionArn"]})


def gg1_subscription_definition(deployment: Deployment) -> Outcome:
    thing = deployment.device.thing_name
    alias = deployment.resources["alias_arn"]
    response = aws.cached_client("greengrass").create_subscription_definition(
        AmznClientToken=_token(deployment, "subscriptions"),
        Name=f"stagepulse-{thing}-subscriptions",
        tags=_tags(deployment),
        InitialVersion={
            "Subscriptions": [
                {
                    "Id": "telemetry-to-cloud",
                    "Source": alias,
                    "Subject": TELEMETRY_TOPIC.format(thing=thing),
                    "Target": "cloud",
                },
                {
                    "Id": "shadow-delta-to-lambda",
                    "Source": "GGShadowService",
                    "Subject": f"$aws/things/{thing}/shadow/update/delta",
                    "Target": alias,
                },
            ]
        },
    )
    return Outcome({"subscription_definition_version_arn": response["LatestVersionArn"]})


def gg1_group_version(deployment: Deployment) -> Outcome:
    r = deployment.resources
    response = aws.cached_client("greengrass").create_group_version(
        AmznClientToken=_token(deployment, "group-version"),
        GroupId=r["group_id"],
        CoreDefinitionVersionArn=r["core_definition_version_arn"],
        FunctionDefinitionVersionArn=r["function_definition_version_arn"],
        ResourceDefinitionVersionArn=r["resource_definition_version_arn"],
        SubscriptionDefinitionVersionArn=r["subscription_definition_version_arn"],
    )
    return Outcome({"group_version_id": response["Version"]}, response["Version"])


def gg1_group_deployment(deployment: Deployment) -> Outcome:
    r = deployment.resources
    response = aws.cached_client("greengrass").create_deployment(
        AmznClientToken=_token(deployment, "deployment"),
        GroupId=r["group_id"],
        GroupVersionId=r["group_version_id"],
        DeploymentType="NewDeployment",
    )
    return Outcome({"deployment_id": response["DeploymentId"]}, response["DeploymentId"])


def gg1_poll(deployment: Deployment) -> Outcome:
    r = deployment.resources
    status = aws.cached_client("greengrass").get_deployment_status(
        GroupId=r["group_id"], DeploymentId=r["deployment_id"]
    )
    state = status.get("DeploymentStatus", "")
    if state == "Success":
        return Outcome(done=True, note="group deployment Success")
    if state == "Failure":
        details = "; ".join(
            d.get("DetailedErrorMessage", "") for d in status.get("ErrorDetails", [])
        )
        raise StepFailed(f"group deployment Failure: {status.get('ErrorMessage', '')} {details}")
    return Outcome(wait_s=settings.DEPLOYMENT_POLL_SECONDS, note=f"group deployment {state}")


def _poll(deployment: Deployment) -> Outcome:
    return (
        gg2_poll(deployment)
        if deployment.platform == Platform.GREENGRASS_V2
        else gg1_poll(deployment)
    )


STEP_FUNCTIONS = {
    S.CREATE_COMPONENT: gg2_create_component,
    S.CREATE_DEPLOYMENT: gg2_create_deployment,
    S.ENSURE_GROUP: gg1_ensure_group,
    S.LAMBDA_FUNCTION: gg1_lambda_function,
    S.LAMBDA_VERSION: gg1_lambda_version,
    S.LAMBDA_ALIAS: gg1_lambda_alias,
    S.RESOURCE_DEFINITION: gg1_resource_definition,
    S.FUNCTION_DEFINITION: gg1_function_definition,
    S.SUBSCRIPTION_DEFINITION: gg1_subscription_definition,
    S.GROUP_VERSION: gg1_group_version,
    S.GROUP_DEPLOYMENT: gg1_group_deployment,
    S.POLL: _poll,
}
