"""edge_package must run on Python 3.8: the newest runtime a DeepLens (Greengrass v1) core runs is
python3.8 (settings.DEEPLENS_LAMBDA_RUNTIME). The service's venv is 3.11, so nothing else would
notice a 3.9+ construct until a DeepLens failed to import the Lambda. This guard parses every module
with the 3.8 grammar and scans for the 3.9+ library uses that were removed (and their kin)."""

from __future__ import annotations

import ast
import glob
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

EDGE = Path(__file__).resolve().parents[2] / "edge_package"
MODULES = sorted(EDGE.glob("*.py"))

# (module, attribute) or (module, imported name) added after Python 3.8.
NEWER_NAMES = {
    ("datetime", "UTC"): "3.11",
    ("functools", "cache"): "3.9",
    ("itertools", "pairwise"): "3.10",
    ("math", "lcm"): "3.9",
    ("math", "nextafter"): "3.9",
    ("random", "randbytes"): "3.9",
    ("hashlib", "file_digest"): "3.11",
    ("asyncio", "to_thread"): "3.9",
    ("contextlib", "aclosing"): "3.10",
    ("enum", "StrEnum"): "3.11",
    ("typing", "TypeAlias"): "3.10",
    ("typing", "ParamSpec"): "3.10",
    ("typing", "Self"): "3.11",
    ("typing", "Annotated"): "3.9",
    ("os", "waitstatus_to_exitcode"): "3.9",
}
NEWER_MODULES = {"zoneinfo": "3.9", "graphlib": "3.9", "tomllib": "3.11"}
NEWER_METHODS = {
    "removeprefix": "3.9",
    "removesuffix": "3.9",
    "bit_count": "3.10",
    "is_relative_to": "3.9",
    "with_stem": "3.9",
    "add_note": "3.11",
}
NEWER_KEYWORDS = {("zip", "strict"): "3.10", ("dataclass", "slots"): "3.10"}
NEWER_KEYWORDS[("dataclass", "kw_only")] = "3.10"
BUILTIN_GENERICS = {"list", "dict", "tuple", "set", "frozenset", "type"}
TYPE_NAMES = BUILTIN_GENERICS | {"int", "float", "str", "bytes", "bool", "object"}


def _annotation_nodes(tree: ast.AST) -> set[int]:
    """ids of every node inside an annotation (those are strings under postponed evaluation)."""
    roots = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
    return {id(child) for root in roots for child in ast.walk(root)}


def _is_type_like(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant) and node.value is None:
        return True
    if isinstance(node, ast.Name) and node.id in TYPE_NAMES:
        return True
    return isinstance(node, ast.Subscript) and _is_type_like(node.value)


def _is_dict_like(node: ast.AST) -> bool:
    if isinstance(node, (ast.Dict, ast.DictComp)):
        return True
    return isinstance(node, ast.Call) and getattr(node.func, "id", "") == "dict"


def py39_plus_uses(source: str, filename: str = "<source>") -> list[str]:
    """What in `source` would fail on Python 3.8 (beyond grammar): one line per finding."""
    tree = ast.parse(source, filename, feature_version=(3, 8))
    found: list[str] = []
    in_annotation = _annotation_nodes(tree)
    future = any(
        isinstance(node, ast.ImportFrom)
        and node.module == "__future__"
        and any(alias.name == "annotations" for alias in node.names)
        for node in tree.body
    )
    for node in ast.walk(tree):
        line = getattr(node, "lineno", 0)
        if type(node).__name__ in ("Match", "TryStar"):
            found.append(f"{line}: {type(node).__name__} statement")
        elif isinstance(node, ast.ImportFrom) and node.module:
            top = node.module.split(".")[0]
            if top in NEWER_MODULES:
                found.append(f"{line}: module {top} ({NEWER_MODULES[top]})")
            for alias in node.names:
                if (node.module, alias.name) in NEWER_NAMES:
                    version = NEWER_NAMES[(node.module, alias.name)]
                    found.append(f"{line}: from {node.module} import {alias.name} ({version})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top = alias.name.split(".")[0]
                if top in NEWER_MODULES:
                    found.append(f"{line}: module {top} ({NEWER_MODULES[top]})")
        elif isinstance(node, ast.Attribute):
            owner = node.value.id if isinstance(node.value, ast.Name) else ""
            if (owner, node.attr) in NEWER_NAMES:
                found.append(f"{line}: {owner}.{node.attr} ({NEWER_NAMES[(owner, node.attr)]})")
            elif node.attr in NEWER_METHODS:
                found.append(f"{line}: .{node.attr}() ({NEWER_METHODS[node.attr]})")
        elif isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
            for keyword in node.keywords:
                if (name, keyword.arg) in NEWER_KEYWORDS:
                    version = NEWER_KEYWORDS[(name, keyword.arg)]
                    found.append(f"{line}: {name}({keyword.arg}=...) ({version})")
        elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitOr):
            if id(node) in in_annotation and future:
                continue
            if _is_type_like(node.left) or _is_type_like(node.right):
                found.append(f"{line}: X | Y on types at run time (3.10)")
            elif _is_dict_like(node.left) or _is_dict_like(node.right):
                found.append(f"{line}: dict | dict (3.9)")
        elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
            if node.value.id in BUILTIN_GENERICS and not (id(node) in in_annotation and future):
                found.append(f"{line}: {node.value.id}[...] at run time (3.9)")
        elif isinstance(node, (ast.With, ast.AsyncWith)) and len(node.items) > 1:
            header = ast.get_source_segment(source, node).split(":", 1)[0] if source else ""
            first = node.items[0].context_expr
            if re.match(r"(async\s+)?with\s*\(", header) and not re.match(
                r"(async\s+)?with\s*\(", ast.get_source_segment(source, first) or "x"
            ):
                found.append(f"{line}: parenthesized context managers (3.10)")
    return sorted(set(found), key=lambda text: int(text.split(":")[0]))


