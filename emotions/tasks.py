"""Thin Celery tasks for the analysis pipeline; the work is in emotions.services."""

from __future__ import annotations

import logging

from celery import shared_task
from django.db import DatabaseError, InterfaceError, OperationalError

from emotions import retention, services
from emotions.cloudwatch_dashboards import sync_festival_dashboard  # noqa: F401  (registered here)
from emotions.comparison import services as comparison
from emotions.reports import services as reports
from emotions.reports.services import build_set_report  # noqa: F401  (registered here)

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
    """The observations table's stream -> the database. A database outage retries with backoff;
    the shard checkpoints only move with the rows they cover, so nothing is lost meanwhile."""
    result = services.ingest_streams()
    if result.created or result.rejected:
        log.info(
            "ingested %s new observations (%s read, %s refused: %s)",
            result.created,
            result.read,
            result.skipped_invalid,
            result.rejected,
        )
    return {"created": result.created, "read": result.read, "refused": result.skipped_invalid}


@shared_task(name="emotions.tasks.sweep_expired_crops", ignore_result=True)
def sweep_expired_crops() -> dict:
    """Delete face crops older than their retention (emotions.retention), so the promise holds
    to the hour and not only to the lifecycle rule's day."""
    reports = retention.sweep_expired_crops()
    return {r.festival: {"deleted": r.deleted, "errors": len(r.errors)} for r in reports}


@shared_task(name="emotions.tasks.measure_analysis_backlog", ignore_result=True)
def measure_analysis_backlog() -> dict:
    """Depth and oldest-message age of the analysis queue, stored for /live and the dashboard
    (measured here, not per request), with one alert per backlog incident."""
    backlog = services.measure_analysis_backlog()
    return {"depth": backlog.depth, "oldest_age_s": backlog.oldest_age_s}


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


@shared_task(name="emotions.tasks.refresh_comparison_runs", ignore_result=True)
def refresh_comparison_runs() -> int:
    """Recompute the results of comparison runs that are on (or just ended) and tell the cameras
    of finished runs to stop sampling (emotions.comparison.services)."""
    return comparison.refresh_comparison_runs()
