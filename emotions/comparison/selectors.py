"""Comparison runs (reads): the runs a user may see, and what the run's page shows."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from emotions.models import ComparisonRun


def runs_for(user):
    return (
        ComparisonRun.objects.for_user(user).select_related("festival").prefetch_related("devices")
    )


def page_context(run: ComparisonRun, *, now: datetime | None = None) -> dict:
    """The stored result and the facts around it, for the page and the API."""
    now = now or timezone.now()
    result = run.result or {}
    return {
        "run": run,
        "status": run.status_at(now),
        "result": result,
        "cameras": [
            {"thing_name": d.thing_name, "name": d.name, "mode": d.effective_config["mode"]}
            for d in run.devices.select_related("festival").order_by("thing_name")
        ],
        "computed": bool(result),
    }
