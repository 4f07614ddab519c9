"""Observations ingested from DynamoDB, per-minute rollups, and the ingest watermark.

Postgres keeps scores only: no images, no embeddings, no identity, no cross-camera tracking.
"""

from __future__ import annotations

from django.db import models

from devices.models import Device
from edge_package.contracts import EMOTIONS
from festival.models import Festival, TenantModel
from stages.models import Set, Stage

EMOTION_FIELDS = [name.lower() for name in EMOTIONS]


class Observation(TenantModel):
    """One analyzed face: its eight apparent-expression scores (0..100) at a capture time."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="observations")
    set = models.ForeignKey(
        Set, on_delete=models.SET_NULL, null=True, blank=True, related_name="observations"
    )
    device = models.ForeignKey(
        Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    dynamo_pk = models.CharField(max_length=200)
    dynamo_sk = models.CharField(max_length=255)
    captured_at = models.DateTimeField()
    source = models.CharField(max_length=16)
    model = models.CharField(max_length=100, blank=True)
    top_emotion = models.CharField(max_length=10, choices=[(e, e.title()) for e in EMOTIONS])
    face_confidence = models.FloatField(default=0)
    happy = models.FloatField(default=0)
    sad = models.FloatField(default=0)
    angry = models.FloatField(default=0)
    confused = models.FloatField(default=0)
    disgusted = models.FloatField(default=0)
    surprised = models.FloatField(default=0)
    calm = models.FloatField(default=0)
    fear = models.FloatField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dynamo_pk", "dynamo_sk"], name="one_row_per_item")
        ]
        indexes = [
            models.Index(fields=["stage", "captured_at"]),
            models.Index(fields=["set", "captured_at"]),
        ]

    def __str__(self) -> str:
        return f"{self.top_emotion} @ {self.stage_id} {self.captured_at:%H:%M:%S}"


class MinuteRollup(TenantModel):
    """Per stage and minute: faces, faces by top expression, and score sums (for averages)."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="rollups")
    minute = models.DateTimeField()
    faces = models.PositiveIntegerField(default=0)
    counts = models.JSONField(default=dict, help_text="faces per top expression")
    sums = models.JSONField(default=dict, help_text="sum of each expression's score")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["stage", "minute"], name="one_rollup_per_minute")
        ]
        indexes = [models.Index(fields=["festival", "minute"])]
        ordering = ["stage", "minute"]


class IngestWatermark(TenantModel):
    """How far (capture time) a stage's DynamoDB partition has been read."""

    stage = models.OneToOneField(Stage, on_delete=models.CASCADE, related_name="watermark")
    captured_until_ms = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(null=True, blank=True)
    last_count = models.PositiveIntegerField(default=0)
