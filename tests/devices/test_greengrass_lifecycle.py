"""The Greengrass v2 component run the way a core runs it: the service's recipe, rendered, and its
Install and Run scripts executed with `sh -c` in the component's work folder, with HOME pointing
nowhere, from a release zip unpacked where Greengrass unpacks it.

What is real: the recipe text the service sends (component_recipe), the release zip
(build_artifact) and its requirements files, recipe-variable substitution ({work:path},
{artifacts:decompressedPath}, {configuration:/...}), `python3 -m venv` creating the venv, that
venv's own pip resolving every pin of the release, and the venv's python running
`edge_package.greengrass` to the end of a video file.

What is not: no nucleus and no ggc_user (the scripts run as this user, with HOME naming a file);
IPC is a fake `awsiot` package written into the test's tmp folder (never shipped) that answers
get_configuration from a JSON file and records publish_to_iot_core. To stay offline, pip runs
with PIP_NO_INDEX and the new venv sees this test run's installed packages through a .pth file,
so "Install" proves the release's pins resolve against them, not that PyPI serves them; the fake
`awsiot` comes with dist-info stubs for awsiotsdk and awscrt at the locked versions. AWS calls
(the shadow read, S3) go to a closed local port and fail fast, as they would offline.
"""

from __future__ import annotations

import io
import json
import platform
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from devices.models import EdgeRelease
from devices.services.deployments import component_recipe

yaml = pytest.importorskip("yaml")
pytestmark = pytest.mark.slow

ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "aarch64", "arm64": "aarch64"}
PASSWORD = "p$(touch PWNED)`touch PWNED2`'\"q"

FAKE_CLIENT = '''
"""Test-only stand-in for awsiot.greengrasscoreipc.clientv2 (the nucleus IPC client)."""
import json
import os
import types


class GreengrassCoreIPCClientV2:
    def __init__(self):
        with open(os.environ["STAGEPULSE_TEST_IPC_CONFIG"], encoding="utf-8") as handle:
            self.configuration = json.load(handle)

    def get_configuration(self, *, component_name, key_path):
        assert component_name == "com.stagepulse.Edge", component_name
        node = self.configuration
        for key in key_path:
            node = node[key]
        if not isinstance(node, dict):  # a leaf, answered the way the nucleus does
            node = {key_path[-1]: node}
        return types.SimpleNamespace(value=node)

    def publish_to_iot_core(self, *, topic_name, qos, payload):
        with open(os.environ["STAGEPULSE_TEST_IPC_PUBLISHED"], "a", encoding="utf-8") as out:
            out.write(json.dumps({"topic": topic_name, "payload": json.loads(payload)}) + "\\n")
'''


def _fake_ipc(folder: Path, locked: dict) -> Path:
    package = folder / "awsiot" / "greengrasscoreipc"
    package.mkdir(parents=True)
    (folder / "awsiot" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "clientv2.py").write_text(FAKE_CLIENT)
    for name in ("awsiotsdk", "awscrt"):  # what the real awsiot would be installed as
        info = folder / f"{name}-{locked[name]}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {locked[name]}\n"
        )
    return folder


# What `python3 -m venv` adds after making the folders: ensurepip installs the wheels it bundles
# (pip, setuptools) into the new venv by running pip on them, ~4 s of CPU (ten on a loaded
# machine). The shim unpacks the same wheels into the venv's site-packages and writes pip's
# console scripts, as installing them does; the venv's own pip (ensurepip's version) then runs the
# Install script's `pip install`s as before. (The scripts get no .pyc files ahead: pip compiles
# what it imports on its first run.)
BUNDLED_WHEELS = r"""
import ensurepip, pathlib, site, sys, zipfile
site_packages = pathlib.Path(site.getsitepackages()[0])
bundled = sorted((pathlib.Path(ensurepip.__file__).parent / "_bundled").glob("*.whl"))
assert any(w.name.startswith("pip-") for w in bundled), bundled
for wheel in bundled:
    zipfile.ZipFile(wheel).extractall(site_packages)
bin = pathlib.Path(sys.prefix) / "bin"
version = "%d.%d" % sys.version_info[:2]
for name in ("pip", "pip3", "pip" + version):
    script = bin / name
    script.write_text(
        f"#!{bin / 'python'}\n"
        "import sys\nfrom pip._internal.cli.main import main\nsys.exit(main())\n"
    )
    script.chmod(0o755)
"""


def _python3_shim(folder: Path, paths: list[str]) -> Path:
    """`python3` for the Install script: the real venv module (its pip from ensurepip's wheels,
    BUNDLED_WHEELS), then a .pth that lets the new venv see the fake IPC and this run's packages
    (the offline stand-in for PyPI)."""
    folder.mkdir()
    (folder / "bundled_wheels.py").write_text(BUNDLED_WHEELS)
    shim = folder / "python3"
    pth = "\\n".join(paths)
    base = getattr(sys, "_base_executable", sys.executable)
    shim.write_text(
        "#!/bin/sh\n"
        'if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then\n'
        "  shift 2\n"
        f'  "{base}" -m venv --without-pip "$@" || exit $?\n'
        f'  "$1/bin/python" "{folder / "bundled_wheels.py"}" || exit $?\n'
        '  site=$("$1/bin/python" -c "import site; print(site.getsitepackages()[0])")\n'
        f"  printf '{pth}\\n' > \"$site/_stagepulse_test.pth\"\n"
        "  exit 0\n"
        "fi\n"
        f'exec "{base}" "$@"\n'
    )
    shim.chmod(0o755)
    return folder


