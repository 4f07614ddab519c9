"""Charts for the printable report page: matplotlib (Agg, no display) PNGs as data URIs.

Suppressed minutes are gaps in the lines, never zeros.
"""

from __future__ import annotations

import base64
import io
from datetime import datetime

import matplotlib

matplotlib.use("Agg")

from matplotlib.dates import DateFormatter  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from edge_package.contracts import EMOTIONS  # noqa: E402

COLOURS = {
    "HAPPY": "#f2b705",
    "SURPRISED": "#f25c05",
    "CALM": "#3a89c9",
    "SAD": "#6c6f93",
    "CONFUSED": "#9b7fc2",
    "ANGRY": "#c0392b",
    "DISGUSTED": "#5b8c3a",
    "FEAR": "#333333",
}


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _times(payload: dict, tz) -> list[datetime]:
    return [datetime.fromisoformat(m["minute"]).astimezone(tz) for m in payload["minutes"]]


def _line(payload: dict, tz, key: str, title: str, ylabel: str, colour: str) -> str:
    times = _times(payload, tz)
    values = [m[key] if m[key] is not None else float("nan") for m in payload["minutes"]]
    figure = Figure(figsize=(8, 2.6))
    axes = figure.subplots()
    axes.plot(times, values, color=colour, linewidth=1.8, marker="." if len(times) < 40 else "")
    axes.set_title(title, fontsize=10, loc="left")
    axes.set_ylabel(ylabel, fontsize=9)
    if key == "vibe":
        axes.set_ylim(0, 100)
    else:
        axes.set_ylim(bottom=0)
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=tz))
    axes.grid(alpha=0.3)
    return _png(figure)


def _share(payload: dict, tz) -> str:
    times = _times(payload, tz)
    series = []
    for name in EMOTIONS:
        series.append(
            [
                (m["expression_share"] or {}).get(name, float("nan"))
                if m["expression_share"]
                else float("nan")
                for m in payload["minutes"]
            ]
        )
    figure = Figure(figsize=(8, 2.8))
    axes = figure.subplots()
    axes.stackplot(
        times,
        series,
        labels=[n.title() for n in EMOTIONS],
        colors=[COLOURS[n] for n in EMOTIONS],
        alpha=0.9,
    )
    axes.set_ylim(0, 100)
    axes.set_title("Apparent expression share per minute (%)", fontsize=10, loc="left")
    axes.xaxis.set_major_formatter(DateFormatter("%H:%M", tz=tz))
    axes.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return _png(figure)


def report_charts(payload: dict, tz) -> dict[str, str]:
    """Data URIs of the vibe curve, crowd-size curve and expression share (none if suppressed)."""
    if payload.get("suppressed") or not payload.get("minutes"):
        return {}
    return {
        "vibe": _line(payload, tz, "vibe", "Vibe per minute (0-100)", "vibe", "#d35400"),
        "crowd": _line(
            payload, tz, "faces", "Faces analysed per minute (crowd size)", "faces", "#2c3e50"
        ),
        "share": _share(payload, tz),
    }
