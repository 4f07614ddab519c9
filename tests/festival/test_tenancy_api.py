"""Every organizer API route probed across the tenant boundary: the other organization's rows
are never listed, and its objects answer 404 to read, update and delete."""

import pytest

pytestmark = pytest.mark.django_db

RESOURCES = {
    "festivals": "festival",
    "stages": "stage",
    "sets": "set",
    "devices": "device",
    "members": "membership",
}


def detail_url(resource: str, pk: int) -> str:
    return f"/api/v1/{resource}/{pk}/"


@pytest.fixture
def as_our_owner(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.owner)
    return api_client


@pytest.mark.parametrize("resource", RESOURCES)
def test_lists_omit_other_organizations_rows(as_our_owner, two_worlds, resource):
    ours, theirs = two_worlds
    response = as_our_owner.get(f"/api/v1/{resource}/")
    assert response.status_code == 200
    ids = {row["id"] for row in response.json()["results"]}
    assert getattr(ours, RESOURCES[resource]).pk in ids
    assert getattr(theirs, RESOURCES[resource]).pk not in ids


@pytest.mark.parametrize("resource", RESOURCES)
@pytest.mark.parametrize("method", ["get", "put", "patch", "delete"])
def test_other_organizations_objects_are_404(as_our_owner, two_worlds, resource, method):
    if (resource, method) == ("members", "put"):
        pytest.skip("members have no PUT: only the role changes (PATCH)")
    _, theirs = two_worlds
    target = getattr(theirs, RESOURCES[resource])
    response = getattr(as_our_owner, method)(detail_url(resource, target.pk), {}, format="json")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    target.refresh_from_db()  # still there, unchanged


def test_lineup_export_and_import_of_other_festival_are_404(as_our_owner, two_worlds):
    _, theirs = two_worlds
    url = f"/api/v1/festivals/{theirs.festival.pk}/"
    assert as_our_owner.get(url + "lineup/").status_code == 404
    response = as_our_owner.post(
        url + "lineup/import/", "stage,artist,starts_at,ends_at\n", content_type="text/csv"
    )
    assert response.status_code == 404


def test_organizations_list_only_mine_with_my_role(as_our_owner, two_worlds):
    ours, _ = two_worlds
    rows = as_our_owner.get("/api/v1/organizations/").json()["results"]
    assert [(r["slug"], r["my_role"]) for r in rows] == [(ours.organization.slug, "owner")]


def test_cannot_create_stage_in_other_festival(as_our_owner, two_worlds):
    _, theirs = two_worlds
    response = as_our_owner.post(
        "/api/v1/stages/", {"festival": theirs.festival.pk, "name": "Sneaky", "slug": "sneaky"}
    )
    assert response.status_code == 400
    assert "festival" in response.json()["error"]["fields"]
    assert not theirs.festival.stages.filter(slug="sneaky").exists()


def test_cannot_create_set_on_other_stage(as_our_owner, two_worlds):
    _, theirs = two_worlds
    response = as_our_owner.post(
        "/api/v1/sets/",
        {
            "stage": theirs.stage.pk,
            "artist": "Intruder",
            "starts_at": "2026-07-11T10:00:00Z",
            "ends_at": "2026-07-11T11:00:00Z",
        },
    )
    assert response.status_code == 400
    assert "stage" in response.json()["error"]["fields"]


def test_cannot_create_device_pointing_at_other_tenant(as_our_owner, two_worlds):
    ours, theirs = two_worlds
    for festival, stage in ((theirs.festival, None), (ours.festival, theirs.stage)):
        payload = {"festival": festival.pk, "name": "x", "thing_name": "x-cam"}
        if stage:
            payload["stage"] = stage.pk
        response = as_our_owner.post("/api/v1/devices/", payload, format="json")
        assert response.status_code == 400, response.json()


def test_cannot_create_festival_or_member_in_other_organization(as_our_owner, two_worlds):
    ours, theirs = two_worlds
    response = as_our_owner.post(
        "/api/v1/festivals/",
        {
            "organization": theirs.organization.slug,
            "name": "Hijack",
            "slug": "hijack",
            "starts_on": "2026-08-01",
            "ends_on": "2026-08-02",
        },
    )
    assert response.status_code == 400
    response = as_our_owner.post(
        "/api/v1/invitations/",
        {
            "organization": theirs.organization.slug,
            "invitee": ours.viewer.username,
            "role": "owner",
        },
    )
    assert response.status_code == 400
    assert not theirs.organization.invitations.exists()


def test_filtering_by_other_festival_is_like_a_missing_festival(as_our_owner, two_worlds):
    _, theirs = two_worlds
    response = as_our_owner.get("/api/v1/sets/", {"stage__festival": theirs.festival.pk})
    assert response.status_code == 400  # as for an id that does not exist (no id is confirmed)
    assert "stage__festival" in response.json()["error"]["fields"]


def test_anonymous_gets_401_on_organizer_api(api_client, two_worlds):
    response = api_client.get("/api/v1/festivals/")
    assert response.status_code in (401, 403)
    assert "error" in response.json()
