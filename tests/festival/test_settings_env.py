"""Settings read yes/no variables strictly, and importing them creates no folder: the folders
under STAGEPULSE_VAR_DIR are made by whoever needs them (the SQLite backend on its first
connection, the Celery app for the embedded broker and results, run_demo for its logs)."""

import os
import subprocess
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from stagepulse.settings import env_bool
from tests.fresh_processes import run_fresh

CONFIG_NAMES = {"DATABASE_URL", "CACHE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND", "DEBUG"}


@pytest.mark.parametrize("value", ["1", "true", "TRUE", " yes ", "on"])
def test_yes_words_read_as_true(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    assert env_bool("SOME_FLAG") is True


@pytest.mark.parametrize("value", ["0", "false", "False", "no", "off"])
def test_no_words_read_as_false(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    assert env_bool("SOME_FLAG", default=True) is False


@pytest.mark.parametrize("value", [None, "", "  "])
def test_unset_or_empty_is_the_default(monkeypatch, value):
    if value is None:
        monkeypatch.delenv("SOME_FLAG", raising=False)
    else:
        monkeypatch.setenv("SOME_FLAG", value)
    assert env_bool("SOME_FLAG", default=True) is True
    assert env_bool("SOME_FLAG", default=False) is False


@pytest.mark.parametrize("value", ["ture", "flase", "2", "enabled"])
def test_a_typo_is_refused_not_read_as_false(monkeypatch, value):
    monkeypatch.setenv("SOME_FLAG", value)
    with pytest.raises(ImproperlyConfigured, match=f"SOME_FLAG='{value}' is not a yes/no"):
        env_bool("SOME_FLAG")


FOLDER_CODE = (
    "import django; django.setup()\n"
    "from django.db import connection\n"
    "from stagepulse.celery import app\n"
    "connection.ensure_connection()\n"
    "print(app.conf.broker_url)\n"
)
# name -> (code for `python -c`, environment on top of the test run's, less CONFIG_NAMES); the
# run's STAGEPULSE_VAR_DIR is its own empty folder's "var" (not made beforehand)
STARTS = {
    "debug-typo": ("import django; django.setup()", {"DEBUG": "ture"}),
    "import-only": (
        "import django; django.setup(); from django.conf import settings; print(settings.VAR_DIR)",
        {},
    ),
    "folders-where-needed": (FOLDER_CODE, {}),
    "redis-broker": (
        "import django; django.setup(); from stagepulse.celery import app; app.conf.broker_url",
        {
            "CELERY_BROKER_URL": "redis://127.0.0.1:1/0",
            "DATABASE_URL": "sqlite:///{folder}/db.sqlite3",
        },
    ),
}


@pytest.fixture(scope="module")
def started(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Each start's result and its STAGEPULSE_VAR_DIR, every start a fresh Django in its own
    process (forked from one pre-imported interpreter, tests/fresh_processes.py)."""
    root = tmp_path_factory.mktemp("settings-env")
    clean = {k: v for k, v in os.environ.items() if k not in CONFIG_NAMES}
    plan, var_dirs = {}, {}
    for name, (code, env) in STARTS.items():
        folder = root / name
        folder.mkdir()
        var_dirs[name] = folder / "var"
        plan[name] = {
            "code": code,
            "env": {
                **clean,
                "DJANGO_SETTINGS_MODULE": "stagepulse.settings",
                "STAGEPULSE_VAR_DIR": str(var_dirs[name]),
                **{key: value.format(folder=folder) for key, value in env.items()},
            },
        }
    runs = run_fresh(plan, root)
    return {name: (runs[name], var_dirs[name]) for name in STARTS}


def test_debug_typo_stops_the_start(started):
    result, _ = started["debug-typo"]
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "DEBUG='ture'" in result.stderr


def test_importing_the_settings_creates_no_folder(started):
    result, var = started["import-only"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(var)
    assert not var.exists()


def test_the_folders_are_made_where_they_are_needed(started):
    result, var = started["folders-where-needed"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert (var / "stagepulse.sqlite3").is_file()  # the SQLite backend, on connecting
    broker = var / "celery" / "broker"
    for folder in (broker, broker / "processed", broker / "control", var / "celery" / "results"):
        assert folder.is_dir(), folder  # the Celery app, when configured


def test_no_embedded_folders_with_a_redis_broker(started):
    result, var = started["redis-broker"]
    assert result.returncode == 0, result.stderr[-2000:]
    assert not (var / "celery").exists()
