"""Organizer API for organizations, members and festivals (thin: rules live in services)."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import transaction
from django.db.models import Q
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import parsers, serializers, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from festival.api_common import error_response
from festival.models import Festival, Membership, Organization, Role
from festival.tenancy import (
    TenantRolePermission,
    TenantViewSet,
    has_role,
    organizations_for,
    role_in,
)
from stages import services as lineup_services


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
    """An organization (by slug) where the user holds at least `min_role`; others don't exist."""

    def __init__(self, min_role: str = Role.OPERATOR, **kwargs):
        self.min_role = min_role
        super().__init__(slug_field="slug", **kwargs)

    def get_queryset(self):
        return organizations_for(self.context["request"].user, self.min_role)


def default_organization(user, min_role: str, given: Organization | None) -> Organization:
    """The organization a new row goes to: the one given, or the user's only one."""
    if given is not None:
        return given
    candidates = list(organizations_for(user, min_role)[:2])
    if len(candidates) == 1:
        return candidates[0]
    raise ValidationError(
        {
            "organization": [
                "Say which organization (slug): you belong to several."
                if candidates
                else "You are not an operator of any organization."
            ]
        }
    )


def query_flag(request, name: str) -> bool:
    return request.query_params.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


# --- Members -------------------------------------------------------------------------------------
class MembershipSerializer(serializers.ModelSerializer):
    organization = ScopedOrganizationField(min_role=Role.OWNER, required=False)
    user = serializers.CharField(
        write_only=True, help_text="Username or e-mail of an existing StagePulse user."
    )
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.CharField(source="user.email", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "organization", "user", "username", "email", "role", "created_at"]
        read_only_fields = ["created_at"]
        validators = []  # "already a member" is checked in the view with a clear message

    def validate_user(self, value: str):
        matches = get_user_model().objects.filter(Q(username=value) | Q(email__iexact=value))
        user = matches.first()
        if user is None:
            raise ValidationError(f"No user with username or e-mail {value!r}.")
        return user

    def validate(self, attrs):
        if self.instance is not None and "user" in attrs and attrs["user"] != self.instance.user:
            raise ValidationError({"user": "Remove the membership and add the new person instead."})
        moved = "organization" in attrs and attrs["organization"] != getattr(
            self.instance, "organization", attrs["organization"]
        )
        if self.instance is not None and moved:
            raise ValidationError({"organization": "A membership cannot move organizations."})
        return attrs


class MembershipViewSet(TenantViewSet):
    """Members of your organizations. Everyone may read; owners add, change and remove."""

    queryset = Membership.objects.select_related("user", "organization")
    serializer_class = MembershipSerializer
    write_role = Role.OWNER
    filterset_fields = ["organization", "role"]
    search_fields = ["user__username", "user__email"]

    def organization_for_create(self, serializer):
        return default_organization(
            self.request.user, Role.OWNER, serializer.validated_data.get("organization")
        )

    def perform_create(self, serializer):
        organization = self.organization_for_create(serializer)
        user = serializer.validated_data["user"]
        if Membership.objects.filter(organization=organization, user=user).exists():
            raise ValidationError({"user": f"{user.username} is already a member."})
        super().perform_create(serializer)

    @transaction.atomic
    def perform_update(self, serializer):
        self._keep_an_owner(serializer.instance, serializer.validated_data.get("role"))
        serializer.save()

    @transaction.atomic
    def perform_destroy(self, instance):
        self._keep_an_owner(instance, None)
        instance.delete()

    def _keep_an_owner(self, membership: Membership, new_role) -> None:
        if membership.role != Role.OWNER or new_role == Role.OWNER:
            return
        owners = Membership.objects.select_for_update().filter(
            organization_id=membership.organization_id, role=Role.OWNER
        )
        if owners.count() <= 1:
            raise ValidationError({"role": "An organization needs at least one owner."})


