"""What a DeepLens runs today: the standalone runtime as a systemd service reading awscam, with
awscam imported before cv2. A fake `awscam` (written by the test, never shipped) records whether
cv2 was already loaded when it was imported, and serves frames."""

from __future__ import annotations

import configparser
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from edge_package import cli

REPO = Path(__file__).resolve().parents[2]
UNIT = REPO / "edge_package" / "systemd" / "stagepulse-edge.service"

FAKE_AWSCAM = """
import os
import sys

import numpy as np

with open(os.environ["AWSCAM_REPORT"], "w") as report:
    report.write("cv2 first" if "cv2" in sys.modules else "awscam first")


def getLastFrame():
    return True, np.full((240, 320, 3), 90, np.uint8)
"""


@pytest.fixture
def device(tmp_path):
    """A fake DeepLens image: awscam on the path, and where the fake writes its report."""
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "awscam.py").write_text(FAKE_AWSCAM)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(REPO), str(tmp_path / "device")]),
        "AWSCAM_REPORT": str(tmp_path / "report"),
        "HOME": str(tmp_path),
    }
    return env, tmp_path / "report"


def test_the_deeplens_lambda_imports_awscam_before_cv2(device):
    env, report = device
    code = "import edge_package.deeplens, edge_package.pipeline, cv2"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert report.read_text() == "awscam first"


def _unit() -> configparser.ConfigParser:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str
    unit.read(UNIT)
    return unit


def test_the_systemd_unit_runs_the_standalone_runtime_with_its_source_off_the_command_line():
    service = _unit()["Service"]
    argv = shlex.split(service["ExecStart"])
    assert argv[:4] == ["/opt/stagepulse/venv/bin/python", "-m", "edge_package", "run"]
    assert "--source" not in argv  # from STAGEPULSE_SOURCE in the EnvironmentFile
    assert service["EnvironmentFile"] == "/etc/stagepulse/source.env"
    assert service["SupplementaryGroups"] == "video"
    assert service["User"] != "root"
    args = cli.build_parser().parse_args(argv[3:])
    assert args.config == "/etc/stagepulse/stagepulse.json"


def test_the_service_command_reads_the_deeplens_camera_and_stops_cleanly(device, tmp_path):
    """ExecStart as the unit says, with its folders moved into tmp_path, a config from a
    registration bundle, and STAGEPULSE_SOURCE=deeplens from the EnvironmentFile."""
    env, report = device
    service = _unit()["Service"]
    config = tmp_path / "stagepulse.json"
    config.write_text(
        json.dumps({"device": "lens-1", "festival": "fest", "stage": "main", "bucket": "crops"})
    )
    argv = shlex.split(service["ExecStart"])
    argv[0] = sys.executable
    argv[argv.index("--config") + 1] = str(config)
    state = tmp_path / "state"
    state.mkdir()
    env.update(
        STAGEPULSE_SOURCE="deeplens",
        STAGEPULSE_SPOOL_DIR=str(state / "spool"),
        STAGEPULSE_MODEL_DIR=str(state / "models"),
        AWS_ENDPOINT_URL="http://127.0.0.1:9",
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    done = subprocess.run(
        [*argv, "--max-frames", "3", "--telemetry", "none"],
        env=env,
        cwd=state,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1])["frames"] == 3
    assert report.read_text() == "awscam first"
    assert (state / "spool" / "lens-1").is_dir()
