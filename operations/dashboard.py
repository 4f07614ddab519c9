"""The organizer dashboard: live ranking (with data age, the analysis backlog and why a stage has
no number), per-stage timelines, camera health (with its input: black, frozen, dark, clock
drift, upload gap, growing spool), and what the ingest refused. Login required and
tenant scoped (another organization's festival is a 404). The page refreshes itself from
`data.json`, built from the same selectors as the fan API."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.db.models import Max
from django.http import Http404, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET

from devices.models import Device, DeviceStatus
from devices.selectors import INPUT_KINDS, input_problems
from emotions.live_cache import live_ranking
from emotions.models import MinuteRollup
from emotions.reports.selectors import reports_for_user
from emotions.selectors import (
    analysis_status,
    compute_live_ranking,
    ingest_refusals,
    stage_timeline,
)
from festival.models import Festival, Role
from festival.tenancy import has_role
from stages.models import Set, Stage
from stages.selectors import now_next_by_stage

TIMELINE_MINUTES = 60
REPORTS_SHOWN = 30
REPORTS_REFRESH_SECONDS = 20


def _festival_for(request, festival_id: int) -> Festival:
    return get_object_or_404(Festival.objects.for_user(request.user), pk=festival_id)


@login_required
@require_GET
def index(request):
    festivals = Festival.objects.for_user(request.user).order_by("-starts_on", "name")
    first = festivals.first()
    if first is None:
        raise Http404("You are not a member of any organization with festivals yet.")
    if festivals.count() == 1:
        return redirect("dashboard:festival", festival_id=first.pk)
    return render(request, "dashboard/index.html", {"festivals": festivals})


@login_required
@require_GET
def festival_page(request, festival_id: int):
    festival = _festival_for(request, festival_id)
    festivals = Festival.objects.for_user(request.user).order_by("-starts_on", "name")
    return render(
        request,
        "dashboard/festival.html",
        {
            "festivals": festivals,
            "refresh_seconds": 5,
            "reports_refresh_seconds": REPORTS_REFRESH_SECONDS,
            **_reports_context(request, festival),
        },
    )


def _reports_context(request, festival: Festival) -> dict:
    reports = reports_for_user(request.user, festival_id=festival.pk).order_by("-set__ends_at")
    return {
        "festival": festival,
        "reports": reports[:REPORTS_SHOWN],
        "can_operate": has_role(request.user, festival.organization_id, Role.OPERATOR),
    }


@login_required
@require_GET
def festival_reports(request, festival_id: int):
    """The reports table's rows, for the page to refresh itself with (same template)."""
    festival = _festival_for(request, festival_id)
    response = render(request, "dashboard/_report_rows.html", _reports_context(request, festival))
    response["Cache-Control"] = "private, no-store"
    return response


def device_health_rows(festival: Festival) -> list[dict]:
    now = timezone.now()
    rows = []
    devices = Device.objects.filter(festival=festival).select_related("stage")
    for device in devices.order_by("stage__position", "name"):
        seen = device.last_seen_at
        rows.append(
            {
                "name": device.name,
                "thing_name": device.thing_name,
                "stage": device.stage.name if device.stage else None,
                "platform": device.get_platform_display(),
                "status": device.status,
                "paused": device.paused,
                "last_seen_s": int((now - seen).total_seconds()) if seen else None,
                "software_version": device.software_version or None,
                **{key: (device.health or {}).get(key) for key in HEALTH_FIELDS},
                "alert_open": device.offline_alerted_at is not None,
                "input": _input_rows(device, now),
            }
        )
    return rows


def _input_rows(device: Device, now) -> list[dict]:
    """The camera's input problems now (only while it reports: offline is its own row)."""
    if device.status != DeviceStatus.ONLINE:
        return []
    return [
        {
            "kind": kind,
            "label": INPUT_KINDS[kind],
            "message": message,
            "alerted": kind in (device.input_alerts or {}),
        }
        for kind, message in input_problems(device, now).items()
    ]


def timeline_sets(festival: Festival, now=None) -> dict[str, list[dict]]:
    """Per stage slug, the sets that overlap the timelines' hour: their boundaries on the chart."""
    now = now or timezone.now()
    start = now - timedelta(minutes=TIMELINE_MINUTES + 1)
    sets = (
        Set.objects.filter(stage__festival=festival, ends_at__gt=start, starts_at__lte=now)
        .select_related("stage")
        .order_by("starts_at")
    )
    result: dict[str, list[dict]] = {}
    for item in sets:
        result.setdefault(item.stage.slug, []).append(
            {"artist": item.artist, "starts_at": item.starts_at, "ends_at": item.ends_at}
        )
    return result


LONGER_TRENDS_MINUTES = (15, 30)
LONGER_TRENDS_CACHE_SECONDS = 30


