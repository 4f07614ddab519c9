"""One CloudWatch dashboard per festival, kept in step with its stages and cameras.

Per stage the dashboard shows:
- faces analysed per minute  (analyzer metric `FacesAnalyzed`, dimensions Festival, Stage);
- apparent expression share  (analyzer metric `TopEmotionFaces`, dimensions Emotion, Festival,
  Stage; shares are metric math: 100 x one expression / all expressions, stacked);
- camera fps and errors      (device telemetry metrics `Fps` and `Errors`, dimensions Festival,
  Stage, Device; published by devices.services.health.publish_device_metrics).

Festival = festival slug, Stage = stage slug, Device = IoT thing name; namespace =
festival.namespace. The dashboard is rewritten whole (put_dashboard is idempotent) when a stage
or a camera is saved or deleted (signals -> emotions.tasks.sync_festival_dashboard, when
settings.CLOUDWATCH_DASHBOARDS is on) and removed by `delete_festival_dashboard` at closeout.
"""

from __future__ import annotations

import json
import logging

from botocore.exceptions import ClientError
from celery import shared_task
from django.conf import settings
from django.core.cache import cache
from django.db import transaction

import awsclients as aws
from devices.models import Device, DeviceStatus
from edge_package.contracts import EMOTIONS
from festival.models import Festival
from stages.models import Stage

log = logging.getLogger(__name__)

FACES_METRIC = "FacesAnalyzed"  # analyzer/analyzer.py
EXPRESSION_METRIC = "TopEmotionFaces"  # analyzer/analyzer.py (+ dimension Emotion)
DEVICE_FPS_METRIC = "Fps"  # devices/services/health.py METRICS["fps"]
DEVICE_ERRORS_METRIC = "Errors"  # devices/services/health.py METRICS["errors"]
PERIOD_S = 60
WIDGET_W, WIDGET_H = 6, 6


def dashboard_name(festival: Festival) -> str:
    """Dashboard names allow letters, digits, '-' and '_'; festival slugs are all of that."""
    return f"StagePulse-{festival.slug}"[:255]


def _metric_widget(x: int, y: int, title: str, metrics: list, **properties) -> dict:
    return {
        "type": "metric",
        "x": x,
        "y": y,
        "width": WIDGET_W,
        "height": WIDGET_H,
        "properties": {
            "title": title,
            "view": "timeSeries",
            "region": aws.region(),
            "period": PERIOD_S,
            "metrics": metrics,
            **properties,
        },
    }


def _text_widget(y: int, markdown: str, height: int = 1) -> dict:
    return {
        "type": "text",
        "x": 0,
        "y": y,
        "width": 24,
        "height": height,
        "properties": {"markdown": markdown},
    }


def _stage_widgets(festival: Festival, stage: Stage, devices: list[Device], y: int) -> list:
    ns = festival.namespace
    where = ["Festival", festival.slug, "Stage", stage.slug]
    widgets = [_text_widget(y, f"## {stage.name} (`{stage.slug}`)")]
    y += 1
    widgets.append(
        _metric_widget(
            0,
            y,
            f"{stage.name}: faces analysed / min",
            [[ns, FACES_METRIC, *where, {"stat": "Sum", "label": "faces"}]],
            yAxis={"left": {"min": 0}},
        )
    )
    share = [
        [ns, EXPRESSION_METRIC, "Emotion", name, *where,
         {"id": f"m{i}", "stat": "Sum", "visible": False}]
        for i, name in enumerate(EMOTIONS)
    ]  # fmt: skip
    share += [
        [
            {
                "id": f"e{i}",
                "expression": f'100 * FILL(m{i}, 0) / SUM(FILL(METRICS("m"), 0))',
                "label": name.title(),
            }
        ]
        for i, name in enumerate(EMOTIONS)
    ]
    widgets.append(
        _metric_widget(
            WIDGET_W,
            y,
            f"{stage.name}: apparent expression share (%)",
            share,
            stacked=True,
            yAxis={"left": {"min": 0, "max": 100}},
        )
    )
    if devices:
        fps = [
            [ns, DEVICE_FPS_METRIC, *where, "Device", d.thing_name,
             {"stat": "Average", "label": d.name}]
            for d in devices
        ]  # fmt: skip
        errors = [
            [ns, DEVICE_ERRORS_METRIC, *where, "Device", d.thing_name,
             {"stat": "Sum", "label": d.name}]
            for d in devices
        ]  # fmt: skip
        widgets.append(
            _metric_widget(
                2 * WIDGET_W, y, f"{stage.name}: camera fps", fps, yAxis={"left": {"min": 0}}
            )
        )
        widgets.append(
            _metric_widget(
                3 * WIDGET_W, y, f"{stage.name}: camera errors", errors, yAxis={"left": {"min": 0}}
            )
        )
    else:
        widgets.append(
            {
                "type": "text",
                "x": 2 * WIDGET_W,
                "y": y,
                "width": 2 * WIDGET_W,
                "height": WIDGET_H,
                "properties": {"markdown": "No camera is bound to this stage."},
            }
        )
    return widgets


