"""Switching a festival's analysis mode (or face-free mode) ends its comparison runs, with the
reason on the run: an organizer who switches to edge mode expects no crop to leave the cameras,
and a run measures the cameras in the modes they had. The pairs so far stay and are computed."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from emotions.comparison import services
from emotions.models import ComparisonRun
from festival.models import Festival
from tests.emotions.test_comparison_runs import pair_item, start, store

pytestmark = pytest.mark.django_db


@pytest.fixture
def worlds(two_worlds):
    today = timezone.now().date()
    for world in two_worlds:
        world.festival.starts_on = today - timedelta(days=1)
        world.festival.ends_on = today + timedelta(days=1)
        world.festival.save()
    return two_worlds


def test_switching_the_festival_to_edge_mode_ends_its_run_with_the_reason(
    worlds, api_client, client, django_capture_on_commit_callbacks
):
    ours, theirs = worlds
    run = start(ours)
    their_run = start(theirs)
    store(*[pair_item(ours, run, timezone.now() - timedelta(minutes=m)) for m in (3, 2, 1)])
    api_client.force_authenticate(ours.operator)
    with django_capture_on_commit_callbacks(execute=True):
        answer = api_client.patch(
            f"/api/v1/festivals/{ours.festival.pk}/", {"analysis_mode": "edge"}, format="json"
        )
    assert answer.status_code == 200, answer.content
    run.refresh_from_db()
    assert run.status_at(timezone.now()) == "cancelled"
    assert "analysis mode changed from cloud to edge" in run.cancel_reason
    assert "no crop leaves the cameras" in run.cancel_reason
    assert run.result["pairs"] == 3 and run.result["status"] == "cancelled"  # computed, kept
    ours.device.refresh_from_db()
    config = ours.device.effective_config
    assert config["comparison_run"] == "" and config["comparison_sample_rate"] == 0
    assert config["mode"] == "edge"
    shown = api_client.get(f"/api/v1/comparison-runs/{run.pk}/").json()
    assert shown["status"] == "cancelled" and shown["cancel_reason"] == run.cancel_reason
    client.force_login(ours.viewer)
    page = client.get(f"/comparisons/{run.pk}/").content.decode()
    assert 'id="ended-early"' in page and "from cloud to edge" in page
    their_run.refresh_from_db()  # another festival's run goes on
    assert their_run.cancelled_at is None and their_run.cancel_reason == ""


def test_a_scheduled_run_ends_too_and_face_free_mode_says_why(worlds):
    from operations.services import update_festival

    ours, _ = worlds
    now = timezone.now()
    later = start(ours, starts_at=now + timedelta(hours=2), ends_at=now + timedelta(hours=3),
                  now=now)  # fmt: skip
    update_festival(Festival.objects.get(pk=ours.festival.pk), face_free=True)
    later.refresh_from_db()
    assert later.cancelled_at is not None and "face-free mode" in later.cancel_reason
    assert services.start_comparison(  # the cameras are free for a new run at once
        ours.festival, [ours.device], ends_at=now + timedelta(hours=1), now=now
    )


def test_other_changes_and_a_cancel_by_hand_leave_no_mode_reason(worlds):
    from operations.services import update_festival

    ours, _ = worlds
    run = start(ours)
    update_festival(Festival.objects.get(pk=ours.festival.pk), name="Renamed Fest")
    update_festival(Festival.objects.get(pk=ours.festival.pk), analysis_mode="cloud")  # unchanged
    run.refresh_from_db()
    assert run.cancelled_at is None and run.status_at(timezone.now()) == "running"
    services.cancel_comparison(run)
    assert ComparisonRun.objects.get(pk=run.pk).cancel_reason == ""
