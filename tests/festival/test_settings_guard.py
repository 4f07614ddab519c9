"""Production refuses to start without its secrets or on the embedded defaults (SQLite, file
cache, folder broker), passes Django's deployment checks, and sets database connection reuse
deliberately."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "production-secret-key-for-the-check-only-0123456789"
SERVICES = {
    "DATABASE_URL": "postgres://stagepulse@db.invalid:5432/stagepulse",
    "CACHE_URL": "redis://cache.invalid:6379/0",
    "CELERY_BROKER_URL": "redis://cache.invalid:6379/1",
}
PRODUCTION = {
    "STAGEPULSE_ENV": "production",
    "SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "stagepulse.example.org",
    **SERVICES,
}
CONFIG_NAMES = {"SECRET_KEY", "ALLOWED_HOSTS", "DB_CONN_MAX_AGE", *SERVICES}


def run_manage(tmp_path, *args, **env):
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_NAMES}
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
        **PRODUCTION,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", sorted(SERVICES))
def test_production_without_a_service_url_refuses_to_start(tmp_path, missing):
    env = {k: v for k, v in PRODUCTION.items() if k != missing}
    result = run_manage(tmp_path, "check", **env)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr
    others = set(SERVICES) - {missing}
    assert not any(
        f"set {name}" in result.stderr or f"; {name}" in result.stderr for name in others
    )


@pytest.mark.parametrize(
    "name, value",
    [
        ("DATABASE_URL", "sqlite:////tmp/prod.sqlite3"),
        ("CACHE_URL", "locmem://"),
        ("CELERY_BROKER_URL", "filesystem://"),
    ],
)
def test_production_refuses_the_embedded_backends_named_explicitly(tmp_path, name, value):
    result = run_manage(tmp_path, "check", **{**PRODUCTION, name: value})
    assert result.returncode != 0
    assert name in result.stderr


def test_embedded_defaults_still_start_outside_production(tmp_path):
    for mode in ("dev", "demo", "test"):
        result = run_manage(tmp_path, "check", STAGEPULSE_ENV=mode)
        assert result.returncode == 0, result.stderr[-2000:]


DATABASE_SETTINGS = (
    "from django.conf import settings; d = settings.DATABASES['default']; "
    "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])"
)


def test_postgres_connections_are_not_kept_idle_by_default_and_are_health_checked(tmp_path):
    """A persistent connection per gthread thread, kept while the thread idles, exhausted
    PostgreSQL's max_connections: by default each request opens and closes its own."""
    result = run_manage(tmp_path, "shell", "--no-imports", "-c", DATABASE_SETTINGS, **PRODUCTION)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "True"]
    tuned = run_manage(
        tmp_path, "shell", "--no-imports", "-c", DATABASE_SETTINGS, DB_CONN_MAX_AGE="30", **SERVICES
    )
    assert tuned.stdout.split() == ["30", "True"]
