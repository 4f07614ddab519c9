"""Tenancy helpers: the one way to scope queries, API views and admin pages to an organization.

Rules: another organization's object is a 404 (never a 403, which would confirm it exists);
viewers read, operators change, owners also manage members.
"""

from __future__ import annotations

import functools

from django.http import Http404
from rest_framework import mixins, permissions, serializers, viewsets
from rest_framework.exceptions import PermissionDenied

from festival.models import (  # noqa: F401  (the role lookups are part of tenancy's interface)
    ROLE_RANK,
    Membership,
    Organization,
    Role,
    forget_roles,
    has_role,
    organization_ids_for,
    organizations_for,
    role_in,
)


def role_message(role: str) -> str:
    return f"This needs the {role} role in the organization; your role does not allow it."


def role_required(role: str) -> PermissionDenied:
    """The one answer (403) to a member whose role is too low: it names the role needed.

    Rows of organizations the user is not in never get here: they do not exist (400 / 404).
    """
    return PermissionDenied(role_message(role))


def require_role(user, organization_id: int, role: str) -> None:
    if not has_role(user, organization_id, role):
        raise role_required(role)


# --- REST framework ------------------------------------------------------------------------------
class TenantRolePermission(permissions.BasePermission):
    """Reads need membership, writes need `write_role` in the object's organization."""

    message = role_message(Role.OPERATOR)

    def has_object_permission(self, request, view, obj) -> bool:
        needed = Role.VIEWER if request.method in permissions.SAFE_METHODS else view.write_role
        self.message = role_message(needed)  # DRF reads it from this instance on refusal
        return has_role(request.user, obj.organization_id, needed)


class TenantScopedRelatedField(serializers.PrimaryKeyRelatedField):
    """A foreign key that can only point at rows of the requesting user's organizations.

    A row of another organization reads as "does not exist", exactly like a missing id.
    """

    def get_queryset(self):
        request = self.context.get("request")
        return super().get_queryset().for_user(request.user if request else None)


class TenantGenericViewSet(viewsets.GenericViewSet):
    """The one base for every organizer viewset, full CRUD (TenantViewSet) or composed from DRF's
    mixins (`class X(mixins.ListModelMixin, TenantGenericViewSet)`): tenancy by construction.

    - the queryset is always the user's organizations' rows (`queryset.for_user`);
    - permissions always include authentication and the role rule (TenantRolePermission: reads
      need membership, writes `write_role`); `permission_classes` may only add to them;
    - a subclass that overrides `get_queryset`, `get_object` or `get_permissions` fails at import
      time. A deliberate exception overrides `unscoped_queryset_escape_hatch` instead, whose
      name says what it does (and reviewers grep for it).

    Subclasses set `queryset` (of a TenantModel) and may override `organization_for_create`.
    """

    GUARDED = ("get_queryset", "get_object", "get_permissions")
    REQUIRED_PERMISSIONS = (permissions.IsAuthenticated, TenantRolePermission)

    permission_classes = list(REQUIRED_PERMISSIONS)
    write_role: str = Role.OPERATOR

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        overridden = [
            name
            for name in cls.GUARDED
            if getattr(cls, name) is not getattr(TenantGenericViewSet, name)
        ]
        if overridden:
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__} overrides {', '.join(overridden)}: a tenant "
                "viewset's rows and permissions come from TenantGenericViewSet. Add permissions "
                "with permission_classes; for a deliberate exception to tenant scoping, override "
                "unscoped_queryset_escape_hatch instead."
            )
        if cls.perform_create is mixins.CreateModelMixin.perform_create:
            # DRF's mixins come before the base in a composed class (and in TenantViewSet), so
            # their plain save would shadow the tenant create (organization filled, role checked).
            cls.perform_create = TenantGenericViewSet.perform_create
        queryset = getattr(cls, "queryset", None)
        if queryset is not None and not hasattr(queryset, "for_user"):
            raise TypeError(
                f"{cls.__module__}.{cls.__qualname__}.queryset is not a TenantQuerySet "
                "(no for_user): a tenant viewset lists tenant rows only."
            )

    def unscoped_queryset_escape_hatch(self):
        """Return a queryset to use INSTEAD of the tenant-scoped one (None: stay scoped). Every
        override is a hole in tenancy: it must say why, and come with its cross-tenant test."""
        return None

    def get_queryset(self):
        unscoped = self.unscoped_queryset_escape_hatch()
        if unscoped is not None:
            return unscoped
        return super().get_queryset().for_user(self.request.user)

    def get_object(self):
        return super().get_object()

    def get_permissions(self):
        extra = [p for p in self.permission_classes if p not in self.REQUIRED_PERMISSIONS]
        return [permission() for permission in (*self.REQUIRED_PERMISSIONS, *extra)]

    def organization_for_create(self, serializer) -> Organization:
        raise NotImplementedError

    def perform_create(self, serializer) -> None:
        organization = self.organization_for_create(serializer)
        require_role(self.request.user, organization.id, self.write_role)
        serializer.save(organization=organization)


