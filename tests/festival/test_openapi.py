"""The OpenAPI document generates without warnings and validates (mobile clients are generated
from it), and Swagger UI is served."""

import subprocess
import sys
from pathlib import Path

import yaml
from openapi_spec_validator import validate

ROOT = Path(__file__).resolve().parents[2]


def test_schema_is_valid_openapi_3(tmp_path):
    target = tmp_path / "openapi.yaml"
    result = subprocess.run(
        [sys.executable, "manage.py", "spectacular", "--fail-on-warn", "--file", str(target)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    document = yaml.safe_load(target.read_text())
    validate(document)
    paths = document["paths"]
    assert "/api/v1/public/festivals/{slug}/lineup/" in paths
    assert "/api/v1/festivals/{id}/lineup/import/" in paths


def test_swagger_ui_is_served(client, db):
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/schema/").status_code == 200
