"""Charts for the printable report page: matplotlib (Agg, no display) PNGs as data URIs.

Suppressed minutes are gaps in the lines, never zeros.
"""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from edge_package.contracts import EMOTIONS
from festival.localtime import zone_abbreviation

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def new_figure(**kwargs) -> Figure:
    """A matplotlib Figure (Agg, no display). matplotlib is imported with the first chart, not
    with the URLconf: every process that loads Django (web, Celery, the analyzer, each
    manage.py command) paid ~1.5 s of CPU importing it, most never drawing a chart."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _times(payload: dict, tz) -> list[datetime]:
    return [datetime.fromisoformat(m["minute"]).astimezone(tz) for m in payload["minutes"]]


def _span(payload: dict, tz) -> tuple[datetime, datetime]:
    """The whole set, so minutes without data at the start or end still take their room."""
    info = payload.get("set") or {}
    times = _times(payload, tz)
    start = datetime.fromisoformat(info["starts_at"]) if info.get("starts_at") else times[0]
    end = datetime.fromisoformat(info["ends_at"]) if info.get("ends_at") else times[-1]
    end = max(end, times[-1] + timedelta(minutes=1))
    return start.astimezone(tz), end.astimezone(tz)


TICK_STEPS_MINUTES = (1, 2, 5, 10, 15, 20, 30, 60, 120, 180, 240)
MAX_TICKS = 9


def _tick_minutes(span: timedelta) -> int:
    """The smallest round step that keeps the ticks at MAX_TICKS or fewer (never under a
    minute, so labels of a short set never repeat)."""
    minutes = span.total_seconds() / 60
    for step in TICK_STEPS_MINUTES:
        if minutes / step <= MAX_TICKS:
            return step
    return TICK_STEPS_MINUTES[-1]


def time_ticks(payload: dict, tz) -> tuple[datetime, datetime, list[datetime], list[str]]:
    """The x axis over the whole set: (start, end, ticks, labels). Ticks fall on round local
    minutes, each label once; across a DST change each label carries its zone (02:30 CEST,
    02:30 CET), since the same wall-clock time then happens twice."""
    start, end = _span(payload, tz)
    step = _tick_minutes(end - start)
    first = start.replace(second=0, microsecond=0)
    first += timedelta(minutes=(-(first.hour * 60 + first.minute)) % step)
    ticks = []
    moment = first
    while moment <= end:
        ticks.append(moment)
        # step in UTC: a DST change must neither skip nor repeat a tick
        moment = (moment.astimezone(UTC) + timedelta(minutes=step)).astimezone(tz)
    with_zone = start.utcoffset() != end.utcoffset()
    labels = [f"{t:%H:%M} {zone_abbreviation(t)}" if with_zone else f"{t:%H:%M}" for t in ticks]
    return start, end, ticks, labels


def _time_axis(axes, payload: dict, tz) -> None:
    start, end, ticks, labels = time_ticks(payload, tz)
    axes.set_xlim(start, end)
    axes.set_xticks(ticks)
    axes.set_xticklabels(labels, fontsize=8)


def _line(payload: dict, tz, key: str, title: str, ylabel: str, colour: str) -> str:
    times = _times(payload, tz)
    values = [m[key] if m[key] is not None else float("nan") for m in payload["minutes"]]
    figure = new_figure(figsize=(8, 2.6))
    axes = figure.subplots()
    # one point per minute, drawn at the middle of its minute
    middles = [t + timedelta(seconds=30) for t in times]
    few = sum(1 for v in values if v == v) < 40
    axes.plot(middles, values, color=colour, linewidth=1.8, marker="o" if few else "")
    axes.set_title(title, fontsize=10, loc="left")
    axes.set_ylabel(ylabel, fontsize=9)
    if key == "vibe":
        axes.set_ylim(0, 100)
    else:
        top = max((v for v in values if v == v), default=1)
        axes.set_ylim(0, top * 1.15 + 1)
    _time_axis(axes, payload, tz)
    axes.grid(alpha=0.3)
    return _png(figure)


def _share(payload: dict, tz) -> str:
    """Stacked bars, one per minute: a single minute is a visible bar (an area chart of one
    point is empty), and a suppressed minute is a gap."""
    from matplotlib.collections import PolyCollection

    times = _times(payload, tz)
    figure = new_figure(figsize=(8, 2.8))
    axes = figure.subplots()
    width = 1 / 1440 * 0.92  # a minute in matplotlib's day units, with a hairline between bars
    axes.xaxis.update_units(times)  # a date axis, as Axes.bar would make it
    lefts = axes.convert_xunits(times)
    bottoms = [0.0] * len(times)
    for name in EMOTIONS:
        heights = [
            (m["expression_share"] or {}).get(name, 0.0) if m["expression_share"] else 0.0
            for m in payload["minutes"]
        ]
        # One collection of rectangles per emotion, not Axes.bar's one patch per minute: the
        # same picture, but 8 emotions x a set's minutes of patches made this chart cost ~5x
        # the others together (0.9 s of CPU for a 90-minute set, for each report page view).
        bars = [
            ((x, b), (x + width, b), (x + width, b + h), (x, b + h))
            for x, b, h in zip(lefts, bottoms, heights, strict=True)
            if h
        ]
        axes.add_collection(
            PolyCollection(bars, facecolors=COLOURS[name], linewidths=0, label=name.title()),
            autolim=False,
        )
        bottoms = [b + h for b, h in zip(bottoms, heights, strict=True)]
    axes.set_ylim(0, 100)
    axes.set_title("Apparent expression share per minute (%)", fontsize=10, loc="left")
    _time_axis(axes, payload, tz)
    axes.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return _png(figure)


COMPONENT_COLOURS = {
    "expression": "#f2b705",
    "motion": "#1f9bd1",
    "sound": "#8e44ad",
    "fill": "#27ae60",
}


def _components(payload: dict, tz) -> str:
    """Vibe v2 (thick) and each component's score per minute: every curve, not only the blend.
    A minute without a component is a gap in its line."""
    times = [t + timedelta(seconds=30) for t in _times(payload, tz)]
    figure = new_figure(figsize=(8, 2.8))
    axes = figure.subplots()
    few = sum(1 for m in payload["minutes"] if m.get("vibe_v2") is not None) < 40
    for name, colour in COMPONENT_COLOURS.items():
        values = [
            ((m.get("components") or {}).get(name) or {}).get("score", float("nan"))
            for m in payload["minutes"]
        ]
        if all(v != v for v in values):
            continue
        axes.plot(times, values, color=colour, linewidth=1.1, label=name, alpha=0.9)
    blend = [
        m["vibe_v2"] if m.get("vibe_v2") is not None else float("nan") for m in payload["minutes"]
    ]
    axes.plot(
        times, blend, color="#d35400", linewidth=2.4, label="vibe v2", marker="o" if few else ""
    )
    axes.set_ylim(0, 100)
    axes.set_title(
        "Vibe (v2) and its components per minute (0-100, against the stage's own history)",
        fontsize=10,
        loc="left",
    )
    _time_axis(axes, payload, tz)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, -0.12))
    return _png(figure)


def report_charts(payload: dict, tz) -> dict[str, str]:
    """Data URIs of the vibe v2 components chart (whenever a minute has vibe v2), and of the
    v1 vibe curve, crowd-size curve and expression share (none when faces are suppressed)."""
    if not payload.get("minutes"):
        return {}
    charts = {}
    if any(m.get("vibe_v2") is not None for m in payload["minutes"]):
        charts["components"] = _components(payload, tz)
    if payload.get("suppressed"):
        return charts
    return {
        **charts,
        "vibe": _line(payload, tz, "vibe", "Vibe per minute (0-100)", "vibe", "#d35400"),
        "crowd": _line(
            payload, tz, "faces", "Faces analysed per minute (crowd size)", "faces", "#2c3e50"
        ),
        "share": _share(payload, tz),
    }
