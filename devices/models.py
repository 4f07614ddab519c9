"""Cameras (edge devices) bound to a festival stage, with their edge configuration."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from edge_package.contracts import (
    THING_NAME_PATTERN,
    THING_NAME_RULE,
    effective_edge_config,
    validate_edge_config,
)
from festival.models import Festival, TenantModel
from stages.models import Stage


class Platform(models.TextChoices):
    GREENGRASS_V2 = "greengrass_v2", "Greengrass v2 (any Linux box with a camera)"
    DEEPLENS = "deeplens", "AWS DeepLens (legacy, Greengrass v1)"
    STANDALONE = "standalone", "Standalone (CLI, posts telemetry over HTTPS)"


class DeviceStatus(models.TextChoices):
    NEW = "new", "New (not registered in AWS IoT)"
    REGISTERED = "registered", "Registered"
    ONLINE = "online", "Online"
    OFFLINE = "offline", "Offline"
    RETIRED = "retired", "Retired"


def validate_edge_config_field(value) -> None:
    problems = validate_edge_config(value)
    if problems:
        raise ValidationError(problems)


# The camera refuses a config whose device name breaks this rule, so the server checks the same one.
thing_name_validator = RegexValidator(THING_NAME_PATTERN, f"Use {THING_NAME_RULE}.")


class Device(TenantModel):
    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="devices")
    stage = models.ForeignKey(
        Stage, on_delete=models.SET_NULL, null=True, blank=True, related_name="devices"
    )
    name = models.CharField(max_length=120, help_text="What the crew calls it, e.g. 'Main left'.")
    thing_name = models.CharField(
        max_length=128,
        unique=True,
        validators=[thing_name_validator],
        help_text="AWS IoT thing name; also the device segment of crop keys.",
    )
    platform = models.CharField(
        max_length=16, choices=Platform.choices, default=Platform.GREENGRASS_V2
    )
    status = models.CharField(max_length=16, choices=DeviceStatus.choices, default=DeviceStatus.NEW)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    software_version = models.CharField(max_length=64, blank=True)
    config = models.JSONField(
        "edge configuration",
        default=dict,
        blank=True,
        validators=[validate_edge_config_field],
        # Static on purpose: the defaults live in edge_package.contracts and change without a
        # migration; the admin form lists their current values (DeviceAdmin).
        help_text=(
            "Overrides of the edge defaults (edge_package.contracts.EDGE_CONFIG_DEFAULTS). "
            "Masks are polygons in 0..1 frame coordinates."
        ),
    )
    video_source = models.CharField(
        "video source",
        max_length=2000,
        blank=True,
        help_text=(
            "What this camera reads: rtsp://user:password@host/stream, a webcam index, a video "
            "file. Empty: webcam 0. A deployment puts it in the Greengrass component's "
            "configuration, which the camera reads through IPC: never into a shell command, "
            "and logs show it with the password replaced by ***."
        ),
    )
    # AWS IoT registration (filled by services.register_device; the private key is never kept).
    certificate_arn = models.CharField(max_length=255, blank=True)
    certificate_id = models.CharField(max_length=128, blank=True)
    policy_name = models.CharField(max_length=128, blank=True)
    role_name = models.CharField(max_length=64, blank=True)
    role_alias = models.CharField(max_length=128, blank=True)
    registered_at = models.DateTimeField(null=True, blank=True)
    # Telemetry token: only its SHA-256 is stored (services.issue_device_token).
    token_hash = models.CharField(max_length=64, blank=True, db_index=True, editable=False)
    # DeepLens (Greengrass v1) group the device's core belongs to.
    greengrass_group_id = models.CharField(max_length=64, blank=True)
    current_release = models.ForeignKey(
        "EdgeRelease",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        help_text="The last release that deployed successfully (the rollback target).",
    )
    # Health, from the last telemetry report.
    health = models.JSONField(default=dict, blank=True, editable=False)
    metrics_published_at = models.DateTimeField(null=True, blank=True, editable=False)
    offline_alerted_at = models.DateTimeField(
        null=True, blank=True, editable=False, help_text="Set while an offline alert is open."
    )
    # Camera input health incidents (black, frozen, dark, clock drift, upload gap, growing spool)
    # that were alerted and are still open: kind -> when; services.health.sweep_input_health.
    input_alerts = models.JSONField(default=dict, blank=True, editable=False)
    canary = models.BooleanField(
        default=False,
        help_text=(
            "A staged rollout deploys to the canary cameras first and watches their telemetry "
            "before it deploys to the rest (docs/devices.md, 'Staged rollout')."
        ),
    )
    # Edge configuration pushed to the IoT device shadow (desired state).
    shadow_synced_at = models.DateTimeField(null=True, blank=True, editable=False)
    shadow_error = models.CharField(max_length=500, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["festival", "stage__position", "name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.thing_name})"

    def clean(self) -> None:
        if self.stage_id and self.festival_id and self.stage.festival_id != self.festival_id:
            raise ValidationError({"stage": "This stage belongs to another festival."})

    @property
    def effective_config(self) -> dict:
        """Defaults, then the festival's analysis mode, then the device's own settings: a
        festival switched to edge mode makes its cameras score on the device (no crop leaves)
        unless a device says otherwise. Face-free is the festival's OR the device's: a device
        can turn it on for itself, never off for a face-free festival."""
        config = effective_edge_config({"mode": self.festival.analysis_mode, **self.config})
        config["face_free"] = bool(self.festival.face_free or self.config.get("face_free"))
        return config

    @property
    def face_free(self) -> bool:
        return self.effective_config["face_free"]

    @property
    def paused(self) -> bool:
        return bool(self.effective_config["paused"])

    @property
    def thing_arn_suffix(self) -> str:
        return f"thing/{self.thing_name}"

    @property
    def crop_prefix(self) -> str:
        """faces/<festival>/<stage>/<thing>/ (contracts.build_crop_key); the device's S3 scope."""
        stage = self.stage.slug if self.stage_id else ""
        return f"faces/{self.festival.slug}/{stage}/{self.thing_name}/"


