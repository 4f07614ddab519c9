"""Organizer API for devices (cameras), edge releases and deployments; the device telemetry
endpoint. Thin: validation and permissions here, work in devices.services."""

from __future__ import annotations

import hmac

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.authentication import BaseAuthentication
from rest_framework.decorators import action
from rest_framework.exceptions import (
    AuthenticationFailed,
    NotAuthenticated,
    ValidationError,
)
from rest_framework.response import Response
from rest_framework.views import APIView

from devices import selectors, services
from devices.models import Deployment, Device, EdgeRelease, Rollout
from edge_package.contracts import TELEMETRY_SCHEMA, validate_edge_config
from edge_package.redact import redact_source
from festival.api_schema import error_response
from festival.models import Festival, Role
from festival.tenancy import (
    TenantGenericViewSet,
    TenantScopedRelatedField,
    TenantViewSet,
    organization_ids_for,
    require_role,
    role_required,
)
from festival.throttling import FixedWindowRateThrottle
from stages.models import Stage


class ReleaseBriefSerializer(serializers.ModelSerializer):
    class Meta:
        model = EdgeRelease
        fields = ["id", "version", "sha256"]


class DeviceSerializer(serializers.ModelSerializer):
    festival = TenantScopedRelatedField(queryset=Festival.objects.all())
    stage = TenantScopedRelatedField(queryset=Stage.objects.all(), allow_null=True, required=False)
    effective_config = serializers.JSONField(read_only=True)
    current_release = ReleaseBriefSerializer(read_only=True, allow_null=True)
    registered = serializers.SerializerMethodField()
    video_source = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        max_length=2000,
        help_text="rtsp://user:password@host/stream, a webcam index or a file; write-only.",
    )
    video_source_redacted = serializers.SerializerMethodField(
        help_text="The video source as logs show it: the password replaced by ***."
    )

    class Meta:
        model = Device
        fields = [
            "id",
            "festival",
            "stage",
            "name",
            "thing_name",
            "platform",
            "video_source",
            "video_source_redacted",
            "status",
            "registered",
            "last_seen_at",
            "software_version",
            "health",
            "input_alerts",
            "canary",
            "current_release",
            "config",
            "effective_config",
            "shadow_synced_at",
            "shadow_error",
            "created_at",
        ]
        read_only_fields = [
            "status",
            "last_seen_at",
            "software_version",
            "health",
            "input_alerts",
            "shadow_synced_at",
            "shadow_error",
            "created_at",
        ]

    def get_registered(self, device) -> bool:
        return bool(device.registered_at)

    def get_video_source_redacted(self, device) -> str:
        return redact_source(device.video_source)

    def validate_config(self, value):
        problems = validate_edge_config(value)
        if problems:
            raise ValidationError(problems)
        return value

    def validate(self, attrs):
        festival = attrs.get("festival", getattr(self.instance, "festival", None))
        stage = attrs.get("stage", getattr(self.instance, "stage", None))
        if self.instance is not None and festival.pk != self.instance.festival_id:
            raise ValidationError(
                {"festival": "A device cannot move to another festival; register it again there."}
            )
        if stage is not None and stage.festival_id != festival.pk:
            raise ValidationError({"stage": "This stage belongs to another festival."})
        if (
            self.instance is not None
            and self.instance.registered_at
            and attrs.get("thing_name", self.instance.thing_name) != self.instance.thing_name
        ):
            raise ValidationError(
                {"thing_name": "A registered device keeps its thing name; deregister it first."}
            )
        return attrs


class DeploymentSerializer(serializers.ModelSerializer):
    device = TenantScopedRelatedField(queryset=Device.objects.all())
    release = serializers.PrimaryKeyRelatedField(
        queryset=EdgeRelease.objects.all(),
        required=False,
        help_text="Empty: the newest release.",
    )
    release_version = serializers.CharField(source="release.version", read_only=True)
    finished = serializers.BooleanField(read_only=True)

    class Meta:
        model = Deployment
        fields = [
            "id",
            "device",
            "release",
            "release_version",
            "platform",
            "state",
            "finished",
            "reason",
            "force",
            "held_until",
            "hold_reason",
            "rollout",
            "wave",
            "history",
            "resources",
            "rollback_of",
            "created_at",
            "updated_at",
            "finished_at",
        ]
        read_only_fields = [f for f in fields if f not in ("device", "release", "force")]


