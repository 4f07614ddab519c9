"""Report endpoints, the printable page and the fan API: scoping (another organization's report is
a 404), roles, caching headers, publication, and what fans may see."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse

from emotions.models import ReportStatus, SetReport
from emotions.reports import services
from tests.emotions.report_helpers import faces

pytestmark = pytest.mark.django_db


@pytest.fixture
def reports(two_worlds, settings):
    """A built report in each organization (8 faces on each world's 18:00 set)."""
    settings.REPORT_GRACE_MINUTES = 10
    ours, theirs = two_worlds
    for world in (ours, theirs):
        faces(world.stage, f"{world.organization.slug[:-4]}-cam-1", world.set.starts_at, 8,
              model="fer-tflite", HAPPY=70, CALM=30)  # fmt: skip
    services.sweep(now=ours.set.ends_at + timedelta(hours=1))
    return SetReport.objects.get(set=ours.set), SetReport.objects.get(set=theirs.set)


def test_list_and_detail_are_scoped_and_not_cached_publicly(api_client, two_worlds, reports):
    ours, _ = two_worlds
    mine, theirs = reports
    api_client.force_authenticate(ours.viewer)
    response = api_client.get("/api/v1/reports/")
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-cache"
    assert [r["id"] for r in response.json()["results"]] == [mine.pk]
    row = response.json()["results"][0]
    assert (row["faces"], row["status"], row["artist"]) == (8, "ready", "Ours Artist")
    assert row["page_url"] == f"/reports/{mine.pk}/"
    detail = api_client.get(f"/api/v1/reports/{mine.pk}/")
    assert detail.status_code == 200 and detail.json()["payload"]["overall"]["faces"] == 8
    assert api_client.get(f"/api/v1/reports/?festival={ours.festival.pk}").json()["count"] == 1
    assert api_client.get(f"/api/v1/reports/{theirs.pk}/").status_code == 404


def test_other_organizations_report_is_404_for_every_action(api_client, two_worlds, reports):
    ours, _ = two_worlds
    _, theirs = reports
    api_client.force_authenticate(ours.owner)
    assert api_client.post(f"/api/v1/reports/{theirs.pk}/rebuild/", {}).status_code == 404
    response = api_client.post(f"/api/v1/reports/{theirs.pk}/publish/", {"published": True})
    assert response.status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == ReportStatus.READY and not theirs.published


def test_rebuild_needs_an_operator_and_queues_the_report(api_client, two_worlds, reports):
    ours, _ = two_worlds
    mine, _ = reports
    api_client.force_authenticate(ours.viewer)
    assert api_client.post(f"/api/v1/reports/{mine.pk}/rebuild/", {}).status_code == 403
    api_client.force_authenticate(ours.operator)
    response = api_client.post(
        f"/api/v1/reports/{mine.pk}/rebuild/", {"reason": "camera 2 uploaded late"}
    )
    assert response.status_code == 202
    assert response.json()["status"] == "pending" and response.json()["queued"] is True
    mine.refresh_from_db()
    assert mine.rebuild_reason == "camera 2 uploaded late"
    assert services.build_report(mine.pk)
    mine.refresh_from_db()
    assert mine.status == ReportStatus.READY and mine.builds == 2


def test_reports_cannot_be_created_through_the_api(api_client, two_worlds, reports):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.owner)
    response = api_client.post("/api/v1/reports/", {"set": ours.set.pk})
    assert response.status_code == 405
    assert "created by the service" in response.json()["error"]["message"]
    assert api_client.delete(f"/api/v1/reports/{reports[0].pk}/").status_code == 405


def test_anonymous_gets_no_report(api_client, reports):
    assert api_client.get("/api/v1/reports/").status_code == 401
    assert api_client.get(f"/api/v1/reports/{reports[0].pk}/").status_code == 401


def test_report_page_renders_charts_and_is_tenant_scoped(client, two_worlds, reports):
    ours, _ = two_worlds
    mine, theirs = reports
    url = reverse("set-report-page", args=[mine.pk])
    assert client.get(url).status_code == 302  # login first
    client.force_login(ours.viewer)
    response = client.get(url)
    assert response.status_code == 200
    assert response["Cache-Control"] == "private, no-cache"
    html = response.content.decode()
    assert html.count('src="data:image/png;base64,') == 3
    assert "Ours Artist" in html and 'id="faces">8<' in html
    assert "apparent facial expressions" in html and "fer-tflite" in html
    assert client.get(reverse("set-report-page", args=[theirs.pk])).status_code == 404
    assert client.get(reverse("set-report-page", args=[999999])).status_code == 404


