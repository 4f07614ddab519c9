"""Face detection models per organization: training jobs, a versioned registry, evaluations
(the promotion gate) and rollouts to cameras. Files live in the artifacts bucket; rows keep
their location, SHA-256 and figures."""

from __future__ import annotations

from django.conf import settings
from django.db import models

import awsclients as aws
from devices.models import Device
from festival.models import TenantModel


class Source(models.TextChoices):
    BUNDLED = "bundled", "Bundled with the edge software"
    UPLOAD = "upload", "Uploaded file"
    TRAINING = "training", "SageMaker training job"


class ModelFormat(models.TextChoices):
    TFLITE = "tflite", "TensorFlow Lite (BlazeFace layout)"


class ModelStatus(models.TextChoices):
    REGISTERED = "registered", "Registered (not evaluated)"
    EVALUATED = "evaluated", "Evaluated"
    REFUSED = "refused", "Promotion refused by the gate"
    PROMOTED = "promoted", "Promoted (current)"
    RETIRED = "retired", "Retired (was promoted)"


class FaceModel(TenantModel):
    name = models.CharField(max_length=80, help_text="e.g. 'crowd-blazeface'.")
    version = models.PositiveIntegerField(help_text="1, 2, 3... per organization and name.")
    source = models.CharField(max_length=16, choices=Source.choices)
    format = models.CharField(max_length=16, choices=ModelFormat.choices, default="tflite")
    layout = models.CharField(max_length=16, blank=True, help_text="full_range or short_range.")
    input_size = models.PositiveIntegerField(help_text="Model input in pixels (square).")
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=512)
    status = models.CharField(
        max_length=16, choices=ModelStatus.choices, default=ModelStatus.REGISTERED
    )
    training_job = models.ForeignKey(
        "TrainingJob", on_delete=models.SET_NULL, null=True, blank=True, related_name="models"
    )
    notes = models.TextField(blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name", "-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name", "version"], name="face_model_version_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} v{self.version} ({self.sha256[:12]})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class Evaluation(TenantModel):
    """One model scored on one clip. A gate run also scores the current model on the same clip
    in the same process (`baseline`), so fps figures are comparable; `comparison` keeps both."""

    face_model = models.ForeignKey(FaceModel, on_delete=models.CASCADE, related_name="evaluations")
    clip = models.JSONField(
        help_text="Synthetic clip parameters (detectors.evaluation.Clip), or the labelled clip "
        '({"labelled_clip": id, "name": ...}).'
    )
    threshold = models.FloatField()
    recall = models.FloatField()
    precision = models.FloatField()
    fps = models.FloatField(help_text="Frames per second of the capture loop, on the server.")
    details = models.JSONField(default=dict, blank=True)
    baseline = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    passed = models.BooleanField(null=True, help_text="Gate verdict (empty: no gate run).")
    comparison = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.face_model}: recall {self.recall:.3f}, precision {self.precision:.3f}"


class LabelledClip(TenantModel):
    """An organization's own recorded video with labelled face boxes: an extra clip for the
    promotion gate. Full frames, so the file stays in the private artifacts bucket (SSE) and is
    used for evaluation only; it never comes from StagePulse cameras (docs/privacy.md)."""

    # What the service measures from the upload itself; never set by the organizer.
    MEASURED_FIELDS = (
        "sha256",
        "size_bytes",
        "width",
        "height",
        "frame_count",
        "fps",
        "labelled_frames",
        "faces",
    )

    name = models.CharField(max_length=80, help_text="Named in the gate's reasons.")
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=512)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.PositiveBigIntegerField()
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    frame_count = models.PositiveIntegerField()
    fps = models.FloatField(help_text="The clip's timeline (annotations' fps, else the video's).")
    labelled_frames = models.PositiveIntegerField()
    faces = models.PositiveIntegerField(help_text="Labelled face boxes over all frames.")
    annotations = models.JSONField(help_text="Normalised annotations (docs/detectors.md).")
    active = models.BooleanField(default=True, help_text="Inactive clips stay out of the gate.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["organization", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "name"], name="labelled_clip_name_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.frame_count} frames, {self.faces} faces)"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def gate_label(self) -> dict:
        """What Evaluation.clip records for an evaluation on this clip."""
        return {"labelled_clip": self.id, "name": self.name, "sha256": self.sha256}


class JobStatus(models.TextChoices):
    STARTING = "Starting", "Starting (not yet created in SageMaker)"
    IN_PROGRESS = "InProgress", "In progress"
    COMPLETED = "Completed", "Completed"
    FAILED = "Failed", "Failed"
    STOPPING = "Stopping", "Stopping"
    STOPPED = "Stopped", "Stopped"


JOB_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.STOPPED})


class TrainingJob(TenantModel):
    """A SageMaker training job; followed by detectors.tasks.follow_training_job until it ends."""

    job_name = models.CharField(max_length=63, unique=True)
    model_name = models.CharField(max_length=80, help_text="FaceModel name for the result.")
    role_arn = models.CharField(max_length=255)
    image_uri = models.CharField(max_length=255)
    instance_type = models.CharField(max_length=32, default="ml.g4dn.xlarge")
    instance_count = models.PositiveSmallIntegerField(default=1)
    volume_gb = models.PositiveSmallIntegerField(default=30)
    max_runtime_s = models.PositiveIntegerField(default=24 * 3600)
    hyperparameters = models.JSONField(default=dict, blank=True)
    training_data_uri = models.CharField(max_length=1024, help_text="s3://bucket/prefix/")
    output_uri = models.CharField(max_length=1024, help_text="s3://bucket/prefix/")
    job_arn = models.CharField(max_length=255, blank=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.STARTING)
    secondary_status = models.CharField(max_length=64, blank=True)
    failure_reason = models.TextField(blank=True)
    metrics = models.JSONField(default=dict, blank=True)
    model_artifact_uri = models.CharField(max_length=1024, blank=True)
    polls = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.job_name} ({self.status})"

    @property
    def finished(self) -> bool:
        return self.status in JOB_TERMINAL

    @property
    def logs_url(self) -> str:
        """CloudWatch Logs console link for the job's log streams."""

        region = aws.region()
        return (
            f"https://{region}.console.aws.amazon.com/cloudwatch/home?region={region}"
            f"#logsV2:log-groups/log-group/$252Faws$252Fsagemaker$252FTrainingJobs"
            f"$3FlogStreamNameFilter$3D{self.job_name}"
        )


class RolloutState(models.TextChoices):
    ACTIVE = "active", "Active"
    ROLLED_BACK = "rolled_back", "Rolled back"
    REPLACED = "replaced", "Replaced by a later rollout"


class ModelRollout(TenantModel):
    """A face model sent to one camera (through its edge configuration / shadow).

    `previous_model` is what the camera ran before (empty: the bundled model): the rollback target.
    """

    face_model = models.ForeignKey(FaceModel, on_delete=models.PROTECT, related_name="rollouts")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    previous_model = models.ForeignKey(
        FaceModel, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    state = models.CharField(
        max_length=16, choices=RolloutState.choices, default=RolloutState.ACTIVE
    )
    shadow_pushed = models.BooleanField(default=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.face_model} -> {self.device.thing_name} ({self.state})"
