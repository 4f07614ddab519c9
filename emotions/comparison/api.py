"""Organizer API for comparison runs (thin: the work is in emotions.comparison.services)."""

from __future__ import annotations

from django.core.exceptions import ValidationError as DjangoValidationError
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response

from devices.models import Device
from emotions.comparison import selectors, services
from emotions.models import ComparisonRun
from festival.models import Festival, Role
from festival.tenancy import TenantGenericViewSet, TenantScopedRelatedField, require_role

ORGANIZER_CACHE_CONTROL = "private, no-cache"


class ComparisonRunSerializer(serializers.ModelSerializer):
    festival = TenantScopedRelatedField(
        queryset=Festival.objects.all(), help_text="The festival whose cameras take part."
    )
    devices = TenantScopedRelatedField(
        queryset=Device.objects.all(),
        many=True,
        help_text="Cameras of that festival (cloud or edge mode); one run at a time per camera.",
    )
    starts_at = serializers.DateTimeField(
        required=False, help_text="Start of the window (default: now)."
    )
    ends_at = serializers.DateTimeField(help_text="End of the window (at most 7 days after start).")
    sample_rate = serializers.FloatField(
        min_value=0.001,
        max_value=1.0,
        default=0.1,
        help_text="Share of each camera's crops read by both backends.",
    )
    status = serializers.SerializerMethodField(
        help_text="scheduled, running, finished or cancelled"
    )
    page_url = serializers.SerializerMethodField(help_text="The run's page with charts.")

    class Meta:
        model = ComparisonRun
        fields = [
            "id",
            "key",
            "name",
            "festival",
            "devices",
            "starts_at",
            "ends_at",
            "sample_rate",
            "status",
            "cancelled_at",
            "cancel_reason",
            "pairs",
            "refused",
            "result_at",
            "created_at",
            "page_url",
        ]
        read_only_fields = [
            "key", "cancelled_at", "cancel_reason", "pairs", "refused", "result_at", "created_at"
        ]  # fmt: skip

    def get_status(self, run) -> str:
        return run.status_at(timezone.now())

    def get_page_url(self, run) -> str:
        return reverse("comparison-page", args=[run.pk])


class HourSerializer(serializers.Serializer):
    hour = serializers.DateTimeField(help_text="Start of the hour (UTC).")
    faces = serializers.IntegerField(help_text="Faces the run's cameras sent in that hour.")
    cloud_bytes = serializers.IntegerField(
        allow_null=True, help_text="Bytes cloud mode sends for those faces (crops)."
    )
    edge_bytes = serializers.IntegerField(
        allow_null=True, help_text="Bytes edge mode sends for those faces (scores)."
    )
    run_extra_bytes = serializers.IntegerField(
        help_text="Extra crop bytes edge-mode cameras uploaded for the run."
    )
    run_rekognition_calls = serializers.FloatField(help_text="DetectFaces calls the run made.")
    run_cost_usd = serializers.FloatField(help_text="Their cost at the configured price.")
    cloud_rekognition_calls = serializers.FloatField(
        allow_null=True, help_text="DetectFaces calls cloud mode needs for all those faces."
    )
    cloud_cost_usd = serializers.FloatField(allow_null=True, help_text="Their cost.")


class LatencySerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Faces measured.")
    p50_s = serializers.FloatField(allow_null=True, help_text="Median capture to visible, s.")
    p95_s = serializers.FloatField(allow_null=True, help_text="95th percentile, s.")


class RecommendationSerializer(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["edge", "cloud", "undecided"])
    headline = serializers.CharField()
    reasons = serializers.ListField(child=serializers.CharField())


