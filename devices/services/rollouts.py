"""Staged rollout of an edge release to a festival's cameras: canaries first, then the rest.

1. CANARY: one deployment per canary camera (Device.canary; none marked: the first camera).
   Each waits for a gap between sets like any deployment, unless the rollout is forced.
2. WATCHING: once every canary deployment succeeded, their telemetry is watched for
   ROLLOUT_WATCH_MINUTES and compared with what each reported before the rollout: fps may drop
   by at most ROLLOUT_MAX_FPS_DROP, errors/min may rise by at most ROLLOUT_MAX_ERRORS_PER_MIN_RISE,
   and a canary that sends no telemetry after its deployment fails.
3. REST: the other cameras, ROLLOUT_MAX_PER_MINUTE deployments started per minute; once
   ROLLOUT_ABORT_MIN_EXECUTED of them finished, a failed share of ROLLOUT_ABORT_THRESHOLD_PERCENT
   halts the rollout. These are the semantics of Greengrass v2's thing-group rollout
   (jobExecutionsRolloutConfig.maximumPerMinute) and abort (abortConfig.criteriaList) settings,
   run here because every camera has its own deployment: its configuration merge carries the
   camera's own stage, masks and RTSP credentials, which one thing-group deployment cannot.

Halting (a canary failed or got worse, or the rest crossed the abort threshold) rolls back every
camera of the rollout that got the release to the release it ran before, stops deployments that
have not reached a camera yet, and starts nothing more. A failed deployment rolls its own camera
back already (services.deployments). `advance_rollouts` runs every minute (beat).
"""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.models import (
    TERMINAL_STATES,
    Deployment,
    DeploymentState,
    Device,
    DeviceStatus,
    EdgeRelease,
    Rollout,
    RolloutState,
)
from devices.services import deployments

R = RolloutState
S = DeploymentState
FAILED_STATES = (S.FAILED, S.TIMED_OUT)
NOT_AT_DEVICE_YET = (S.CREATE_COMPONENT, S.CREATE_DEPLOYMENT)


def _event(rollout: Rollout, note: str, *, once: bool = False) -> None:
    if once and any(e["note"] == note for e in rollout.history):
        return
    rollout.history.append({"at": timezone.now().isoformat(timespec="seconds"), "note": note})


def _snapshot(device: Device) -> dict:
    health = device.health if isinstance(device.health, dict) else {}
    return {
        "fps": health.get("fps"),
        "errors_per_min": health.get("errors_per_min"),
        "release": device.current_release_id,
    }


def start_rollout(
    devices: list[Device], release: EdgeRelease, *, user=None, force: bool = False
) -> Rollout:
    """Record a rollout of `release` to `devices` (one festival) and start its canary wave.
    Nothing is recorded when a canary deployment cannot start (the reason is raised)."""
    devices = sorted(devices, key=lambda d: (d.stage.position if d.stage_id else 0, d.name, d.pk))
    if not devices:
        raise ValidationError("Choose the cameras to roll out to.")
    festivals = {d.festival_id for d in devices}
    if len(festivals) > 1:
        raise ValidationError("A rollout goes to the cameras of one festival; choose one.")
    canaries = [d for d in devices if d.canary] or devices[:1]
    rest = [d for d in devices if d not in canaries]
    with transaction.atomic():
        rollout = Rollout.objects.create(
            organization_id=devices[0].organization_id,
            festival_id=devices[0].festival_id,
            release=release,
            force=force,
            created_by=user,
            baseline={str(d.pk): _snapshot(d) for d in devices},
        )
        rollout.canaries.set(canaries)
        rollout.rest.set(rest)
        for device in canaries:
            deployments.start_deployment(
                device, release, user=user, force=force, rollout=rollout, wave="canary"
            )
        _event(
            rollout,
            f"{release.version}: canaries {', '.join(d.thing_name for d in canaries)} first, "
            f"then {len(rest)} more camera(s)" + (" (forced: ignores set locks)" if force else ""),
        )
        rollout.save(update_fields=["history"])
    return rollout


