"""The demo path from the shell: register, gate, roll out, watch a simulated camera switch."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command

from detectors.models import FaceModel

pytestmark = pytest.mark.django_db


def run(*args) -> str:
    out = io.StringIO()
    call_command("face_model", *args, stdout=out)
    return out.getvalue()


def test_upload_gate_rollout_and_a_camera_that_switches(moto_aws, ours, short_range, full_range):
    thing = ours.device.thing_name
    assert "runs the bundled model" in run("camera", thing, "--frames=1")
    run("upload", "--organization=ours-org", "--name=short", short_range.path)
    short = FaceModel.objects.get(name="short")
    with pytest.raises(CommandError, match="Promotion refused"):
        run("promote", str(short.id))
    run("upload", "--organization=ours-org", "--name=full", full_range.path)
    full = FaceModel.objects.get(name="full")
    out = run("promote", str(full.id))
    assert "is now the current model" in out and "precision" in out
    assert "config saved" in run("rollout", str(full.id), f"--device={thing}")
    out = run("camera", thing, "--frames=1")
    assert f"runs the rolled_out model {full_range.sha256[:12]}" in out
    assert "back to the bundled model" in run("rollback", thing)
    listing = run("list", "--organization=ours-org")
    assert "refused" in listing and "promoted" in listing