class ComparisonResultSerializer(serializers.Serializer):
    """The stored result (docs/comparison.md explains every figure)."""

    computed_at = serializers.DateTimeField(allow_null=True)
    status = serializers.CharField()
    pairs = serializers.IntegerField(help_text="Sampled faces stored.")
    modes = serializers.DictField(
        child=serializers.IntegerField(), help_text="Pairs by camera mode."
    )
    rekognition_available = serializers.BooleanField(
        help_text="False: no Rekognition (the demo), so agreement is not measured."
    )
    rekognition_missing_reasons = serializers.ListField(child=serializers.CharField())
    camera_reading_missing = serializers.DictField(
        required=False,
        help_text="pairs without the camera's model's reading, and why (reasons, e.g. "
        "no_local_model: an older camera's cloud-mode crop, read where there is no model).",
    )
    agreement = serializers.DictField(
        help_text="labels, matrix (rows Rekognition, columns the camera's model; NO_FACE when "
        "a backend saw none), share (top expression agrees; null without Rekognition), faces."
    )
    vibe = serializers.DictField(
        help_text="minutes [{minute, pairs, rekognition, local, compared}], correlation "
        "(Pearson r of the compared minutes; null under 3), compared_minutes."
    )
    faces_seen = serializers.DictField(
        child=serializers.IntegerField(),
        help_text="pairs, both, camera_only (Rekognition saw no face), rekognition_extra, "
        "camera_model_unread, rekognition_unread.",
    )
    price_usd_per_image = serializers.FloatField()
    calls_per_crop = serializers.FloatField(allow_null=True)
    bytes_per_face = serializers.DictField(child=serializers.IntegerField(allow_null=True))
    hours = HourSerializer(many=True)
    latency = serializers.DictField(child=LatencySerializer(), help_text="cloud and edge.")
    projected_cost_usd_per_hour = serializers.FloatField(allow_null=True)
    refused = serializers.DictField(child=serializers.IntegerField())
    recommendation = RecommendationSerializer()


@extend_schema_view(
    list=extend_schema(summary="Comparison runs of your organizations"),
    retrieve=extend_schema(summary="One comparison run"),
    create=extend_schema(
        summary="Start a comparison run (operator)",
        description="The chosen cameras sample crops in the window; each sampled crop is read "
        "by Rekognition and the camera's model. 400 names every bad field.",
    ),
)
class ComparisonRunViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    TenantGenericViewSet,
):
    """Cloud or edge? Runs that read a sample of crops with both backends, and their result."""

    queryset = ComparisonRun.objects.select_related("festival").prefetch_related("devices")
    serializer_class = ComparisonRunSerializer
    filterset_fields = ["festival"]

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = ORGANIZER_CACHE_CONTROL
        response["Vary"] = "Authorization, Cookie"
        return response

    def create(self, request, *args, **kwargs):
        body = self.get_serializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        require_role(request.user, data["festival"].organization_id, Role.OPERATOR)
        try:
            run = services.start_comparison(
                data["festival"],
                data["devices"],
                starts_at=data.get("starts_at"),
                ends_at=data["ends_at"],
                sample_rate=data["sample_rate"],
                name=data.get("name", ""),
                user=request.user,
            )
        except DjangoValidationError as exc:
            raise ValidationError(exc.message_dict) from exc
        return Response(self.get_serializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(
        request=None,
        responses={
            200: ComparisonRunSerializer,
            400: OpenApiResponse(description="The run is over already."),
        },
        summary="Cancel a run now (operator): cameras stop sampling; the pairs so far stay",
    )
    @action(detail=True, methods=["post"])
    def cancel(self, request, pk=None):
        run = self.get_object()
        try:
            services.cancel_comparison(run)
        except DjangoValidationError as exc:
            raise ValidationError({"detail": exc.messages}) from exc
        return Response(self.get_serializer(run).data)

    @extend_schema(
        responses=ComparisonResultSerializer,
        summary="The run's result (stored; recomputed every minute while it runs)",
    )
    @action(detail=True, methods=["get"])
    def result(self, request, pk=None):
        run = self.get_object()
        # Not computed yet (a run a minute old): the same figures, read now, not stored.
        return Response(run.result or selectors.build_result(run))

    @extend_schema(
        request=None,
        responses=ComparisonResultSerializer,
        summary="Recompute the run's result now (operator)",
    )
    @action(detail=True, methods=["post"])
    def recompute(self, request, pk=None):
        run = self.get_object()
        return Response(services.compute_result(run))
