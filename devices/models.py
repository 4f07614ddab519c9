"""Cameras (edge devices) bound to a festival stage, with their edge configuration."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.core.validators import RegexValidator
from django.db import models

from edge_package.contracts import EDGE_CONFIG_DEFAULTS, effective_edge_config, validate_edge_config
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


thing_name_validator = RegexValidator(
    r"^[a-zA-Z0-9:_-]{1,128}$",
    "Use letters, digits, ':', '_' or '-' (AWS IoT thing name rules), at most 128 characters.",
)


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
        help_text=(
            "Overrides of the edge defaults: "
            + ", ".join(f"{k}={v!r}" for k, v in EDGE_CONFIG_DEFAULTS.items())
            + ". Masks are polygons in 0..1 frame coordinates."
        ),
    )
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
        return effective_edge_config(self.config)

    @property
    def paused(self) -> bool:
        return bool(self.effective_config["paused"])
