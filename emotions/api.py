"""Organizer API for set reports (thin: the work is in emotions.reports)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import MethodNotAllowed, ValidationError
from rest_framework.response import Response

from emotions.models import SetReport
from emotions.reports import services
from festival.tenancy import TenantViewSet

ORGANIZER_CACHE_CONTROL = "private, no-cache"


class SetReportSerializer(serializers.ModelSerializer):
    artist = serializers.CharField(source="set.artist", read_only=True)
    stage_name = serializers.CharField(source="stage.name", read_only=True)
    starts_at = serializers.DateTimeField(source="set.starts_at", read_only=True)
    ends_at = serializers.DateTimeField(source="set.ends_at", read_only=True)
    page_url = serializers.SerializerMethodField()
    status = serializers.CharField(
        read_only=True, help_text="pending, building, ready or failed"
    )  # a plain string: "status" enums of other models would collide in the OpenAPI names

    class Meta:
        model = SetReport
        fields = [
            "id",
            "festival",
            "stage",
            "stage_name",
            "set",
            "artist",
            "starts_at",
            "ends_at",
            "status",
            "built_at",
            "builds",
            "rebuild_reason",
            "error",
            "announced_at",
            "published",
            "suppressed",
            "faces",
            "minutes_with_data",
            "vibe",
            "top_expression",
            "peak_vibe",
            "peak_at",
            "low_vibe",
            "low_at",
            "page_url",
        ]
        read_only_fields = fields

    def get_page_url(self, report) -> str:
        from django.urls import reverse

        return reverse("set-report-page", args=[report.pk])


class SetReportDetailSerializer(SetReportSerializer):
    payload = serializers.JSONField(read_only=True)

    class Meta(SetReportSerializer.Meta):
        fields = [*SetReportSerializer.Meta.fields, "payload"]
        read_only_fields = fields


class RebuildSerializer(serializers.Serializer):
    reason = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class PublishSerializer(serializers.Serializer):
    published = serializers.BooleanField()


@extend_schema_view(create=extend_schema(exclude=True))  # reports are never POSTed: a 405
class SetReportViewSet(TenantViewSet):
    """Reports of your organizations' sets. Built automatically after each set; operators can
    request a rebuild and publish a report to the fan API."""

    queryset = SetReport.objects.select_related("set", "stage", "festival")
    serializer_class = SetReportSerializer
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["festival", "stage", "set", "status", "published"]
    ordering_fields = ["set__starts_at", "vibe", "faces"]

    def get_serializer_class(self):
        if self.action == "retrieve":
            return SetReportDetailSerializer
        if self.action == "rebuild":
            return RebuildSerializer
        if self.action == "publish":
            return PublishSerializer
        return SetReportSerializer

    def create(self, request, *args, **kwargs):
        raise MethodNotAllowed("POST", detail="Reports are created by the service after a set.")

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = ORGANIZER_CACHE_CONTROL
        response["Vary"] = "Authorization, Cookie"
        return response

    @extend_schema(request=RebuildSerializer, responses=SetReportSerializer)
    @action(detail=True, methods=["post"])
    def rebuild(self, request, pk=None):
        report = self.get_object()
        body = RebuildSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        reason = body.validated_data["reason"] or f"requested by {request.user.get_username()}"
        queued = services.queue_rebuild(report, reason)
        data = SetReportSerializer(report, context={"request": request}).data
        return Response(
            {**data, "queued": queued},
            status=status.HTTP_202_ACCEPTED,
        )

    @extend_schema(request=PublishSerializer, responses=SetReportSerializer)
    @action(detail=True, methods=["post"])
    def publish(self, request, pk=None):
        report = self.get_object()
        body = PublishSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        try:
            services.set_published(report, body.validated_data["published"])
        except services.ReportError as error:
            raise ValidationError({"published": [str(error)]}) from error
        return Response(SetReportSerializer(report, context={"request": request}).data)
