"""Device edge configuration is validated with messages a crew member can act on."""

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def as_operator(api_client, two_worlds):
    api_client.force_authenticate(two_worlds[0].operator)
    return api_client


def test_valid_config_is_stored_and_merged_with_defaults(as_operator, two_worlds):
    ours, _ = two_worlds
    config = {"fps_cap": 10, "masks": [[[0, 0], [0.2, 0], [0.2, 0.3]]], "paused": True}
    response = as_operator.post(
        "/api/v1/devices/",
        {
            "festival": ours.festival.pk,
            "stage": ours.stage.pk,
            "name": "Left",
            "thing_name": "ours-left",
            "config": config,
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["config"] == config
    assert body["effective_config"]["paused"] is True
    assert body["effective_config"]["jpeg_quality"] == 85
    assert body["status"] == "new"


@pytest.mark.parametrize(
    "config, message",
    [
        ({"fps_cap": 0}, "fps_cap: must be between 0.1 and 60, got 0"),
        ({"jpeg_quality": "high"}, "jpeg_quality: must be a number, got 'high'"),
        ({"masks": [[[0, 0], [1, 1]]]}, "masks[0]: a polygon needs at least 3 points [x, y]"),
        ({"masks": [[[0, 0], [1.5, 0], [0, 1]]]}, "masks[0]: point [1.5, 0] is outside the frame"),
        ({"mode": "fog"}, "mode: must be 'cloud' or 'edge', got 'fog'"),
        ({"brightness": 3}, "brightness: unknown setting"),
        ({"paused": "yes"}, "paused: must be true or false"),
    ],
)
def test_invalid_config_is_refused_with_a_clear_message(as_operator, two_worlds, config, message):
    ours, _ = two_worlds
    response = as_operator.patch(
        f"/api/v1/devices/{ours.device.pk}/", {"config": config}, format="json"
    )
    assert response.status_code == 400
    messages = response.json()["error"]["fields"]["config"]
    assert any(m.startswith(message) for m in messages), messages
    ours.device.refresh_from_db()
    assert ours.device.config == {}


def test_stage_must_belong_to_the_devices_festival(as_operator, two_worlds):
    ours, _ = two_worlds
    from datetime import date

    from festival.models import Festival

    other = Festival.objects.create(
        organization=ours.organization,
        name="Other",
        slug="other",
        starts_on=date(2026, 9, 1),
        ends_on=date(2026, 9, 2),
    )
    response = as_operator.post(
        "/api/v1/devices/",
        {"festival": other.pk, "stage": ours.stage.pk, "name": "x", "thing_name": "x-1"},
        format="json",
    )
    assert response.status_code == 400
    assert response.json()["error"]["fields"]["stage"] == [
        "This stage belongs to another festival."
    ]


def test_thing_name_rules(as_operator, two_worlds):
    ours, _ = two_worlds
    response = as_operator.post(
        "/api/v1/devices/",
        {"festival": ours.festival.pk, "name": "x", "thing_name": "has spaces/slash"},
        format="json",
    )
    assert response.status_code == 400
    assert "thing_name" in response.json()["error"]["fields"]
