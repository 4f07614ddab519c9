"""Foreign-key filter choices scoped to the requesting user: the project's filter backend.

Its own module because REST framework imports the filter backend while it builds its generic
views, before festival.tenancy (which needs those views) can finish importing.
"""

from __future__ import annotations

import django_filters
from django.core.exceptions import ImproperlyConfigured
from django_filters.filters import QuerySetRequestMixin
from django_filters.rest_framework import DjangoFilterBackend
from rest_framework.exceptions import ValidationError

from festival.models import Organization


def visible_rows(queryset, user):
    """`queryset` cut down to the rows `user` may see: the one rule for every choice list."""
    if queryset.model is Organization:  # the user's memberships (one per organization)
        if user is None or not user.is_authenticated:
            return queryset.none()
        return queryset if user.is_superuser else queryset.filter(memberships__user=user)
    if hasattr(queryset, "for_user"):
        return queryset.for_user(user)
    raise ImproperlyConfigured(
        f"{queryset.model.__name__} has no for_user(): a filter or field choosing among its rows "
        "cannot be scoped to the requesting user's organizations."
    )


class TenantFilterSet(django_filters.FilterSet):
    """Every foreign-key filter chooses only among rows the requesting user may see.

    Another organization's id is then "not a valid choice" (400), exactly like an id that does
    not exist, so filters cannot be used to learn which ids exist on the platform.
    """

    def __init__(self, *args, request=None, **kwargs):
        super().__init__(*args, request=request, **kwargs)
        user = getattr(request, "user", None)
        for flt in self.filters.values():
            if isinstance(flt, QuerySetRequestMixin):  # model (multiple) choice filters
                flt.queryset = visible_rows(flt.get_queryset(request), user)


class TenantFilterBackend(DjangoFilterBackend):
    """The project's filter backend (settings): generated filtersets are TenantFilterSets, and a
    hand-written `filterset_class` must be one, so no viewset can filter on unscoped choices."""

    filterset_base = TenantFilterSet

    def get_filterset_class(self, view, queryset=None):
        filterset_class = super().get_filterset_class(view, queryset)
        if filterset_class is not None and not issubclass(filterset_class, TenantFilterSet):
            raise ImproperlyConfigured(
                f"{view.__class__.__name__}.filterset_class must subclass TenantFilterSet."
            )
        return filterset_class

    BOOLEANS = ("true", "false", "True", "False")

    def get_filterset(self, request, queryset, view):
        """A boolean filter given anything but true/false is a 400: django-filter would drop it
        and answer the unfiltered list, which reads as a filtered one."""
        filterset = super().get_filterset(request, queryset, view)
        if filterset is not None:
            params = request.query_params
            wrong = {
                name: ["true or false."]
                for name, field in filterset.filters.items()
                if isinstance(field, django_filters.BooleanFilter)
                and name in params
                and params[name] not in self.BOOLEANS
            }
            if wrong:
                raise ValidationError(wrong)
        return filterset
