"""What a fan-app developer needs: API docs that load offline, CORS on the public API only (for
the origins a deployment names), and a live payload that says who plays until when and who is
next."""

import re
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from stages.models import Set

pytestmark = pytest.mark.django_db

APP = "https://app.example.org"


def test_swagger_ui_is_served_by_the_project_not_a_cdn(client):
    page = client.get("/api/docs/").content.decode()
    sources = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert sources, page[:500]
    assert not [s for s in sources if s.startswith(("http://", "https://", "//"))], sources
    bundle = next(s for s in sources if s.endswith("swagger-ui-bundle.js"))
    # the file exists among the project's static files (collectstatic / whitenoise serve it)
    assert finders.find(bundle.split("/static/", 1)[1])


@pytest.fixture
def app_origin(settings):
    settings.CORS_ALLOWED_ORIGINS = [APP]


def test_public_api_answers_a_configured_origin(api_client, two_worlds, app_origin):
    response = api_client.get("/api/v1/public/festivals/", HTTP_ORIGIN=APP)
    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == APP
    assert "ETag" in response["Access-Control-Expose-Headers"]
    preflight = api_client.options(
        "/api/v1/public/festivals/ours-fest/live/",
        HTTP_ORIGIN=APP,
        HTTP_ACCESS_CONTROL_REQUEST_METHOD="GET",
    )
    assert preflight["Access-Control-Allow-Origin"] == APP
    assert "GET" in preflight["Access-Control-Allow-Methods"]
    assert "POST" not in preflight["Access-Control-Allow-Methods"]


def test_no_cors_for_other_origins_or_for_the_organizer_api(api_client, two_worlds, app_origin):
    ours, _ = two_worlds
    other = api_client.get("/api/v1/public/festivals/", HTTP_ORIGIN="https://evil.example")
    assert "Access-Control-Allow-Origin" not in other
    api_client.force_authenticate(ours.owner)
    organizer = api_client.get("/api/v1/festivals/", HTTP_ORIGIN=APP)
    assert organizer.status_code == 200
    assert "Access-Control-Allow-Origin" not in organizer


def test_no_origin_is_allowed_until_a_deployment_names_one(api_client, two_worlds):
    response = api_client.get("/api/v1/public/festivals/", HTTP_ORIGIN=APP)
    assert "Access-Control-Allow-Origin" not in response


def test_live_says_until_when_the_set_plays_and_who_is_next(api_client, two_worlds):
    ours, _ = two_worlds
    now = timezone.now().replace(microsecond=0)
    Set.objects.all().delete()
    playing_until = now + timedelta(minutes=30)
    for artist, start, end in (
        ("Playing", now - timedelta(minutes=30), playing_until),
        ("Up next", now + timedelta(minutes=45), now + timedelta(minutes=90)),
    ):
        Set.objects.create(
            organization=ours.organization,
            stage=ours.stage,
            artist=artist,
            starts_at=start,
            ends_at=end,
        )
    (row,) = api_client.get("/api/v1/public/festivals/ours-fest/live/").json()["stages"]
    assert row["now_playing"] == "Playing"
    assert parse_datetime(row["now_playing_until"]) == playing_until
    assert row["next"]["artist"] == "Up next"
    assert parse_datetime(row["next"]["starts_at"]) == now + timedelta(minutes=45)
    # with no data yet the stage says why it has no number, and how fresh its data is
    assert row["vibe"] is None and row["no_number_reason"] == "no_recent_data"
    assert "data_age_s" in row
