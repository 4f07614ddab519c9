"""Every route of the organizer API, generated from the router's registry, probed across the
tenant boundary: lists, detail pages and their actions, every foreign-key filter, and the
browsable HTML pages. A new viewset registered on the router is covered with no extra work
(its model needs a row in tests.factories.add_tenant_rows, and the tests say so).

The rule under test: another organization's row answers exactly like a row that does not exist
(404 on detail routes, 400 "not a valid choice" on filters), and no page names it.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django_filters.filters import QuerySetRequestMixin

from festival.models import Organization
from festival.tenancy import TenantGenericViewSet
from festival.tenant_filters import TenantFilterBackend
from stagepulse.urls import router
from tests.factories import make_user, names_of

pytestmark = pytest.mark.django_db

MISSING_ID = 987654321
DETAIL_METHODS = {
    "retrieve": "get",
    "update": "put",
    "partial_update": "patch",
    "destroy": "delete",
}


def _model_of(viewset):
    queryset = getattr(viewset, "queryset", None)
    if queryset is not None:
        return queryset.model
    serializer = getattr(viewset, "serializer_class", None)
    return serializer.Meta.model


def _fk_filters(prefix, viewset):
    """(filter name, related model) of each foreign-key filter the route accepts."""
    queryset = getattr(viewset, "queryset", None)
    if queryset is None:
        return []
    filterset_class = TenantFilterBackend().get_filterset_class(viewset(), queryset)
    if filterset_class is None:
        return []
    return [
        (name, flt.queryset.model)
        for name, flt in filterset_class.base_filters.items()
        if isinstance(flt, QuerySetRequestMixin)
    ]


def _detail_calls(viewset):
    """(label, http method, url suffix) of every detail route: CRUD and extra actions."""
    allowed = set(getattr(viewset, "http_method_names", ()))
    calls = [
        (action, method, "")
        for action, method in DETAIL_METHODS.items()
        if hasattr(viewset, action) and method in allowed
    ]
    for extra in viewset.get_extra_actions():
        if extra.detail:
            for method in extra.mapping:
                calls.append((extra.__name__, method, f"{extra.url_path}/"))
    return calls


ROUTES = [(prefix, viewset) for prefix, viewset, _ in router.registry]
LISTS = [pytest.param(prefix, viewset, id=prefix) for prefix, viewset in ROUTES]
DETAILS = [
    pytest.param(prefix, viewset, method, suffix, id=f"{prefix}-{label}-{method}")
    for prefix, viewset in ROUTES
    for label, method, suffix in _detail_calls(viewset)
]
FILTERS = [
    pytest.param(prefix, name, model, id=f"{prefix}?{name}")
    for prefix, viewset in ROUTES
    for name, model in _fk_filters(prefix, viewset)
]
PAGES = [
    pytest.param(
        prefix, viewset, suffix, detail, id=f"{prefix}-{'detail' if detail else 'list'}-{suffix}"
    )
    for prefix, viewset in ROUTES
    for detail, suffix in [(False, ""), (True, "")]
    + [(extra.detail, f"{extra.url_path}/") for extra in viewset.get_extra_actions()]
]


def rows_of(model, organization):
    """The organization's rows of `model`, or None for a model every tenant shares."""
    if model is Organization:
        return Organization.objects.filter(pk=organization.pk)
    if any(field.name == "organization" for field in model._meta.fields):
        return model.objects.filter(organization=organization)
    return None


def one_row(model, organization):
    rows = rows_of(model, organization)
    assert rows is not None and rows.exists(), (
        f"No {model.__name__} row in the test worlds: add one to tests.factories.add_tenant_rows"
    )
    return rows.first()


@pytest.fixture
def worlds(worlds_copy):
    """The two worlds, written once for the module's few hundred cases (tests/conftest.py
    worlds_once); each case's writes are still rolled back after it."""
    return worlds_copy


@pytest.fixture
def as_ours(api_client, worlds):
    api_client.force_authenticate(worlds[0].owner)
    return api_client


@pytest.fixture
def as_nobody(api_client, worlds):
    api_client.force_authenticate(make_user("nobody-at-all"))
    return api_client


def _url(prefix, pk=None, suffix=""):
    return f"/api/v1/{prefix}/" + (f"{pk}/" if pk is not None else "") + suffix


def _ids(response) -> set:
    body = response.json()
    rows = body["results"] if isinstance(body, dict) else body
    return {row["id"] for row in rows}


def test_the_generated_checks_cover_every_foreign_key_filter():
    """Issue 11 counted 13 foreign-key filters; the generation must find at least those."""
    assert len(FILTERS) >= 13
    assert len(ROUTES) == len(router.registry) >= 13


