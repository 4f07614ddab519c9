"""The printable set report page (organizers; another organization's report is a 404) and its
operator controls: publish/unpublish and rebuild, through the services the API calls."""

from __future__ import annotations

from datetime import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from emotions.models import SetReport
from emotions.reports import services
from emotions.reports.charts import report_charts
from emotions.reports.selectors import local_span
from festival.localtime import local_label
from festival.models import Role
from festival.tenancy import has_role

CHART_CACHE_SECONDS = 3600


@require_GET
@login_required
def set_report_page(request, report_id: int):
    report = get_object_or_404(
        SetReport.objects.for_user(request.user).select_related("set", "stage", "festival"),
        pk=report_id,
    )
    response = _render_report(request, report, shared=False)
    response["Cache-Control"] = "private, no-cache"
    response["Vary"] = "Cookie"
    return response


@require_GET
def shared_report_page(request, key: str):
    """The artist's view through their share link: no account, no controls, no camera names."""
    report = services.shared_report(key)
    if report is None:
        raise Http404("This link is not valid: it may have expired or been revoked.")
    response = _render_report(request, report, shared=True)
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"  # the key is in the URL
    response["X-Robots-Tag"] = "noindex"
    return response


def _charts(report: SetReport, payload: dict) -> dict:
    if not payload:
        return {}
    built = report.built_at.timestamp() if report.built_at else 0
    key = f"stagepulse:report-charts:{report.pk}:{built}"
    charts = cache.get(key)
    if charts is None:
        charts = report_charts(payload, report.festival.tz)
        cache.set(key, charts, CHART_CACHE_SECONDS)
    return charts


def _render_report(request, report: SetReport, *, shared: bool):
    payload = report.payload or {}
    tz = report.festival.tz
    share_url = ""
    if not shared and report.share_key:
        share_url = request.build_absolute_uri(
            reverse("shared-report-page", args=[report.share_key])
        )
    return render(
        request,
        "emotions/set_report.html",
        {
            "report": report,
            "payload": payload,
            "charts": _charts(report, payload),
            "shared": shared,
            # from the set itself, so the header is right for reports built before this existed
            "when": local_span(report.set, tz),
            "built": local_label(report.built_at, tz),
            "can_operate": not shared
            and has_role(request.user, report.organization_id, Role.OPERATOR),
            "publish_refusal": services.publish_refusal(report),
            "devices": [] if shared else _devices_for_page(payload, tz),
            "share_url": share_url,
            "share_expires": local_label(report.share_expires_at, tz),
            "share_days": services.SHARE_DAYS,
        },
    )


def _devices_for_page(payload: dict, tz) -> list[dict]:
    """The coverage table's cameras with 'last seen' as a local time, not an ISO string."""
    rows = []
    for device in (payload.get("coverage") or {}).get("devices", []):
        seen = device.get("last_seen_at")
        label = local_label(datetime.fromisoformat(seen), tz) if seen else "never"
        rows.append({**device, "last_seen_label": label})
    return rows


def _report_for_operator(request, report_id: int) -> SetReport:
    """The report, if the user may change it: another organization's is a 404, a viewer's 403."""
    report = get_object_or_404(
        SetReport.objects.for_user(request.user).select_related("set", "stage", "festival"),
        pk=report_id,
    )
    if not has_role(request.user, report.organization_id, Role.OPERATOR):
        raise PermissionDenied("Publishing and rebuilding need the operator role.")
    return report


def _back(request, report: SetReport):
    target = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("set-report-page", args=[report.pk])
    return redirect(target)


@require_POST
@login_required
def report_publish(request, report_id: int):
    """Publish or unpublish from the report page or the dashboard: the service the API calls."""
    report = _report_for_operator(request, report_id)
    published = request.POST.get("published") == "true"
    try:
        services.set_published(report, published)
    except services.ReportError as error:
        messages.error(request, f"{report.set.artist}: {error}")
    else:
        state = "published to the fan API" if published else "no longer public"
        messages.success(request, f"{report.set.artist}: report {state}.")
    return _back(request, report)


@require_POST
@login_required
def report_rebuild(request, report_id: int):
    """Queue a rebuild from a page (same service as POST /api/v1/reports/{id}/rebuild/)."""
    report = _report_for_operator(request, report_id)
    reason = request.POST.get("reason", "").strip()
    reason = reason or f"requested by {request.user.get_username()}"
    if services.queue_rebuild(report, reason):
        messages.success(request, f"{report.set.artist}: rebuild queued ({reason}).")
    else:
        messages.info(request, f"{report.set.artist}: already waiting to be built.")
    return _back(request, report)


@require_POST
@login_required
def report_share(request, report_id: int):
    """Create (or replace) the artist's share link, or revoke it (`revoke=true`)."""
    report = _report_for_operator(request, report_id)
    if request.POST.get("revoke") == "true":
        services.revoke_share(report)
        messages.success(request, f"{report.set.artist}: share link revoked.")
    else:
        services.share_report(report)
        messages.success(
            request,
            f"{report.set.artist}: new share link, valid {services.SHARE_DAYS} days "
            "(a previous link no longer works).",
        )
    return _back(request, report)
