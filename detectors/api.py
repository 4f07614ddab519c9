"""Organizer API for face detectors: the model registry (upload, evaluate, promote, roll out),
labelled clips for the gate, rollouts (rollback) and SageMaker training jobs. Thin: permissions
here, work in services."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, serializers, status
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.response import Response

from detectors import selectors
from detectors.models import (
    Evaluation,
    FaceModel,
    LabelledClip,
    ModelFormat,
    ModelRollout,
    TrainingJob,
)
from detectors.services import gate, labelled_clips, registry, rollouts, training
from devices.models import Device
from festival.api import ScopedOrganizationField, default_organization
from festival.api_common import BoundedJSONParser, error_response
from festival.models import Role
from festival.tenancy import (
    TenantGenericViewSet,
    TenantScopedRelatedField,
    TenantViewSet,
    require_role,
)
from stages.models import Stage

MAX_UPLOAD_BYTES = 64 * 1024 * 1024


class EvaluationSerializer(serializers.ModelSerializer):
    class Meta:
        model = Evaluation
        fields = [
            "id",
            "face_model",
            "clip",
            "threshold",
            "recall",
            "precision",
            "fps",
            "baseline",
            "passed",
            "comparison",
            "created_at",
        ]
        read_only_fields = fields  # output only (writable relations would be unscoped selects)


class FaceModelSerializer(serializers.ModelSerializer):
    organization = ScopedOrganizationField(required=False)
    file = serializers.FileField(write_only=True, help_text="A .tflite BlazeFace model.")
    expected_sha256 = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=64
    )
    format = serializers.ChoiceField(choices=ModelFormat.choices, default=ModelFormat.TFLITE)
    uri = serializers.CharField(read_only=True)
    latest_gate = serializers.SerializerMethodField()

    class Meta:
        model = FaceModel
        fields = [
            "id",
            "organization",
            "name",
            "version",
            "source",
            "format",
            "layout",
            "input_size",
            "sha256",
            "size_bytes",
            "uri",
            "status",
            "training_job",
            "notes",
            "promoted_at",
            "created_at",
            "latest_gate",
            "file",
            "expected_sha256",
        ]
        read_only_fields = [
            "version",
            "source",
            "layout",
            "input_size",
            "sha256",
            "size_bytes",
            "status",
            "training_job",
            "promoted_at",
        ]

    def validate_file(self, value):
        if value.size > MAX_UPLOAD_BYTES:
            raise ValidationError(f"The file is larger than {MAX_UPLOAD_BYTES} bytes.")
        return value

    def get_latest_gate(self, obj) -> dict | None:
        latest = selectors.latest_gate(obj)
        return EvaluationSerializer(latest).data if latest else None


class RolloutRequestSerializer(serializers.Serializer):
    devices = TenantScopedRelatedField(queryset=Device.objects.all(), many=True, required=False)
    stage = TenantScopedRelatedField(queryset=Stage.objects.all(), required=False)


class ModelRolloutSerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelRollout
        fields = [
            "id",
            "face_model",
            "device",
            "previous_model",
            "state",
            "shadow_pushed",
            "created_at",
            "ended_at",
        ]
        # Output only: as writable relations the browsable rollback form listed every tenant's
        # models and cameras.
        read_only_fields = fields


def _organization(view, given):
    """Where a new row goes; a member whose role is too low is told which role it needs (403)."""
    return default_organization(view.request.user, view.write_role, given)


def _refused(exc: gate.PromotionRefused) -> Response:
    return error_response(
        status.HTTP_409_CONFLICT,
        "promotion_refused",
        exc.messages[0],
        evaluation=EvaluationSerializer(exc.evaluation).data,
        current=EvaluationSerializer(exc.evaluation.baseline).data,
    )


class FaceModelViewSet(TenantViewSet):
    """Face detection models of your organizations. Upload a .tflite (multipart: `file`, `name`),
    evaluate it, promote it through the gate, roll it out to cameras."""

    queryset = FaceModel.objects.select_related("organization")
    serializer_class = FaceModelSerializer
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["status", "source", "name"]
    ordering_fields = ["created_at", "version", "name"]

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        organization = _organization(self, data.get("organization"))
        serializer.instance = registry.register_model(
            organization,
            name=data["name"],
            data=data["file"].read(),
            fmt=data.get("format", ModelFormat.TFLITE),
            expected_sha256=data.get("expected_sha256", ""),
            notes=data.get("notes", ""),
            user=self.request.user,
        )

    def _writable(self):
        model = self.get_object()
        require_role(self.request.user, model.organization_id, self.write_role)
        return model

    @extend_schema(request=None, responses={201: EvaluationSerializer})
    @action(detail=True, methods=["post"])
    def evaluate(self, request, pk=None):
        """Score the model on the gate's synthetic crowd clip (recall, precision, fps)."""
        evaluation = gate.evaluate_model(self._writable(), user=request.user)
        return Response(EvaluationSerializer(evaluation).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses={200: EvaluationSerializer})
    @action(detail=True, methods=["post"])
    def promote(self, request, pk=None):
        """Run the gate against the current model; 409 with both figure sets when refused."""
        model = self._writable()
        try:
            evaluation = gate.promote_model(model, user=request.user)
        except gate.PromotionRefused as exc:
            return _refused(exc)
        return Response(EvaluationSerializer(evaluation).data)

    @extend_schema(
        request=RolloutRequestSerializer, responses={201: ModelRolloutSerializer(many=True)}
    )
    @action(detail=True, methods=["post"])
    def rollout(self, request, pk=None):
        """Send the promoted model to cameras (`devices`: ids) or to every camera of a `stage`."""
        model = self._writable()
        body = RolloutRequestSerializer(data=request.data, context={"request": request})
        body.is_valid(raise_exception=True)
        started = rollouts.roll_out(
            model,
            devices=body.validated_data.get("devices"),
            stage=body.validated_data.get("stage"),
            user=request.user,
        )
        return Response(
            ModelRolloutSerializer(started, many=True).data, status=status.HTTP_201_CREATED
        )


class ModelRolloutViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantGenericViewSet):
    """Which model each camera was sent; `rollback` returns a camera to its previous model."""

    queryset = ModelRollout.objects.select_related("face_model", "device")
    serializer_class = ModelRolloutSerializer
    write_role = Role.OPERATOR
    filterset_fields = ["device", "face_model", "state"]

    @extend_schema(request=None, responses={200: ModelRolloutSerializer})
    @action(detail=True, methods=["post"])
    def rollback(self, request, pk=None):
        rollout = self.get_object()
        require_role(request.user, rollout.organization_id, self.write_role)
        if rollout.state != "active":
            raise ValidationError(
                {"detail": "Only the camera's active rollout can be rolled back."}
            )
        rolled = rollouts.roll_back(rollout.device, user=request.user)
        return Response(ModelRolloutSerializer(rolled).data)


class TrainingJobSerializer(serializers.ModelSerializer):
    organization = ScopedOrganizationField(required=False)
    role_arn = serializers.CharField(required=False, allow_blank=True)
    image_uri = serializers.CharField(required=False, allow_blank=True)
    output_uri = serializers.CharField(required=False, allow_blank=True)
    logs_url = serializers.CharField(read_only=True)
    face_model = serializers.SerializerMethodField()

    class Meta:
        model = TrainingJob
        fields = [
            "id",
            "organization",
            "job_name",
            "model_name",
            "role_arn",
            "image_uri",
            "instance_type",
            "instance_count",
            "max_runtime_s",
            "hyperparameters",
            "training_data_uri",
            "output_uri",
            "status",
            "secondary_status",
            "failure_reason",
            "metrics",
            "model_artifact_uri",
            "logs_url",
            "face_model",
            "created_at",
            "finished_at",
        ]
        read_only_fields = [
            "job_name",
            "status",
            "secondary_status",
            "failure_reason",
            "metrics",
            "model_artifact_uri",
            "finished_at",
        ]

    def get_face_model(self, obj) -> int | None:
        model = obj.models.first()
        return model.id if model else None


