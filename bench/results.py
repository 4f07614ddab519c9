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


def figures_of_others(section: str, keep) -> dict:
    """The figures another benchmark merged into `section` (`keep(key)` says which), for a
    benchmark that replaces the section to carry over: bench_edge keeps bench_edge_motion's,
    bench_pipeline keeps bench_facefree's."""
    data = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    return {k: v for k, v in data.get(section, {}).items() if keep(k)}


def record(section: str, figures: dict, *, merge: bool = False) -> dict:
    """Merge `figures` under `section` (e.g. "edge"), stamped with when and where measured.
    With merge=True the section's other figures stay (a second module writing into "edge" or
    "pipeline"); the section's stamp is renewed, unless `figures` carry their own
    (`<prefix>measured_at`, see stamp(): pipeline.facefree_*), which leaves the section's stamp
    to the benchmark that wrote the rest. Otherwise the section is replaced."""
    data = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    kept = data.get(section, {}) if merge else {}
    own_stamp = any(k.endswith("measured_at") for k in figures)
    if not own_stamp:
        kept = {k: v for k, v in kept.items() if not k.startswith("_")}
    data[section] = {**stamp(""), **kept, **figures}
    fd, tmp = tempfile.mkstemp(dir=RESULTS_PATH.parent, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, RESULTS_PATH)
    return data[section]
