"""What a festival's closeout asks of the device fleet (operations.closeout calls these).

The fleet's own rows and their private fields (a deployment's `resources` keys, the names
registration gives a thing's policy, role and alias, a DeepLens camera's function name) are read
here, so the orchestration above works with names and ids, never with another app's internals.
Rows are changed with update(), so no save signal (the dashboard sync) fires during a closeout.
"""

from __future__ import annotations

from collections.abc import Callable

from django.utils import timezone

from devices.models import (
    TERMINAL_STATES,
    Deployment,
    DeploymentState,
    Device,
    DeviceStatus,
    Platform,
)
from devices.services.deployments import _function_name
from devices.services.health import push_config_to_shadow
from devices.services.registration import _names
from festival.models import Festival

STOPPED_BY_CLOSEOUT = "stopped by the festival's closeout"
# Where a DeepLens (Greengrass v1) deployment keeps each definition version's ARN.
DEFINITION_ARN_KEYS = {
    "core": "core_definition_version_arn",
    "functions": "function_definition_version_arn",
    "resources": "resource_definition_version_arn",
    "subscriptions": "subscription_definition_version_arn",
}


def festival_devices(festival: Festival):
    return Device.objects.filter(festival=festival).select_related(
        "festival", "stage", "organization"
    )


def greengrass_v2_things(festival: Festival, aws_things: list[str]) -> list[str]:
    """The festival's Greengrass v2 cameras, and the things AWS lists for it (`aws_things`)
    whose platform the database no longer knows."""
    known = {d.thing_name: d.platform for d in festival_devices(festival)}
    return sorted(
        name
        for name in {*known, *aws_things}
        if known.get(name, Platform.GREENGRASS_V2) == Platform.GREENGRASS_V2
    )


def registered_things(festival: Festival) -> set[str]:
    """Thing names the database says were registered (a certificate or a registration time)."""
    return {
        d.thing_name for d in festival_devices(festival) if d.certificate_arn or d.registered_at
    }


def pause_cameras(festival: Festival, *, dry_run: bool) -> tuple[list[str], list[str]]:
    """Every camera of the festival paused in the database and on its shadow. Returns the thing
    names that were not paused yet and notes for shadows that could not be updated."""
    paused, notes = [], []
    for device in festival_devices(festival):
        if device.config.get("paused") is True:
            continue
        paused.append(device.thing_name)
        if dry_run:
            continue
        device.config = {**device.config, "paused": True}
        Device.objects.filter(pk=device.pk).update(config=device.config)
        if device.registered_at and not push_config_to_shadow(device):
            notes.append(
                f"{device.thing_name}: shadow not updated ({device.shadow_error}); "
                "its write access is revoked all the same"
            )
    return paused, notes


def stop_unfinished_deployments(
    festival: Festival, *, dry_run: bool, cancel_greengrass_v2: Callable[[str], None]
) -> list[str]:
    """Unfinished deployments end as failed without a rollback (the camera is going); a
    Greengrass v2 one is first cancelled in AWS through `cancel_greengrass_v2(deployment_id)`.
    Returns a label per deployment."""
    labels = []
    running = Deployment.objects.filter(device__festival=festival).exclude(
        state__in=TERMINAL_STATES
    )
    for deployment in running:
        labels.append(f"deployment #{deployment.pk} ({deployment.state})")
        if dry_run:
            continue
        gg2_id = deployment.resources.get("deployment_id")
        if deployment.platform == Platform.GREENGRASS_V2 and gg2_id:
            cancel_greengrass_v2(gg2_id)
        now = timezone.now()
        event = {
            "at": now.isoformat(timespec="seconds"),
            "state": "failed",
            "note": STOPPED_BY_CLOSEOUT,
        }
        Deployment.objects.filter(pk=deployment.pk).exclude(state__in=TERMINAL_STATES).update(
            state=DeploymentState.FAILED,
            reason=STOPPED_BY_CLOSEOUT,
            finished_at=now,
            lease_until=None,
            history=[*deployment.history, event],
            updated_at=now,
        )
    return labels


def greengrass_v2_component_arns(festival: Festival) -> list[str]:
    """Component versions the festival's Greengrass v2 deployments made that no other
    festival's deployment uses."""
    own = Deployment.objects.filter(device__festival=festival, platform=Platform.GREENGRASS_V2)
    arns = {d.resources.get("component_arn") for d in own} - {None, ""}
    shared = set(
        Deployment.objects.exclude(device__festival=festival)
        .filter(platform=Platform.GREENGRASS_V2)
        .values_list("resources__component_arn", flat=True)
    )
    return sorted(arns - shared)


def has_deeplens_deployments(festival: Festival) -> bool:
    return Deployment.objects.filter(device__festival=festival, platform=Platform.DEEPLENS).exists()


def greengrass_v1_ids(festival: Festival) -> tuple[set[str], dict[str, set[str]]]:
    """(group ids, definition ids per kind) the festival's DeepLens deployments and cameras
    recorded; kinds are core, functions, resources, subscriptions."""
    rows = [
        d.resources
        for d in Deployment.objects.filter(device__festival=festival, platform=Platform.DEEPLENS)
    ]
    groups = {r.get("group_id") for r in rows} | {
        d.greengrass_group_id for d in festival_devices(festival)
    }
    definitions = {
        kind: {r[key].split("/")[-3] for r in rows if r.get(key)}
        for kind, key in DEFINITION_ARN_KEYS.items()
    }
    return groups - {None, ""}, definitions


def forget_greengrass_group(festival: Festival, group_id: str) -> None:
    Device.objects.filter(festival=festival, greengrass_group_id=group_id).update(
        greengrass_group_id=""
    )


def edge_function_names(festival: Festival, things: list[str]) -> set[str]:
    """The Lambda function names DeepLens deployments give the festival's cameras, and would
    give `things` (those AWS still lists for the festival)."""
    names = {_function_name(d) for d in festival_devices(festival)}
    return names | {_function_name(Device(thing_name=thing)) for thing in things}


def thing_resources(festival: Festival, thing: str) -> dict[str, str]:
    """A thing's IoT policy, role alias, IAM role (the row's names, or the names registration
    gives, for a row that is gone) and its certificate ARN when the row knows it."""
    row = festival_devices(festival).filter(thing_name=thing).first()
    names = _names(Device(thing_name=thing))
    return {
        "policy": (row.policy_name if row else "") or names["policy"],
        "role_alias": (row.role_alias if row else "") or names["role_alias"],
        "role": (row.role_name if row else "") or names["role"],
        "certificate_arn": row.certificate_arn if row else "",
    }


def default_thing_resources(thing: str) -> dict[str, str]:
    """The names registration gives a thing's policy, role alias and role."""
    return _names(Device(thing_name=thing))


def camera_role_names(festival: Festival) -> set[str]:
    return {d.role_name for d in festival_devices(festival) if d.role_name}


def retire_device(festival: Festival, thing: str) -> None:
    """The camera's registration is gone from AWS: its row says so (it stays, for history)."""
    Device.objects.filter(thing_name=thing, festival=festival).update(
        certificate_arn="",
        certificate_id="",
        policy_name="",
        role_name="",
        role_alias="",
        token_hash="",
        registered_at=None,
        status=DeviceStatus.RETIRED,
    )
