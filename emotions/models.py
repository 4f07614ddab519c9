"""Observations ingested from DynamoDB, per-minute rollups, and the ingest's own state: stream
checkpoints, per-stage freshness, refusals, and the analysis backlog.

Postgres keeps scores only: no images, no embeddings, no identity, no cross-camera tracking.
"""

from __future__ import annotations

import math

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models

from devices.models import Device
from edge_package.contracts import EMOTIONS, TOP_EMOTIONS
from festival.models import Festival, TenantModel, TenantQuerySet
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
    top_emotion = models.CharField(max_length=10, choices=[(e, e.title()) for e in TOP_EMOTIONS])
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


class CrowdSignal(TenantModel):
    """One camera's crowd signal over one window (contract 2, `kind` "crowd"): motion energy,
    sound level and crowd fill as measured on the device. Numbers only: no image, no audio, no
    face. Kept per item (keyed like an Observation) so a replay is recognised and adds nothing."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="crowd_signals")
    set = models.ForeignKey(
        Set, on_delete=models.SET_NULL, null=True, blank=True, related_name="crowd_signals"
    )
    device = models.ForeignKey(
        Device, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    dynamo_pk = models.CharField(max_length=200)
    dynamo_sk = models.CharField(max_length=255)
    captured_at = models.DateTimeField(help_text="the window's end")
    window_s = models.FloatField()
    motion_energy = models.FloatField()
    motion_energy_max = models.FloatField()
    sound_level_dbfs = models.FloatField(null=True, blank=True)
    sound_crowd_share = models.FloatField(null=True, blank=True)
    crowd_fill = models.FloatField()
    faces_seen = models.PositiveIntegerField(default=0)
    face_free = models.BooleanField(default=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["dynamo_pk", "dynamo_sk"], name="one_crowd_row_per_item"
            )
        ]
        indexes = [models.Index(fields=["stage", "captured_at"])]


class CrowdMinute(TenantModel):
    """Per stage and minute: the crowd signals of every camera folded together. Sums and counts
    (never means) so late and replayed windows add exactly what is new; `devices` lists the
    cameras that reported (their number is the public rule for these components)."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="crowd_minutes")
    minute = models.DateTimeField()
    signals = models.PositiveIntegerField(default=0, help_text="camera windows folded in")
    motion_sum = models.FloatField(default=0)
    motion_max = models.FloatField(default=0)
    sound_signals = models.PositiveIntegerField(default=0)
    sound_power_sum = models.FloatField(
        default=0, help_text="sum of 10^(dBFS/10): levels are averaged as power"
    )
    sound_crowd_signals = models.PositiveIntegerField(default=0)
    sound_crowd_share_sum = models.FloatField(default=0)
    fill_sum = models.FloatField(default=0)
    faces_seen = models.PositiveIntegerField(default=0)
    devices = models.JSONField(default=list, help_text="thing names of the reporting cameras")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["stage", "minute"], name="one_crowd_minute")]
        indexes = [models.Index(fields=["festival", "minute"])]
        ordering = ["stage", "minute"]

    @property
    def cameras(self) -> int:
        return len(self.devices)

    @property
    def motion(self) -> float | None:
        return self.motion_sum / self.signals if self.signals else None

    @property
    def fill(self) -> float | None:
        return self.fill_sum / self.signals if self.signals else None

    @property
    def sound_dbfs(self) -> float | None:
        if not self.sound_signals or self.sound_power_sum <= 0:
            return None
        return 10.0 * math.log10(self.sound_power_sum / self.sound_signals)


class IngestWatermark(TenantModel):
    """Per stage: how fresh its data is. `captured_until_ms` is the newest capture time ingested
    (capped at the time DynamoDB received the item, so a camera whose clock runs ahead cannot
    claim the future). It is no read position: the stream checkpoints are (StreamCheckpoint)."""

    stage = models.OneToOneField(Stage, on_delete=models.CASCADE, related_name="watermark")
    captured_until_ms = models.BigIntegerField(default=0)
    last_run_at = models.DateTimeField(
        null=True, blank=True, help_text="when new rows of this stage were last stored"
    )
    last_count = models.PositiveIntegerField(default=0)
    lag_ms = models.PositiveBigIntegerField(
        default=0, help_text="median (DynamoDB received - captured) of the last new rows"
    )


class StreamCheckpoint(models.Model):
    """How far one shard of the observations table's DynamoDB stream has been ingested: the last
    sequence number whose record is in the database (written in the same transaction as the rows
    it covers). `finished`: a closed shard read to its end, so its children may be read."""

    stream_arn = models.CharField(max_length=400)
    shard_id = models.CharField(max_length=100)
    parent_shard_id = models.CharField(max_length=100, blank=True)
    sequence_number = models.CharField(max_length=64, blank=True)
    finished = models.BooleanField(default=False)
    records = models.PositiveBigIntegerField(default=0, help_text="records read from this shard")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["stream_arn", "shard_id"], name="one_checkpoint_per_shard"
            )
        ]
        ordering = ["stream_arn", "shard_id"]

    def __str__(self) -> str:
        return f"{self.shard_id} @ {self.sequence_number or 'TRIM_HORIZON'}"