class DeviceViewSet(TenantViewSet):
    queryset = Device.objects.select_related("festival", "stage", "current_release")
    serializer_class = DeviceSerializer
    filterset_fields = ["festival", "stage", "platform", "status"]
    search_fields = ["name", "thing_name"]

    def organization_for_create(self, serializer):
        return serializer.validated_data["festival"].organization

    def perform_update(self, serializer):
        serializer.instance = services.update_device(
            serializer.instance, **serializer.validated_data
        )

    def perform_destroy(self, instance):
        services.delete_device(instance)

    @extend_schema(
        request=None,
        responses={
            201: inline_serializer(
                "CredentialsBundle",
                {"thing_name": serializers.CharField(), "files": serializers.DictField()},
            ),
            400: error_response(400),
            503: error_response(503),
        },
    )
    @action(detail=True, methods=["post"])
    def register(self, request, pk=None):
        """Create the AWS IoT thing, certificate, policy and S3 role. The response carries the
        private key and the telemetry token: this is the only time they are shown."""
        device = self.get_object()
        bundle = services.register_device(device)
        return Response(
            {"thing_name": bundle.thing_name, "files": bundle.files()},
            status=status.HTTP_201_CREATED,
        )

    @extend_schema(
        request=None,
        responses={200: DeviceSerializer, 400: error_response(400), 503: error_response(503)},
    )
    @action(detail=True, methods=["post"])
    def deregister(self, request, pk=None):
        device = self.get_object()
        services.deregister_device(device)
        return Response(self.get_serializer(device).data)

    @extend_schema(
        request=None,
        responses={201: inline_serializer("DeviceToken", {"token": serializers.CharField()})},
    )
    @action(detail=True, methods=["post"])
    def token(self, request, pk=None):
        """A new telemetry token (the previous one stops working); shown once."""
        device = self.get_object()
        return Response({"token": services.issue_device_token(device)}, status=201)


class DeploymentViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    TenantGenericViewSet,
):
    """Start a deployment (operator) and follow it (`state`, `history`, `reason`)."""

    queryset = Deployment.objects.select_related("device", "release")
    serializer_class = DeploymentSerializer
    filterset_fields = ["device", "state", "platform"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        device = serializer.validated_data["device"]
        require_role(request.user, device.organization_id, Role.OPERATOR)
        release = serializer.validated_data.get("release") or selectors.latest_release()
        if release is None:
            raise ValidationError({"release": "No edge release exists yet: build one first."})
        deployment = services.start_deployment(
            device,
            release,
            user=request.user,
            force=serializer.validated_data.get("force", False),
        )
        return Response(self.get_serializer(deployment).data, status=status.HTTP_202_ACCEPTED)


class RolloutSerializer(serializers.ModelSerializer):
    devices = TenantScopedRelatedField(
        queryset=Device.objects.all(),
        many=True,
        write_only=True,
        help_text="Cameras of one festival; those marked canary go first (none: the first).",
    )
    release = serializers.PrimaryKeyRelatedField(
        queryset=EdgeRelease.objects.all(), required=False, help_text="Empty: the newest release."
    )
    release_version = serializers.CharField(source="release.version", read_only=True)
    canaries = serializers.SlugRelatedField(many=True, read_only=True, slug_field="thing_name")
    rest = serializers.SlugRelatedField(many=True, read_only=True, slug_field="thing_name")

    class Meta:
        model = Rollout
        fields = [
            "id",
            "devices",
            "release",
            "release_version",
            "festival",
            "state",
            "force",
            "canaries",
            "rest",
            "watch_until",
            "reason",
            "history",
            "created_at",
            "finished_at",
        ]
        read_only_fields = [f for f in fields if f not in ("devices", "release", "force")]


class RolloutViewSet(
    mixins.CreateModelMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    TenantGenericViewSet,
):
    """Start a staged rollout (operator): canaries, watch, the rest; halts and rolls back."""

    queryset = Rollout.objects.select_related("festival", "release").prefetch_related(
        "canaries", "rest"
    )
    serializer_class = RolloutSerializer
    filterset_fields = ["festival", "state"]

    def create(self, request, *args, **kwargs):
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        chosen = serializer.validated_data["devices"]
        for organization_id in {d.organization_id for d in chosen}:
            require_role(request.user, organization_id, Role.OPERATOR)
        release = serializer.validated_data.get("release") or selectors.latest_release()
        if release is None:
            raise ValidationError({"release": "No edge release exists yet: build one first."})
        rollout = services.start_rollout(
            chosen,
            release,
            user=request.user,
            force=serializer.validated_data.get("force", False),
        )
        return Response(self.get_serializer(rollout).data, status=status.HTTP_202_ACCEPTED)


class EdgeReleaseSerializer(serializers.ModelSerializer):
    uri = serializers.CharField(read_only=True)

    class Meta:
        model = EdgeRelease
        fields = ["id", "version", "sha256", "uri", "size_bytes", "manifest", "created_at"]


class EdgeReleaseViewSet(viewsets.ReadOnlyModelViewSet):
    """Edge releases are global (the same software for every organization)."""

    queryset = EdgeRelease.objects.all()
    serializer_class = EdgeReleaseSerializer
    permission_classes = [permissions.IsAuthenticated]

    def get_queryset(self):
        user = self.request.user
        if user.is_superuser or organization_ids_for(user):
            return selectors.releases()
        return EdgeRelease.objects.none()

    @extend_schema(request=None, responses={201: EdgeReleaseSerializer})
    @action(detail=False, methods=["post"])
    def build(self, request):
        """Package edge_package/ (idempotent: the same content returns the existing release)."""
        user = request.user
        if not (user.is_superuser or organization_ids_for(user, Role.OPERATOR)):
            raise role_required(Role.OPERATOR)
        release = services.build_edge_release(user=user)
        return Response(self.get_serializer(release).data, status=status.HTTP_201_CREATED)


# --- telemetry ------------------------------------------------------------------------------------
class DeviceAuthentication(BaseAuthentication):
    """`Authorization: Device <token>` (standalone devices), or, for the AWS IoT rule's HTTPS
    action, `Authorization: IotRule <secret>` with `X-StagePulse-Thing: ${topic(3)}` (the IoT
    policy lets a certificate publish only on its own topic, so the topic is its identity)."""

    def authenticate(self, request):
        scheme, _, credential = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        credential = credential.strip()
        if scheme == "Device":
            device = services.device_for_token(credential)
            if device is None:
                raise AuthenticationFailed("Unknown or revoked device token.")
            return AnonymousUser(), device
        if scheme == "IotRule":
            secret = selectors.iot_rule_secret()
            if not secret or not hmac.compare_digest(credential.encode(), secret.encode()):
                raise AuthenticationFailed("Invalid IoT rule credentials.")
            thing = request.META.get("HTTP_X_STAGEPULSE_THING", "")
            device = Device.objects.select_related("festival", "stage").filter(thing_name=thing)
            device = device.first()
            if device is None:
                raise AuthenticationFailed(f"No device with thing name {thing!r}.")
            return AnonymousUser(), device
        return None

    def authenticate_header(self, request):
        return 'Device realm="telemetry"'


class DeviceAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "devices.api.DeviceAuthentication"
    name = "deviceToken"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Device <token> (issued at registration or by manage.py device_token)",
        }