def longer_trends(festival: Festival) -> dict[str, dict]:
    """Per stage slug, the trend over the last 15 and 30 minutes (each window against the one
    before it), beside the live five-minute trend: a set that is slowly losing the crowd shows
    it here first. Same formula as the ranking; cached briefly, as the windows move slowly."""
    key = f"stagepulse:dashboard-trends:{festival.pk}"
    trends = cache.get(key)
    if trends is None:
        trends = {}
        for minutes in LONGER_TRENDS_MINUTES:
            ranking = compute_live_ranking(festival, window=timedelta(minutes=minutes))
            for row in ranking["stages"]:
                trends.setdefault(row["stage"]["slug"], {})[str(minutes)] = {
                    "trend": row["trend"],
                    "delta": row["trend_delta"],
                }
        cache.set(key, trends, LONGER_TRENDS_CACHE_SECONDS)
    return trends


STALE_AFTER = timedelta(minutes=5)  # a playing stage with no analysed face for this long


def _ago(delta: timedelta) -> str:
    minutes = int(delta.total_seconds() // 60)
    return f"{minutes} min" if minutes < 90 else f"{round(minutes / 60)} h"


def attention_items(festival: Festival, now=None) -> list[dict]:
    """What needs someone at 11 pm: cameras offline, and stages that are playing but whose data
    stopped (no analysed face for STALE_AFTER: the camera, the upload or the analysis is behind).
    Most urgent first; an empty list is a quiet night."""
    now = now or timezone.now()
    items = []
    devices = Device.objects.filter(festival=festival).select_related("stage").order_by("name")
    for device in devices:
        if device.paused or not (
            device.status == DeviceStatus.OFFLINE or device.offline_alerted_at is not None
        ):
            continue
        seen = (
            f"last seen {_ago(now - device.last_seen_at)} ago"
            if device.last_seen_at
            else "never seen"
        )
        where = f" at {device.stage.name}" if device.stage else ""
        items.append(
            {
                "kind": "camera_offline",
                "severity": "bad",
                "message": f"Camera {device.name}{where} is offline ({seen}).",
            }
        )
    for device in devices.filter(status=DeviceStatus.ONLINE):
        where = f" at {device.stage.name}" if device.stage else ""
        for kind, message in input_problems(device, now).items():
            items.append(
                {
                    "kind": f"camera_{kind}",
                    "severity": "bad" if kind in ("black", "frozen") else "warn",
                    "message": f"Camera {device.name}{where}: {message}.",
                }
            )
    analysis = analysis_status(now)
    if analysis and analysis["behind"]:
        items.append(
            {
                "kind": "analysis_behind",
                "severity": "bad",
                "message": f"Analysis is behind: {analysis['queued']} crops queued, the oldest "
                f"waiting {_ago(timedelta(seconds=analysis['oldest_age_s'] or 0))}; numbers lag "
                "until it catches up (more analyzer workers, docs/operations.md).",
            }
        )
    latest = dict(
        MinuteRollup.objects.filter(festival=festival, faces__gt=0, minute__lte=now)
        .values("stage_id")
        .annotate(last=Max("minute"))
        .values_list("stage_id", "last")
    )
    for row in now_next_by_stage(festival, now):
        if row.now is None:
            continue
        last = latest.get(row.stage.pk)
        since = last + timedelta(minutes=1) if last and last >= row.now.starts_at else None
        quiet = now - (since or row.now.starts_at)
        if quiet < STALE_AFTER:
            continue
        what = "no analysed face yet" if since is None else "no analysed face"
        items.append(
            {
                "kind": "stage_stale",
                "severity": "warn",
                "message": f"{row.stage.name}: {what} for {_ago(quiet)} while "
                f"{row.now.artist} plays (camera, upload or analysis behind).",
            }
        )
    return items


# Health figures from the device's last telemetry report (absent fields read as None).
HEALTH_FIELDS = ("fps", "faces_detected", "uploads", "spool_depth", "errors")


@login_required
@require_GET
def festival_data(request, festival_id: int):
    festival = _festival_for(request, festival_id)
    stages = Stage.objects.filter(festival=festival).order_by("position", "name")
    payload = {
        "live": live_ranking(festival),
        "timelines": {
            stage.slug: [
                {"minute": p["minute"], "vibe": p["vibe"], "faces": p["faces"]}
                for p in stage_timeline(festival, stage, minutes=TIMELINE_MINUTES)
            ]
            for stage in stages
        },
        "sets": timeline_sets(festival),
        "trends": longer_trends(festival),
        "devices": device_health_rows(festival),
        "ingest": {"refused": ingest_refusals(festival)},
        "attention": attention_items(festival),
    }
    response = JsonResponse(payload)
    response["Cache-Control"] = "private, no-store"
    return response
