"""The organization's labelled clips (videos with face boxes), extra clips for its gate: checked
by content before they are stored, private in the artifacts bucket, every version deleted."""

from __future__ import annotations

import hashlib
import logging
from contextlib import contextmanager

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

import awsclients as aws
from detectors.evaluation import (
    Annotations,
    VideoTooLarge,
    clip_fps,
    parse_annotations,
    probe_video,
)
from detectors.models import LabelledClip
from detectors.services.artifacts import NAME, delete_every_version, put_artifact, temp_file

log = logging.getLogger(__name__)

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
    with temp_file(video, suffix=".video") as path:
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
    if not NAME.match(name or ""):
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
        version = put_artifact(key, video, info["sha256"])
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
            delete_every_version(bucket, key)
        elif version:
            aws.cached_client("s3").delete_object(Bucket=bucket, Key=key, VersionId=version)
    except (ClientError, BotoCoreError):
        log.exception("labelled clip upload: could not delete s3://%s/%s", bucket, key)


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
        delete_every_version(labelled.bucket, labelled.key)
    except (ClientError, BotoCoreError) as exc:
        raise ValidationError(f"Could not delete {labelled.uri}: {exc}") from exc
    labelled.delete()


def annotations(labelled: LabelledClip) -> Annotations:
    return parse_annotations(
        labelled.annotations,
        frames=labelled.frame_count,
        width=labelled.width,
        height=labelled.height,
    )


@contextmanager
def labelled_clip_file(labelled: LabelledClip):
    """The clip's video in a temporary file (SHA-256 checked), deleted afterwards."""
    with temp_file(suffix=".video") as path:
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
