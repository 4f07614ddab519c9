"""A real Celery worker process answers the health task through the configured broker
(the embedded filesystem broker by default; CI runs it again on Redis). The var folder does not
exist beforehand: the worker and the sender make the broker's folders themselves."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.celery_worker, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_real_worker_runs_the_health_task(tmp_path):
    var = tmp_path / "var"  # not created: settings make no folders, the Celery app does
    env = {**os.environ, "STAGEPULSE_VAR_DIR": str(var), "PYTHONUNBUFFERED": "1"}
    env.setdefault("DATABASE_URL", f"sqlite:///{tmp_path / 'worker.sqlite3'}")
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "stagepulse",
            "worker",
            "--pool=solo",
            "--loglevel=WARNING",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "-Q",
            f"health-{os.getpid()}",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        probe = (
            "import django, os, json; django.setup();"
            "from festival.tasks import health_check;"
            f"r = health_check.apply_async(queue='health-{os.getpid()}');"
            "print(json.dumps(r.get(timeout=60)))"
        )
        started = time.monotonic()
        result = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "stagepulse.settings"},
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        assert '"status": "ok"' in result.stdout
        assert '"database": true' in result.stdout
        assert time.monotonic() - started < 90
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=20)
        except subprocess.TimeoutExpired:
            worker.kill()
