"""The OpenAPI document promises what the API answers, errors included (generated clients
decode bodies by it): nullable fields are nullable, error bodies have their documented shape,
and no operation is documented that only answers 405."""

from unittest import mock

import pytest
from drf_spectacular.generators import SchemaGenerator
from openapi_schema_validator import OAS30Validator
from rest_framework.throttling import SimpleRateThrottle

from tests.fanapi.test_fan_contract import nullable_refs

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def openapi():
    return SchemaGenerator().get_schema(request=None, public=True)


def assert_body_matches(openapi, path: str, method: str, status: int, response) -> None:
    assert response.status_code == status, response.content[:300]
    operation = openapi["paths"][path][method]
    assert str(status) in operation["responses"], f"{method.upper()} {path} omits {status}"
    schema = operation["responses"][str(status)]["content"]["application/json"]["schema"]
    validator = OAS30Validator(nullable_refs({**schema, "components": openapi["components"]}))
    errors = [
        f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(response.json())
    ]
    assert not errors, errors[:5]


def test_a_device_without_a_release_matches_its_schema(openapi, api_client, two_worlds):
    ours, _ = two_worlds
    assert ours.device.current_release is None
    api_client.force_authenticate(ours.viewer)
    response = api_client.get(f"/api/v1/devices/{ours.device.pk}/")
    assert response.json()["current_release"] is None
    assert_body_matches(openapi, "/api/v1/devices/{id}/", "get", 200, response)


def test_a_refused_lineup_import_matches_its_documented_400(openapi, api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    url = f"/api/v1/festivals/{ours.festival.pk}/lineup/import/"
    path = "/api/v1/festivals/{id}/lineup/import/"
    bad_line = "stage,artist,starts_at,ends_at\nnowhere,X,not a time,\n"
    response = api_client.generic("POST", url, bad_line, content_type="text/csv")
    assert response.json()["error"]["report"]["errors"]
    assert_body_matches(openapi, path, "post", 400, response)
    empty = api_client.generic("POST", url, "", content_type="text/csv")
    assert_body_matches(openapi, path, "post", 400, empty)


def test_reports_cannot_be_posted_and_the_schema_does_not_say_they_can(
    openapi, api_client, two_worlds
):
    assert "post" not in openapi["paths"]["/api/v1/reports/"]
    api_client.force_authenticate(two_worlds[0].owner)
    assert api_client.post("/api/v1/reports/", {}).status_code == 405


def test_every_fan_operation_documents_its_404_and_429(openapi):
    fan = {p: ops for p, ops in openapi["paths"].items() if p.startswith("/api/v1/public/")}
    assert len(fan) >= 8
    for path, operations in fan.items():
        responses = operations["get"]["responses"]
        assert "429" in responses, path
        if "{" in path:
            assert "404" in responses, path


def test_fan_404_and_429_bodies_match_the_error_schema(openapi, api_client, two_worlds, mid_minute):
    path = "/api/v1/public/festivals/{slug}/"
    missing = api_client.get("/api/v1/public/festivals/no-such-fest/")
    assert_body_matches(openapi, path, "get", 404, missing)
    with mock.patch.object(SimpleRateThrottle, "THROTTLE_RATES", {"fan": "2/minute"}):
        for _ in range(2):
            api_client.get("/api/v1/public/festivals/ours-fest/")
        throttled = api_client.get("/api/v1/public/festivals/ours-fest/")
    assert_body_matches(openapi, path, "get", 429, throttled)


def test_organizer_errors_are_documented_for_every_operation(openapi):
    for path, operations in openapi["paths"].items():
        if path.startswith(("/api/v1/public/", "/api/schema")):
            continue
        for method, operation in operations.items():
            if method in ("parameters",):
                continue
            responses = operation["responses"]
            if path != "/api/v1/auth/token/":
                assert {"401", "403"} <= set(responses), f"{method} {path}"
            if "{" in path:
                assert "404" in responses, f"{method} {path}"