def advance_rollouts(now=None) -> dict:
    """Move every unfinished rollout on (beat task). A halted rollout is looked at again while
    one of its deployments is still running, so a camera that got the release after the halt
    is rolled back too."""
    now = now or timezone.now()
    counts: dict = {}
    running = [state for state in S.values if state not in TERMINAL_STATES]
    halted = Rollout.objects.filter(state=R.HALTED, finished_at__gte=now - timedelta(days=1))
    ids = set(
        Rollout.objects.filter(state__in=(R.CANARY, R.WATCHING, R.REST)).values_list(
            "pk", flat=True
        )
    )
    ids |= set(
        halted.filter(
            deployments__wave__in=("canary", "rest"), deployments__state__in=running
        ).values_list("pk", flat=True)
    )
    ids |= set(
        halted.filter(
            deployments__wave__in=("canary", "rest"),
            deployments__state=S.SUCCEEDED,
            deployments__rollbacks__isnull=True,
        ).values_list("pk", flat=True)
    )
    for pk in sorted(ids):
        state = advance_rollout(Rollout.objects.get(pk=pk), now=now)
        counts[state] = counts.get(state, 0) + 1
    return counts


def advance_rollout(rollout: Rollout, *, now=None) -> str:
    """One look at a rollout; returns its state afterwards."""
    now = now or timezone.now()
    if rollout.state == R.HALTED:
        _roll_back(rollout)
        return rollout.state
    waves = rollout.deployments.filter(wave__in=("canary", "rest")).select_related("device")
    canary_deps = [d for d in waves if d.wave == "canary"]
    failed = [d for d in canary_deps if d.state in FAILED_STATES]
    if failed:
        first = failed[0]
        return _halt(rollout, f"canary {first.device.thing_name} failed: {first.reason}")
    if rollout.state == R.CANARY:
        if all(d.state == S.SUCCEEDED for d in canary_deps):
            rollout.state = R.WATCHING
            rollout.watch_until = now + timedelta(minutes=settings.ROLLOUT_WATCH_MINUTES)
            until = f"{rollout.watch_until:%H:%M} UTC"
            _event(rollout, f"canaries deployed; watching their telemetry until {until}")
            rollout.save(update_fields=["state", "watch_until", "history", "updated_at"])
        return rollout.state
    if rollout.state == R.WATCHING:
        if now < rollout.watch_until:
            return rollout.state
        for deployment in canary_deps:
            worse = canary_regression(rollout, deployment)
            if worse:
                return _halt(rollout, f"canary {deployment.device.thing_name}: {worse}")
        rollout.state = R.REST
        _event(rollout, "canaries healthy: deploying to the rest")
        rollout.save(update_fields=["state", "history", "updated_at"])
    return _advance_rest(rollout, [d for d in waves if d.wave == "rest"])


def canary_regression(rollout: Rollout, deployment: Deployment) -> str:
    """Why a canary's telemetry after its deployment is worse than before, or ''."""
    device = Device.objects.get(pk=deployment.device_id)
    if device.last_seen_at is None or device.last_seen_at <= deployment.finished_at:
        return "no telemetry since its deployment"
    if device.status == DeviceStatus.OFFLINE:
        return "went offline after its deployment"
    before = rollout.baseline.get(str(device.pk), {})
    health = device.health if isinstance(device.health, dict) else {}
    fps_before, fps_now = before.get("fps"), health.get("fps")
    if isinstance(fps_before, (int, float)) and fps_before > 0:
        floor = fps_before * (1 - settings.ROLLOUT_MAX_FPS_DROP)
        if not isinstance(fps_now, (int, float)) or fps_now < floor:
            return f"fps fell from {fps_before:g} to {fps_now if fps_now is not None else 'none'}"
    errors_before = before.get("errors_per_min") or 0.0
    errors_now = health.get("errors_per_min") or 0.0
    if errors_now > errors_before + settings.ROLLOUT_MAX_ERRORS_PER_MIN_RISE:
        return f"errors rose from {errors_before:.1f}/min to {errors_now:.1f}/min"
    return ""


