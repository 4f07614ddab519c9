"""Organizer API for festivals, with the lineup CSV export and import (thin: the rules live in
operations.services and stages.services)."""

from __future__ import annotations

from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import parsers, serializers
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from festival.api import ScopedOrganizationField, default_organization, query_flag
from festival.api_common import error_response
from festival.models import Festival, Role, check_festival_dates
from festival.tenancy import TenantViewSet, require_role
from operations import services
from stages import services as lineup_services


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
        check_festival_dates(
            attrs.get("starts_on", getattr(self.instance, "starts_on", None)),
            attrs.get("ends_on", getattr(self.instance, "ends_on", None)),
        )
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


LINEUP_IMPORT_REPORT_FIELDS = {
    "ok": serializers.BooleanField(),
    "dry_run": serializers.BooleanField(),
    "created": serializers.IntegerField(),
    "unchanged": serializers.IntegerField(),
    "deleted": serializers.IntegerField(),
    "errors": serializers.ListField(child=serializers.DictField()),
    "blocked_sets": serializers.ListField(child=serializers.DictField()),
    "warnings": serializers.ListField(child=serializers.DictField()),
}
LINEUP_IMPORT_REPORT = inline_serializer("LineupImportReport", fields=LINEUP_IMPORT_REPORT_FIELDS)
# A refused import answers the one error format, with the line-by-line report inside.
LINEUP_IMPORT_ERROR = inline_serializer(
    "LineupImportError",
    fields={
        "error": inline_serializer(
            "LineupImportErrorBody",
            fields={
                "status": serializers.IntegerField(),
                "code": serializers.CharField(),
                "message": serializers.CharField(),
                "report": inline_serializer(
                    "LineupImportRefusedReport",
                    fields=LINEUP_IMPORT_REPORT_FIELDS,
                    required=False,
                    help_text="Absent when no CSV was sent at all.",
                ),
            },
        )
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

    def perform_update(self, serializer):
        serializer.instance = services.update_festival(
            serializer.instance, **serializer.validated_data
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
        responses={200: LINEUP_IMPORT_REPORT, 400: LINEUP_IMPORT_ERROR},
    )
    @action(
        detail=True,
        methods=["post"],
        url_path="lineup/import",
        parser_classes=[parsers.MultiPartParser, parsers.FormParser, CsvTextParser],
    )
    def lineup_import(self, request, pk=None):
        festival = self.get_object()
        require_role(request.user, festival.organization_id, Role.OPERATOR)
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
