"""The printable set report page (organizers; another organization's report is a 404)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.shortcuts import get_object_or_404, render
from django.views.decorators.http import require_GET

from emotions.models import SetReport
from emotions.reports.charts import report_charts
from emotions.reports.selectors import local_span
from festival.localtime import local_label

CHART_CACHE_SECONDS = 3600


@require_GET
@login_required
def set_report_page(request, report_id: int):
    report = get_object_or_404(
        SetReport.objects.for_user(request.user).select_related("set", "stage", "festival"),
        pk=report_id,
    )
    payload = report.payload or {}
    charts = {}
    if payload:
        built = report.built_at.timestamp() if report.built_at else 0
        key = f"stagepulse:report-charts:{report.pk}:{built}"
        charts = cache.get(key)
        if charts is None:
            charts = report_charts(payload, report.festival.tz)
            cache.set(key, charts, CHART_CACHE_SECONDS)
    response = render(
        request,
        "emotions/set_report.html",
        {
            "report": report,
            "payload": payload,
            "charts": charts,
            # from the set itself, so the header is right for reports built before this existed
            "when": local_span(report.set, report.festival.tz),
            "built": local_label(report.built_at, report.festival.tz),
        },
    )
    response["Cache-Control"] = "private, no-cache"
    response["Vary"] = "Cookie"
    return response
