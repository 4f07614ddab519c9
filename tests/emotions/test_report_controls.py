"""Publish, unpublish and rebuild from the report page and the dashboard: operators only, the
same service as the API (same refusals), another organization's report a 404."""

from __future__ import annotations

import pytest
from django.urls import reverse

from emotions.models import ReportStatus, SetReport

pytestmark = pytest.mark.django_db


def ready(world):
    return SetReport.objects.create(
        organization=world.organization,
        festival=world.festival,
        stage=world.stage,
        set=world.set,
        status=ReportStatus.READY,
        payload={},
        faces=40,
        vibe=70.0,
    )


def test_an_operator_publishes_and_unpublishes_from_the_report_page(client, two_worlds):
    ours, _ = two_worlds
    report = ready(ours)
    client.force_login(ours.operator)
    page = client.get(reverse("set-report-page", args=[report.pk])).content.decode()
    assert 'id="publish"' in page and 'id="rebuild"' in page
    response = client.post(reverse("set-report-publish", args=[report.pk]), {"published": "true"})
    assert response.status_code == 302 and response["Location"] == f"/reports/{report.pk}/"
    report.refresh_from_db()
    assert report.published
    page = client.get(response["Location"]).content.decode()
    assert "report published to the fan API" in page and 'id="unpublish"' in page
    client.post(reverse("set-report-publish", args=[report.pk]), {"published": "false"})
    report.refresh_from_db()
    assert not report.published


def test_publishing_a_private_festivals_report_says_why(client, two_worlds):
    _, theirs = two_worlds  # their festival is not public
    report = ready(theirs)
    client.force_login(theirs.operator)
    page = client.get(reverse("set-report-page", args=[report.pk])).content.decode()
    assert "disabled" in page.split('id="publish"', 1)[1].split(">", 1)[0]
    assert "This festival is not public" in page
    response = client.post(
        reverse("set-report-publish", args=[report.pk]), {"published": "true"}, follow=True
    )
    assert "This festival is not public" in response.content.decode()
    report.refresh_from_db()
    assert not report.published


def test_rebuild_from_the_dashboard_queues_it_and_returns_to_the_dashboard(
    client, two_worlds, django_capture_on_commit_callbacks
):
    ours, _ = two_worlds
    report = ready(ours)
    client.force_login(ours.operator)
    dashboard = f"/dashboard/{ours.festival.pk}/"
    page = client.get(dashboard).content.decode()
    assert 'class="act rebuild"' in page and 'class="act publish"' in page
    with django_capture_on_commit_callbacks() as callbacks:
        response = client.post(
            reverse("set-report-rebuild", args=[report.pk]),
            {"next": dashboard, "reason": "camera 2 was late"},
        )
    assert response.status_code == 302 and response["Location"] == dashboard
    assert len(callbacks) == 1  # the build task is sent, as the API does
    report.refresh_from_db()
    assert report.status == ReportStatus.PENDING and report.rebuild_reason == "camera 2 was late"
    assert "rebuild queued" in client.get(dashboard).content.decode()


def test_viewers_get_no_controls_and_cannot_post(client, two_worlds):
    ours, _ = two_worlds
    report = ready(ours)
    client.force_login(ours.viewer)
    page = client.get(reverse("set-report-page", args=[report.pk])).content.decode()
    assert 'id="publish"' not in page and 'id="rebuild"' not in page
    assert 'class="act' not in client.get(f"/dashboard/{ours.festival.pk}/").content.decode()
    url = reverse("set-report-publish", args=[report.pk])
    assert client.post(url, {"published": "true"}).status_code == 403
    assert client.post(reverse("set-report-rebuild", args=[report.pk])).status_code == 403
    report.refresh_from_db()
    assert not report.published and report.status == ReportStatus.READY


