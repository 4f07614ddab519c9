"""Writes for set reports: the sweeper, claims, builds, rebuild requests, announcements.

Life of a report:

    set ends + grace  ->  sweeper inserts a PENDING row (unique per set; a second insert is a no-op)
    claim             ->  UPDATE ... SET status='building', claim_token=<new> WHERE id=? AND
                          (status='pending' OR a building claim went stale); rowcount 1 = ours
    build             ->  payload computed, then UPDATE ... WHERE id=? AND claim_token=<ours>:
                          a rebuild request that came meanwhile cleared the token, so a
                          superseded build writes nothing and the next sweep builds again
    announce          ->  UPDATE ... SET announced_at=now WHERE announced_at IS NULL decides who
                          sends the first-build announcement (e-mail and/or webhook), once
    late data         ->  a ready report whose set minutes now hold more faces than it covered
                          (or whose set times changed) goes back to PENDING with a reason
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import shared_task
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.urls import reverse
from django.utils import timezone

from emotions.models import ReportStatus, SetReport
from emotions.reports.selectors import build_payload, rollup_faces
from festival.notify import notify_operations
from stages.models import Set

log = logging.getLogger(__name__)

STALE_CLAIM = timedelta(minutes=15)  # a builder that died mid-build leaves its claim this long
LATE_DATA_HORIZON = timedelta(hours=48)  # late data is looked for this long after a set ends
SWEEP_LIMIT = 25  # reports built per sweep (a backlog drains over the next runs)


class ReportError(Exception):
    """A request about a report that cannot be done (the message says why)."""


def grace() -> timedelta:
    return timedelta(minutes=settings.REPORT_GRACE_MINUTES)


@dataclass
class SweepResult:
    created: int = 0
    rebuilds_requested: int = 0
    built: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    lost_claims: int = 0


# --- creation and claims -------------------------------------------------------------------------
def ensure_pending_reports(now: datetime | None = None) -> int:
    """A PENDING report row for every set that ended more than the grace period ago."""
    now = now or timezone.now()
    due = Set.objects.filter(ends_at__lte=now - grace(), report__isnull=True).select_related(
        "stage"
    )
    rows = [
        SetReport(
            organization_id=s.organization_id,
            festival_id=s.stage.festival_id,
            stage_id=s.stage_id,
            set_id=s.pk,
        )
        for s in due
    ]
    # Two sweepers may insert the same set's row: the unique set_id makes the second a no-op.
    SetReport.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def claim(report_id: int, now: datetime | None = None) -> str | None:
    """Claim a report for building; returns the claim token, or None when someone else has it.

    One conditional UPDATE decides: only one of any number of concurrent claimers sees rowcount 1.
    """
    now = now or timezone.now()
    token = uuid.uuid4().hex
    claimable = Q(status=ReportStatus.PENDING) | Q(
        status=ReportStatus.BUILDING, claimed_at__lt=now - STALE_CLAIM
    )
    won = (
        SetReport.objects.filter(pk=report_id)
        .filter(claimable)
        .update(status=ReportStatus.BUILDING, claim_token=token, claimed_at=now, updated_at=now)
    )
    return token if won == 1 else None


def build_claimed(report_id: int, token: str, now: datetime | None = None) -> bool:
    """Build a claimed report and store it if the claim still holds. True when stored."""
    report = SetReport.objects.select_related("set__stage__festival").get(pk=report_id)
    try:
        payload = build_payload(report.set, now)
    except Exception as exc:
        log.exception("set report %s failed", report_id)
        SetReport.objects.filter(pk=report_id, claim_token=token).update(
            status=ReportStatus.FAILED,
            claim_token="",
            error=f"{type(exc).__name__}: {exc}"[:2000],
            updated_at=timezone.now(),
        )
        return False
    overall = payload["overall"] or {}
    peak, low = payload["peak"] or {}, payload["low"] or {}
    now = timezone.now()
    stored = SetReport.objects.filter(
        pk=report_id, claim_token=token, status=ReportStatus.BUILDING
    ).update(
        status=ReportStatus.READY,
        claim_token="",
        error="",
        rebuild_reason="",
        built_at=now,
        updated_at=now,
        builds=F("builds") + 1,
        payload=payload,
        covered_faces=payload["covered_faces"],
        suppressed=payload["suppressed"],
        faces=overall.get("faces"),
        minutes_with_data=payload["coverage"]["minutes_with_data"],
        vibe=overall.get("vibe"),
        top_expression=overall.get("top_expression", ""),
        peak_vibe=peak.get("vibe"),
        peak_at=peak.get("minute"),
        low_vibe=low.get("vibe"),
        low_at=low.get("minute"),
    )
    if not stored:
        log.info("set report %s: build superseded by a rebuild request; not stored", report_id)
    return bool(stored)


def build_report(report_id: int, now: datetime | None = None) -> bool:
    """Claim, build and announce one report. False when another worker holds it."""
    token = claim(report_id, now)
    if token is None:
        return False
    if build_claimed(report_id, token, now):
        announce(SetReport.objects.select_related("festival", "set", "stage").get(pk=report_id))
        return True
    return False


def sweep(now: datetime | None = None, limit: int = SWEEP_LIMIT) -> SweepResult:
    """The beat task's work: create due reports, look for late data, build what is pending."""
    now = now or timezone.now()
    result = SweepResult(created=ensure_pending_reports(now))
    result.rebuilds_requested = detect_late_data(now)
    candidates = list(
        SetReport.objects.filter(set__ends_at__lte=now - grace())
        .filter(
            Q(status=ReportStatus.PENDING)
            | Q(status=ReportStatus.BUILDING, claimed_at__lt=now - STALE_CLAIM)
        )
        .order_by("set__ends_at")
        .values_list("pk", flat=True)[:limit]
    )
    for report_id in candidates:
        token = claim(report_id, now)
        if token is None:
            result.lost_claims += 1
            continue
        if build_claimed(report_id, token, now):
            result.built.append(report_id)
            announce(SetReport.objects.select_related("festival", "set", "stage").get(pk=report_id))
        else:
            result.failed.append(report_id)
    return result


