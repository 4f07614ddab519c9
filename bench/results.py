"""One place that writes benchmark figures, so every benchmark merges into bench/results.json."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"


def stamp(prefix: str) -> dict:
    """When and where figures were measured: `_measured_at`/`_machine`, or `<prefix>measured_at`
    and `<prefix>machine` for figures merged into another benchmark's section."""
    key = f"{prefix}measured_at" if prefix else "_measured_at"
    machine = f"{prefix}machine" if prefix else "_machine"
    return {
        key: datetime.now(UTC).isoformat(timespec="seconds"),
        machine: f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
    }


def record(section: str, figures: dict, *, merge: bool = False) -> dict:
    """Merge `figures` under `section` (e.g. "edge"), stamped with when and where measured.
    `merge` keeps the section's other figures and their stamp (a benchmark that adds keys to a
    section another benchmark writes, e.g. pipeline.facefree_*, stamps its own keys itself:
    see stamp()); otherwise the section is replaced."""
    data = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    kept = data.get(section, {}) if merge else {}
    data[section] = {**stamp(""), **kept, **figures}
    fd, tmp = tempfile.mkstemp(dir=RESULTS_PATH.parent, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, RESULTS_PATH)
    return data[section]
