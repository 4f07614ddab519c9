"""The browsable API (HTML) is a development tool: production answers JSON only unless asked."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k" * 20 + "production-secret-key-for-the-check-only-0123456789"
PRINT_RENDERERS = (
    "from rest_framework.settings import api_settings as s; "
    "print(','.join(c.__name__ for c in s.DEFAULT_RENDERER_CLASSES))"
)


def renderers(tmp_path, **env) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "BROWSABLE_API"}}
    clean.update(STAGEPULSE_VAR_DIR=str(tmp_path), **env)
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", PRINT_RENDERERS],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout.strip().splitlines()[-1]


PRODUCTION = {
    "STAGEPULSE_ENV": "production",
    "SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "stagepulse.example.org",
    # production refuses the embedded defaults; nothing connects while settings load
    "DATABASE_URL": "postgres://stagepulse@db.example.org:5432/stagepulse",
    "CACHE_URL": "redis://cache.example.org:6379/0",
    "CELERY_BROKER_URL": "redis://cache.example.org:6379/1",
}


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (PRODUCTION, "JSONRenderer"),
        ({**PRODUCTION, "BROWSABLE_API": "true"}, "JSONRenderer,BrowsableAPIRenderer"),
        ({"STAGEPULSE_ENV": "dev"}, "JSONRenderer,BrowsableAPIRenderer"),
        ({"STAGEPULSE_ENV": "dev", "BROWSABLE_API": "false"}, "JSONRenderer"),
    ],
    ids=["production", "production-opted-in", "dev", "dev-opted-out"],
)
def test_browsable_api_only_in_development_or_when_asked(tmp_path, env, expected):
    assert renderers(tmp_path, **env) == expected
