"""The evaluation gate: a candidate and the current model on the same clips (the synthetic
crowd clip, then the organization's labelled clips), with the bench's recall / precision / fps
code; promotion only when the candidate is nowhere worse beyond the margin."""

from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from detectors import selectors
from detectors.evaluation import Clip, evaluate, evaluate_recording
from detectors.models import Evaluation, FaceModel, ModelStatus
from detectors.services import labelled_clips
from detectors.services.artifacts import temp_file
from detectors.services.registry import current_model, model_bytes
from edge_package.detect import BlazeFaceDetector

GATE_THRESHOLD = 0.45  # the crowd-camera threshold (docs/edge.md), used for every evaluation


class PromotionRefused(ValidationError):
    """The gate found the candidate worse than the current model; `.evaluation` shows why."""

    def __init__(self, evaluation: Evaluation):
        self.evaluation = evaluation
        super().__init__("Promotion refused: " + "; ".join(evaluation.comparison["reasons"]))


def gate_clip() -> Clip:
    return Clip.parse(settings.FACE_MODEL_GATE_CLIP)


@contextmanager
def _detector(face_model: FaceModel):
    """The model's stored file as a detector at the gate's threshold (one thread)."""
    with temp_file(model_bytes(face_model), suffix=".tflite") as path:
        yield BlazeFaceDetector(path, threshold=GATE_THRESHOLD, threads=1)


def _record(face_model: FaceModel, clip: dict, figures: dict, *, user=None) -> Evaluation:
    return Evaluation.objects.create(
        organization_id=face_model.organization_id,
        face_model=face_model,
        clip=clip,
        threshold=GATE_THRESHOLD,
        recall=figures["recall"],
        precision=figures["precision"],
        fps=figures["fps"],
        details=figures,
        created_by=user,
    )


def evaluate_model(face_model: FaceModel, clip: Clip | None = None, *, user=None) -> Evaluation:
    """Score a model on a synthetic crowd clip with detectors.evaluation (the bench's code)."""
    clip = clip or gate_clip()
    with _detector(face_model) as detector:
        figures = evaluate(detector, clip, threshold=GATE_THRESHOLD)
    evaluation = _record(face_model, clip.as_dict(), figures, user=user)
    if face_model.status == ModelStatus.REGISTERED:
        face_model.status = ModelStatus.EVALUATED
        face_model.save(update_fields=["status"])
    return evaluation


def compare(candidate: dict, baseline: dict, *, margin: float, min_fps_ratio: float = 0.0) -> dict:
    """The gate's verdict on two figure sets {recall, precision, fps}: refused when recall or
    precision is lower than the baseline's by more than `margin` (absolute), or fps lower than
    `min_fps_ratio` x the baseline's (0 = fps not gated)."""
    reasons = []
    rows = []
    for metric in ("recall", "precision", "fps"):
        cand, base = float(candidate[metric]), float(baseline[metric])
        rows.append({"metric": metric, "candidate": cand, "current": base, "delta": cand - base})
        if metric == "fps":
            if min_fps_ratio > 0 and cand < base * min_fps_ratio:
                reasons.append(
                    f"fps {cand:.1f} is below {min_fps_ratio:g} x the current model's {base:.1f}"
                )
        elif cand < base - margin:
            reasons.append(
                f"{metric} {cand:.3f} is worse than the current model's {base:.3f} "
                f"by more than the margin {margin:g}"
            )
    return {
        "passed": not reasons,
        "reasons": reasons,
        "rows": rows,
        "margin": margin,
        "min_fps_ratio": min_fps_ratio,
    }


def _figures(evaluation: Evaluation) -> dict:
    return {"recall": evaluation.recall, "precision": evaluation.precision, "fps": evaluation.fps}


