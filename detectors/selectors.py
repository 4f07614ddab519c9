"""Reads for face detectors (scoped by the caller's queryset)."""

from __future__ import annotations

from detectors.models import (
    Evaluation,
    FaceModel,
    LabelledClip,
    ModelRollout,
    ModelStatus,
    RolloutState,
)


def current_model(organization_id: int) -> FaceModel | None:
    return FaceModel.objects.filter(
        organization_id=organization_id, status=ModelStatus.PROMOTED
    ).first()


def latest_gate(face_model: FaceModel) -> Evaluation | None:
    """The last gate run of a model (its evaluation beside the current model's)."""
    return face_model.evaluations.filter(passed__isnull=False).select_related("baseline").first()


def device_models(organization_id: int) -> dict[int, FaceModel]:
    """device id -> the model rolled out to it (devices absent run the bundled model)."""
    rows = ModelRollout.objects.filter(
        organization_id=organization_id, state=RolloutState.ACTIVE
    ).select_related("face_model")
    return {row.device_id: row.face_model for row in rows}


def gate_labelled_clips(organization_id: int) -> list[LabelledClip]:
    """The organization's active labelled clips: every gate run of its models plays them all."""
    return list(LabelledClip.objects.filter(organization_id=organization_id, active=True))
