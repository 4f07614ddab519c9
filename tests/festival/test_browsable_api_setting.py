"""The browsable API (HTML) is a development tool: production answers JSON only unless asked."""

import os

import pytest

from tests.fresh_processes import run_fresh

GOOD_KEY = "k" * 20 + "production-secret-key-for-the-check-only-0123456789"
PRINT_RENDERERS = (
    "from rest_framework.settings import api_settings as s; "
    "print(','.join(c.__name__ for c in s.DEFAULT_RENDERER_CLASSES))"
)


PRODUCTION = {
    "STAGEPULSE_ENV": "production",
    "SECRET_KEY": GOOD_KEY,
    "ALLOWED_HOSTS": "stagepulse.example.org",
    # production refuses the embedded defaults; nothing connects while settings load
    "DATABASE_URL": "postgres://stagepulse@db.example.org:5432/stagepulse",
    "CACHE_URL": "redis://cache.example.org:6379/0",
    "CELERY_BROKER_URL": "redis://cache.example.org:6379/1",
}


CASES = {
    "production": (PRODUCTION, "JSONRenderer"),
    "production-opted-in": (
        {**PRODUCTION, "BROWSABLE_API": "true"},
        "JSONRenderer,BrowsableAPIRenderer",
    ),
    "dev": ({"STAGEPULSE_ENV": "dev"}, "JSONRenderer,BrowsableAPIRenderer"),
    "dev-opted-out": ({"STAGEPULSE_ENV": "dev", "BROWSABLE_API": "false"}, "JSONRenderer"),
}


@pytest.fixture(scope="module")
def renderers(tmp_path_factory) -> dict[str, str]:
    """Each case's renderers, printed by `manage.py shell` started in its own environment
    (forked from one pre-imported interpreter, tests/fresh_processes.py)."""
    folder = tmp_path_factory.mktemp("browsable-api")
    clean = {k: v for k, v in os.environ.items() if k not in {"DEBUG", "BROWSABLE_API"}}
    plan = {
        name: {
            "args": ["shell", "-c", PRINT_RENDERERS],
            "env": {**clean, "STAGEPULSE_VAR_DIR": str(folder / name), **env},
        }
        for name, (env, _) in CASES.items()
    }
    runs = run_fresh(plan, folder)
    for name, run in runs.items():
        assert run.returncode == 0, (name, run.stderr[-2000:])
    return {name: run.stdout.strip().splitlines()[-1] for name, run in runs.items()}


@pytest.mark.parametrize("case", list(CASES))
def test_browsable_api_only_in_development_or_when_asked(renderers, case):
    assert renderers[case] == CASES[case][1]
