"""The admin speaks the festival's local time: what an organizer types and reads is local, with
the zone shown; DST gaps and repeats are refused with the lineup CSV's messages."""

from datetime import UTC, datetime

import pytest
from django.urls import reverse

from stages.models import Set
from stages.services import export_lineup

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client(client, two_worlds):
    client.force_login(two_worlds[0].operator)
    return client


def add_set(client, stage, start_day, start_time, end_day, end_time, artist="Local Act"):
    return client.post(
        reverse("admin:stages_set_add"),
        {
            "stage": stage.pk,
            "artist": artist,
            "starts_at_0": start_day,
            "starts_at_1": start_time,
            "ends_at_0": end_day,
            "ends_at_1": end_time,
        },
    )


def test_a_set_entered_at_20_00_in_amsterdam_is_stored_at_18_00_utc(admin_client, two_worlds):
    ours, _ = two_worlds
    response = add_set(admin_client, ours.stage, "2026-07-11", "20:00", "2026-07-11", "21:30")
    assert response.status_code == 302, response.content.decode()[:3000]
    created = Set.objects.get(artist="Local Act")
    assert created.starts_at == datetime(2026, 7, 11, 18, 0, tzinfo=UTC)
    assert "main,Local Act,2026-07-11 20:00,2026-07-11 21:30" in export_lineup(ours.festival)


def test_the_change_form_shows_local_times_and_names_the_zone(admin_client, two_worlds):
    ours, _ = two_worlds  # ours.set: 18:00-19:30 UTC
    page = admin_client.get(reverse("admin:stages_set_change", args=[ours.set.pk])).content
    page = page.decode()
    assert 'value="20:00"' in page and 'value="21:30"' in page
    assert "Europe/Amsterdam" in page
    assert 'value="18:00' not in page


def test_the_add_form_names_the_zone(admin_client):
    page = admin_client.get(reverse("admin:stages_set_add")).content.decode()
    assert "Europe/Amsterdam" in page


def test_the_set_list_is_in_local_time_with_the_zone(admin_client, two_worlds):
    page = admin_client.get(reverse("admin:stages_set_changelist")).content.decode()
    assert "Fri 10 Jul 20:00 CEST" in page and "21:30 CEST" in page
    assert "18:00" not in page


def test_a_time_the_clocks_skip_is_a_form_error(admin_client, two_worlds):
    ours, _ = two_worlds
    response = add_set(admin_client, ours.stage, "2026-03-29", "02:30", "2026-03-29", "04:00")
    assert response.status_code == 200
    assert "does not exist in Europe/Amsterdam" in response.content.decode()
    assert not Set.objects.filter(artist="Local Act").exists()


def test_a_repeated_hour_needs_its_offset(admin_client, two_worlds):
    ours, _ = two_worlds
    response = add_set(admin_client, ours.stage, "2026-10-25", "02:30", "2026-10-25", "04:00")
    assert response.status_code == 200
    assert "happens twice in Europe/Amsterdam" in response.content.decode()
    response = add_set(admin_client, ours.stage, "2026-10-25", "02:30+01:00", "2026-10-25", "04:00")
    assert response.status_code == 302, response.content.decode()[:3000]
    created = Set.objects.get(artist="Local Act")
    assert created.starts_at == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    page = admin_client.get(reverse("admin:stages_set_change", args=[created.pk])).content
    assert 'value="02:30+01:00"' in page.decode()  # shown again with its offset


def ready_report(world, **fields):
    from emotions.models import ReportStatus, SetReport

    return SetReport.objects.create(
        organization=world.organization,
        festival=world.festival,
        stage=world.stage,
        set=world.set,
        status=ReportStatus.READY,
        faces=40,
        vibe=71.4,
        **fields,
    )


def test_the_report_admin_shows_peak_and_set_times_in_local_time(admin_client, two_worlds):
    ours, _ = two_worlds
    report = ready_report(
        ours,
        peak_at=datetime(2026, 7, 10, 18, 27, tzinfo=UTC),
        peak_vibe=80.0,
        low_at=datetime(2026, 7, 10, 19, 2, tzinfo=UTC),
        low_vibe=20.0,
        built_at=datetime(2026, 7, 10, 19, 45, tzinfo=UTC),
    )
    listing = admin_client.get(reverse("admin:emotions_setreport_changelist")).content.decode()
    assert "Peak at 20:27 CEST" in listing and "Fri 10 Jul 20:00 CEST – 21:30 CEST" in listing
    page = admin_client.get(reverse("admin:emotions_setreport_change", args=[report.pk]))
    page = page.content.decode()
    assert "Peak at 20:27 CEST" in page and "Low at 21:02 CEST" in page
    assert "Europe/Amsterdam" in page
    assert "18:27" not in page and "6:27 p.m." not in page


def test_the_dashboard_ended_column_is_local_with_the_zone(client, two_worlds):
    ours, _ = two_worlds
    ready_report(ours)
    client.force_login(ours.viewer)
    page = client.get(f"/dashboard/{ours.festival.pk}/").content.decode()
    assert "Fri 21:30 CEST" in page and "Europe/Amsterdam" in page
    assert "Fri 19:30" not in page