@pytest.mark.parametrize(("prefix", "viewset"), LISTS)
def test_lists_never_show_another_organizations_rows(as_ours, worlds, prefix, viewset):
    ours, theirs = worlds
    response = as_ours.get(_url(prefix))
    assert response.status_code == 200, response.content
    model = _model_of(viewset)
    foreign = rows_of(model, theirs.organization)
    if foreign is None:  # shared by every tenant (edge releases)
        return
    assert foreign.exists(), f"add a {model.__name__} row to tests.factories.add_tenant_rows"
    assert _ids(response).isdisjoint(set(foreign.values_list("pk", flat=True)))
    if issubclass(viewset, TenantGenericViewSet):  # (my-invitations: only those addressed to me)
        assert _ids(response) >= {one_row(model, ours.organization).pk}


@pytest.mark.parametrize(("prefix", "viewset", "method", "suffix"), DETAILS)
def test_detail_routes_answer_a_foreign_id_like_a_missing_one(
    as_ours, worlds, prefix, viewset, method, suffix
):
    _, theirs = worlds
    model = _model_of(viewset)
    if rows_of(model, theirs.organization) is None:
        pytest.skip(f"{model.__name__} rows are shared by every tenant")
    foreign = one_row(model, theirs.organization)
    call = getattr(as_ours, method)
    answer = call(_url(prefix, foreign.pk, suffix), {}, format="json")
    missing = call(_url(prefix, MISSING_ID, suffix), {}, format="json")
    assert answer.status_code == missing.status_code == 404
    assert answer.json() == missing.json()
    assert model.objects.filter(pk=foreign.pk).exists()


@pytest.mark.parametrize(("prefix", "name", "model"), FILTERS)
def test_filters_answer_a_foreign_id_like_a_missing_one(as_ours, worlds, prefix, name, model):
    ours, theirs = worlds
    foreign = one_row(model, theirs.organization)
    answer = as_ours.get(_url(prefix), {name: foreign.pk})
    missing = as_ours.get(_url(prefix), {name: MISSING_ID})
    assert answer.status_code == missing.status_code == 400
    assert answer.json() == missing.json()
    assert answer.json()["error"]["fields"][name] == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    # One's own rows still filter.
    assert (
        as_ours.get(_url(prefix), {name: one_row(model, ours.organization).pk}).status_code == 200
    )


@pytest.mark.parametrize(("prefix", "viewset"), LISTS)
def test_a_user_without_organization_sees_nothing(as_nobody, worlds, prefix, viewset):
    ours, _ = worlds
    response = as_nobody.get(_url(prefix))
    assert response.status_code == 200
    assert _ids(response) == set()
    model = _model_of(viewset)
    for world in worlds:
        rows = rows_of(model, world.organization)
        if rows is not None:
            assert as_nobody.get(_url(prefix, rows.first().pk)).status_code == 404
    for name, related in _fk_filters(prefix, viewset):
        response = as_nobody.get(_url(prefix), {name: one_row(related, ours.organization).pk})
        assert response.status_code == 400, name


@pytest.mark.parametrize(("prefix", "viewset", "suffix", "detail"), PAGES)
def test_browsable_pages_and_their_forms_name_nothing_of_another_organization(
    as_ours, worlds, prefix, viewset, suffix, detail
):
    """The HTML pages render filter dropdowns and write forms (selects of related rows)."""
    if not settings.BROWSABLE_API:
        pytest.skip("the browsable API is off (BROWSABLE_API)")
    ours, theirs = worlds
    pk = None
    if detail:
        model = _model_of(viewset)
        rows = rows_of(model, ours.organization)
        pk = (rows if rows is not None else model.objects.all()).first().pk
    response = as_ours.get(_url(prefix, pk, suffix), {"format": "api"}, HTTP_ACCEPT="text/html")
    page = response.content.decode()
    leaked = [name for name in names_of(theirs) if name in page]
    assert not leaked, f"{prefix}: the page names {leaked}"


def test_browsable_pages_of_a_user_without_organization_name_no_organization(as_nobody, worlds):
    for prefix, _ in ROUTES:
        page = as_nobody.get(_url(prefix), {"format": "api"}).content.decode()
        for world in worlds:
            assert not [name for name in names_of(world) if name in page], prefix


def test_a_superuser_still_filters_on_any_organization(api_client, worlds):
    _, theirs = worlds
    admin = get_user_model().objects.create_superuser("root", "root@example.org", "pw-123456789")
    api_client.force_authenticate(admin)
    response = api_client.get("/api/v1/sets/", {"stage__festival": theirs.festival.pk})
    assert response.status_code == 200
    assert _ids(response) == {theirs.set.pk}
