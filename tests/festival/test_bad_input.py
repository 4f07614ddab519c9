"""Hostile or broken input gets a clear 4xx in the one JSON error format, never a 500 or an HTML
page: deeply nested JSON, oversized bodies, unknown /api/ paths, nonsense paging parameters."""

import pytest
from django.test import Client

from festival.api_common import MAX_JSON_DEPTH

pytestmark = pytest.mark.django_db

DEEP_ARRAY = "[" * 2000 + "]" * 2000
DEEP_OBJECT = '{"a":' * 900 + "1" + "}" * 900  # decodes fine, but too deep for what comes next


@pytest.fixture
def client():
    return Client(raise_request_exception=False)


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["status"] == status and error["message"]
    if code:
        assert error["code"] == code
    return error


@pytest.mark.parametrize("body", [DEEP_ARRAY, DEEP_OBJECT])
@pytest.mark.parametrize(
    "url, headers",
    [
        ("/api/v1/auth/token/", {}),
        ("/api/v1/telemetry/", {}),  # no device token: the confirmation check reads the body
    ],
)
def test_deeply_nested_json_is_a_400(client, url, headers, body):
    error = assert_error(client.post(url, body, content_type="application/json", **headers), 400)
    assert error["code"] == "parse_error"
    assert f"deeper than {MAX_JSON_DEPTH}" in error["message"]


def test_deeply_nested_json_with_a_device_token_is_a_400(client, two_worlds):
    from devices import services

    token = services.issue_device_token(two_worlds[0].device)
    response = client.post(
        "/api/v1/telemetry/",
        DEEP_ARRAY,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Device {token}",
    )
    assert_error(response, 400, "parse_error")


def test_deeply_nested_json_on_an_organizer_endpoint_is_a_400(client, two_worlds):
    client.force_login(two_worlds[0].owner)
    response = client.post("/api/v1/festivals/", DEEP_OBJECT, content_type="application/json")
    assert_error(response, 400, "parse_error")


def test_reasonable_nesting_still_parses(client):
    body = '{"a":' * (MAX_JSON_DEPTH - 1) + "1" + "}" * (MAX_JSON_DEPTH - 1)
    # reaches the view: a plain missing-field error, not a parse error
    error = assert_error(
        client.post("/api/v1/auth/token/", body, content_type="application/json"), 400
    )
    assert error["code"] != "parse_error"


@pytest.mark.parametrize("url", ["/api/v1/auth/token/", "/api/v1/telemetry/"])
def test_a_10_mb_body_is_a_413_in_json(client, url):
    body = '{"username": "' + "a" * (10 * 1024 * 1024) + '"}'
    error = assert_error(client.post(url, body, content_type="application/json"), 413)
    assert error["code"] == "payload_too_large"


@pytest.mark.parametrize(
    "url",
    ["/api/v1/nope/", "/api/nope", "/api/v1/public/festivals/x/y/z/", "/api/v1/devices/1/nope/"],
)
def test_unknown_api_paths_are_a_json_404(client, url):
    error = assert_error(client.get(url), 404, "not_found")
    assert url in error["message"]


def test_unknown_paths_outside_the_api_stay_html(client):
    response = client.get("/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")


@pytest.mark.parametrize(
    "query", ["page_size=false", "page_size=0", "page_size=-1", "page_size=501"]
)
def test_a_nonsense_page_size_is_a_400(client, two_worlds, query):
    client.force_login(two_worlds[0].owner)
    error = assert_error(client.get(f"/api/v1/festivals/?{query}"), 400, "invalid")
    assert "page_size" in error["fields"]


def test_a_nonsense_page_number_is_a_400(client, two_worlds):
    client.force_login(two_worlds[0].owner)
    error = assert_error(client.get("/api/v1/festivals/?page=false"), 400, "invalid")
    assert "page" in error["fields"]
    assert client.get("/api/v1/festivals/?page_size=2&page=1").status_code == 200


def _api_views(patterns, prefix=""):
    from django.urls import URLPattern, URLResolver

    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            yield from _api_views(pattern.url_patterns, prefix + str(pattern.pattern))
        elif isinstance(pattern, URLPattern):
            view = getattr(pattern.callback, "cls", None)
            if view is not None and hasattr(view, "parser_classes"):
                yield prefix + str(pattern.pattern), pattern.callback


def test_every_api_view_parses_json_with_the_bounded_parser():
    """By construction: a new endpoint (or one that names its own parsers) is covered too."""
    from django.urls import get_resolver
    from rest_framework.parsers import JSONParser

    from festival.api_common import BoundedJSONParser

    unbounded = []
    for route, callback in _api_views(get_resolver().url_patterns):
        initkwargs = getattr(callback, "initkwargs", {})
        parsers = initkwargs.get("parser_classes", callback.cls.parser_classes)
        if any(issubclass(p, JSONParser) and not issubclass(p, BoundedJSONParser) for p in parsers):
            unbounded.append(route)
    assert not unbounded


@pytest.mark.parametrize("query", ["public=maybe", "public=1", "ordering=nope", "ordering=name,x"])
def test_filters_and_ordering_refuse_what_they_used_to_ignore(client, two_worlds, query):
    client.force_login(two_worlds[0].owner)
    error = assert_error(client.get(f"/api/v1/festivals/?{query}"), 400, "invalid")
    assert query.split("=")[0] in error["fields"]


@pytest.mark.parametrize("query", ["public=true", "public=False", "ordering=-name,starts_on"])
def test_valid_filters_and_ordering_still_work(client, two_worlds, query):
    client.force_login(two_worlds[0].owner)
    assert client.get(f"/api/v1/festivals/?{query}").status_code == 200
