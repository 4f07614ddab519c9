"""Every admin and every organizer page, generated from `admin.site._registry` and the URL
patterns, probed across the tenant boundary (issue 13). A new admin, or a new page that takes a
festival or report id, is covered with no extra work.

The rule under test is the API's (test_cross_tenant_routes): another organization's object
answers exactly like an id that does not exist (same status, same page but for the id), its
pages change nothing, and no list shows it.
"""

from __future__ import annotations

import re

import pytest
from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.test import RequestFactory
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from emotions.models import ComparisonRun, SetReport
from festival.models import Festival
from tests.festival.test_cross_tenant_routes import MISSING_ID, rows_of

pytestmark = pytest.mark.django_db

ADMINS = [
    pytest.param(model, model_admin, id=model._meta.label_lower)
    for model, model_admin in admin.site._registry.items()
]
OBJECT_VIEWS = ["change", "delete", "history"]
# The id a page takes -> the model it names. A page with another id kwarg fails
# test_every_page_id_is_known until it is added here.
PAGE_IDS = {"festival_id": Festival, "report_id": SetReport, "run_id": ComparisonRun}
_CSRF = re.compile(r'(name="csrfmiddlewaretoken" value=|csrftoken=)"?[^"\s;>]+')


def _pages(patterns=None, prefix="", namespace=""):
    """(url name, kwarg names) of every page outside the admin and the APIs that takes an id."""
    found = []
    for entry in patterns if patterns is not None else get_resolver().url_patterns:
        route = prefix + str(entry.pattern)
        if route.startswith(("admin/", "api/")):
            continue
        if isinstance(entry, URLResolver):
            inner = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            found += _pages(entry.url_patterns, route, inner)
        elif isinstance(entry, URLPattern) and entry.name:
            converters = getattr(entry.pattern, "converters", {})
            ints = sorted(k for k, c in converters.items() if type(c).__name__ == "IntConverter")
            if ints:
                found.append((f"{namespace}{entry.name}", ints))
    return found


PAGES = [pytest.param(name, kwargs, id=name) for name, kwargs in _pages()]


def _normalized(response, *ids) -> str:
    """The page with the probed id (and the CSRF token, new on every answer) blanked out."""
    body = _CSRF.sub("CSRF", response.content.decode(errors="replace"))
    for value in sorted({str(v) for v in ids}, key=len, reverse=True):
        body = re.sub(rf"(?<!\d){re.escape(value)}(?!\d)", "ID", body)
    location = response.get("Location", "")
    for value in ids:
        location = re.sub(rf"(?<!\d){value}(?!\d)", "ID", location)
    return f"{response.status_code} {location}\n{body}"


def _foreign(model, theirs):
    rows = rows_of(model, theirs.organization)
    return None if rows is None else rows.first()


def _request_for(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def _visible(model_admin, user) -> bool:
    """Whether an organizer reaches the admin's list (in the index, or by its address)."""
    request = _request_for(user)
    return model_admin.has_module_permission(request) or model_admin.has_view_permission(request)


@pytest.fixture
def worlds(worlds_copy):
    """The two worlds, written once for the module's few hundred cases (tests/conftest.py
    worlds_once); each case's writes are still rolled back after it."""
    return worlds_copy


@pytest.fixture
def ours_client(client, worlds):
    client.force_login(worlds[0].owner)
    return client


def _probe(model, model_admin, theirs, owner):
    """Their row of `model`; skip the models that hold no per-organization rows."""
    if rows_of(model, theirs.organization) is None:
        pytest.skip(f"{model.__name__} rows are not per organization")
    foreign = _foreign(model, theirs)
    if foreign is None:
        assert not _visible(model_admin, owner), (
            f"{model.__name__} is in an organizer's admin but the test worlds hold no row of it: "
            "add one to tests.factories.add_tenant_rows"
        )
        pytest.skip(f"superusers only, and no {model.__name__} row in the test worlds")
    return foreign


def test_the_generated_checks_cover_the_admin_and_the_pages():
    labels = {p.id for p in ADMINS}
    assert {"festival.festival", "stages.set", "devices.device", "emotions.setreport"} <= labels
    assert {p.id for p in PAGES} >= {
        "dashboard:festival",
        "dashboard:festival-data",
        "dashboard:festival-reports",
        "set-report-page",
        "set-report-publish",
        "set-report-rebuild",
        "set-report-share",
    }


@pytest.mark.parametrize(("model", "model_admin"), ADMINS)
@pytest.mark.parametrize("view", OBJECT_VIEWS)
def test_admin_object_pages_answer_a_foreign_id_like_a_missing_one(
    ours_client, worlds, model, model_admin, view
):
    ours, theirs = worlds
    foreign = _probe(model, model_admin, theirs, ours.owner)
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"
    answer = ours_client.get(reverse(name, args=[foreign.pk]))
    missing = ours_client.get(reverse(name, args=[MISSING_ID]))
    assert answer.status_code in (302, 403, 404), answer.status_code
    assert _normalized(answer, foreign.pk, MISSING_ID) == _normalized(
        missing, foreign.pk, MISSING_ID
    )


@pytest.mark.parametrize(("model", "model_admin"), ADMINS)
@pytest.mark.parametrize("view", ["change", "delete"])
def test_posting_to_a_foreign_admin_object_changes_nothing(
    ours_client, worlds, model, model_admin, view
):
    ours, theirs = worlds
    foreign = _probe(model, model_admin, theirs, ours.owner)
    before = model.objects.filter(pk=foreign.pk).values().first()
    name = f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}"
    answer = ours_client.post(reverse(name, args=[foreign.pk]), {"post": "yes"})
    missing = ours_client.post(reverse(name, args=[MISSING_ID]), {"post": "yes"})
    assert answer.status_code in (302, 403, 404), answer.status_code
    assert _normalized(answer, foreign.pk, MISSING_ID) == _normalized(
        missing, foreign.pk, MISSING_ID
    )
    assert model.objects.filter(pk=foreign.pk).values().first() == before


