"""The layering holds without function-level imports: import-linter (pyproject.toml) sees every
import, but an import hidden inside a function is how a cycle used to be dodged, so server code
imports the project's packages at module level only. AppConfig.ready() is the one exception (Django
loads models before it, and signal receivers are connected there). Lazy imports of the camera
package (OpenCV, MediaPipe) stay allowed: they keep heavy libraries out of processes that never
use them, they dodge no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_PACKAGES = ("stagepulse", "operations", "fanapi", "festival", "stages", "devices")
SERVER_PACKAGES += ("emotions", "detectors")
PROJECT = (*SERVER_PACKAGES, "analyzer", "awsclients", "infra")


def _project_module(node: ast.AST) -> str | None:
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        names = [node.module]
    elif isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        return None
    for name in names:
        if name.split(".")[0] in PROJECT:
            return name
    return None


def _function_level_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if path.name == "apps.py" and function.name == "ready":
            continue
        for node in ast.walk(function):
            module = _project_module(node)
            if module:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {function.name}: {module}")
    return sorted(set(found))


def test_server_code_imports_the_project_at_module_level_only():
    files = [p for package in SERVER_PACKAGES for p in (ROOT / package).rglob("*.py")]
    assert len(files) > 100  # the packages were found
    offenders = [line for path in files for line in _function_level_imports(path)]
    assert offenders == []
