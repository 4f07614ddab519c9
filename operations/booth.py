"""The DJ booth screen: one full-screen page per stage, readable from two metres, that shows the
current vibe, its trend and the set's curve so far. It needs no account: the link carries the
stage's secret `screen_key` (an operator issues and revokes it in the admin), so a tablet in the
booth can show it all night. It shows only what the fan API shows live (small buckets
suppressed), for one stage."""

from __future__ import annotations

from datetime import timedelta

from django.http import Http404, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from emotions.live_cache import live_ranking
from emotions.selectors import stage_timeline
from festival.localtime import local_time_label
from stages.models import Stage
from stages.selectors import now_next_by_stage

CURVE_MAX_MINUTES = 240


def _stage_for(key: str) -> Stage:
    if len(key) < 32:
        raise Http404("No such screen.")
    stage = Stage.objects.select_related("festival").filter(screen_key=key).first()
    if stage is None:
        raise Http404("This screen link is not valid (it may have been revoked).")
    return stage


def _private(response):
    response["Cache-Control"] = "private, no-store"
    response["Referrer-Policy"] = "no-referrer"  # the key is in the URL
    response["X-Robots-Tag"] = "noindex"
    return response


@require_GET
def stage_screen(request, key: str):
    stage = _stage_for(key)
    return _private(render(request, "booth/stage.html", {"stage": stage, "key": key}))


def screen_payload(stage: Stage, now=None) -> dict:
    now = now or timezone.now()
    festival = stage.festival
    tz = festival.tz
    row = next(
        (r for r in live_ranking(festival)["stages"] if r["stage"]["slug"] == stage.slug), None
    )
    slot = next((s for s in now_next_by_stage(festival, now) if s.stage.pk == stage.pk), None)
    playing = slot.now if slot else None
    curve = []
    if playing is not None:
        minutes = int((now - playing.starts_at).total_seconds() // 60)
        minutes = max(1, min(minutes, CURVE_MAX_MINUTES))
        curve = [
            {"minute": p["minute"], "vibe": p["vibe"], "suppressed": p["suppressed"]}
            for p in stage_timeline(festival, stage, at=now, minutes=minutes)
            if p["minute"] >= playing.starts_at.replace(second=0, microsecond=0)
        ]
    upcoming = slot.next if slot else None
    return {
        "stage": stage.name,
        "festival": festival.name,
        "now_playing": playing.artist if playing else None,
        "set_starts_at": playing.starts_at if playing else None,
        "set_ends_at": playing.ends_at if playing else None,
        "set_ends_label": local_time_label(playing.ends_at, tz) if playing else None,
        "next": (
            {"artist": upcoming.artist, "starts_label": local_time_label(upcoming.starts_at, tz)}
            if upcoming
            else None
        ),
        "vibe": row["vibe"] if row else None,
        "suppressed": row["suppressed"] if row else True,
        "trend": row["trend"] if row else None,
        "trend_delta": row["trend_delta"] if row else None,
        "min_faces": festival.min_faces_public,
        "curve": curve,
        "generated_at": now,
        "generated_label": local_time_label(now, tz),
        "stale_after_s": int(timedelta(minutes=2).total_seconds()),
    }


@require_GET
def stage_screen_data(request, key: str):
    return _private(JsonResponse(screen_payload(_stage_for(key))))