@pytest.mark.parametrize(("model", "model_admin"), ADMINS)
def test_admin_changelists_never_list_a_foreign_row(ours_client, worlds, model, model_admin):
    ours, theirs = worlds
    foreign = _probe(model, model_admin, theirs, ours.owner)
    response = ours_client.get(
        reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    )
    if not _visible(model_admin, ours.owner):
        assert response.status_code == 403
        return
    assert response.status_code == 200
    listed = {row.pk for row in response.context["cl"].result_list}
    assert foreign.pk not in listed


def _relation_filters(model, model_admin, user):
    """(query parameter, related model) of each relation filter in the changelist's sidebar."""
    found = []
    for entry in model_admin.get_list_filter(_request_for(user)):
        path = entry[0] if isinstance(entry, (list, tuple)) else entry
        if not isinstance(path, str):
            continue
        field = get_fields_from_path(model, path)[-1]
        if field.is_relation and field.related_model is not None:
            found.append((f"{path}__{field.target_field.name}__exact", field.related_model))
    return found


@pytest.mark.parametrize(("model", "model_admin"), ADMINS)
def test_admin_changelist_filters_answer_a_foreign_id_like_a_missing_one(
    ours_client, worlds, model, model_admin
):
    ours, theirs = worlds
    _probe(model, model_admin, theirs, ours.owner)
    if not _visible(model_admin, ours.owner):
        pytest.skip("not in an organizer's admin")
    filters = _relation_filters(model, model_admin, ours.owner)
    if not filters:
        pytest.skip("no relation filters")
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    for parameter, related in filters:
        foreign = _foreign(related, theirs)
        assert foreign is not None, f"no {related.__name__} row of theirs for ?{parameter}"
        answer = ours_client.get(url, {parameter: foreign.pk})
        missing = ours_client.get(url, {parameter: MISSING_ID})
        assert _normalized(answer, foreign.pk, MISSING_ID) == _normalized(
            missing, foreign.pk, MISSING_ID
        ), parameter
        if answer.status_code == 200:  # and, filtered or not, none of their rows
            listed = {row.pk for row in answer.context["cl"].result_list}
            theirs_rows = rows_of(model, theirs.organization).values_list("pk", flat=True)
            assert listed.isdisjoint(theirs_rows), parameter


def test_every_page_id_is_known():
    unknown = {kwarg for _, kwargs in _pages() for kwarg in kwargs} - set(PAGE_IDS)
    assert not unknown, f"map {unknown} to their models in PAGE_IDS"


@pytest.mark.parametrize(("name", "kwargs"), PAGES)
@pytest.mark.parametrize("method", ["get", "post"])
def test_pages_answer_a_foreign_id_like_a_missing_one(ours_client, worlds, name, kwargs, method):
    ours, theirs = worlds
    foreign = {k: _foreign(PAGE_IDS[k], theirs).pk for k in kwargs}
    missing = {k: MISSING_ID for k in kwargs}
    before = {k: PAGE_IDS[k].objects.filter(pk=v).values().first() for k, v in foreign.items()}
    call = getattr(ours_client, method)
    answer = call(reverse(name, kwargs=foreign))
    absent = call(reverse(name, kwargs=missing))
    ids = [*foreign.values(), MISSING_ID]
    assert answer.status_code in (302, 403, 404, 405), answer.status_code
    assert _normalized(answer, *ids) == _normalized(absent, *ids)
    after = {k: PAGE_IDS[k].objects.filter(pk=v).values().first() for k, v in foreign.items()}
    assert after == before
