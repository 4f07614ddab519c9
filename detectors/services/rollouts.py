"""A promoted model to cameras (per camera or per stage, through the device configuration and
its IoT shadow), and back to the model each ran before."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from detectors.models import FaceModel, ModelRollout, ModelStatus, RolloutState, Source
from devices.models import Device
from devices.services.health import update_device


def _model_config(device: Device, face_model: FaceModel | None) -> dict:
    """The device's config with the model reference. The bundled model is written as "" rather
    than removed: a device shadow (and a Greengrass configuration merge) keeps absent keys."""
    config = dict(device.config)
    if face_model is not None and face_model.source != Source.BUNDLED:
        config["face_model_url"] = face_model.uri
        config["face_model_sha256"] = face_model.sha256
    else:
        config["face_model_url"] = config["face_model_sha256"] = ""
    return config


def _send(device: Device, face_model: FaceModel | None) -> bool:
    """Set the device's edge configuration (pushed to its shadow by devices.services)."""
    update_device(device, config=_model_config(device, face_model))
    return bool(device.registered_at) and not device.shadow_error


def active_rollout(device: Device) -> ModelRollout | None:
    return ModelRollout.objects.filter(device=device, state=RolloutState.ACTIVE).first()


def roll_out(face_model: FaceModel, *, devices=None, stage=None, user=None) -> list[ModelRollout]:
    """Send the promoted model to the given cameras, or to every camera on `stage`."""
    face_model.refresh_from_db(fields=["status"])
    if face_model.status != ModelStatus.PROMOTED:
        raise ValidationError(f"{face_model} is not promoted: promote it (through the gate) first.")
    targets = list(devices or [])
    if stage is not None:
        targets += list(Device.objects.filter(stage=stage))
    if not targets:
        raise ValidationError("Choose at least one camera or a stage with cameras.")
    if any(d.organization_id != face_model.organization_id for d in targets):
        raise ValidationError("A camera of another organization cannot receive this model.")
    rollouts = []
    for device in {d.pk: d for d in targets}.values():
        with transaction.atomic():
            previous = active_rollout(device)
            if previous and previous.face_model_id == face_model.id:
                rollouts.append(previous)
                continue
            if previous:
                previous.state, previous.ended_at = RolloutState.REPLACED, timezone.now()
                previous.save(update_fields=["state", "ended_at"])
            pushed = _send(device, face_model)
            rollouts.append(
                ModelRollout.objects.create(
                    organization_id=device.organization_id,
                    face_model=face_model,
                    device=device,
                    previous_model=previous.face_model if previous else None,
                    shadow_pushed=pushed,
                    created_by=user,
                )
            )
    return rollouts


def roll_back(device: Device, *, user=None) -> ModelRollout:
    """Undo the device's latest rollout: back to the model it ran before (or the bundled one)."""
    current = active_rollout(device)
    if current is None:
        raise ValidationError(f"{device} runs the bundled model; there is nothing to roll back.")
    with transaction.atomic():
        current.state, current.ended_at = RolloutState.ROLLED_BACK, timezone.now()
        current.save(update_fields=["state", "ended_at"])
        earlier = (
            ModelRollout.objects.filter(device=device, state=RolloutState.REPLACED)
            .exclude(pk=current.pk)
            .first()
        )
        if earlier is not None and earlier.face_model_id == current.previous_model_id:
            earlier.state, earlier.ended_at = RolloutState.ACTIVE, None
            earlier.save(update_fields=["state", "ended_at"])
        _send(device, current.previous_model)
    return current