def dashboard_body(festival: Festival) -> dict:
    """The dashboard JSON for the festival's current stages and (non-retired) cameras."""
    stages = list(Stage.objects.filter(festival=festival).order_by("position", "name"))
    devices: dict[int, list[Device]] = {}
    for device in (
        Device.objects.filter(festival=festival, stage__isnull=False)
        .exclude(status=DeviceStatus.RETIRED)
        .order_by("name")
    ):
        devices.setdefault(device.stage_id, []).append(device)
    widgets = [
        _text_widget(
            0,
            f"# {festival.name}\nApparent facial expressions (not feelings) read by the "
            f"StagePulse analyzer, per stage; namespace `{festival.namespace}`.",
            height=2,
        )
    ]
    y = 2
    for stage in stages:
        widgets += _stage_widgets(festival, stage, devices.get(stage.pk, []), y)
        y += 1 + WIDGET_H
    return {"start": "-PT6H", "periodOverride": "inherit", "widgets": widgets}


def put_festival_dashboard(festival: Festival, cloudwatch=None) -> str:
    """Create or replace the festival's dashboard; returns its name."""
    cloudwatch = cloudwatch or aws.client("cloudwatch")
    name = dashboard_name(festival)
    response = cloudwatch.put_dashboard(
        DashboardName=name, DashboardBody=json.dumps(dashboard_body(festival))
    )
    for message in response.get("DashboardValidationMessages", []):
        log.warning("dashboard %s: %s", name, message)
    return name


def delete_festival_dashboard(festival: Festival, cloudwatch=None) -> bool:
    """Remove the festival's dashboard (closeout). False when there was none."""
    cloudwatch = cloudwatch or aws.client("cloudwatch")
    try:
        cloudwatch.delete_dashboards(DashboardNames=[dashboard_name(festival)])
    except ClientError as error:
        if aws.error_code(error) in ("ResourceNotFound", "DashboardNotFound"):
            return False
        raise
    return True


# --- keeping it in step ---------------------------------------------------------------------------
SYNC_DEBOUNCE_S = 30


def schedule_sync(festival_id: int | None) -> None:
    """After the current transaction commits, refresh the dashboard in a worker — at most once
    per SYNC_DEBOUNCE_S per festival (camera rows are saved on every heartbeat); the task reads
    the stages when it runs, so changes made meanwhile are included."""
    if not festival_id or not getattr(settings, "CLOUDWATCH_DASHBOARDS", False):
        return

    def enqueue() -> None:
        if not cache.add(f"stagepulse:dashboard-sync:{festival_id}", 1, SYNC_DEBOUNCE_S):
            return
        try:
            sync_festival_dashboard.apply_async((festival_id,), countdown=SYNC_DEBOUNCE_S)
        except Exception as exc:  # noqa: BLE001 - a broker hiccup must not fail a stage save
            log.error("could not queue the dashboard sync of festival %s: %s", festival_id, exc)

    transaction.on_commit(enqueue)


def _on_stage_change(sender, instance, **kwargs) -> None:
    schedule_sync(instance.festival_id)


def _on_device_change(sender, instance, **kwargs) -> None:
    schedule_sync(instance.festival_id)


def connect_signals() -> None:
    from django.db.models.signals import post_delete, post_save

    post_save.connect(_on_stage_change, sender=Stage, dispatch_uid="dashboard-stage-save")
    post_delete.connect(_on_stage_change, sender=Stage, dispatch_uid="dashboard-stage-delete")
    post_save.connect(_on_device_change, sender=Device, dispatch_uid="dashboard-device-save")
    post_delete.connect(_on_device_change, sender=Device, dispatch_uid="dashboard-device-delete")


# Defined beside the sync it runs and the signal receivers that enqueue it (emotions.tasks lists it,
# under the same name, for autodiscovery).
@shared_task(name="emotions.tasks.sync_festival_dashboard", ignore_result=True)
def sync_festival_dashboard(festival_id: int) -> str:
    """Create or update the festival's CloudWatch dashboard (after its stages changed)."""
    festival = Festival.objects.filter(pk=festival_id).first()
    if festival is None or festival.closed_at is not None:
        return ""  # a closed festival's dashboard was deleted by closeout and stays deleted
    return put_festival_dashboard(festival)