def test_report_page_of_a_suppressed_set_has_no_numbers(client, two_worlds, settings):
    settings.REPORT_GRACE_MINUTES = 10
    ours, _ = two_worlds
    faces(ours.stage, "ours-cam-1", ours.set.starts_at, 3, HAPPY=70)
    services.sweep(now=ours.set.ends_at + timedelta(hours=1))
    report = SetReport.objects.get(set=ours.set)
    client.force_login(ours.owner)
    html = client.get(reverse("set-report-page", args=[report.pk])).content.decode()
    assert 'id="suppressed"' in html and "Fewer than 5 faces" in html
    assert "data:image/png" not in html and 'id="faces"' not in html


def test_fan_api_shows_only_published_reports_of_public_festivals(api_client, two_worlds, reports):
    ours, theirs_world = two_worlds
    mine, theirs = reports
    base = f"/api/v1/public/festivals/{ours.festival.slug}/reports/"
    assert api_client.get(base).json() == []
    assert api_client.get(f"{base}{mine.pk}/").status_code == 404
    services.set_published(mine, True)
    response = api_client.get(base)
    assert response.status_code == 200 and response["Cache-Control"] == "public, max-age=300"
    [row] = response.json()
    assert (row["id"], row["artist"], row["faces"], row["stage"]) == (
        mine.pk,
        "Ours Artist",
        8,
        "main",
    )
    detail = api_client.get(f"{base}{mine.pk}/").json()
    assert detail["overall"]["faces"] == 8
    assert "coverage" not in detail and "models" not in detail  # no devices, no per-camera counts
    assert "apparent expression" in detail["model_statement"].lower()
    assert set(detail["minutes"][0]) == {
        "minute", "local_time", "suppressed", "faces", "vibe", "expression_share"
    }  # fmt: skip
    # Their festival is not public: even a published report stays out of the fan API.
    SetReport.objects.filter(pk=theirs.pk).update(published=True)
    other = f"/api/v1/public/festivals/{theirs_world.festival.slug}/reports/"
    assert api_client.get(other).status_code == 404
    assert api_client.get(f"{base}{theirs.pk}/").status_code == 404


def test_publishing_is_refused_for_a_private_festival(api_client, two_worlds, reports):
    _, theirs_world = two_worlds
    _, theirs = reports
    api_client.force_authenticate(theirs_world.operator)
    response = api_client.post(f"/api/v1/reports/{theirs.pk}/publish/", {"published": True})
    assert response.status_code == 400
    assert "not public" in response.json()["error"]["message"]
    response = api_client.post(f"/api/v1/reports/{theirs.pk}/publish/", {"published": "maybe"})
    assert response.status_code == 400 and "published" in response.json()["error"]["fields"]


def test_admin_lists_scoped_reports_and_rebuilds(client, two_worlds, reports):
    ours, _ = two_worlds
    mine, theirs = reports
    client.force_login(ours.operator)
    changelist = reverse("admin:emotions_setreport_changelist")
    html = client.get(changelist).content.decode()
    assert "Ours Artist" in html and "Theirs Artist" not in html
    assert (
        client.get(reverse("admin:emotions_setreport_change", args=[theirs.pk])).status_code == 404
    )
    response = client.post(
        changelist, {"action": "rebuild_reports", "_selected_action": [mine.pk]}, follow=True
    )
    assert "1 report(s) queued" in response.content.decode()
    mine.refresh_from_db()
    assert mine.status == ReportStatus.PENDING


def test_fan_report_detail_matches_its_typed_schema(api_client, two_worlds, reports):
    """The OpenAPI document types the fan report (no `additionalProperties` blob): every answer
    fits that type, nested parts included, and the type names every key the answer has."""
    from fanapi.api import FanSetReportSerializer

    ours, _ = two_worlds
    mine, _ = reports
    services.set_published(mine, True)
    detail = api_client.get(f"/api/v1/public/festivals/{ours.festival.slug}/reports/{mine.pk}/")
    body = detail.json()
    typed = FanSetReportSerializer(data=body)
    assert typed.is_valid(), typed.errors
    assert set(body) == set(FanSetReportSerializer().fields)
    assert set(body["set"]) == set(FanSetReportSerializer().fields["set"].fields)
    schema = api_client.get("/api/schema/?format=json").json()
    response_schema = schema["paths"]["/api/v1/public/festivals/{slug}/reports/{report_id}/"][
        "get"
    ]["responses"]["200"]["content"]["application/json"]["schema"]
    assert response_schema == {"$ref": "#/components/schemas/FanSetReport"}
