"""One place that writes benchmark figures, so every benchmark merges into bench/results.json."""

from __future__ import annotations

import json
import os
import platform
import tempfile
from datetime import UTC, datetime
from pathlib import Path

RESULTS_PATH = Path(__file__).resolve().parent / "results.json"


def record(section: str, figures: dict, *, merge: bool = False) -> dict:
    """Merge `figures` under `section` (e.g. "edge"), stamped with when and where measured.
    With merge=True the section's other figures stay (a second module writing into "edge")."""
    data = json.loads(RESULTS_PATH.read_text()) if RESULTS_PATH.exists() else {}
    kept = data.get(section, {}) if merge else {}
    data[section] = {
        **{k: v for k, v in kept.items() if not k.startswith("_")},
        **figures,
        "_measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "_machine": f"{platform.machine()} x{os.cpu_count()}, Python {platform.python_version()}",
    }
    fd, tmp = tempfile.mkstemp(dir=RESULTS_PATH.parent, suffix=".json")
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, RESULTS_PATH)
    return data[section]
