"""Charts for a comparison run's page: matplotlib (Agg) PNGs as data URIs, like the set report's.

A figure that was not measured (agreement without Rekognition) gets no chart at all, never a
chart of zeros.
"""

from __future__ import annotations

from datetime import datetime

from emotions.reports.charts import _png, new_figure

CLOUD, EDGE = "#3a89c9", "#f25c05"


def _confusion(result: dict) -> str | None:
    agreement = result.get("agreement") or {}
    if not result.get("rekognition_available") or not agreement.get("faces"):
        return None
    labels, matrix = agreement["labels"], agreement["matrix"]
    # Only the rows and columns that hold a face: eight empty expressions say nothing.
    keep = [i for i in range(len(labels)) if any(matrix[i]) or any(row[i] for row in matrix)]
    data = [[matrix[r][c] for c in keep] for r in keep]
    names = [labels[i].title().replace("_", " ") for i in keep]
    figure = new_figure(figsize=(5.6, 4.6))
    axes = figure.subplots()
    image = axes.imshow(data, cmap="Blues")
    axes.set_xticks(range(len(keep)), names, rotation=40, ha="right", fontsize=8)
    axes.set_yticks(range(len(keep)), names, fontsize=8)
    axes.set_xlabel("camera's model (edge)")
    axes.set_ylabel("Rekognition (cloud)")
    peak = max((max(row) for row in data), default=0)
    for r, row in enumerate(data):
        for c, value in enumerate(row):
            if value:
                colour = "white" if value > peak / 2 else "#1d2330"
                axes.text(c, r, str(value), ha="center", va="center", fontsize=8, color=colour)
    figure.colorbar(image, ax=axes, shrink=0.8, label="faces")
    axes.set_title("Top expression: Rekognition vs the camera's model", fontsize=10)
    return _png(figure)


def _vibe(result: dict, tz) -> str | None:
    minutes = [m for m in (result.get("vibe") or {}).get("minutes", []) if m.get("compared")]
    if not result.get("rekognition_available") or len(minutes) < 2:
        return None
    times = [datetime.fromisoformat(m["minute"]).astimezone(tz) for m in minutes]
    figure = new_figure(figsize=(8, 2.8))
    axes = figure.subplots()
    axes.plot(times, [m["rekognition"] for m in minutes], color=CLOUD, label="Rekognition")
    axes.plot(times, [m["local"] for m in minutes], color=EDGE, label="camera's model")
    axes.set_ylabel("vibe (expression term)")
    axes.set_ylim(0, 100)
    axes.legend(loc="upper left", fontsize=8)
    axes.grid(alpha=0.3)
    axes.set_title("Per-minute vibe of the same faces", fontsize=10)
    figure.autofmt_xdate()
    return _png(figure)


def _hours(result: dict, tz, keys: tuple[str, str], labels: tuple[str, str], ylabel: str,
           title: str, scale: float = 1.0) -> str | None:  # fmt: skip
    hours = [h for h in result.get("hours", []) if any(h.get(k) is not None for k in keys)]
    if not hours:
        return None
    names = [datetime.fromisoformat(h["hour"]).astimezone(tz).strftime("%H:00") for h in hours]
    figure = new_figure(figsize=(8, 2.8))
    axes = figure.subplots()
    width = 0.4
    for offset, key, label, colour in ((-width / 2, keys[0], labels[0], CLOUD),
                                       (width / 2, keys[1], labels[1], EDGE)):  # fmt: skip
        values = [h.get(key) for h in hours]
        if all(v is None for v in values):
            continue
        axes.bar(
            [i + offset for i in range(len(hours))],
            [(v or 0) / scale for v in values],
            width=width,
            color=colour,
            label=label,
        )
    axes.set_xticks(range(len(hours)), names, fontsize=8)
    axes.set_ylabel(ylabel)
    axes.legend(fontsize=8)
    axes.grid(alpha=0.3, axis="y")
    axes.set_title(title, fontsize=10)
    return _png(figure)


def _latency(result: dict) -> str | None:
    latency = result.get("latency") or {}
    modes = [(m, latency.get(m) or {}) for m in ("cloud", "edge")]
    modes = [(m, v) for m, v in modes if v.get("p50_s") is not None]
    if not modes:
        return None
    figure = new_figure(figsize=(5.6, 2.4))
    axes = figure.subplots()
    for row, (mode, values) in enumerate(modes):
        colour = CLOUD if mode == "cloud" else EDGE
        axes.barh(row, values["p95_s"], color=colour, alpha=0.35, label="p95" if row == 0 else None)
        axes.barh(row, values["p50_s"], color=colour, label="p50" if row == 0 else None)
    axes.set_yticks(range(len(modes)), [f"{m} mode" for m, _ in modes])
    axes.set_xlabel("seconds from capture to visible")
    axes.legend(fontsize=8, loc="lower right")
    axes.set_title("Capture to visible (p50, p95)", fontsize=10)
    return _png(figure)


def comparison_charts(result: dict, tz) -> dict[str, str | None]:
    if not result:
        return {}
    return {
        "confusion": _confusion(result),
        "vibe": _vibe(result, tz),
        "bytes": _hours(
            result,
            tz,
            ("cloud_bytes", "edge_bytes"),
            ("cloud mode (crops)", "edge mode (scores)"),
            "MB",
            "Bytes sent per hour in each mode",
            scale=1e6,
        ),  # fmt: skip
        "cost": _hours(
            result,
            tz,
            ("cloud_cost_usd", "run_cost_usd"),
            ("cloud mode, all faces", "this run's own calls"),
            "USD",
            "Rekognition cost per hour",
        )
        if result.get("rekognition_available")  # no Rekognition: no cost chart of zeros
        else None,
        "latency": _latency(result),
    }