def _advance_rest(rollout: Rollout, rest_deps: list[Deployment]) -> str:
    finished = [d for d in rest_deps if d.finished]
    failed = [d for d in finished if d.state in FAILED_STATES]
    if len(finished) >= settings.ROLLOUT_ABORT_MIN_EXECUTED and failed:
        share = 100.0 * len(failed) / len(finished)
        if share >= settings.ROLLOUT_ABORT_THRESHOLD_PERCENT:
            return _halt(
                rollout,
                f"{len(failed)} of {len(finished)} cameras failed ({share:.0f}% >= "
                f"{settings.ROLLOUT_ABORT_THRESHOLD_PERCENT:g}%), e.g. "
                f"{failed[0].device.thing_name}: {failed[0].reason}",
            )
    started = {d.device_id for d in rest_deps}
    waiting = [d for d in rollout.rest.all() if d.pk not in started]
    for device in waiting[: settings.ROLLOUT_MAX_PER_MINUTE]:
        try:
            deployments.start_deployment(
                device,
                rollout.release,
                user=rollout.created_by,
                force=rollout.force,
                rollout=rollout,
                wave="rest",
            )
        except ValidationError as exc:  # e.g. deregistered meanwhile: the others go on
            _event(rollout, f"{device.thing_name} skipped: {' '.join(exc.messages)}")
            rollout.rest.remove(device)
    if not waiting and len(finished) == len(rest_deps):
        rollout.state = R.SUCCEEDED
        rollout.finished_at = timezone.now()
        _event(rollout, f"{len(finished) - len(failed)} camera(s) run {rollout.release.version}")
    rollout.save(update_fields=["state", "finished_at", "history", "updated_at"])
    return rollout.state


def _halt(rollout: Rollout, reason: str) -> str:
    """Stop the rollout: no new deployment, those not yet at a camera stopped, the cameras that
    got the release rolled back."""
    rollout.state = R.HALTED
    rollout.reason = reason
    rollout.finished_at = timezone.now()
    _event(rollout, f"halted: {reason}")
    rollout.save(update_fields=["state", "reason", "finished_at", "history", "updated_at"])
    for deployment in rollout.deployments.filter(state__in=NOT_AT_DEVICE_YET):
        deployments.stop_deployment(deployment, f"rollout #{rollout.pk} halted: {reason}")
    _roll_back(rollout)
    return rollout.state


def _roll_back(rollout: Rollout) -> None:
    """Each camera whose rollout deployment succeeded goes back to the release it ran before
    (once: a deployment that already has a rollback is left alone)."""
    done = rollout.deployments.filter(wave__in=("canary", "rest"), state=S.SUCCEEDED).exclude(
        rollbacks__isnull=False
    )
    for deployment in done.select_related("device"):
        before = rollout.baseline.get(str(deployment.device_id), {}).get("release")
        previous = EdgeRelease.objects.filter(pk=before).first() if before else None
        device = deployment.device
        if previous is None or previous.pk == rollout.release_id:
            _event(rollout, f"{device.thing_name}: no earlier release to roll back to", once=True)
            continue
        try:
            rollback = deployments.start_deployment(
                device,
                previous,
                rollback_of=deployment,
                rollout=rollout,
                wave="rollback",
            )
            note = f"rolling back to {previous.version} (#{rollback.pk})"
            _event(rollout, f"{device.thing_name}: {note}")
        except ValidationError as exc:
            why = " ".join(exc.messages)
            _event(rollout, f"{device.thing_name}: no rollback yet: {why}", once=True)
    rollout.save(update_fields=["history", "updated_at"])
