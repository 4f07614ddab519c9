"""Admin actions follow roles by construction: a viewer is offered none and can run none, and a
user with mixed roles acts only on the rows where their role allows it (issue 11: a viewer ran
"Refresh from SageMaker")."""

import pytest
from django.contrib import admin
from django.test import RequestFactory
from django.urls import reverse

from festival.models import Membership, Role
from festival.tenancy import TenantAdminMixin
from tests.factories import add_tenant_rows, make_world

pytestmark = pytest.mark.django_db

TENANT_ADMINS = [
    pytest.param(model_admin, id=model._meta.label_lower)
    for model, model_admin in admin.site._registry.items()
    if isinstance(model_admin, TenantAdminMixin)
]


@pytest.fixture
def worlds(db):
    return add_tenant_rows(make_world("ours")), add_tenant_rows(make_world("theirs"))


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


@pytest.mark.parametrize("model_admin", TENANT_ADMINS)
def test_a_viewer_is_offered_no_action(worlds, model_admin):
    ours, _ = worlds
    assert model_admin.get_actions(_request(ours.viewer)) == {}


@pytest.fixture
def refreshed(monkeypatch):
    calls = []
    monkeypatch.setattr("detectors.services.training.follow_training_job", calls.append)
    return calls


def _refresh(client, *jobs):
    return client.post(
        reverse("admin:detectors_trainingjob_changelist"),
        {"action": "refresh_from_sagemaker", "_selected_action": [job.pk for job in jobs]},
        follow=True,
    )


def test_a_viewer_cannot_refresh_a_training_job(client, worlds, refreshed):
    ours, _ = worlds
    client.force_login(ours.viewer)
    page = client.get(reverse("admin:detectors_trainingjob_changelist")).content.decode()
    assert "Refresh from SageMaker" not in page
    _refresh(client, ours.training_job)
    assert refreshed == []


def test_an_operator_here_and_viewer_there_refreshes_only_here(client, worlds, refreshed):
    ours, theirs = worlds
    Membership.objects.create(user=ours.operator, organization=theirs.organization, role="viewer")
    client.force_login(ours.operator)
    response = _refresh(client, ours.training_job, theirs.training_job)
    assert refreshed == [ours.training_job.pk]
    assert "1 selected row(s) skipped: This needs the operator role" in response.content.decode()


def test_delete_selected_spares_rows_where_the_role_is_too_low(client, worlds):
    ours, theirs = worlds
    Membership.objects.create(
        user=ours.operator, organization=theirs.organization, role=Role.VIEWER
    )
    client.force_login(ours.operator)
    client.post(
        reverse("admin:stages_set_changelist"),
        {"action": "delete_selected", "_selected_action": [theirs.set.pk], "post": "yes"},
    )
    assert type(theirs.set).objects.filter(pk=theirs.set.pk).exists()
