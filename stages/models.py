"""Stages of a festival and the Sets (performance slots) that make up its lineup."""

from __future__ import annotations

from django.db import models
from django.db.models import F, Q

from festival.models import Festival, TenantModel


class Stage(TenantModel):
    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="stages")
    name = models.CharField(max_length=120)
    slug = models.SlugField(
        max_length=60, help_text="Unique within the festival; used in crop keys."
    )
    position = models.PositiveSmallIntegerField(default=0, help_text="Order in lists and maps.")
    description = models.CharField(max_length=300, blank=True)
    typical_crowd = models.PositiveIntegerField(
        default=0,
        help_text="Faces a camera usually sees here at a busy moment; 0 learns it from the data.",
    )
    screen_key = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_index=True,
        editable=False,
        help_text="Secret of the DJ booth screen link (/screen/<key>/); empty: no link.",
    )

    class Meta:
        ordering = ["festival", "position", "name"]
        constraints = [
            models.UniqueConstraint(fields=["festival", "slug"], name="stage_slug_per_festival"),
            models.UniqueConstraint(fields=["festival", "name"], name="stage_name_per_festival"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.festival.slug})"


class Set(TenantModel):
    """One performance slot; times are stored in UTC and shown in the festival's time zone."""

    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="sets")
    artist = models.CharField(max_length=200)
    starts_at = models.DateTimeField(db_index=True)
    ends_at = models.DateTimeField(db_index=True)
    notes = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["starts_at", "stage__position"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=F("starts_at")), name="set_ends_after_start"
            )
        ]

    def __str__(self) -> str:
        return f"{self.artist} @ {self.stage.name}"

    @property
    def festival(self) -> Festival:
        return self.stage.festival

    @property
    def duration_minutes(self) -> int:
        return int((self.ends_at - self.starts_at).total_seconds() // 60)