def test_another_organizations_report_is_404_and_next_cannot_leave_the_site(client, two_worlds):
    ours, theirs = two_worlds
    mine, other = ready(ours), ready(theirs)
    client.force_login(ours.owner)
    assert client.post(reverse("set-report-publish", args=[other.pk])).status_code == 404
    assert client.post(reverse("set-report-rebuild", args=[other.pk])).status_code == 404
    assert client.get(reverse("set-report-publish", args=[mine.pk])).status_code == 405
    response = client.post(
        reverse("set-report-publish", args=[mine.pk]),
        {"published": "true", "next": "https://evil.example/"},
    )
    assert response["Location"] == f"/reports/{mine.pk}/"


@pytest.mark.parametrize("model", ["observation", "minuterollup", "ingestwatermark"])
def test_organizers_do_not_see_internal_pipeline_models(client, two_worlds, model):
    ours, _ = two_worlds
    client.force_login(ours.owner)
    index = client.get(reverse("admin:index")).content.decode()
    assert f"/admin/emotions/{model}/" not in index
    assert "/admin/emotions/setreport/" in index  # reports stay
    assert client.get(reverse(f"admin:emotions_{model}_changelist")).status_code == 403
    from django.contrib.auth import get_user_model

    root = get_user_model().objects.create_superuser("root", "root@example.org", "pw-long-1234")
    client.force_login(root)
    assert client.get(reverse(f"admin:emotions_{model}_changelist")).status_code == 200


def test_links_in_announcements_are_absolute(two_worlds, settings):
    from emotions.reports import services

    ours, _ = two_worlds
    settings.STAGEPULSE_PUBLIC_URL = "https://pulse.example.org/"
    report = ready(ours)
    assert services.report_url(report) == f"https://pulse.example.org/reports/{report.pk}/"
    payload = services.webhook_payload(report, "subject", "body")
    assert payload["url"].startswith("https://pulse.example.org/reports/")


def test_the_artist_opens_their_report_through_a_share_link_without_an_account(client, two_worlds):
    from datetime import timedelta

    from django.test import Client
    from django.utils import timezone

    from emotions.reports import services

    ours, _ = two_worlds
    report = ready(ours)
    report.payload = {
        "coverage": {"devices": [{"name": "Secret cam"}], "note": ""},
        "comparison": {"sets": [{"artist": "Rival Act", "vibe": 91.0}]},
    }
    report.save()
    client.force_login(ours.operator)
    client.post(reverse("set-report-share", args=[report.pk]))
    report.refresh_from_db()
    assert len(report.share_key) >= 32
    assert report.share_expires_at > timezone.now() + timedelta(days=13)
    page = client.get(reverse("set-report-page", args=[report.pk])).content.decode()
    link = f"/shared/reports/{report.share_key}/"
    assert link in page and 'id="share-revoke"' in page
    artist = Client()  # no login
    shared = artist.get(link)
    assert shared.status_code == 200 and shared["Referrer-Policy"] == "no-referrer"
    html = shared.content.decode()
    assert "Ours Artist" in html and "Shared with you by Ours Fest" in html
    assert 'id="controls"' not in html and "Secret cam" not in html and "/admin/" not in html
    assert "Rival Act" not in html  # other artists' numbers stay with the organizers
    assert "Rival Act" in client.get(reverse("set-report-page", args=[report.pk])).content.decode()
    old_link = link
    services.share_report(report)  # a new link replaces the old one
    assert artist.get(old_link).status_code == 404
    new_link = f"/shared/reports/{report.share_key}/"
    assert artist.get(new_link).status_code == 200
    client.post(reverse("set-report-share", args=[report.pk]), {"revoke": "true"})
    assert artist.get(new_link).status_code == 404


def test_an_expired_share_link_is_404_and_viewers_cannot_share(client, two_worlds):
    from datetime import timedelta

    from django.utils import timezone

    from emotions.reports import services

    ours, _ = two_worlds
    report = ready(ours)
    key = services.share_report(report, now=timezone.now() - timedelta(days=15))
    assert client.get(f"/shared/reports/{key}/").status_code == 404
    client.force_login(ours.viewer)
    assert client.post(reverse("set-report-share", args=[report.pk])).status_code == 403