class IsDevice(permissions.BasePermission):
    message = "A device token is required: Authorization: Device <token>."

    def has_permission(self, request, view):
        return isinstance(request.auth, Device)


class DeviceTelemetryThrottle(FixedWindowRateThrottle):
    """Per device (or per client address when no device is identified), counted atomically and
    exactly (festival.throttling), so parallel reports cannot slip past the limit."""

    exact = True

    def get_scope(self, view) -> str:
        return "telemetry"

    def client_ident(self, request) -> str:
        try:
            device = request.auth
        except AuthenticationFailed as exc:
            # DRF forgets a failed authentication after the first try (the request then reads as
            # anonymous); keep it so the view answers with it, not "not provided".
            request.failed_authentication = exc
            device = None
        return f"device-{device.pk}" if isinstance(device, Device) else self.get_ident(request)


class TelemetryView(APIView):
    """POST a telemetry report (edge_package.contracts.TELEMETRY_SCHEMA). The same URL is the IoT
    rule's HTTPS destination, so it also answers AWS's one-off confirmation request."""

    authentication_classes = [DeviceAuthentication]
    permission_classes = [IsDevice]
    throttle_classes: list = []  # checked first, in initial(), so bad tokens are limited too
    confirming = False

    def initial(self, request, *args, **kwargs):
        throttle = DeviceTelemetryThrottle()
        if not throttle.allow_request(request, self):
            self.throttled(request, throttle.wait())
        self.confirming = "HTTP_AUTHORIZATION" not in request.META and (
            services.is_destination_confirmation(request.data)
        )
        super().initial(request, *args, **kwargs)

    def get_permissions(self):
        return [] if self.confirming else super().get_permissions()

    def perform_authentication(self, request):
        """An unknown or revoked token says so (the throttle, which ran first, saw why)."""
        failed = getattr(request, "failed_authentication", None)
        if failed is not None:
            raise failed
        super().perform_authentication(request)

    def permission_denied(self, request, message=None, code=None):
        if not request.successful_authenticator:
            raise NotAuthenticated(IsDevice.message)
        super().permission_denied(request, message, code)

    @extend_schema(
        request={"application/json": {k: v for k, v in TELEMETRY_SCHEMA.items() if k != "$schema"}},
        responses={
            202: inline_serializer(
                "TelemetryAccepted",
                {
                    "accepted": serializers.BooleanField(),
                    "device": serializers.CharField(),
                    "status": serializers.CharField(),
                    "desired": serializers.DictField(),
                },
            ),
            400: OpenApiResponse(description="schema problems, one per field"),
            401: OpenApiResponse(description="unknown or revoked device token"),
            429: OpenApiResponse(description="too many reports from this device"),
        },
    )
    def post(self, request):
        if self.confirming:
            try:
                arn = services.confirm_rule_destination(request.data)
            except services.ConfirmationRejected as exc:
                raise ValidationError({"confirmation": [str(exc)]}) from exc
            return Response({"confirmed": True, "destination": arn})
        device = request.auth
        try:
            device = services.record_telemetry(device, request.data)
        except services.TelemetryRejected as exc:
            raise ValidationError({"payload": exc.problems}) from exc
        return Response(
            {
                "accepted": True,
                "device": device.thing_name,
                "status": device.status,
                "desired": device.effective_config,
            },
            status=status.HTTP_202_ACCEPTED,
        )