# --- rebuilds ------------------------------------------------------------------------------------
def request_rebuild(report: SetReport, reason: str = "requested by an organizer") -> bool:
    """Put a report back in the queue. A build running now is superseded (its result is dropped).

    Returns False when the report is already waiting to be built.
    """
    if not reason.strip():
        raise ReportError("Say why the report should be rebuilt.")
    changed = (
        SetReport.objects.filter(pk=report.pk)
        .exclude(status=ReportStatus.PENDING)
        .update(
            status=ReportStatus.PENDING,
            claim_token="",
            rebuild_reason=reason.strip()[:200],
            updated_at=timezone.now(),
        )
    )
    report.refresh_from_db()
    return bool(changed)


def queue_rebuild(report: SetReport, reason: str) -> bool:
    """An organizer's rebuild (API, report page, dashboard): back in the queue, and a build task
    sent once the request's transaction commits, so nobody waits for the next sweep."""
    queued = request_rebuild(report, reason)
    report_id = report.pk
    transaction.on_commit(lambda: build_set_report.delay(report_id))
    return queued


def detect_late_data(now: datetime | None = None) -> int:
    """Ready reports of recent sets whose minutes gained faces since they were built (late data
    arriving after the grace period), or whose set times were edited, go back to PENDING."""
    now = now or timezone.now()
    recent = SetReport.objects.filter(
        status=ReportStatus.READY, set__ends_at__gte=now - LATE_DATA_HORIZON
    ).select_related("set")
    requested = 0
    for report in recent:
        built_for = (report.payload or {}).get("set", {})
        if (
            built_for.get("starts_at") != report.set.starts_at.isoformat()
            or built_for.get("ends_at") != report.set.ends_at.isoformat()
        ):
            reason = "the set's times changed"
        else:
            faces_now = rollup_faces(report.set)
            if faces_now <= report.covered_faces:
                continue
            reason = f"late data: {faces_now - report.covered_faces} faces arrived after the build"
        requested += request_rebuild(report, reason)
    return requested


# --- publication ---------------------------------------------------------------------------------
def publish_refusal(report: SetReport) -> str:
    """Why this report cannot be published now ("" when it can); pages show it by the button."""
    if not report.festival.public:
        return "This festival is not public: mark the festival public before publishing reports."
    if report.status != ReportStatus.READY:
        return "Only a ready report can be published."
    return ""


def set_published(report: SetReport, published: bool) -> SetReport:
    refusal = publish_refusal(report) if published else ""
    if refusal:
        raise ReportError(refusal)
    report.published = published
    report.save(update_fields=["published", "updated_at"])
    return report


