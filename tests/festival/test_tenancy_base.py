"""Tenancy by construction: every organizer viewset over tenant rows stands on one base
(TenantGenericViewSet), which a subclass cannot loosen by overriding get_queryset, get_object or
get_permissions: that fails when the class is defined, i.e. at import time."""

from __future__ import annotations

import pytest
from rest_framework import mixins, permissions
from rest_framework.test import APIRequestFactory

from devices.models import Deployment
from festival.models import Festival, Organization
from festival.tenancy import TenantGenericViewSet, TenantRolePermission, TenantViewSet
from stagepulse.urls import router

# Routes over rows that are not one organization's, each for its reason.
NOT_TENANT_ROUTES = {
    "organizations": "the user's own organizations (organizations_for), not rows of one",
    "my-invitations": "invitations addressed to the user, from organizations they are not in yet",
    "edge-releases": "edge releases are global: the same software for every organization",
}


@pytest.mark.parametrize("name", TenantGenericViewSet.GUARDED)
def test_overriding_a_guarded_method_fails_at_class_definition(name):
    with pytest.raises(TypeError, match=f"overrides {name}.*unscoped_queryset_escape_hatch"):
        type("Loose", (TenantViewSet,), {name: lambda self: None, "__module__": __name__})


@pytest.mark.parametrize("name", TenantGenericViewSet.GUARDED)
def test_a_mixin_cannot_bring_the_override_in_either(name):
    mixin = type("Mixin", (), {name: lambda self: None})
    with pytest.raises(TypeError, match=f"overrides {name}"):
        type("Loose", (mixin, mixins.ListModelMixin, TenantGenericViewSet), {})


@pytest.mark.parametrize(
    "bases",
    [
        (TenantViewSet,),
        (mixins.CreateModelMixin, mixins.ListModelMixin, TenantGenericViewSet),
    ],
    ids=["crud", "composed"],
)
def test_a_composed_create_still_fills_the_organization_and_checks_the_role(bases):
    viewset = type("Composed", bases, {"queryset": Festival.objects.all()})
    assert viewset.perform_create is TenantGenericViewSet.perform_create


def test_a_queryset_without_tenant_scoping_is_refused():
    with pytest.raises(TypeError, match="not a TenantQuerySet"):
        type("Loose", (TenantViewSet,), {"queryset": Organization.objects.all()})


def test_the_escape_hatch_is_the_one_allowed_way_out():
    class Unscoped(mixins.ListModelMixin, TenantGenericViewSet):
        queryset = Festival.objects.all()

        def unscoped_queryset_escape_hatch(self):
            return Festival.objects.none()

    view = Unscoped()
    view.request = None
    assert view.get_queryset().query.is_empty()


def test_permission_classes_add_to_the_role_rule_never_replace_it():
    class Marker(permissions.BasePermission):
        pass

    class Composed(mixins.ListModelMixin, TenantGenericViewSet):
        queryset = Deployment.objects.all()
        permission_classes = [permissions.IsAuthenticated, Marker]

    view = Composed()
    view.request = APIRequestFactory().get("/")
    kinds = [type(permission) for permission in view.get_permissions()]
    assert kinds == [permissions.IsAuthenticated, TenantRolePermission, Marker]


@pytest.mark.parametrize(
    ("prefix", "viewset"), [(prefix, viewset) for prefix, viewset, _ in router.registry]
)
def test_every_route_over_tenant_rows_stands_on_the_tenant_base(prefix, viewset):
    if prefix in NOT_TENANT_ROUTES:
        assert not issubclass(viewset, TenantGenericViewSet)
        return
    assert issubclass(viewset, TenantGenericViewSet), (
        f"/api/{prefix}/ ({viewset.__name__}) is not a TenantGenericViewSet: compose it from "
        "DRF mixins and TenantGenericViewSet, or list it in NOT_TENANT_ROUTES with the reason"
    )
