"""Nobody joins an organization without consent: owners invite a username or e-mail, the person
accepts (API or admin), and the inviter never learns whether an account exists (issue 11, 4)."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from festival.models import Invitation, Membership, Role
from tests.factories import make_user

pytestmark = pytest.mark.django_db

VOLATILE = {"id", "invitee", "created_at", "expires_at"}


def invite(client, owner, invitee, role="operator", **extra):
    client.force_authenticate(owner)
    return client.post("/api/v1/invitations/", {"invitee": invitee, "role": role, **extra})


def test_the_answer_is_the_same_for_an_account_and_for_no_account(api_client, two_worlds):
    ours, _ = two_worlds
    make_user("real-person")
    answers = []
    for name in ("real-person", "real-person@example.org", "ghost", "ghost@nowhere.example"):
        response = invite(api_client, ours.owner, name)
        body = {k: v for k, v in response.json().items() if k not in VOLATILE}
        answers.append((response.status_code, body))
    assert all(answer == answers[0] for answer in answers), answers
    assert answers[0][0] == 201


def test_nobody_is_a_member_before_accepting(api_client, two_worlds):
    ours, _ = two_worlds
    person = make_user("person")
    invitation_id = invite(api_client, ours.owner, "person@example.org").json()["id"]
    assert not Membership.objects.filter(user=person).exists()
    api_client.force_authenticate(person)
    assert api_client.get("/api/v1/festivals/").json()["results"] == []
    mine = api_client.get("/api/v1/my-invitations/").json()["results"]
    assert [(i["id"], i["organization"], i["role"]) for i in mine] == [
        (invitation_id, "ours-org", "operator")
    ]
    response = api_client.post(f"/api/v1/my-invitations/{invitation_id}/accept/")
    assert response.status_code == 201
    assert response.json()["role"] == "operator"
    assert [f["slug"] for f in api_client.get("/api/v1/festivals/").json()["results"]] == [
        "ours-fest"
    ]
    assert api_client.get("/api/v1/my-invitations/").json()["results"] == []
    assert Invitation.objects.get(pk=invitation_id).status == "accepted"


def test_a_declined_invitation_cannot_be_accepted_later(api_client, two_worlds):
    ours, _ = two_worlds
    person = make_user("person")
    invitation_id = invite(api_client, ours.owner, "person").json()["id"]
    api_client.force_authenticate(person)
    assert api_client.post(f"/api/v1/my-invitations/{invitation_id}/decline/").status_code == 204
    assert api_client.post(f"/api/v1/my-invitations/{invitation_id}/accept/").status_code == 404
    assert not Membership.objects.filter(user=person).exists()


def test_only_the_addressee_can_accept(api_client, two_worlds):
    ours, theirs = two_worlds
    invitation_id = invite(api_client, ours.owner, "someone-else").json()["id"]
    for intruder in (theirs.owner, ours.viewer):
        api_client.force_authenticate(intruder)
        response = api_client.post(f"/api/v1/my-invitations/{invitation_id}/accept/")
        assert response.status_code == 404
    assert Membership.objects.filter(organization=ours.organization).count() == 3


def test_the_superuser_cannot_be_added_silently(api_client, two_worlds):
    ours, _ = two_worlds
    root = get_user_model().objects.create_superuser("root", "root@example.org", "pw-1234567890")
    invitation_id = invite(api_client, ours.owner, "root", role="owner").json()["id"]
    assert not Membership.objects.filter(user=root).exists()
    api_client.force_authenticate(root)
    assert [i["id"] for i in api_client.get("/api/v1/my-invitations/").json()["results"]] == [
        invitation_id
    ]
    api_client.force_authenticate(ours.owner)
    assert api_client.post(f"/api/v1/my-invitations/{invitation_id}/accept/").status_code == 404
    assert not Membership.objects.filter(user=root).exists()


def test_an_expired_invitation_cannot_be_accepted(api_client, two_worlds):
    ours, _ = two_worlds
    person = make_user("person")
    invitation_id = invite(api_client, ours.owner, "person").json()["id"]
    Invitation.objects.filter(pk=invitation_id).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    api_client.force_authenticate(person)
    assert api_client.post(f"/api/v1/my-invitations/{invitation_id}/accept/").status_code == 404


def test_inviting_again_updates_the_pending_invitation(api_client, two_worlds):
    ours, _ = two_worlds
    first = invite(api_client, ours.owner, "ghost", role="viewer").json()
    second = invite(api_client, ours.owner, "Ghost", role="owner").json()
    assert first["id"] == second["id"] and second["role"] == "owner"
    assert Invitation.objects.count() == 1


def test_only_owners_invite_and_bad_input_is_a_clear_400(api_client, two_worlds):
    ours, _ = two_worlds
    response = invite(api_client, ours.operator, "ghost")
    assert response.status_code == 403
    assert "needs the owner role" in response.json()["error"]["message"]
    response = invite(api_client, ours.owner, "ghost", role="emperor")
    assert response.status_code == 400
    assert "role" in response.json()["error"]["fields"]
    response = invite(api_client, ours.owner, "   ")
    assert response.status_code == 400
    assert "invitee" in response.json()["error"]["fields"]


def test_an_owner_withdraws_a_pending_invitation(api_client, two_worlds):
    ours, _ = two_worlds
    invitation_id = invite(api_client, ours.owner, "ghost").json()["id"]
    assert api_client.delete(f"/api/v1/invitations/{invitation_id}/").status_code == 204
    assert not Invitation.objects.exists()


# --- the admin calls the same services ------------------------------------------------------------
def test_in_the_admin_an_owner_invites_and_the_person_accepts(client, two_worlds):
    ours, _ = two_worlds
    person = make_user("person")
    client.force_login(ours.owner)
    assert client.get(reverse("admin:festival_membership_add")).status_code == 403
    response = client.post(
        reverse("admin:festival_invitation_add"),
        {"organization": ours.organization.pk, "invitee": "person@example.org", "role": "viewer"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    invitation = Invitation.objects.get()
    assert not Membership.objects.filter(user=person).exists()
    client.force_login(person)
    client.post(
        reverse("admin:festival_myinvitation_changelist"),
        {"action": "accept", "_selected_action": [invitation.pk]},
    )
    assert Membership.objects.get(user=person).role == Role.VIEWER


def test_in_the_admin_the_last_owner_cannot_step_down_or_leave(client, two_worlds):
    ours, _ = two_worlds
    own = Membership.objects.get(user=ours.owner, organization=ours.organization)
    client.force_login(ours.owner)
    response = client.post(
        reverse("admin:festival_membership_change", args=[own.pk]), {"role": "viewer"}
    )
    assert response.status_code == 200
    assert "at least one owner" in response.content.decode()
    client.post(reverse("admin:festival_membership_delete", args=[own.pk]), {"post": "yes"})
    client.post(
        reverse("admin:festival_membership_changelist"),
        {"action": "delete_selected", "_selected_action": [own.pk], "post": "yes"},
    )
    own.refresh_from_db()
    assert own.role == Role.OWNER
