"""Every admin changelist and change page probed across the tenant boundary."""

import pytest
from django.urls import reverse

from festival.models import Festival
from stages.models import Set

pytestmark = pytest.mark.django_db

ADMIN_MODELS = {
    "festival_organization": "organization",
    "festival_membership": "membership",
    "festival_festival": "festival",
    "stages_stage": "stage",
    "stages_set": "set",
    "devices_device": "device",
}


def label(world, attribute: str) -> str:
    return str(getattr(world, attribute))


@pytest.fixture
def our_admin(client, two_worlds):
    ours, _ = two_worlds
    client.force_login(ours.owner)
    return client


@pytest.mark.parametrize("route", ADMIN_MODELS)
def test_changelist_shows_only_our_rows(our_admin, two_worlds, route):
    ours, theirs = two_worlds
    response = our_admin.get(reverse(f"admin:{route}_changelist"))
    assert response.status_code == 200
    page = response.content.decode()
    target = ADMIN_MODELS[route]
    if target != "membership":
        assert label(ours, target) in page
    # Nothing of the other organization leaks, not even its name in a filter sidebar.
    assert theirs.organization.name not in page
    assert theirs.festival.name not in page


@pytest.mark.parametrize("route", ADMIN_MODELS)
@pytest.mark.parametrize("view", ["change", "delete", "history"])
def test_other_organizations_object_pages_are_404(our_admin, two_worlds, route, view):
    _, theirs = two_worlds
    target = getattr(theirs, ADMIN_MODELS[route])
    if route == "festival_organization":
        target = theirs.organization
    response = our_admin.get(reverse(f"admin:{route}_{view}", args=[target.pk]))
    assert response.status_code == 404


def test_posting_a_change_to_other_organizations_object_is_404(our_admin, two_worlds):
    _, theirs = two_worlds
    url = reverse("admin:festival_festival_change", args=[theirs.festival.pk])
    response = our_admin.post(url, {"name": "Renamed"})
    assert response.status_code == 404
    assert Festival.objects.get(pk=theirs.festival.pk).name == "Theirs Fest"


def test_foreign_key_choices_are_limited_to_our_organization(our_admin, two_worlds):
    ours, theirs = two_worlds
    page = our_admin.get(reverse("admin:stages_set_add")).content.decode()
    assert str(ours.stage) in page
    assert str(theirs.stage) not in page
    page = our_admin.get(reverse("admin:devices_device_add")).content.decode()
    assert ours.festival.name in page and theirs.festival.name not in page
    page = our_admin.get(reverse("admin:festival_festival_add")).content.decode()
    assert ours.organization.name in page and theirs.organization.name not in page


def test_organization_is_filled_in_for_a_new_set(our_admin, two_worlds):
    ours, _ = two_worlds
    response = our_admin.post(
        reverse("admin:stages_set_add"),
        {
            "stage": ours.stage.pk,
            "artist": "Admin Added",
            "starts_at_0": "2026-07-11",
            "starts_at_1": "20:00:00",
            "ends_at_0": "2026-07-11",
            "ends_at_1": "21:00:00",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    created = Set.objects.get(artist="Admin Added")
    assert created.organization == ours.organization


def test_admin_refuses_an_overlapping_set_and_names_the_clash(our_admin, two_worlds):
    ours, _ = two_worlds
    response = our_admin.post(
        reverse("admin:stages_set_add"),
        {
            "stage": ours.stage.pk,
            "artist": "Clasher",
            # ours.set runs 18:00-19:30 UTC = 20:00-21:30 Amsterdam (the admin's local time)
            "starts_at_0": "2026-07-10",
            "starts_at_1": "21:00:00",
            "ends_at_0": "2026-07-10",
            "ends_at_1": "22:00:00",
        },
    )
    assert response.status_code == 200
    assert "overlaps" in response.content.decode()
    assert ours.set.artist in response.content.decode()
    assert not Set.objects.filter(artist="Clasher").exists()


def test_viewer_sees_admin_read_only(client, two_worlds):
    ours, _ = two_worlds
    client.force_login(ours.viewer)
    url = reverse("admin:stages_stage_change", args=[ours.stage.pk])
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Viewer rename", "slug": "main", "position": 0})
    assert response.status_code == 403
    assert client.get(reverse("admin:stages_stage_add")).status_code == 403