class TrainingJobViewSet(TenantViewSet):
    """SageMaker training jobs; a Celery task follows each one until it ends."""

    queryset = TrainingJob.objects.select_related("organization")
    serializer_class = TrainingJobSerializer
    http_method_names = ["get", "post", "head", "options"]
    filterset_fields = ["status"]

    def perform_create(self, serializer) -> None:
        data = dict(serializer.validated_data)
        organization = _organization(self, data.pop("organization", None))
        serializer.instance = training.start_training_job(
            organization, user=self.request.user, **data
        )

    @extend_schema(request=None, responses={200: TrainingJobSerializer})
    @action(detail=True, methods=["post"])
    def refresh(self, request, pk=None):
        """Look at the job in SageMaker now (the follower task does this on its own)."""
        job = self.get_object()
        require_role(request.user, job.organization_id, self.write_role)
        training.follow_training_job(job.id)
        job.refresh_from_db()
        return Response(self.get_serializer(job).data)


class LabelledClipSerializer(serializers.ModelSerializer):
    organization = ScopedOrganizationField(required=False)
    video = serializers.FileField(
        write_only=True, help_text="AVI, MP4/MOV or Matroska/WebM that OpenCV can decode."
    )
    annotations = serializers.FileField(
        write_only=True,
        help_text='JSON: {"fps": 15, "frames": {"0": [[x, y, w, h], ...]}} (docs/detectors.md).',
    )
    annotations_json = serializers.JSONField(
        source="annotations", read_only=True, help_text="The stored, normalised annotations."
    )
    uri = serializers.CharField(read_only=True)

    class Meta:
        model = LabelledClip
        fields = [
            "id",
            "organization",
            "name",
            "active",
            "uri",
            *LabelledClip.MEASURED_FIELDS,
            "annotations_json",
            "created_at",
            "video",
            "annotations",
        ]
        read_only_fields = list(LabelledClip.MEASURED_FIELDS)
        validators = []  # unique names: the service checks (the organization may be implicit)

    def validate_video(self, value):
        if value.size > settings.LABELLED_CLIP_MAX_BYTES:
            raise ValidationError(
                f"The video is larger than {settings.LABELLED_CLIP_MAX_BYTES} bytes."
            )
        return value

    def validate_annotations(self, value):
        if value.size > labelled_clips.ANNOTATIONS_MAX_BYTES:
            raise ValidationError(
                f"The annotations file is larger than {labelled_clips.ANNOTATIONS_MAX_BYTES} bytes."
            )
        return value


class LabelledClipViewSet(TenantViewSet):
    """Your organizations' labelled clips (a video + face boxes): every promotion gate also scores
    the candidate and the current model on each active one. Upload multipart `name`, `video`,
    `annotations`; PATCH only `active`; DELETE removes the video from S3 too."""

    queryset = LabelledClip.objects.select_related("organization")
    serializer_class = LabelledClipSerializer
    parser_classes = [MultiPartParser, FormParser, BoundedJSONParser]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["active", "name"]
    ordering_fields = ["created_at", "name"]

    def perform_create(self, serializer) -> None:
        data = serializer.validated_data
        organization = _organization(self, data.get("organization"))
        serializer.instance = labelled_clips.add_labelled_clip(
            organization,
            name=data["name"],
            video=data["video"].read(),
            annotations=data["annotations"].read(),
            user=self.request.user,
        )

    def perform_update(self, serializer) -> None:
        fixed = sorted(set(serializer.validated_data) - {"active"})
        if fixed:
            raise ValidationError(
                {name: "Fixed after upload: upload a new clip instead." for name in fixed}
            )
        serializer.instance = labelled_clips.set_labelled_clip_active(
            serializer.instance,
            serializer.validated_data.get("active", serializer.instance.active),
        )

    def perform_destroy(self, instance) -> None:
        labelled_clips.delete_labelled_clip(instance)