class EdgeRelease(models.Model):
    """A packaged build of edge_package/. Global: the software is the same for every tenant."""

    version = models.CharField(max_length=64, unique=True)
    sha256 = models.CharField(max_length=64, unique=True)
    bucket = models.CharField(max_length=63)
    key = models.CharField(max_length=512)
    size_bytes = models.PositiveBigIntegerField()
    manifest = models.JSONField(default=dict, help_text="Files with hashes and edge dependencies.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"edge {self.version} ({self.sha256[:12]})"

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


class DeploymentState(models.TextChoices):
    # Greengrass v2
    CREATE_COMPONENT = "create_component", "Creating the component version"
    CREATE_DEPLOYMENT = "create_deployment", "Creating the deployment"
    # DeepLens / Greengrass v1
    ENSURE_GROUP = "ensure_group", "Ensuring the Greengrass group"
    LAMBDA_FUNCTION = "lambda_function", "Creating the Lambda function"
    LAMBDA_VERSION = "lambda_version", "Publishing the Lambda version"
    LAMBDA_ALIAS = "lambda_alias", "Pointing the alias at the version"
    FUNCTION_DEFINITION = "function_definition", "Creating the function definition"
    RESOURCE_DEFINITION = "resource_definition", "Creating the camera/GPU resource definition"
    SUBSCRIPTION_DEFINITION = "subscription_definition", "Creating the subscription definition"
    GROUP_VERSION = "group_version", "Creating the group version"
    GROUP_DEPLOYMENT = "group_deployment", "Starting the group deployment"
    # both
    POLL = "poll", "Waiting for the device"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    TIMED_OUT = "timed_out", "Timed out"


TERMINAL_STATES = frozenset(
    {DeploymentState.SUCCEEDED, DeploymentState.FAILED, DeploymentState.TIMED_OUT}
)


class Deployment(TenantModel):
    """One release going to one device, driven step by step (services.deployments).

    `state` is the next step to run; what each step created is kept in `resources`, so a worker
    killed mid-way resumes at the step it was on instead of starting over.
    """

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="deployments")
    release = models.ForeignKey(EdgeRelease, on_delete=models.PROTECT, related_name="deployments")
    platform = models.CharField(max_length=16, choices=Platform.choices)
    state = models.CharField(max_length=32, choices=DeploymentState.choices)
    resources = models.JSONField(default=dict, blank=True)
    history = models.JSONField(default=list, blank=True)
    reason = models.TextField(blank=True)
    rollback_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="rollbacks"
    )
    polls = models.PositiveIntegerField(default=0)
    force = models.BooleanField(
        default=False, help_text="Deploy even while a set plays on the camera's stage."
    )
    held_until = models.DateTimeField(
        null=True, blank=True, help_text="Waiting for the gap between sets that starts then."
    )
    hold_reason = models.CharField(max_length=300, blank=True, help_text="Why it waits.")
    rollout = models.ForeignKey(
        "Rollout", on_delete=models.SET_NULL, null=True, blank=True, related_name="deployments"
    )
    wave = models.CharField(max_length=8, blank=True, help_text="canary or rest, in a rollout.")
    deadline_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.release.version} -> {self.device.thing_name} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in TERMINAL_STATES


class RolloutState(models.TextChoices):
    CANARY = "canary", "Deploying to the canary cameras"
    WATCHING = "watching", "Watching the canaries' telemetry"
    REST = "rest", "Deploying to the other cameras"
    SUCCEEDED = "succeeded", "Succeeded"
    HALTED = "halted", "Halted and rolled back"


class Rollout(TenantModel):
    """One release going to a festival's cameras in waves: canaries first, their telemetry
    watched against what they reported before, then the rest (services.rollouts)."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="rollouts")
    release = models.ForeignKey(EdgeRelease, on_delete=models.PROTECT, related_name="rollouts")
    state = models.CharField(
        max_length=16, choices=RolloutState.choices, default=RolloutState.CANARY
    )
    force = models.BooleanField(default=False, help_text="Its deployments ignore set locks.")
    canaries = models.ManyToManyField(Device, related_name="+", blank=True)
    rest = models.ManyToManyField(Device, related_name="+", blank=True)
    baseline = models.JSONField(
        default=dict, blank=True, help_text="Each canary's fps and errors/min before the rollout."
    )
    watch_until = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True)
    history = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"rollout of {self.release.version} to {self.festival.slug} ({self.state})"

    @property
    def finished(self) -> bool:
        return self.state in (RolloutState.SUCCEEDED, RolloutState.HALTED)