@pytest.mark.parametrize("path", MODULES, ids=lambda path: path.name)
def test_every_edge_module_is_python_3_8(path):
    source = path.read_text(encoding="utf-8")
    assert py39_plus_uses(source, str(path)) == [], f"{path.name} needs Python > 3.8"


@pytest.mark.parametrize(
    "snippet",
    [
        "from datetime import UTC",
        "import datetime\nx = datetime.UTC",
        "zip(a, b, strict=True)",
        "from functools import cache",
        "import functools\nf = functools.cache(g)",
        "'abc'.removeprefix('a')",
        "isinstance(x, int | None)",
        "merged = {'a': 1} | other",
        "Box = tuple[int, int]",
        "import zoneinfo",
        "with (open('a') as f, open('b') as g):\n    pass",
        "match x:\n    case 1:\n        pass",
    ],
)
def test_the_guard_catches_what_was_removed(snippet):
    try:
        found = py39_plus_uses(snippet)
    except SyntaxError:
        return  # the 3.8 grammar already refuses it
    assert found, snippet


def test_the_guard_leaves_3_8_code_alone():
    source = (
        "from __future__ import annotations\n"
        "from datetime import timezone\n"
        "from functools import lru_cache\n"
        "def f(x: int | None, y: dict[str, list[int]]) -> tuple[int, ...]:\n"
        "    keys = set(a) | set(b)\n"
        "    with open('a') as f, open('b') as g:\n"
        "        pass\n"
        "    return zip(a, b)\n"
    )
    assert py39_plus_uses(source) == []


def _python38() -> str:
    """A working Python 3.8 interpreter here, or "" (pyenv shims exist without the version)."""
    candidates = sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    candidates.append(shutil.which("python3.8") or "")
    for path in filter(None, candidates):
        try:
            probe = subprocess.run(
                [path, "-c", "import sys; print(sys.version_info[:2])"],
                capture_output=True,
                text=True,
                timeout=30,
            )
        except OSError:
            continue
        if probe.stdout.strip() == "(3, 8)":
            return path
    return ""


# Stand-ins for the third-party modules the DeepLens Python must supply itself; only the import
# of edge_package's own code is being checked here, on a real 3.8 interpreter.
_IMPORT_ALL = """
import importlib, sys, types
class _Any(types.ModuleType):
    __path__ = []
    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        return type(name, (), {})
for name in ("numpy", "cv2", "boto3", "boto3.dynamodb", "boto3.dynamodb.types", "botocore",
             "botocore.config", "botocore.exceptions"):
    sys.modules[name] = _Any(name)
for name in sys.argv[1:]:
    importlib.import_module("edge_package." + name)
print("ok", sys.version_info[:2])
"""


@pytest.mark.skipif(not _python38(), reason="no Python 3.8 interpreter on this machine")
def test_edge_modules_import_on_a_real_python_3_8():
    names = [path.stem for path in MODULES if path.stem not in ("__init__", "__main__")]
    result = subprocess.run(
        [_python38(), "-c", _IMPORT_ALL, *names],
        cwd=EDGE.parent,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", ""), "PYTHONDONTWRITEBYTECODE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "ok (3, 8)" in result.stdout