def interpolate(script: str, variables: dict, configuration: dict) -> str:
    """Greengrass's recipe variables: {work:path}, {artifacts:decompressedPath} and
    {configuration:/json/pointer} (the one a deployment's merge can reach)."""

    def pointer(match):
        node = configuration
        for key in match.group(1).strip("/").split("/"):
            node = node[key]
        return node if isinstance(node, str) else json.dumps(node)

    script = re.sub(r"\{configuration:(/[^}]*)\}", pointer, script)
    for name, value in variables.items():
        script = script.replace("{" + name + "}", value)
    assert not re.search(r"\{[a-z]+:[^}]+\}", script), script
    return script


def _write_clip(path: Path, frames: int = 4) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10, (320, 240))
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(40, 200, (240, 320, 3), dtype=np.uint8))
    writer.release()


def test_the_component_installs_and_runs_as_greengrass_runs_it_without_a_home(
    tmp_path, edge_artifact
):
    arch = ARCH.get(platform.machine())
    if arch is None:
        pytest.skip(f"the recipe declares no manifest for {platform.machine()}")
    data, manifest = edge_artifact  # build_artifact(), once per session
    decompressed = tmp_path / "artifacts-unarchived" / "com.stagepulse.Edge" / "9.9.9"
    zipfile.ZipFile(io.BytesIO(data)).extractall(decompressed / "stagepulse-edge")
    work = tmp_path / "work" / "com.stagepulse.Edge"
    work.mkdir(parents=True)

    recipe = yaml.safe_load(component_recipe(EdgeRelease(version="9.9.9", bucket="b", key="k")))
    (lifecycle,) = [
        m["Lifecycle"] for m in recipe["Manifests"] if m["Platform"]["architecture"] == arch
    ]
    clips = tmp_path / "clips"
    clips.mkdir()
    clip = clips / f"cam {PASSWORD}.mp4"  # a source full of shell syntax, opened untouched
    _write_clip(clip)
    configuration = recipe["ComponentConfiguration"]["DefaultConfiguration"]
    configuration["stagepulse"].update(
        device="cam-7", festival="fest", stage="main", region="eu-west-1"
    )
    configuration["source"] = str(clip)  # what the deployment's merge sets per device
    ipc_config = tmp_path / "ipc-config.json"
    ipc_config.write_text(json.dumps(configuration))
    published = tmp_path / "published.jsonl"

    variables = {"work:path": str(work), "artifacts:decompressedPath": str(decompressed)}
    install = interpolate(lifecycle["Install"]["Script"], variables, configuration)
    run = interpolate(lifecycle["Run"]["Script"], variables, configuration)
    assert "PWNED" not in install + run  # the source never reaches a script

    not_a_home = tmp_path / "home"  # a file: no one, root included, can make folders under it
    not_a_home.write_text("")
    fake = _fake_ipc(tmp_path / "fake-ipc", manifest["locked"])
    shim = _python3_shim(tmp_path / "shim", [str(fake), sysconfig.get_paths()["purelib"]])
    env = {
        "PATH": f"{shim}:/usr/bin:/bin",
        "HOME": str(not_a_home),  # ggc_user has no home folder
        "PIP_NO_INDEX": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "STAGEPULSE_TEST_IPC_CONFIG": str(ipc_config),
        "STAGEPULSE_TEST_IPC_PUBLISHED": str(published),
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",  # nothing listens: offline, fails fast
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_MAX_ATTEMPTS": "1",
    }

    def step(script: str, timeout: int):
        return subprocess.run(
            ["sh", "-c", script],
            cwd=work,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    installed = step(install, 600)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert (work / "venv" / "bin" / "python").exists()

    ran = step(run, 300)
    output = ran.stdout + ran.stderr
    assert ran.returncode == 0, output
    reports = [json.loads(line) for line in published.read_text().splitlines()]
    assert reports[-1]["topic"] == "stagepulse/telemetry/cam-7"
    assert reports[-1]["payload"]["frames"] == 4  # every frame of the file, then a clean stop
    assert (work / "spool" / "cam-7").is_dir()  # in the work folder, not under a home
    assert not list(tmp_path.rglob("PWNED*"))  # nothing in the source was run by a shell

    # A camera's RTSP password: it reaches the component and never its output.
    configuration["source"] = f"rtsp://cam:{PASSWORD}@127.0.0.1:9/stream1"
    ipc_config.write_text(json.dumps(configuration))
    refused = step(run, 120)
    output = refused.stdout + refused.stderr
    assert refused.returncode == 2, output  # nothing answers there: cannot start, says why
    assert "rtsp://cam:***@127.0.0.1:9/stream1" in output
    assert "touch" not in output and "PWNED" not in output
    assert not list(tmp_path.rglob("PWNED*"))


def test_the_lifecycle_scripts_never_read_the_configuration_through_the_shell():
    """Every device gets the same scripts: nothing a deployment sets is interpolated into them."""
    recipe = yaml.safe_load(component_recipe(EdgeRelease(version="1.0.0", bucket="b", key="k")))
    for manifest in recipe["Manifests"]:
        for phase in ("Install", "Run"):
            assert "{configuration:" not in manifest["Lifecycle"][phase]["Script"]
        assert "{work:path}/spool" in manifest["Lifecycle"]["Run"]["Script"]
        assert "{work:path}/models" in manifest["Lifecycle"]["Run"]["Script"]