class RejectionReason(models.TextChoices):
    MALFORMED = "malformed", "Malformed item (breaks the observation contract)"
    UNKNOWN_STAGE = "unknown_stage", "No such festival/stage"
    UNKNOWN_DEVICE = "unknown_device", "Device not registered"
    WRONG_DEVICE = "wrong_device", "Device belongs to another organization, festival or stage"
    FUTURE = "future", "Capture time too far in the future"
    TOO_OLD = "too_old", "Capture time too old"
    OUTSIDE_FESTIVAL = "outside_festival", "Capture time outside the festival's dates"
    FACE_FREE = "face_free", "Face observation from a face-free camera or festival"
    UNKNOWN_RUN = "unknown_run", "Comparison pair for no such run (or another organization's)"
    NOT_IN_RUN = "not_in_run", "Comparison pair from a camera or time outside its run"


class IngestRejection(models.Model):
    """A counter per (festival, stage, reason) of observations the ingest refused, with the last
    one's key and detail, for operators (dashboard and admin). Festival and stage are those the
    item's key named, when they exist: the festival whose numbers were protected sees it."""

    key = models.CharField(max_length=120, unique=True, editable=False)
    organization = models.ForeignKey(
        "festival.Organization", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    festival = models.ForeignKey(
        Festival, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    stage = models.ForeignKey(
        Stage, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    reason = models.CharField(max_length=20, choices=RejectionReason.choices)
    count = models.PositiveBigIntegerField(default=0)
    first_at = models.DateTimeField(auto_now_add=True)
    last_at = models.DateTimeField(auto_now=True)
    last_key = models.CharField(max_length=460, blank=True)
    last_detail = models.CharField(max_length=300, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-last_at"]

    def __str__(self) -> str:
        return f"{self.reason} x{self.count} ({self.festival_id}/{self.stage_id})"


class AnalysisBacklog(models.Model):
    """The analysis queue as last measured by the beat task (never per request): depth, age of
    its oldest message, and the once-per-incident alert claim (as Device.offline_alerted_at)."""

    queue = models.CharField(max_length=400, unique=True)
    measured_at = models.DateTimeField(null=True, blank=True)
    depth = models.PositiveIntegerField(default=0, help_text="messages waiting")
    in_flight = models.PositiveIntegerField(default=0, help_text="messages being analysed")
    oldest_age_s = models.FloatField(null=True, blank=True)
    age_source = models.CharField(
        max_length=16, blank=True, help_text="cloudwatch, or estimate (no metric datapoint)"
    )
    error = models.CharField(max_length=300, blank=True)
    alerted_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.queue}: {self.depth} waiting, oldest {self.oldest_age_s} s"


class ReportStatus(models.TextChoices):
    PENDING = "pending", "Pending (waiting for a sweeper to build it)"
    BUILDING = "building", "Building"
    READY = "ready", "Ready"
    FAILED = "failed", "Failed"


class SetReport(TenantModel):
    """The report on one set: built once after the set ends (plus a grace period), rebuilt when
    late data arrives. Key numbers are columns (for lists and comparisons); everything the page
    shows is in `payload` (see emotions.reports.build_payload)."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="+")
    set = models.OneToOneField(Set, on_delete=models.CASCADE, related_name="report")
    status = models.CharField(
        max_length=16, choices=ReportStatus.choices, default=ReportStatus.PENDING, db_index=True
    )
    claim_token = models.CharField(max_length=36, blank=True, editable=False)
    claimed_at = models.DateTimeField(null=True, blank=True, editable=False)
    builds = models.PositiveIntegerField(default=0, editable=False)
    covered_faces = models.PositiveIntegerField(
        default=0, editable=False, help_text="Faces in the rollups when built (late-data check)."
    )
    built_at = models.DateTimeField(null=True, blank=True)
    rebuild_reason = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    announced_at = models.DateTimeField(null=True, blank=True)
    published = models.BooleanField(
        default=False,
        help_text="Show this report's aggregate numbers in the fan API (public festivals only).",
    )
    share_key = models.CharField(
        max_length=64,
        blank=True,
        default="",
        db_index=True,
        editable=False,
        help_text="Secret of the DJ's share link (/shared/reports/<key>/); empty: no link.",
    )
    share_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Key numbers (None while pending, or when the set had too few faces to report).
    suppressed = models.BooleanField(default=False, help_text="Too few faces for any number.")
    faces = models.PositiveIntegerField(null=True, blank=True)
    minutes_with_data = models.PositiveIntegerField(null=True, blank=True)
    vibe = models.FloatField(null=True, blank=True)
    peak_vibe = models.FloatField(null=True, blank=True)
    peak_at = models.DateTimeField(null=True, blank=True)
    low_vibe = models.FloatField(null=True, blank=True)
    low_at = models.DateTimeField(null=True, blank=True)
    top_expression = models.CharField(max_length=10, blank=True)
    payload = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-set__starts_at", "stage__position"]
        indexes = [models.Index(fields=["festival", "status"])]

    def __str__(self) -> str:
        return f"report: {self.set} ({self.status})"


class ComparisonRun(TenantModel):
    """Cloud or edge? A sample of the chosen cameras' crops is read by both backends (Rekognition
    and the camera's model) during a time window; the result (agreement, cost, bytes, latency,
    a recommendation) is computed from the pairs and stored in `result` (docs/comparison.md)."""

    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(
        max_length=32,
        unique=True,
        editable=False,
        help_text="The run's id on the wire (edge configuration, crop metadata, pair items).",
    )
    name = models.CharField(max_length=120, blank=True)
    devices = models.ManyToManyField(Device, related_name="comparison_runs", blank=True)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    sample_rate = models.FloatField(
        default=0.1,
        validators=[MinValueValidator(0.001), MaxValueValidator(1.0)],
        help_text="Share of each camera's crops read by both backends (0.001..1).",
    )
    cancelled_at = models.DateTimeField(null=True, blank=True, editable=False)
    cancel_reason = models.CharField(
        max_length=300,
        blank=True,
        editable=False,
        help_text="Why the run ended early, when the service ended it (e.g. a mode switch).",
    )
    settled_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="When the cameras were told the run is over (its settings removed).",
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    pairs = models.PositiveIntegerField(default=0, editable=False, help_text="pairs stored")
    refused = models.JSONField(
        default=dict, blank=True, editable=False, help_text="pairs refused, by reason"
    )
    result = models.JSONField(default=dict, blank=True, editable=False)
    result_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-starts_at", "-pk"]
        indexes = [models.Index(fields=["festival", "ends_at"])]

    def __str__(self) -> str:
        return self.name or f"comparison {self.key}"

    def status_at(self, now) -> str:
        if self.cancelled_at:
            return "cancelled"
        if now < self.starts_at:
            return "scheduled"
        if now < self.ends_at:
            return "running"
        return "finished"


class ComparisonReading(TenantModel):
    """One sampled face read by both backends: per backend whether it could read (Rekognition is
    absent in the demo), how many faces it saw in the crop, the top expression, the eight scores,
    when its reading was done; and the bytes each mode sends for this face. No image, box,
    embedding or identity: the same kind of numbers as an Observation."""

    run = models.ForeignKey(ComparisonRun, on_delete=models.CASCADE, related_name="readings")
    festival = models.ForeignKey(Festival, on_delete=models.CASCADE, related_name="+")
    stage = models.ForeignKey(Stage, on_delete=models.CASCADE, related_name="+")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    dynamo_sk = models.CharField(max_length=255)
    mode = models.CharField(max_length=5, help_text="the camera's mode: cloud or edge")
    captured_at = models.DateTimeField()
    received_at = models.DateTimeField(help_text="when DynamoDB received the pair")
    visible_at = models.DateTimeField(help_text="when the ingest stored it")
    rekognition_available = models.BooleanField(default=False)
    rekognition_reason = models.CharField(max_length=40, blank=True)
    rekognition_faces = models.PositiveSmallIntegerField(default=0)
    rekognition_top = models.CharField(max_length=10, blank=True)
    rekognition_scores = models.JSONField(default=dict, blank=True)
    rekognition_done_ms = models.BigIntegerField(default=0)
    rekognition_calls = models.FloatField(default=0, help_text="share of DetectFaces calls")
    local_available = models.BooleanField(default=False)
    local_reason = models.CharField(max_length=40, blank=True)
    local_faces = models.PositiveSmallIntegerField(default=0)
    local_top = models.CharField(max_length=10, blank=True)
    local_scores = models.JSONField(default=dict, blank=True)
    local_done_ms = models.BigIntegerField(default=0)
    crop_bytes = models.PositiveIntegerField(default=0, help_text="bytes of the crop (cloud mode)")
    edge_bytes = models.PositiveIntegerField(
        default=0, help_text="bytes of the scores item (edge mode)"
    )
    # Worked out once when the pair is stored (emotions.comparison.derived), so that the run's
    # result is aggregated in SQL instead of reading every pair (docs/comparison.md).
    latency_s = models.FloatField(
        null=True, blank=True, help_text="capture to visible in the camera's mode, seconds"
    )
    rekognition_lively = models.FloatField(default=0, help_text="HAPPY + SURPRISED")
    rekognition_read = models.BooleanField(default=False, help_text="some score above zero")
    local_lively = models.FloatField(default=0, help_text="HAPPY + SURPRISED")
    local_read = models.BooleanField(default=False, help_text="some score above zero")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["run", "dynamo_sk"], name="one_reading_per_face")
        ]
        indexes = [
            models.Index(fields=["run", "captured_at"]),
            models.Index(fields=["run", "mode", "latency_s"], name="comparison_latency"),
        ]
        ordering = ["captured_at"]
