"""Production refuses to start without its secrets, and passes Django's deployment checks."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "production-secret-key-for-the-check-only-0123456789"


def run_manage(tmp_path, *args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ALLOWED_HOSTS"}}
    clean.update(STAGEPULSE_VAR_DIR=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_without_secret_key_or_hosts_is_a_clear_error(tmp_path):
    result = run_manage(tmp_path, "check", STAGEPULSE_ENV="production")
    assert result.returncode != 0
    assert "needs SECRET_KEY and ALLOWED_HOSTS" in result.stderr


def test_production_with_short_secret_key_is_refused(tmp_path):
    result = run_manage(
        tmp_path,
        "check",
        STAGEPULSE_ENV="production",
        SECRET_KEY="short",
        ALLOWED_HOSTS="stagepulse.example.org",
    )
    assert result.returncode != 0
    assert "at least 50 characters" in result.stderr


def test_unknown_mode_is_refused(tmp_path):
    result = run_manage(tmp_path, "check", STAGEPULSE_ENV="staging")
    assert result.returncode != 0
    assert "STAGEPULSE_ENV='staging'" in result.stderr


def test_check_deploy_is_clean_in_production(tmp_path):
    result = run_manage(
        tmp_path,
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        STAGEPULSE_ENV="production",
        SECRET_KEY=GOOD_KEY,
        ALLOWED_HOSTS="stagepulse.example.org",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout
