"""Production refuses to start without its secrets or on the embedded defaults (SQLite, file
cache, folder broker), passes Django's deployment checks, and sets database connection reuse
deliberately.

Each scenario is a real `manage.py` run in its own process with its own environment, as a
deployment starts it, forked from one interpreter that imported Django and the third-party
packages once (tests/fresh_processes.py): the settings, the app registry and the checks are each
scenario's own. Each test still asserts on its own scenario's exit status and
output (the module-scoped `runs` fixture runs them all at once, the first time a test asks)."""

import os
import subprocess

import pytest

from tests.fresh_processes import run_fresh

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
EMBEDDED_BACKENDS = [
    ("DATABASE_URL", "sqlite:////tmp/prod.sqlite3"),
    ("CACHE_URL", "locmem://"),
    ("CELERY_BROKER_URL", "filesystem://"),
]
DATABASE_SETTINGS = (
    "from django.conf import settings; d = settings.DATABASES['default']; "
    "print(d['CONN_MAX_AGE'], d['CONN_HEALTH_CHECKS'])"
)

# name -> (manage.py arguments, environment on top of the test run's, less CONFIG_NAMES)
SCENARIOS = {
    "no-secret-key-or-hosts": (["check"], {"STAGEPULSE_ENV": "production"}),
    "short-secret-key": (
        ["check"],
        {
            "STAGEPULSE_ENV": "production",
            "SECRET_KEY": "short",
            "ALLOWED_HOSTS": "stagepulse.example.org",
        },
    ),
    "unknown-mode": (["check"], {"STAGEPULSE_ENV": "staging"}),
    "check-deploy": (["check", "--deploy", "--fail-level", "WARNING"], PRODUCTION),
    **{
        f"without-{missing}": (
            ["check"],
            {k: v for k, v in PRODUCTION.items() if k != missing},
        )
        for missing in SERVICES
    },
    **{
        f"embedded-{name}": (["check"], {**PRODUCTION, name: value})
        for name, value in EMBEDDED_BACKENDS
    },
    **{
        f"embedded-defaults-{mode}": (["check"], {"STAGEPULSE_ENV": mode})
        for mode in ("dev", "demo", "test")
    },
    "database-default": (["shell", "--no-imports", "-c", DATABASE_SETTINGS], PRODUCTION),
    "database-tuned": (
        ["shell", "--no-imports", "-c", DATABASE_SETTINGS],
        {"DB_CONN_MAX_AGE": "30", **SERVICES},
    ),
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, subprocess.CompletedProcess]:
    """Every scenario's manage.py run, each with its own (empty) STAGEPULSE_VAR_DIR."""
    folder = tmp_path_factory.mktemp("settings-guard")
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_NAMES}
    plan = {}
    for name, (args, env) in SCENARIOS.items():
        var = folder / name
        var.mkdir()
        plan[name] = {"args": args, "env": {**clean, "STAGEPULSE_VAR_DIR": str(var), **env}}
    return run_fresh(plan, folder)


def test_production_without_secret_key_or_hosts_is_a_clear_error(runs):
    result = runs["no-secret-key-or-hosts"]
    assert result.returncode != 0
    assert "needs SECRET_KEY and ALLOWED_HOSTS" in result.stderr


def test_production_with_short_secret_key_is_refused(runs):
    result = runs["short-secret-key"]
    assert result.returncode != 0
    assert "at least 50 characters" in result.stderr


def test_unknown_mode_is_refused(runs):
    result = runs["unknown-mode"]
    assert result.returncode != 0
    assert "STAGEPULSE_ENV='staging'" in result.stderr


def test_check_deploy_is_clean_in_production(runs):
    result = runs["check-deploy"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


@pytest.mark.parametrize("missing", sorted(SERVICES))
def test_production_without_a_service_url_refuses_to_start(runs, missing):
    result = runs[f"without-{missing}"]
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and missing in result.stderr
    others = set(SERVICES) - {missing}
    assert not any(
        f"set {name}" in result.stderr or f"; {name}" in result.stderr for name in others
    )


@pytest.mark.parametrize("name, value", EMBEDDED_BACKENDS)
def test_production_refuses_the_embedded_backends_named_explicitly(runs, name, value):
    result = runs[f"embedded-{name}"]
    assert result.returncode != 0
    assert name in result.stderr


def test_embedded_defaults_still_start_outside_production(runs):
    for mode in ("dev", "demo", "test"):
        result = runs[f"embedded-defaults-{mode}"]
        assert result.returncode == 0, result.stderr[-2000:]


def test_postgres_connections_are_not_kept_idle_by_default_and_are_health_checked(runs):
    """A persistent connection per gthread thread, kept while the thread idles, exhausted
    PostgreSQL's max_connections: by default each request opens and closes its own."""
    result = runs["database-default"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.split() == ["0", "True"]
    tuned = runs["database-tuned"]
    assert tuned.stdout.split() == ["30", "True"]