class TenantViewSet(
    mixins.CreateModelMixin,
    mixins.RetrieveModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    mixins.ListModelMixin,
    TenantGenericViewSet,
):
    """A full CRUD tenant viewset: TenantGenericViewSet with every DRF model mixin."""


# --- Django admin --------------------------------------------------------------------------------
class HideOtherTenantsAdminMixin:
    """An object outside the user's scoped queryset is a 404 on every object page, before any
    permission check could answer 403 and so confirm that it exists."""

    def _ensure_visible(self, request, object_id) -> None:
        if object_id is None:
            return
        try:
            visible = self.get_queryset(request).filter(pk=object_id).exists()
        except (ValueError, TypeError):
            visible = False
        if not visible:
            raise Http404(f"No {self.model._meta.verbose_name} with id {object_id!r}.")

    def change_view(self, request, object_id, form_url="", extra_context=None):
        self._ensure_visible(request, object_id)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request, object_id, extra_context=None):
        self._ensure_visible(request, object_id)
        return super().delete_view(request, object_id, extra_context)

    def history_view(self, request, object_id, extra_context=None):
        self._ensure_visible(request, object_id)
        return super().history_view(request, object_id, extra_context)


def _writable_rows_only(action):
    @functools.wraps(action)
    def run(modeladmin, request, queryset):
        role = modeladmin.write_role
        writable = queryset.filter(organization_id__in=organization_ids_for(request.user, role))
        skipped = queryset.count() - writable.count()
        if skipped:
            modeladmin.message_user(
                request, f"{skipped} selected row(s) skipped: {role_message(role)}", "WARNING"
            )
        return action(modeladmin, request, writable)

    return run


class TenantAdminMixin(HideOtherTenantsAdminMixin):
    """Scopes an admin to the staff user's organizations and fills in `organization`.

    Permissions follow roles rather than Django's per-model permissions, so a viewer sees the
    pages read-only and an operator can change them. Another organization's object is a 404.
    """

    # Where to take the organization from when the form does not show it ("festival", "stage").
    organization_source: str | None = None
    write_role: str = Role.OPERATOR

    def _is_super(self, request) -> bool:
        return request.user.is_active and request.user.is_superuser

    def get_queryset(self, request):
        queryset = super().get_queryset(request)
        if self._is_super(request):
            return queryset
        return queryset.filter(organization_id__in=organization_ids_for(request.user))

    def get_list_filter(self, request):
        """Relation filters list only rows in the scoped changelist, never other tenants' names."""
        from django.contrib.admin import RelatedOnlyFieldListFilter

        scoped = []
        for entry in super().get_list_filter(request):
            if isinstance(entry, str) and self._is_relation(entry):
                scoped.append((entry, RelatedOnlyFieldListFilter))
            else:
                scoped.append(entry)
        return scoped

    def _is_relation(self, path: str) -> bool:
        from django.contrib.admin.utils import get_fields_from_path

        try:
            return get_fields_from_path(self.model, path)[-1].is_relation
        except Exception:  # noqa: BLE001 - not a model path; leave the filter as it is
            return False

    def get_actions(self, request):
        """Every action, "delete selected" included, runs only on the selected rows where the user
        holds `write_role` (the others are skipped and counted); a user who holds it nowhere is
        offered none. So no action can forget its role check (issue 11: a viewer could run
        "Refresh from SageMaker")."""
        actions = super().get_actions(request)
        if self._is_super(request):
            return actions
        if not organization_ids_for(request.user, self.write_role):
            return {}
        return {
            name: (_writable_rows_only(func), action_name, description)
            for name, (func, action_name, description) in actions.items()
        }

    def get_exclude(self, request, obj=None):
        excluded = list(super().get_exclude(request, obj) or [])
        if not self._is_super(request) and self.organization_source:
            excluded.append("organization")
        return excluded

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        if not self._is_super(request):
            model = db_field.related_model
            if model is Organization:
                kwargs["queryset"] = organizations_for(request.user, self.write_role)
            elif hasattr(model.objects, "for_user"):
                kwargs["queryset"] = model.objects.for_user(request.user, self.write_role)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def save_model(self, request, obj, form, change):
        if self.organization_source and not obj.organization_id:
            source = getattr(obj, self.organization_source)
            obj.organization_id = source.organization_id
        super().save_model(request, obj, form, change)

    # Role-based permissions.
    def has_module_permission(self, request):
        return self._is_super(request) or bool(organization_ids_for(request.user))

    def has_view_permission(self, request, obj=None):
        if self._is_super(request):
            return True
        if obj is None:
            return bool(organization_ids_for(request.user))
        return obj.organization_id in organization_ids_for(request.user)

    def has_change_permission(self, request, obj=None):
        if self._is_super(request):
            return True
        allowed = organization_ids_for(request.user, self.write_role)
        return bool(allowed) if obj is None else obj.organization_id in allowed

    def has_add_permission(self, request, *args):
        return self.has_change_permission(request)

    def has_delete_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)
