"""Rolled-out face detection models on the device: fetch, verify, cache, load, or fall back.

The service rolls a model out by setting `face_model_url` and `face_model_sha256` in the device's
configuration (detectors app). The edge fetches the file once into a cache folder named by its
SHA-256, checks the hash and the TFLite identifier before the interpreter ever sees it, and loads
it. Whatever goes wrong (unreachable, corrupt, wrong hash, not a BlazeFace model) the camera keeps
working on the bundled full-range model and says why (`ModelChoice.problem`, the runner's
last_error).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass

from edge_package.detect import BlazeFaceDetector, DetectorError, default_blazeface_path

log = logging.getLogger("edge_package")

TFLITE_IDENTIFIER = b"TFL3"  # a TFLite flatbuffer carries it at bytes 4..8
MAX_MODEL_BYTES = 64 * 1024 * 1024


class ModelFileError(ValueError):
    """A model file that must not be loaded; the message says why."""


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_tflite(data: bytes, name: str = "model") -> None:
    """Refuse anything that is not a TFLite flatbuffer (by its file identifier)."""
    if len(data) < 8 or data[4:8] != TFLITE_IDENTIFIER:
        raise ModelFileError(
            f"{name} is not a TFLite model (no 'TFL3' identifier at bytes 4..8; got {data[4:8]!r})"
        )


def default_cache_dir() -> str:
    from edge_package.config import state_dir

    return os.environ.get("STAGEPULSE_MODEL_DIR") or state_dir("models")


def _fetch(url: str, target: str, region: str = "") -> None:
    if url.startswith("s3://"):
        from edge_package.sinks import aws_client  # boto3 only when the model lives in S3

        bucket, _, key = url[len("s3://") :].partition("/")
        aws_client("s3", region).download_file(bucket, key, target)
    elif url.startswith(("https://", "http://")):
        with urllib.request.urlopen(url, timeout=30) as response, open(target, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
    else:
        path = url[len("file://") :] if url.startswith("file://") else url
        shutil.copyfile(path, target)


def fetch_model(url: str, sha256: str, cache_dir: str | None = None, region: str = "") -> str:
    """Path of the verified model file for (url, sha256), downloading it once.

    A cached file is re-hashed before use, so a file corrupted on disk is fetched again.
    Raises ModelFileError with the reason (hash mismatch, not TFLite, unreachable)."""
    cache_dir = cache_dir or default_cache_dir()
    os.makedirs(cache_dir, mode=0o700, exist_ok=True)
    path = os.path.join(cache_dir, f"{sha256}.tflite")
    if os.path.isfile(path) and sha256_file(path) == sha256:
        return path
    handle, partial = tempfile.mkstemp(dir=cache_dir, suffix=".part")
    os.close(handle)
    try:
        try:
            _fetch(url, partial, region)
        except Exception as exc:  # network, S3, missing file: all mean "cannot load"
            raise ModelFileError(f"cannot fetch {url}: {exc}") from exc
        if os.path.getsize(partial) > MAX_MODEL_BYTES:
            raise ModelFileError(f"{url} is larger than {MAX_MODEL_BYTES} bytes")
        actual = sha256_file(partial)
        if actual != sha256:
            raise ModelFileError(f"{url}: SHA-256 mismatch (expected {sha256}, got {actual})")
        with open(partial, "rb") as handle_:
            check_tflite(handle_.read(8), url)
        os.replace(partial, path)
        return path
    finally:
        if os.path.exists(partial):
            os.unlink(partial)


@dataclass
class ModelChoice:
    """What the camera runs: the detector, its model's hash, and why a rollout was not used."""

    detector: BlazeFaceDetector
    sha256: str
    source: str  # "rolled_out" or "bundled"
    problem: str = ""


def load_face_detector(
    url: str = "",
    sha256: str = "",
    *,
    cache_dir: str | None = None,
    region: str = "",
    **detector_kwargs,
) -> ModelChoice:
    """The rolled-out model when (url, sha256) are set and it loads; else the bundled model."""
    problem = ""
    if url and sha256:
        try:
            path = fetch_model(url, sha256, cache_dir, region)
            return ModelChoice(BlazeFaceDetector(path, **detector_kwargs), sha256, "rolled_out")
        except (ModelFileError, DetectorError) as exc:
            problem = f"rolled-out face model not used, running the bundled one: {exc}"
            log.warning("%s", problem)
    bundled = default_blazeface_path()
    return ModelChoice(
        BlazeFaceDetector(bundled, **detector_kwargs), sha256_file(bundled), "bundled", problem
    )
