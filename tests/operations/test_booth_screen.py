"""The DJ booth screen: a secret link per stage, no login, revocable; it shows that stage's
live vibe, trend and the set's curve so far, with the same suppression as the fan API."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from stages import services
from stages.models import Set
from tests.factories import add_recent_rollup

pytestmark = pytest.mark.django_db


@pytest.fixture
def playing(two_worlds):
    ours, theirs = two_worlds
    now = timezone.now()
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Night Shift",
        starts_at=now - timedelta(minutes=20),
        ends_at=now + timedelta(minutes=40),
    )
    for minutes_ago in range(1, 15):
        add_recent_rollup(ours.stage, faces=12, happy=70.0, calm=30.0, minutes_ago=minutes_ago)
    add_recent_rollup(theirs.stage, faces=40, happy=99.0, minutes_ago=1)
    return ours


def test_the_link_works_without_an_account_and_shows_the_stage(client, playing):
    key = services.issue_screen_link(playing.stage)
    page = client.get(reverse("stage-screen", args=[key]))
    assert page.status_code == 200 and "Ours Main" in page.content.decode()
    assert page["Referrer-Policy"] == "no-referrer" and "no-store" in page["Cache-Control"]
    data = client.get(reverse("stage-screen-data", args=[key])).json()
    assert data["now_playing"] == "Night Shift" and data["vibe"] is not None
    assert data["set_ends_label"].endswith(("CET", "CEST"))
    assert 14 <= len(data["curve"]) <= 21  # the set so far, not the last hour
    assert sum(1 for p in data["curve"] if p["vibe"] is not None) == 14
    assert "Theirs" not in str(data)


def test_a_revoked_or_replaced_link_stops_working(client, playing):
    old = services.issue_screen_link(playing.stage)
    new = services.issue_screen_link(playing.stage)
    assert client.get(reverse("stage-screen", args=[old])).status_code == 404
    assert client.get(reverse("stage-screen-data", args=[new])).status_code == 200
    services.revoke_screen_link(playing.stage)
    assert client.get(reverse("stage-screen-data", args=[new])).status_code == 404
    assert client.get("/screen/x/").status_code == 404


def test_small_crowds_show_no_number(client, two_worlds):
    ours, _ = two_worlds
    add_recent_rollup(ours.stage, faces=2, happy=90.0, minutes_ago=1)
    key = services.issue_screen_link(ours.stage)
    data = client.get(reverse("stage-screen-data", args=[key])).json()
    assert data["vibe"] is None and data["suppressed"]


def test_operators_issue_and_revoke_links_in_the_admin(client, two_worlds):
    ours, _ = two_worlds
    client.force_login(ours.operator)
    url = reverse("admin:stages_stage_changelist")
    client.post(url, {"action": "issue_screen_links", "_selected_action": [ours.stage.pk]})
    ours.stage.refresh_from_db()
    assert len(ours.stage.screen_key) >= 32
    page = client.get(reverse("admin:stages_stage_change", args=[ours.stage.pk])).content
    assert f"/screen/{ours.stage.screen_key}/" in page.decode()
    client.post(url, {"action": "revoke_screen_links", "_selected_action": [ours.stage.pk]})
    ours.stage.refresh_from_db()
    assert ours.stage.screen_key == ""
    client.force_login(ours.viewer)  # viewers cannot issue one
    client.post(url, {"action": "issue_screen_links", "_selected_action": [ours.stage.pk]})
    ours.stage.refresh_from_db()
    assert ours.stage.screen_key == ""
