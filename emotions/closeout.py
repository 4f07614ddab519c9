"""What a festival's closeout asks of emotions (operations.closeout calls these): its CloudWatch
dashboard and alarms, found and removed by the names emotions.cloudwatch_dashboards gives them,
and, on purge, its aggregates and reports in the database."""

from __future__ import annotations

from emotions.cloudwatch_dashboards import dashboard_name, delete_festival_dashboard
from emotions.models import (
    ComparisonReading,
    ComparisonRun,
    IngestRejection,
    IngestWatermark,
    MinuteRollup,
    Observation,
    SetReport,
)
from festival.models import Festival

PURGED_MODELS = (
    ComparisonReading,
    ComparisonRun,
    SetReport,
    MinuteRollup,
    Observation,
    IngestWatermark,
    IngestRejection,
)


def dashboards_and_alarms(festival: Festival, cloudwatch) -> tuple[list[str], list[str]]:
    """The festival's dashboard (if it exists) and alarms named after it ("<name>" or
    "<name>-…" only: festival "pulse" must not take festival "pulse-2026"'s alarms)."""
    name = dashboard_name(festival)
    entries = cloudwatch.list_dashboards(DashboardNamePrefix=name).get("DashboardEntries", [])
    dashboards = [e["DashboardName"] for e in entries if e["DashboardName"] == name]
    alarms = []
    for page in cloudwatch.get_paginator("describe_alarms").paginate(AlarmNamePrefix=name):
        alarms += [
            a["AlarmName"]
            for a in page.get("MetricAlarms", []) + page.get("CompositeAlarms", [])
            if a["AlarmName"] == name or a["AlarmName"].startswith(f"{name}-")
        ]
    return dashboards, alarms


def remove_dashboard(festival: Festival, cloudwatch) -> bool:
    """The one dashboard deletion (emotions.cloudwatch_dashboards); False when it was gone."""
    return delete_festival_dashboard(festival, cloudwatch)


def remove_alarms(alarms: list[str], cloudwatch) -> None:
    """Delete `alarms`, 100 a call (what DeleteAlarms takes)."""
    for start in range(0, len(alarms), 100):
        cloudwatch.delete_alarms(AlarmNames=alarms[start : start + 100])


def purge_rows(festival: Festival, *, dry_run: bool) -> list[str]:
    """The festival's aggregates and set reports deleted (closeout --purge); a line per model."""
    lines = []
    for model in PURGED_MODELS:
        field = "festival" if any(f.name == "festival" for f in model._meta.get_fields()) else None
        rows = model.objects.filter(
            **({field: festival} if field else {"stage__festival": festival})
        )
        count = rows.count()
        if count:
            lines.append(f"{count} {model._meta.verbose_name_plural}")
            if not dry_run:
                rows.delete()
    return lines
