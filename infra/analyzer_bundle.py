"""The analyzer's Lambda zip: its Django-free sources and what they import, built reproducibly
(the same sources give the same bytes and the same content-addressed key)."""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import awsclients as aws
from infra.cfn_template import REPO_ROOT
from infra.errors import DeployError

ANALYZER_BUNDLE_PREFIX = "analyzer/"
# Packages the analyzer imports that the Lambda Python runtime lacks (boto3 is provided). Not pinned
# to this venv's versions: the python3.11 runtime (Amazon Linux 2, glibc 2.26) needs manylinux2014
# wheels, which recent numpy releases no longer publish; pip picks the newest that fit.
ANALYZER_DEPENDENCIES = ("numpy>=1.26", "Pillow>=10")
# The two Django-free packages the analyzer needs, whole, and the camera's contracts: nothing of
# a Django app is shipped, so no package marker has to be stubbed.
BUNDLE_SOURCES = (
    "analyzer/*.py",
    "awsclients/*.py",
    "edge_package/__init__.py",
    "edge_package/contracts.py",
    "edge_package/emotion_model.py",
)
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)  # fixed: the same sources give the same bytes and the same key


def _add_file(archive: zipfile.ZipFile, name: str, data: bytes) -> None:
    info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
    info.external_attr = 0o644 << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    archive.writestr(info, data)


def _vendor_dependencies(target: Path) -> None:
    """Linux wheels for the python3.11 x86_64 Lambda runtime."""
    pins = list(ANALYZER_DEPENDENCIES)
    command = [
        sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
        "--target", str(target), "--platform", "manylinux2014_x86_64", "--implementation", "cp",
        "--python-version", "3.11", "--only-binary=:all:", "--no-compile", *pins,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise DeployError(
            "could not download the analyzer's dependencies "
            f"({' '.join(pins)}):\n{result.stderr.strip()}\n"
            "Build without them (--no-vendor) and pass Lambda layers in AnalyzerLayerArns instead."
        )


def build_analyzer_bundle(*, repo_root: Path = REPO_ROOT, vendor: bool = False) -> bytes:
    """The Lambda zip: analyzer + the contracts it imports + awsclients (+ deps)."""
    files: dict[str, bytes] = {}
    for pattern in BUNDLE_SOURCES:
        matches = sorted(repo_root.glob(pattern))
        if not matches:
            raise DeployError(f"analyzer bundle: nothing matches {pattern} under {repo_root}")
        for path in matches:
            files[path.relative_to(repo_root).as_posix()] = path.read_bytes()
    if vendor:
        with tempfile.TemporaryDirectory() as tmp:
            _vendor_dependencies(Path(tmp))
            for path in sorted(Path(tmp).rglob("*")):
                if path.is_file() and "__pycache__" not in path.parts:
                    files.setdefault(path.relative_to(tmp).as_posix(), path.read_bytes())
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name in sorted(files):
            _add_file(archive, name, files[name])
    return buffer.getvalue()


def upload_analyzer_bundle(bundle: bytes, bucket: str, *, s3=None) -> str:
    """Upload under a content-addressed key, so unchanged code means an unchanged stack."""
    key = (
        f"{ANALYZER_BUNDLE_PREFIX}stagepulse-analyzer-{hashlib.sha256(bundle).hexdigest()[:16]}.zip"
    )
    (s3 or aws.client("s3")).put_object(
        Bucket=bucket, Key=key, Body=bundle, ContentType="application/zip"
    )
    return key
