"""docs/edge.md's test-footage line for a device install works from an unpacked release zip alone.

The line is taken from the docs as written; only `venv/bin/python` becomes this interpreter (no
venv is built here) and the output goes to tmp_path. The checkout is kept off the path, so what
runs is the release's `edge_package`. scikit-image and matplotlib come from this test run's
packages: the docs' first line installs them on a device.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import cv2

DOCS = Path(__file__).resolve().parents[2] / "docs" / "edge.md"


def _device_footage_lines() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    block = re.search(r"<!-- device-footage -->\n```bash\n(.*?)```", text, re.S)
    assert block, "docs/edge.md lost its device-footage block"
    return block.group(1).strip().splitlines()


def test_the_device_footage_one_liner_runs_from_an_unpacked_release(tmp_path, edge_artifact):
    data, _ = edge_artifact  # build_artifact(), once per session
    zipfile.ZipFile(io.BytesIO(data)).extractall(tmp_path / "current")
    line = _device_footage_lines()[1]
    assert line.startswith("PYTHONPATH=current venv/bin/python -c ")
    # the footage paths first: the interpreter itself may live under /tmp (a CI clone)
    line = line.replace("/tmp/", f"{tmp_path}/").replace("venv/bin/python", sys.executable)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        ["sh", "-c", line],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    video = cv2.VideoCapture(str(tmp_path / "crowd.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 90
    assert int(video.get(cv2.CAP_PROP_FRAME_WIDTH)) == 1280


def test_the_device_footage_lines_use_the_install_layout():
    first, _, run = _device_footage_lines()
    assert first.startswith("cd /opt/stagepulse && ")
    assert "--config /etc/stagepulse/stagepulse.json" in run
