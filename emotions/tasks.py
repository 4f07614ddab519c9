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
