"""Viewers read, operators change, owners also manage members; an organization keeps an owner."""

import pytest

from festival.models import Membership, Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db


def test_viewer_reads_but_cannot_write(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.viewer)
    assert api_client.get(f"/api/v1/stages/{ours.stage.pk}/").status_code == 200
    response = api_client.patch(f"/api/v1/stages/{ours.stage.pk}/", {"name": "Renamed"})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "permission_denied"
    response = api_client.post(
        "/api/v1/stages/", {"festival": ours.festival.pk, "name": "New", "slug": "new"}
    )
    assert response.status_code == 403
    assert api_client.delete(f"/api/v1/sets/{ours.set.pk}/").status_code == 403
    ours.stage.refresh_from_db()
    assert ours.stage.name == "Ours Main"


def test_operator_changes_lineup_but_not_members(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    response = api_client.patch(f"/api/v1/stages/{ours.stage.pk}/", {"name": "Renamed"})
    assert response.status_code == 200
    response = api_client.post(
        "/api/v1/invitations/", {"invitee": "someone@example.org", "role": "owner"}
    )
    assert response.status_code == 403
    membership = Membership.objects.get(user=ours.viewer, organization=ours.organization)
    response = api_client.patch(f"/api/v1/members/{membership.pk}/", {"role": "owner"})
    assert response.status_code == 403
    membership.refresh_from_db()
    assert membership.role == Role.VIEWER


def test_owner_invites_promotes_and_removes_members(api_client, two_worlds):
    """Joining goes through an invitation the person accepts (the full flow is in
    tests/festival/test_invitations.py); then owners change roles and remove people."""
    ours, _ = two_worlds
    newcomer = make_user("newcomer")
    api_client.force_authenticate(ours.owner)
    response = api_client.post(
        "/api/v1/invitations/", {"invitee": "newcomer@example.org", "role": "viewer"}
    )
    assert response.status_code == 201, response.json()
    api_client.force_authenticate(newcomer)
    response = api_client.post(f"/api/v1/my-invitations/{response.json()['id']}/accept/")
    assert response.status_code == 201
    member_id = response.json()["id"]
    api_client.force_authenticate(ours.owner)
    response = api_client.post("/api/v1/invitations/", {"invitee": "newcomer", "role": "viewer"})
    assert response.status_code == 400
    assert "already a member" in response.json()["error"]["message"]
    assert (
        api_client.patch(f"/api/v1/members/{member_id}/", {"role": "operator"}).status_code == 200
    )
    assert api_client.delete(f"/api/v1/members/{member_id}/").status_code == 204
    assert not Membership.objects.filter(user=newcomer).exists()


def test_members_cannot_be_added_directly(api_client, two_worlds):
    ours, _ = two_worlds
    make_user("newcomer")
    api_client.force_authenticate(ours.owner)
    response = api_client.post("/api/v1/members/", {"user": "newcomer", "role": "viewer"})
    assert response.status_code == 405
    assert "invitation" in response.json()["error"]["message"]
    assert not Membership.objects.filter(user__username="newcomer").exists()


def test_last_owner_cannot_leave_or_be_demoted(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.owner)
    own = Membership.objects.get(user=ours.owner, organization=ours.organization)
    response = api_client.patch(f"/api/v1/members/{own.pk}/", {"role": "viewer"})
    assert response.status_code == 400
    assert "at least one owner" in response.json()["error"]["message"]
    assert api_client.delete(f"/api/v1/members/{own.pk}/").status_code == 400
    own.refresh_from_db()
    assert own.role == Role.OWNER


def test_user_in_two_organizations_must_say_which(api_client, two_worlds):
    ours, theirs = two_worlds
    Membership.objects.create(user=ours.owner, organization=theirs.organization, role="operator")
    api_client.force_authenticate(ours.owner)
    payload = {
        "name": "Second",
        "slug": "second",
        "starts_on": "2026-08-01",
        "ends_on": "2026-08-03",
    }
    response = api_client.post("/api/v1/festivals/", payload)
    assert response.status_code == 400
    assert "several" in response.json()["error"]["message"]
    response = api_client.post("/api/v1/festivals/", {**payload, "organization": "theirs-org"})
    assert response.status_code == 201
    # now a member of both, the user sees both organizations' festivals
    slugs = {f["slug"] for f in api_client.get("/api/v1/festivals/").json()["results"]}
    assert slugs == {"ours-fest", "theirs-fest", "second"}


def test_festival_validation_messages(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    response = api_client.post(
        "/api/v1/festivals/",
        {
            "name": "X",
            "slug": "x",
            "starts_on": "2026-08-03",
            "ends_on": "2026-08-01",
            "timezone": "Mars/Olympus",
        },
    )
    assert response.status_code == 400
    fields = response.json()["error"]["fields"]
    assert "timezone" in fields


def test_token_auth(api_client, two_worlds):
    ours, _ = two_worlds
    response = api_client.post(
        "/api/v1/auth/token/",
        {"username": ours.viewer.username, "password": "a-long-test-password"},
    )
    token = response.json()["token"]
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    assert api_client.get("/api/v1/festivals/").status_code == 200


def _refusal(response, role: str) -> None:
    assert response.status_code == 403, response.json()
    error = response.json()["error"]
    assert error["code"] == "permission_denied"
    assert f"needs the {role} role" in error["message"]


def test_a_too_low_role_is_always_403_naming_the_role_needed(api_client, two_worlds):
    """One's own organization with too low a role: 403 and the role, never a 400 that says the
    organization does not exist or that one is "not an operator" where an owner is needed."""
    ours, _ = two_worlds
    api_client.force_authenticate(ours.viewer)
    festival = {"name": "X", "slug": "x", "starts_on": "2026-08-01", "ends_on": "2026-08-02"}
    _refusal(api_client.post("/api/v1/festivals/", festival), "operator")
    _refusal(
        api_client.post("/api/v1/festivals/", {**festival, "organization": "ours-org"}), "operator"
    )
    _refusal(api_client.patch(f"/api/v1/stages/{ours.stage.pk}/", {"name": "R"}), "operator")
    _refusal(
        api_client.post(
            f"/api/v1/festivals/{ours.festival.pk}/lineup/import/",
            "stage,artist,starts_at,ends_at\n",
            content_type="text/csv",
        ),
        "operator",
    )
    _refusal(api_client.post("/api/v1/deployments/", {"device": ours.device.pk}), "operator")
    _refusal(api_client.post("/api/v1/edge-releases/build/"), "operator")
    api_client.force_authenticate(ours.operator)
    membership = Membership.objects.get(user=ours.viewer, organization=ours.organization)
    _refusal(api_client.patch(f"/api/v1/members/{membership.pk}/", {"role": "owner"}), "owner")
    _refusal(api_client.delete(f"/api/v1/members/{membership.pk}/"), "owner")


def test_another_organizations_slug_is_still_unknown_not_forbidden(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.viewer)
    festival = {"name": "X", "slug": "x", "starts_on": "2026-08-01", "ends_on": "2026-08-02"}
    for slug in ("theirs-org", "no-such-org"):
        response = api_client.post("/api/v1/festivals/", {**festival, "organization": slug})
        assert response.status_code == 400
        assert response.json()["error"]["fields"]["organization"] == [
            f"Object with slug={slug} does not exist."
        ]