# --- Festivals -----------------------------------------------------------------------------------
class FestivalSerializer(serializers.ModelSerializer):
    organization = ScopedOrganizationField(required=False)

    class Meta:
        model = Festival
        fields = [
            "id",
            "organization",
            "name",
            "slug",
            "timezone",
            "starts_on",
            "ends_on",
            "public",
            "min_faces_public",
            "crop_retention_hours",
            "analysis_mode",
            "cloudwatch_namespace",
            "crops_bucket",
            "observations_table",
            "ops_emails",
            "ops_webhook_url",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]

    def validate(self, attrs):
        starts = attrs.get("starts_on", getattr(self.instance, "starts_on", None))
        ends = attrs.get("ends_on", getattr(self.instance, "ends_on", None))
        if starts and ends and ends < starts:
            raise ValidationError({"ends_on": "The festival cannot end before it starts."})
        moved = "organization" in attrs and attrs["organization"].pk != getattr(
            self.instance, "organization_id", attrs["organization"].pk
        )
        if self.instance is not None and moved:
            raise ValidationError({"organization": "A festival cannot move organizations."})
        return attrs


class CsvTextParser(parsers.BaseParser):
    """Accepts a raw text/csv body, so `curl --data-binary @lineup.csv` works."""

    media_type = "text/csv"

    def parse(self, stream, media_type=None, parser_context=None):
        return stream.read()


LINEUP_IMPORT_REPORT = inline_serializer(
    "LineupImportReport",
    fields={
        "ok": serializers.BooleanField(),
        "dry_run": serializers.BooleanField(),
        "created": serializers.IntegerField(),
        "unchanged": serializers.IntegerField(),
        "deleted": serializers.IntegerField(),
        "errors": serializers.ListField(child=serializers.DictField()),
        "blocked_sets": serializers.ListField(child=serializers.DictField()),
        "warnings": serializers.ListField(child=serializers.DictField()),
    },
)


class FestivalViewSet(TenantViewSet):
    queryset = Festival.objects.select_related("organization")
    serializer_class = FestivalSerializer
    filterset_fields = ["organization", "public", "analysis_mode"]
    search_fields = ["name", "slug"]
    ordering_fields = ["starts_on", "name"]

    def organization_for_create(self, serializer):
        return default_organization(
            self.request.user, self.write_role, serializer.validated_data.get("organization")
        )

    @extend_schema(
        summary="Export the lineup as CSV (local festival time)",
        responses={(200, "text/csv"): OpenApiTypes.STR},
    )
    @action(detail=True, methods=["get"], url_path="lineup")
    def lineup_csv(self, request, pk=None):
        festival = self.get_object()
        response = HttpResponse(lineup_services.export_lineup(festival), content_type="text/csv")
        response["Content-Disposition"] = f'attachment; filename="{festival.slug}-lineup.csv"'
        return response

    @extend_schema(
        summary="Import a lineup from CSV (all-or-nothing, line-by-line report)",
        parameters=[
            OpenApiParameter("replace", bool, description="Make the lineup exactly the file."),
            OpenApiParameter("dry_run", bool, description="Validate and report; write nothing."),
            OpenApiParameter(
                "force",
                bool,
                description="With replace: also delete sets that have a report (and the report).",
            ),
        ],
        request={
            "multipart/form-data": inline_serializer(
                "LineupUpload", fields={"file": serializers.FileField()}
            ),
            "text/csv": OpenApiTypes.STR,
        },
        responses={200: LINEUP_IMPORT_REPORT, 400: LINEUP_IMPORT_REPORT},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="lineup/import",
        parser_classes=[parsers.MultiPartParser, parsers.FormParser, CsvTextParser],
    )
    def lineup_import(self, request, pk=None):
        festival = self.get_object()
        if not has_role(request.user, festival.organization_id, Role.OPERATOR):
            return error_response(403, "permission_denied", TenantRolePermission.message)
        upload = request.data.get("file") if hasattr(request.data, "get") else None
        content = upload.read() if upload is not None else request.data
        if upload is None and (not isinstance(content, (bytes, str)) or not content):
            return error_response(
                400, "invalid", "Send a CSV file (form field 'file') or a text/csv body."
            )
        result = lineup_services.import_lineup(
            festival,
            content,
            replace=query_flag(request, "replace"),
            dry_run=query_flag(request, "dry_run"),
            force=query_flag(request, "force"),
        )
        if not result.ok:
            first = result.errors[0]
            return error_response(
                400,
                "lineup_invalid",
                f"{len(result.errors)} problem(s); nothing was imported. First: line "
                f"{first.line}: {first.message}",
                report=result.as_dict(),
            )
        return Response(result.as_dict())
