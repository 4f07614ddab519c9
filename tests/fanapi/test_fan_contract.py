"""The fan API answers exactly what its OpenAPI document promises (mobile clients are generated
from it), with caching headers, ETags and 304s for pollers."""

from datetime import timedelta

import pytest
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator
from openapi_schema_validator import OAS30Validator

from stages.models import Set
from tests.factories import add_recent_rollup

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def openapi():
    return SchemaGenerator().get_schema(request=None, public=True)


def response_schema(openapi, path: str) -> dict:
    content = openapi["paths"][path]["get"]["responses"]["200"]["content"]
    return content["application/json"]["schema"]


def nullable_refs(node):
    """OpenAPI 3.0 writes a nullable object as {allOf: [$ref], nullable: true}; client generators
    read it as "the object or null", strict JSON Schema validators do not. Say it their way."""
    if isinstance(node, dict):
        node = {key: nullable_refs(value) for key, value in node.items()}
        if node.get("nullable") and "allOf" in node and "type" not in node:
            return {"anyOf": [*node["allOf"], {"enum": [None]}]}
        return node
    if isinstance(node, list):
        return [nullable_refs(item) for item in node]
    return node


def assert_matches(openapi, path: str, body) -> None:
    # the response schema with the document's components beside it, so "#/components/…" resolves
    schema = nullable_refs({**response_schema(openapi, path), "components": openapi["components"]})
    validator = OAS30Validator(schema)
    errors = sorted(validator.iter_errors(body), key=str)
    assert not errors, [f"{list(e.absolute_path)}: {e.message}" for e in errors[:5]]


@pytest.mark.parametrize(
    "path, url",
    [
        ("/api/v1/public/festivals/", "/api/v1/public/festivals/"),
        ("/api/v1/public/festivals/{slug}/", "/api/v1/public/festivals/ours-fest/"),
        ("/api/v1/public/festivals/{slug}/stages/", "/api/v1/public/festivals/ours-fest/stages/"),
        ("/api/v1/public/festivals/{slug}/lineup/", "/api/v1/public/festivals/ours-fest/lineup/"),
        ("/api/v1/public/festivals/{slug}/live/", "/api/v1/public/festivals/ours-fest/live/"),
        (
            "/api/v1/public/festivals/{slug}/stages/{stage_slug}/timeline/",
            "/api/v1/public/festivals/ours-fest/stages/main/timeline/",
        ),
        ("/api/v1/public/festivals/{slug}/reports/", "/api/v1/public/festivals/ours-fest/reports/"),
    ],
)
def test_responses_match_the_schema(openapi, api_client, two_worlds, path, url):

    ours, _ = two_worlds
    add_recent_rollup(ours.stage, faces=9, happy=78.0, calm=11.0)
    response = api_client.get(url)
    assert response.status_code == 200
    assert_matches(openapi, path, response.json())
    assert response["Cache-Control"].startswith("public, max-age=")


def test_etag_turns_a_repeat_poll_into_304(api_client, two_worlds):
    url = "/api/v1/public/festivals/ours-fest/stages/"
    etag = api_client.get(url)["ETag"]
    assert etag
    assert api_client.get(url, HTTP_IF_NONE_MATCH=etag).status_code == 304
    assert api_client.get(url, HTTP_IF_NONE_MATCH='"stale"').status_code == 200


def test_errors_are_not_cached(api_client, two_worlds):
    response = api_client.get("/api/v1/public/festivals/theirs-fest/live/")
    assert response.status_code == 404
    assert "public" not in response.get("Cache-Control", "")


def test_an_unchanged_lineup_answers_304_and_a_changed_one_200(api_client, two_worlds):
    """generated_at used to be the request time, so the ETag changed on every poll."""
    ours, _ = two_worlds
    url = "/api/v1/public/festivals/ours-fest/lineup/"
    first = api_client.get(url)
    assert first.status_code == 200 and first["ETag"] and first["Last-Modified"]
    again = api_client.get(url)
    assert again["ETag"] == first["ETag"]
    assert again.json()["generated_at"] == first.json()["generated_at"]
    assert api_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"]).status_code == 304
    modified = api_client.get(url, HTTP_IF_MODIFIED_SINCE=first["Last-Modified"])
    assert modified.status_code == 304

    start = timezone.now() + timedelta(hours=3)
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Late addition",
        starts_at=start,
        ends_at=start + timedelta(hours=1),
    )
    changed = api_client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200
    assert "Late addition" in [s["artist"] for s in changed.json()["sets"]]
    assert changed["ETag"] != first["ETag"]