def _gate_labelled_clips(face_model: FaceModel, current: FaceModel, *, user=None) -> list[dict]:
    """Both models on every active labelled clip of the candidate's organization (and of no
    other): one Evaluation per model and clip, and one verdict per clip."""
    clips = selectors.gate_labelled_clips(face_model.organization_id)
    if not clips:
        return []
    sections = []
    with _detector(current) as base_detector, _detector(face_model) as cand_detector:
        for labelled in clips:
            annotations = labelled_clips.annotations(labelled)
            with labelled_clips.labelled_clip_file(labelled) as path:
                figures = {
                    "current": evaluate_recording(
                        base_detector, path, annotations, threshold=GATE_THRESHOLD
                    ),
                    "candidate": evaluate_recording(
                        cand_detector, path, annotations, threshold=GATE_THRESHOLD
                    ),
                }
            baseline = _record(current, labelled.gate_label, figures["current"], user=user)
            evaluation = _record(face_model, labelled.gate_label, figures["candidate"], user=user)
            evaluation.baseline = baseline
            evaluation.save(update_fields=["baseline"])
            verdict = compare(
                _figures(evaluation),
                _figures(baseline),
                margin=settings.FACE_MODEL_GATE_MARGIN,
                min_fps_ratio=settings.FACE_MODEL_GATE_MIN_FPS_RATIO,
            )
            sections.append(
                {
                    **labelled.gate_label,
                    "evaluation": evaluation.id,
                    "baseline": baseline.id,
                    "faces_scored": figures["candidate"]["faces_scored"],
                    "passed": verdict["passed"],
                    "reasons": verdict["reasons"],
                    "rows": verdict["rows"],
                }
            )
    return sections


def run_gate(face_model: FaceModel, clip: Clip | None = None, *, user=None) -> Evaluation:
    """Evaluate the candidate and the current model on the same clips, now: the synthetic crowd
    clip, then each active labelled clip of the organization. The verdict (refused when worse
    beyond the margin on any clip) is stored on the synthetic-clip evaluation's `comparison`."""
    current = current_model(face_model.organization)
    clip = clip or gate_clip()
    baseline = evaluate_model(current, clip, user=user)
    evaluation = evaluate_model(face_model, clip, user=user)
    verdict = compare(
        _figures(evaluation),
        _figures(baseline),
        margin=settings.FACE_MODEL_GATE_MARGIN,
        min_fps_ratio=settings.FACE_MODEL_GATE_MIN_FPS_RATIO,
    )
    verdict["current_model"] = {"id": current.id, "label": str(current)}
    verdict["labelled_clips"] = _gate_labelled_clips(face_model, current, user=user)
    for section in verdict["labelled_clips"]:
        verdict["reasons"] += [
            f"on labelled clip '{section['name']}': {reason}" for reason in section["reasons"]
        ]
    verdict["passed"] = not verdict["reasons"]
    evaluation.baseline, evaluation.passed = baseline, verdict["passed"]
    evaluation.comparison = verdict
    evaluation.save(update_fields=["baseline", "passed", "comparison"])
    return evaluation


def promote_model(face_model: FaceModel, clip: Clip | None = None, *, user=None) -> Evaluation:
    """Run the gate; on a pass the model becomes the organization's current model. Cameras get it
    through roll_out (per device or per stage). Raises PromotionRefused with the comparison."""
    face_model.refresh_from_db(fields=["status"])
    if face_model.status == ModelStatus.PROMOTED:
        raise ValidationError(f"{face_model} is already the current model.")
    evaluation = run_gate(face_model, clip, user=user)
    if not evaluation.passed:
        face_model.status = ModelStatus.REFUSED
        face_model.save(update_fields=["status"])
        raise PromotionRefused(evaluation)
    with transaction.atomic():
        FaceModel.objects.filter(
            organization_id=face_model.organization_id, status=ModelStatus.PROMOTED
        ).update(status=ModelStatus.RETIRED)
        face_model.status, face_model.promoted_at = ModelStatus.PROMOTED, timezone.now()
        face_model.save(update_fields=["status", "promoted_at"])
    return evaluation
