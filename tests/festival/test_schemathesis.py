"""Schemathesis over both APIs: generated requests (valid and not) against the WSGI app, offline,
and every answer must be documented: no 5xx, a documented status code, content type and body.

Bounded (a few examples per operation, derandomized, so CI runs the same cases each time).
The organizer API runs with an owner's token; the fan API, the token endpoint and telemetry run
anonymously (telemetry then answers its documented 401s and 400s). Everything AWS would
answer goes to moto.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from moto import mock_aws
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

pytestmark = [pytest.mark.django_db, pytest.mark.schemathesis]

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
BOUNDED = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)


def _schema():
    """Served by the app itself (no database needed), so it is what clients download."""
    from stagepulse.wsgi import application

    return schemathesis.openapi.from_wsgi("/api/schema/?format=json", application)


SCHEMA = _schema()
# The coverage phase alone sends hundreds of boundary cases per operation (minutes on CI's two
# cores); the explicit examples and a few fuzzed cases each keep the run bounded.
SCHEMA.config.phases.coverage.enabled = False
organizer = SCHEMA.exclude(path_regex=r"^/api/v1/(public/|telemetry/|auth/)")
anonymous = SCHEMA.include(path_regex=r"^/api/v1/(public/|telemetry/|auth/)")


@pytest.fixture
def world(two_worlds):
    from rest_framework.authtoken.models import Token

    ours, _ = two_worlds
    with mock_aws(), keep_the_test_connection():
        yield ours, Token.objects.create(user=ours.owner).key


@contextmanager
def keep_the_test_connection():
    """Django's test client stops each request from closing the connection (it would close the
    test's transaction on PostgreSQL); schemathesis calls the WSGI app directly, so do the same."""
    signals = (request_started, request_finished)
    for signal in signals:
        signal.disconnect(close_old_connections)
    try:
        yield
    finally:
        for signal in signals:
            signal.connect(close_old_connections)


@organizer.parametrize()
@BOUNDED
def test_organizer_api_answers_what_it_documents(case, world):
    _, token = world
    case.call_and_validate(headers={"Authorization": f"Token {token}"}, checks=CHECKS)


@anonymous.parametrize()
@BOUNDED
def test_fan_api_and_anonymous_endpoints_answer_what_they_document(case, world):
    case.call_and_validate(checks=CHECKS)