# --- announcement --------------------------------------------------------------------------------
def report_url(report: SetReport) -> str:
    """Absolute when STAGEPULSE_PUBLIC_URL is set: an e-mail or chat message has no page to be
    relative to."""
    base = (settings.STAGEPULSE_PUBLIC_URL or getattr(settings, "SITE_URL", "")).rstrip("/")
    return f"{base}{reverse('set-report-page', args=[report.pk])}"


def announcement_text(report: SetReport) -> tuple[str, str]:
    payload = report.payload
    info = payload["set"]
    subject = f"[StagePulse] set report: {info['artist']} on {info['stage']['name']}"
    lines = [
        f"{info['artist']} — {info['stage']['name']}, {info['local_start']} to "
        f"{info['local_end'][-5:]} ({info['timezone']})",
        "",
    ]
    if payload["suppressed"]:
        lines.append(payload["suppressed_message"])
    else:
        overall = payload["overall"]
        lines.append(f"Faces analysed: {overall['faces']}; vibe {overall['vibe']} / 100.")
        lines.append(f"Most frequent apparent expression: {overall['top_expression'].lower()}.")
        if payload["peak"]:
            low = payload.get("low")
            low_text = (
                f"low at {low['local_time']} (vibe {low['vibe']})."
                if low
                else (payload.get("low_note") or "No low.").lower()
            )
            lines.append(
                f"Peak at {payload['peak']['local_time']} (vibe {payload['peak']['vibe']}), "
                + low_text
            )
        if payload.get("coverage_caveat"):
            lines.append(payload["coverage_caveat"])
        rank = payload["comparison"]["rank_festival_day"]
        if rank:
            lines.append(
                f"Rank among the day's sets: {rank} of "
                f"{payload['comparison']['festival_sets_ranked']}."
            )
    lines += ["", f"Report: {report_url(report)}", "", payload["model_statement"]]
    return subject, "\n".join(lines)


def announce(report: SetReport) -> list[str]:
    """Tell the festival's organizers a report is ready, once (the first build). Returns the
    channels used; a failing channel is logged and never fails the report."""
    if report.status != ReportStatus.READY:
        return []
    first = SetReport.objects.filter(pk=report.pk, announced_at__isnull=True).update(
        announced_at=timezone.now()
    )
    if not first:
        return []
    festival = report.festival
    subject, body = announcement_text(report)
    return notify_operations(
        festival, subject=subject, body=body, payload=webhook_payload(report, subject, body)
    )


def webhook_payload(report: SetReport, subject: str, body: str) -> dict:
    return {
        "event": "set_report.ready",
        "text": f"{subject}\n{body}",
        "festival": report.festival.slug,
        "stage": report.stage.slug,
        "set_id": report.set_id,
        "artist": report.set.artist,
        "report_id": report.pk,
        "url": report_url(report),
        "suppressed": report.suppressed,
        "faces": report.faces,
        "vibe": report.vibe,
    }


# --- the DJ's share link -------------------------------------------------------------------------
SHARE_DAYS = 14


def share_report(report: SetReport, days: int = SHARE_DAYS, now: datetime | None = None) -> str:
    """A new secret link for the artist to open this report without an account, valid `days`;
    a previous link stops working at once."""
    import secrets

    now = now or timezone.now()
    report.share_key = secrets.token_urlsafe(32)
    report.share_expires_at = now + timedelta(days=days)
    report.save(update_fields=["share_key", "share_expires_at", "updated_at"])
    return report.share_key


def revoke_share(report: SetReport) -> None:
    report.share_key = ""
    report.share_expires_at = None
    report.save(update_fields=["share_key", "share_expires_at", "updated_at"])


def shared_report(key: str, now: datetime | None = None) -> SetReport | None:
    """The report a share link opens, or None (unknown, revoked or expired)."""
    if len(key) < 32:
        return None
    now = now or timezone.now()
    return (
        SetReport.objects.select_related("set", "stage", "festival")
        .filter(share_key=key, share_expires_at__gt=now)
        .first()
    )


# The task is defined beside the services that enqueue it (emotions.tasks would import this module
# and this module it); emotions.tasks lists it, under the same name, for autodiscovery.
@shared_task(name="emotions.tasks.build_set_report", ignore_result=True)
def build_set_report(report_id: int) -> bool:
    """Build one report now (after a rebuild request); a no-op when another worker has it."""
    return build_report(report_id)
