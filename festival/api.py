"""Organizer API for organizations, members and invitations (thin: rules live in services)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed, ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from festival import selectors, services
from festival.models import Invitation, Membership, Organization, Role
from festival.tenancy import (
    TenantViewSet,
    organizations_for,
    require_role,
    role_in,
    role_required,
)


class OrganizationSerializer(serializers.ModelSerializer):
    my_role = serializers.SerializerMethodField()

    class Meta:
        model = Organization
        fields = ["id", "name", "slug", "my_role"]

    def get_my_role(self, organization) -> str:
        return role_in(self.context["request"].user, organization.id)


class OrganizationViewSet(viewsets.ReadOnlyModelViewSet):
    """The organizations you belong to, with your role in each."""

    serializer_class = OrganizationSerializer
    permission_classes = [IsAuthenticated]
    search_fields = ["name", "slug"]

    def get_queryset(self):
        return organizations_for(self.request.user)


class ScopedOrganizationField(serializers.SlugRelatedField):
    """An organization (by slug) the user belongs to; others don't exist (400, like a typo).

    The role the change needs is the view's check (403 naming the role), so a member with too
    low a role is told why instead of being told the organization does not exist.
    """

    def __init__(self, **kwargs):
        super().__init__(slug_field="slug", **kwargs)

    def get_queryset(self):
        return organizations_for(self.context["request"].user)


def default_organization(user, min_role: str, given: Organization | None) -> Organization:
    """The organization a new row goes to (the one given, or the user's only one where they hold
    `min_role`), with the user's role there checked: 403 naming the role when too low."""
    if given is None:
        candidates = list(organizations_for(user, min_role)[:2])
        if len(candidates) > 1:
            raise ValidationError(
                {"organization": ["Say which organization (slug): you belong to several."]}
            )
        if not candidates:
            raise role_required(min_role)
        given = candidates[0]
    require_role(user, given.id, min_role)
    return given


def query_flag(request, name: str) -> bool:
    return request.query_params.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


# --- Members and invitations ---------------------------------------------------------------------
class MembershipSerializer(serializers.ModelSerializer):
    organization = serializers.SlugRelatedField(slug_field="slug", read_only=True)
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "organization", "username", "email", "role", "created_at"]
        read_only_fields = ["created_at"]


class MembershipViewSet(TenantViewSet):
    """Members of your organizations. Everyone may read; owners change roles and remove people.
    People join by invitation (/invitations/), never by being added."""

    queryset = Membership.objects.select_related("user", "organization")
    serializer_class = MembershipSerializer
    write_role = Role.OWNER
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["organization", "role"]
    search_fields = ["user__username", "user__email"]

    @extend_schema(exclude=True)  # not an operation: it only says where joining happens
    def create(self, request, *args, **kwargs):
        raise MethodNotAllowed(
            "POST", detail="People join by invitation: POST /api/v1/invitations/, they accept."
        )

    def perform_update(self, serializer):
        role = serializer.validated_data.get("role", serializer.instance.role)
        serializer.instance = services.change_role(serializer.instance, role)

    def perform_destroy(self, instance):
        services.remove_member(instance)


class InvitationSerializer(serializers.ModelSerializer):
    organization = ScopedOrganizationField(required=False)
    invitee = serializers.CharField(
        max_length=254, help_text="Username or e-mail of the person to invite."
    )
    invited_by = serializers.CharField(source="invited_by.username", read_only=True, default="")

    class Meta:
        model = Invitation
        fields = [
            "id",
            "organization",
            "invitee",
            "role",
            "status",
            "invited_by",
            "created_at",
            "expires_at",
        ]
        read_only_fields = ["status", "created_at", "expires_at"]


class InvitationViewSet(TenantViewSet):
    """Invitations of your organizations. Owners invite a username or e-mail and may withdraw a
    pending invitation; the answer is the same whether or not such an account exists."""

    queryset = Invitation.objects.select_related("organization", "invited_by")
    serializer_class = InvitationSerializer
    write_role = Role.OWNER
    http_method_names = ["get", "post", "delete", "head", "options"]
    filterset_fields = ["organization", "status"]

    def perform_create(self, serializer):
        data = serializer.validated_data
        organization = default_organization(
            self.request.user, self.write_role, data.get("organization")
        )
        serializer.instance = services.invite(
            organization,
            data["invitee"],
            data.get("role", Role.VIEWER),
            invited_by=self.request.user,
        )

    def perform_destroy(self, instance):
        services.revoke_invitation(instance)


class MyInvitationViewSet(viewsets.ReadOnlyModelViewSet):
    """Invitations addressed to your username or e-mail: accept to join, or decline."""

    serializer_class = InvitationSerializer
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return selectors.invitations_for(self.request.user)

    @extend_schema(request=None, responses={201: MembershipSerializer})
    @action(detail=True, methods=["post"])
    def accept(self, request, pk=None):
        membership = services.accept_invitation(self.get_object(), request.user)
        return Response(MembershipSerializer(membership).data, status=201)

    @extend_schema(request=None, responses={204: None})
    @action(detail=True, methods=["post"])
    def decline(self, request, pk=None):
        services.decline_invitation(self.get_object(), request.user)
        return Response(status=204)
