"""Thin Celery tasks for the analysis pipeline; the work is in emotions.services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError

from emotions import services

log = logging.getLogger(__name__)


@shared_task(
    name="emotions.tasks.ingest_observations",
    autoretry_for=(OperationalError, InterfaceError, DatabaseError),
    retry_backoff=2,
    retry_backoff_max=60,
    max_retries=None,
    ignore_result=True,
)
def ingest_observations() -> dict:
    """DynamoDB -> Postgres for every active festival. A database outage retries with backoff;
    the watermarks only move with the rows they cover, so nothing is lost meanwhile."""
    results = services.ingest_active_festivals()
    created = sum(r.created for r in results)
    if created:
        log.info("ingested %s new observations over %s stages", created, len(results))
    return {"created": created, "stages": len(results)}


@shared_task(
    name="emotions.tasks.sweep_set_reports",
    autoretry_for=(OperationalError, InterfaceError),
    retry_backoff=5,
    retry_backoff_max=120,
    max_retries=5,
    ignore_result=True,
)
def sweep_set_reports() -> dict:
    """Build the reports of sets that ended (plus the grace period); rebuild on late data.
    Safe to run on several workers at once: each report is claimed by one conditional UPDATE."""
    from emotions.reports import services as reports

    result = reports.sweep()
    if result.built or result.failed or result.rebuilds_requested:
        log.info(
            "set reports: built %s, failed %s, rebuilds requested %s",
            result.built,
            result.failed,
            result.rebuilds_requested,
        )
    return {
        "created": result.created,
        "built": len(result.built),
        "failed": len(result.failed),
        "rebuilds_requested": result.rebuilds_requested,
    }


@shared_task(name="emotions.tasks.build_set_report", ignore_result=True)
def build_set_report(report_id: int) -> bool:
    """Build one report now (after a rebuild request); a no-op when another worker has it."""
    from emotions.reports import services as reports

    return reports.build_report(report_id)


@shared_task(name="emotions.tasks.sync_festival_dashboard", ignore_result=True)
def sync_festival_dashboard(festival_id: int) -> str:
    """Create or update the festival's CloudWatch dashboard (after its stages changed)."""
    from emotions import cloudwatch_dashboards
    from festival.models import Festival

    festival = Festival.objects.filter(pk=festival_id).first()
    if festival is None or festival.closed_at is not None:
        return ""  # a closed festival's dashboard was deleted by closeout and stays deleted
    return cloudwatch_dashboards.put_festival_dashboard(festival)
