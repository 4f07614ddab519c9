"""The organizer dashboard: login required, tenant scoped, data from the live selectors."""

import pytest

from tests.factories import add_recent_rollup

pytestmark = pytest.mark.django_db


def test_anonymous_is_sent_to_login(client, two_worlds):
    ours, _ = two_worlds
    response = client.get(f"/dashboard/{ours.festival.pk}/")
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert client.get(f"/dashboard/{ours.festival.pk}/data.json").status_code == 302


@pytest.mark.parametrize("suffix", ["", "data.json"])
def test_other_organizations_festival_is_404(client, two_worlds, suffix):
    ours, theirs = two_worlds
    client.force_login(ours.viewer)
    assert client.get(f"/dashboard/{theirs.festival.pk}/{suffix}").status_code == 404
    assert client.get(f"/dashboard/{ours.festival.pk}/{suffix}").status_code == 200


def test_single_festival_redirects_to_its_page(client, two_worlds):
    ours, _ = two_worlds
    client.force_login(ours.viewer)
    response = client.get("/dashboard/")
    assert response.status_code == 302 and response["Location"] == f"/dashboard/{ours.festival.pk}/"


def test_data_has_ranking_timelines_and_devices(client, two_worlds):
    ours, theirs = two_worlds
    add_recent_rollup(ours.stage, faces=12, happy=80.0)
    client.force_login(ours.operator)
    data = client.get(f"/dashboard/{ours.festival.pk}/data.json").json()
    (row,) = data["live"]["stages"]
    assert row["faces"] == 12 and row["vibe"] > 50
    assert list(data["timelines"]) == ["main"]
    assert any(point["faces"] == 12 for point in data["timelines"]["main"])
    assert [d["thing_name"] for d in data["devices"]] == [ours.device.thing_name]
    assert theirs.device.thing_name not in str(data)


def test_reports_panel_lists_only_our_reports(client, two_worlds):
    from emotions.models import ReportStatus, SetReport

    ours, theirs = two_worlds
    for world in (ours, theirs):
        SetReport.objects.create(
            organization=world.organization,
            festival=world.festival,
            stage=world.stage,
            set=world.set,
            status=ReportStatus.READY,
            faces=40,
            vibe=71.4,
        )
    client.force_login(ours.viewer)
    page = client.get(f"/dashboard/{ours.festival.pk}/").content.decode()
    assert "Ours Artist" in page and "71" in page
    assert "Theirs Artist" not in page


def test_the_reports_list_refreshes_from_its_own_url(client, two_worlds):
    from emotions.models import ReportStatus, SetReport

    ours, theirs = two_worlds
    client.force_login(ours.operator)
    page = client.get(f"/dashboard/{ours.festival.pk}/").content.decode()
    assert f'data-url="/dashboard/{ours.festival.pk}/reports/"' in page
    assert "Ours Artist" not in page
    SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=ours.set,
        status=ReportStatus.READY,
        vibe=64.0,
    )
    rows = client.get(f"/dashboard/{ours.festival.pk}/reports/")
    assert rows["Cache-Control"] == "private, no-store"
    html = rows.content.decode()
    assert "Ours Artist" in html and "<html" not in html
    assert f'name="next" value="/dashboard/{ours.festival.pk}/"' in html  # back to the page
    assert client.get(f"/dashboard/{theirs.festival.pk}/reports/").status_code == 404


def test_attention_names_offline_cameras_and_playing_stages_without_data(client, two_worlds):
    from datetime import timedelta

    from django.utils import timezone

    from devices.models import DeviceStatus
    from stages.models import Set

    ours, _ = two_worlds
    client.force_login(ours.viewer)
    url = f"/dashboard/{ours.festival.pk}/data.json"
    assert client.get(url).json()["attention"] == []  # nothing playing, cameras not offline
    now = timezone.now()
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Night Shift",
        starts_at=now - timedelta(minutes=40),
        ends_at=now + timedelta(minutes=20),
    )
    add_recent_rollup(ours.stage, faces=12, happy=80.0, minutes_ago=12)
    ours.device.status = DeviceStatus.OFFLINE
    ours.device.last_seen_at = now - timedelta(minutes=11)
    ours.device.save()
    items = client.get(url).json()["attention"]
    assert [i["kind"] for i in items] == ["camera_offline", "stage_stale"]
    assert "Ours cam at Ours Main is offline (last seen 11 min ago)" in items[0]["message"]
    assert "no analysed face for 11 min while Night Shift plays" in items[1]["message"]
    add_recent_rollup(ours.stage, faces=12, happy=80.0, minutes_ago=1)
    ours.device.status = DeviceStatus.ONLINE
    ours.device.save()
    assert client.get(url).json()["attention"] == []


def test_data_has_15_and_30_minute_trends(client, two_worlds):
    ours, _ = two_worlds
    for minutes_ago in range(1, 62):
        happy = 100.0 - minutes_ago * 1.5  # the crowd has been warming up for an hour
        add_recent_rollup(ours.stage, faces=10, happy=happy, calm=100 - happy,
                          minutes_ago=minutes_ago)  # fmt: skip
    client.force_login(ours.viewer)
    trends = client.get(f"/dashboard/{ours.festival.pk}/data.json").json()["trends"]["main"]
    assert trends["15"]["trend"] == "rising" and trends["15"]["delta"] > 5
    assert trends["30"]["trend"] == "rising" and trends["30"]["delta"] > trends["15"]["delta"]


def test_attention_says_when_the_analysis_is_behind(client, two_worlds, settings):
    from django.utils import timezone

    from emotions.models import AnalysisBacklog

    ours, _ = two_worlds
    client.force_login(ours.viewer)
    url = f"/dashboard/{ours.festival.pk}/data.json"
    backlog = AnalysisBacklog.objects.create(
        queue="stagepulse-analysis",
        measured_at=timezone.now(),
        depth=1800,
        in_flight=32,
        oldest_age_s=settings.ANALYSIS_BEHIND_AFTER_S + 240,
    )
    (item,) = client.get(url).json()["attention"]
    assert item["kind"] == "analysis_behind" and item["severity"] == "bad"
    assert "1800 crops queued" in item["message"]
    backlog.oldest_age_s = 3
    backlog.save()
    assert client.get(url).json()["attention"] == []  # caught up: the banner goes
