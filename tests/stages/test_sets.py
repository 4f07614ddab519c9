"""A set ends after it starts, and two sets on one stage never overlap (API and service)."""

import pytest
from django.core.exceptions import ValidationError

from stages import services
from stages.models import Set
from tests.factories import utc

pytestmark = pytest.mark.django_db


def post_set(client, stage, starts, ends, artist="New Act"):
    return client.post(
        "/api/v1/sets/",
        {"stage": stage.pk, "artist": artist, "starts_at": starts, "ends_at": ends},
    )


@pytest.fixture
def as_operator(api_client, two_worlds):
    api_client.force_authenticate(two_worlds[0].operator)
    return api_client


def test_overlap_is_refused_naming_the_colliding_set(as_operator, two_worlds):
    ours, _ = two_worlds  # ours.set: 18:00-19:30 UTC = 20:00-21:30 in Amsterdam
    response = post_set(as_operator, ours.stage, "2026-07-10T19:00:00Z", "2026-07-10T20:00:00Z")
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert "Ours Artist" in message and "20:00" in message and "21:30" in message
    assert Set.objects.filter(stage=ours.stage).count() == 1


def test_back_to_back_sets_are_fine(as_operator, two_worlds):
    ours, _ = two_worlds
    response = post_set(as_operator, ours.stage, "2026-07-10T19:30:00Z", "2026-07-10T21:00:00Z")
    assert response.status_code == 201, response.json()
    assert response.json()["stage_name"] == "Ours Main"


def test_same_time_on_another_stage_is_fine(as_operator, two_worlds):
    ours, _ = two_worlds
    other = ours.festival.stages.create(organization=ours.organization, name="Tent", slug="tent")
    response = post_set(as_operator, other, "2026-07-10T18:00:00Z", "2026-07-10T19:30:00Z")
    assert response.status_code == 201


def test_set_must_end_after_it_starts(as_operator, two_worlds):
    ours, _ = two_worlds
    response = post_set(as_operator, ours.stage, "2026-07-11T20:00:00Z", "2026-07-11T20:00:00Z")
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["ends_at"] == ["A set must end after it starts."]


def test_moving_a_set_into_a_collision_is_refused(as_operator, two_worlds):
    ours, _ = two_worlds
    later = Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Later",
        starts_at=utc(2026, 7, 10, 20),
        ends_at=utc(2026, 7, 10, 21),
    )
    response = as_operator.patch(f"/api/v1/sets/{later.pk}/", {"starts_at": "2026-07-10T19:00:00Z"})
    assert response.status_code == 400
    # editing a set without moving it does not collide with itself
    response = as_operator.patch(f"/api/v1/sets/{later.pk}/", {"artist": "Later (live)"})
    assert response.status_code == 200


def test_service_guards_direct_writes_too(two_worlds):
    ours, _ = two_worlds
    clash = Set(
        stage=ours.stage,
        artist="Direct",
        starts_at=utc(2026, 7, 10, 19),
        ends_at=utc(2026, 7, 10, 19, 45),
    )
    with pytest.raises(ValidationError, match="overlaps 'Ours Artist'"):
        services.save_set(clash)
