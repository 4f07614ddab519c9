"""The comparison run's page (organizers; another organization's run is a 404): server-rendered
like the set report, from the stored result."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from emotions.comparison import selectors
from emotions.comparison.charts import comparison_charts
from emotions.comparison.rules import (
    AGREEMENT_FOR_EDGE,
    CORRELATION_FOR_EDGE,
    MIN_PAIRS,
    NO_FACE_SHARE_FOR_CLOUD,
)
from festival.localtime import local_label

CHART_CACHE_SECONDS = 3600


def _charts(run, tz) -> dict:
    if not run.result:
        return {}
    key = f"stagepulse:comparison-charts:{run.pk}:{run.result.get('computed_at')}"
    charts = cache.get(key)
    if charts is None:
        charts = comparison_charts(run.result, tz)
        cache.set(key, charts, CHART_CACHE_SECONDS)
    return charts


def _mb(value) -> str:
    return "—" if value is None else f"{value / 1e6:.2f} MB"


@require_GET
@login_required
def comparison_page(request, run_id: int):
    run = get_object_or_404(selectors.runs_for(request.user), pk=run_id)
    tz = run.festival.tz
    context = selectors.page_context(run)
    result = context["result"]
    hours = [
        {
            **hour,
            "label": local_label(_parse(hour["hour"]), tz),
            "cloud_mb": _mb(hour.get("cloud_bytes")),
            "edge_mb": _mb(hour.get("edge_bytes")),
            "extra_mb": _mb(hour.get("run_extra_bytes")),
        }
        for hour in result.get("hours", [])
    ]
    agreement = result.get("agreement") or {}
    share = agreement.get("share")
    response = render(
        request,
        "emotions/comparison.html",
        {
            **context,
            "charts": _charts(run, tz),
            "hours": hours,
            "window": f"{local_label(run.starts_at, tz)} – {local_label(run.ends_at, tz)}",
            "computed_label": local_label(run.result_at, tz),
            "agreement_pct": None if share is None else round(100 * share),
            "rules": {
                "min_pairs": MIN_PAIRS,
                "agreement": round(100 * AGREEMENT_FOR_EDGE),
                "correlation": CORRELATION_FOR_EDGE,
                "no_face": round(100 * NO_FACE_SHARE_FOR_CLOUD),
            },
        },
    )
    response["Cache-Control"] = "private, no-cache"
    response["Vary"] = "Cookie"
    return response


def _parse(value: str):
    return datetime.fromisoformat(value)
