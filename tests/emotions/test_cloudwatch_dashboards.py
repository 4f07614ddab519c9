"""One CloudWatch dashboard per festival, on moto: a widget row per stage with the analyzer's
and the cameras' metrics, refreshed when stages change, removed at closeout."""

from __future__ import annotations

import json
from unittest import mock

import boto3
import pytest
from moto import mock_aws

from devices.models import DeviceStatus
from emotions import cloudwatch_dashboards as dashboards
from stages.models import Stage
from tests.emotions.report_helpers import add_device, add_stage

pytestmark = pytest.mark.django_db


@pytest.fixture
def cloudwatch(aws_region):
    with mock_aws():
        yield boto3.client("cloudwatch", region_name=aws_region)


def stored_body(cloudwatch, festival) -> dict:
    response = cloudwatch.get_dashboard(DashboardName=dashboards.dashboard_name(festival))
    return json.loads(response["DashboardBody"])


def metrics_of(body: dict, title: str) -> list:
    [widget] = [w for w in body["widgets"] if w["properties"].get("title") == title]
    return widget["properties"]["metrics"]


def test_dashboard_has_a_row_per_stage_with_analyzer_and_camera_metrics(cloudwatch, two_worlds):
    ours, _ = two_worlds
    tent = add_stage(ours, "Tent", "tent")
    retired = add_device(ours, tent, "tent-old", "Old cam")
    retired.status = DeviceStatus.RETIRED
    retired.save()
    name = dashboards.put_festival_dashboard(ours.festival, cloudwatch=cloudwatch)
    assert name == "StagePulse-ours-fest"
    body = stored_body(cloudwatch, ours.festival)
    headers = [w["properties"]["markdown"] for w in body["widgets"] if w["type"] == "text"]
    assert "## Ours Main (`main`)" in headers and "## Tent (`tent`)" in headers
    assert metrics_of(body, "Ours Main: faces analysed / min") == [
        ["StagePulse", "FacesAnalyzed", "Festival", "ours-fest", "Stage", "main",
         {"stat": "Sum", "label": "faces"}]
    ]  # fmt: skip
    share = metrics_of(body, "Ours Main: apparent expression share (%)")
    raw = [m for m in share if isinstance(m[0], str)]
    assert {m[3] for m in raw} == {
        "HAPPY", "SAD", "ANGRY", "CONFUSED", "DISGUSTED", "SURPRISED", "CALM", "FEAR"
    }  # fmt: skip
    assert all(m[1] == "TopEmotionFaces" and m[-1]["visible"] is False for m in raw)
    expressions = [m[0] for m in share if isinstance(m[0], dict)]
    assert expressions[0]["expression"] == '100 * FILL(m0, 0) / SUM(FILL(METRICS("m"), 0))'
    assert metrics_of(body, "Ours Main: camera fps") == [
        ["StagePulse", "Fps", "Festival", "ours-fest", "Stage", "main", "Device", "ours-cam-1",
         {"stat": "Average", "label": "Ours cam"}]
    ]  # fmt: skip
    assert metrics_of(body, "Ours Main: camera errors")[0][1] == "Errors"
    # The Tent's only camera is retired: no camera widgets, a note instead.
    assert "No camera is bound to this stage." in headers
    assert not [w for w in body["widgets"] if w["properties"].get("title") == "Tent: camera fps"]


def test_dashboard_follows_stage_changes_and_is_removed_at_closeout(cloudwatch, two_worlds):
    ours, theirs = two_worlds
    ours.festival.cloudwatch_namespace = "Pulse/Ours"
    ours.festival.save()
    dashboards.put_festival_dashboard(ours.festival, cloudwatch=cloudwatch)
    dashboards.put_festival_dashboard(theirs.festival, cloudwatch=cloudwatch)
    add_stage(ours, "Late Tent", "late-tent")
    Stage.objects.filter(pk=ours.stage.pk).delete()
    dashboards.put_festival_dashboard(ours.festival, cloudwatch=cloudwatch)
    body = stored_body(cloudwatch, ours.festival)
    titles = {w["properties"].get("title") for w in body["widgets"]}
    assert "Late Tent: faces analysed / min" in titles
    assert "Ours Main: faces analysed / min" not in titles
    assert metrics_of(body, "Late Tent: faces analysed / min")[0][0] == "Pulse/Ours"
    assert dashboards.delete_festival_dashboard(ours.festival, cloudwatch=cloudwatch) is True
    names = [d["DashboardName"] for d in cloudwatch.list_dashboards()["DashboardEntries"]]
    assert names == ["StagePulse-theirs-fest"]


def test_stage_changes_queue_one_debounced_sync_when_enabled(
    two_worlds, settings, django_capture_on_commit_callbacks
):
    from django.core.cache import cache

    ours, _ = two_worlds
    cache.delete(f"stagepulse:dashboard-sync:{ours.festival.pk}")
    settings.CLOUDWATCH_DASHBOARDS = True
    with (
        mock.patch("emotions.tasks.sync_festival_dashboard.apply_async") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        add_stage(ours, "Tent", "tent")
        add_stage(ours, "Dome", "dome")
    queued.assert_called_once_with((ours.festival.pk,), countdown=dashboards.SYNC_DEBOUNCE_S)
    settings.CLOUDWATCH_DASHBOARDS = False
    cache.delete(f"stagepulse:dashboard-sync:{ours.festival.pk}")
    with (
        mock.patch("emotions.tasks.sync_festival_dashboard.apply_async") as queued,
        django_capture_on_commit_callbacks(execute=True),
    ):
        add_stage(ours, "Barn", "barn")
    queued.assert_not_called()


def test_sync_task_puts_the_dashboard(cloudwatch, two_worlds, monkeypatch):
    from emotions.tasks import sync_festival_dashboard

    ours, _ = two_worlds
    monkeypatch.setattr(dashboards.aws, "client", lambda name: cloudwatch)
    assert sync_festival_dashboard.run(ours.festival.pk) == "StagePulse-ours-fest"
    assert stored_body(cloudwatch, ours.festival)["widgets"]
    assert sync_festival_dashboard.run(999999) == ""


def test_device_metric_names_match_what_devices_publish():
    health = pytest.importorskip("devices.services.health")
    assert health.METRICS["fps"][0] == dashboards.DEVICE_FPS_METRIC
    assert health.METRICS["errors"][0] == dashboards.DEVICE_ERRORS_METRIC
