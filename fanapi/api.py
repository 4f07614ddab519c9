"""The public fan API: read-only, anonymous, throttled, for festivals marked public.

No personal data ever appears here; a festival that is not public is a 404.
"""

from __future__ import annotations

import hashlib
import json

from django.core.cache import cache
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.http import http_date
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from emotions import live_cache
from emotions.live_cache import live_entry
from emotions.reports.selectors import public_payload, published_reports
from emotions.selectors import stage_timeline
from festival.models import Festival
from festival.throttling import FixedWindowRateThrottle
from stages.models import Set, Stage
from stages.selectors import festival_lineup, now_next_by_stage


class FanView(APIView):
    authentication_classes: list = []
    permission_classes = [AllowAny]
    throttle_classes = [FixedWindowRateThrottle]
    throttle_scope = "fan"

    default_max_age = 30

    def festival(self, slug: str) -> Festival:
        return get_object_or_404(Festival, slug=slug, public=True)

    def finalize_response(self, request, response, *args, **kwargs):
        """Successful answers are public and briefly cacheable (apps, CDNs); with the
        ConditionalGetMiddleware's ETag a poll that finds nothing new costs a 304."""
        response = super().finalize_response(request, response, *args, **kwargs)
        if response.status_code == 200 and not response.has_header("Cache-Control"):
            response["Cache-Control"] = f"public, max-age={self.default_max_age}"
        return response


class FanFestivalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Festival
        fields = ["slug", "name", "timezone", "starts_on", "ends_on"]


class FanStageSerializer(serializers.ModelSerializer):
    class Meta:
        model = Stage
        fields = ["slug", "name", "position", "description"]


class FanSetSerializer(serializers.ModelSerializer):
    stage = serializers.SlugRelatedField(slug_field="slug", read_only=True)

    class Meta:
        model = Set
        fields = ["id", "stage", "artist", "starts_at", "ends_at"]


class FanSlotSerializer(serializers.Serializer):
    artist = serializers.CharField()
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()


class FanNowNextSerializer(serializers.Serializer):
    stage = FanStageSerializer()
    now = FanSlotSerializer(allow_null=True)
    next = FanSlotSerializer(allow_null=True)


class FanFestivalDetailSerializer(FanFestivalSerializer):
    stages = FanStageSerializer(many=True, read_only=True)

    class Meta(FanFestivalSerializer.Meta):
        fields = [*FanFestivalSerializer.Meta.fields, "stages"]


class FanLineupSerializer(serializers.Serializer):
    generated_at = serializers.DateTimeField(
        help_text="When this content (now/next and sets) was first served; unchanged content "
        "keeps it, so ETag and Last-Modified hold and a repeat poll answers 304."
    )
    now_next = FanNowNextSerializer(many=True)
    sets = FanSetSerializer(many=True)


class FanFestivalListView(FanView):
    @extend_schema(
        responses=FanFestivalSerializer(many=True),
        operation_id="fan_festivals_list",
        description="Public festivals (an organizer switched the fan API on for them).",
    )
    def get(self, request):
        festivals = Festival.objects.filter(public=True).order_by("-starts_on", "name")
        return Response(FanFestivalSerializer(festivals, many=True).data)


class FanFestivalDetailView(FanView):
    @extend_schema(
        responses=FanFestivalDetailSerializer,
        operation_id="fan_festival_detail",
        description="One public festival: dates, time zone and its stages.",
    )
    def get(self, request, slug: str):
        festival = self.festival(slug)
        return Response(FanFestivalDetailSerializer(festival).data)


class FanStageListView(FanView):
    @extend_schema(
        responses=FanStageSerializer(many=True),
        operation_id="fan_stages_list",
        description="The festival's stages in their display order.",
    )
    def get(self, request, slug: str):
        festival = self.festival(slug)
        return Response(FanStageSerializer(festival.stages.order_by("position"), many=True).data)


class FanLineupView(FanView):
    # How long the time a lineup's content was first served is remembered; afterwards the same
    # content gets a new generated_at (and so one poll a day answers 200 instead of 304).
    content_seen_ttl_s = 24 * 3600

    @extend_schema(responses=FanLineupSerializer, operation_id="fan_lineup")
    def get(self, request, slug: str):
        """generated_at is when this exact content was first served, not the time of the
        request: an unchanged lineup is then byte-identical, so its ETag (and Last-Modified)
        hold and a poll answers 304 until a set starts or ends, or the organizer edits it."""
        festival = self.festival(slug)
        now = timezone.now()
        data = FanLineupSerializer(
            {
                "generated_at": now,
                "now_next": [
                    {"stage": row.stage, "now": row.now, "next": row.next}
                    for row in now_next_by_stage(festival, now)
                ],
                "sets": festival_lineup(festival),
            }
        ).data
        content = json.dumps({k: v for k, v in data.items() if k != "generated_at"}, sort_keys=True)
        digest = hashlib.sha256(content.encode()).hexdigest()[:32]
        key = f"fan-lineup:{festival.pk}:{digest}"
        cache.add(key, data["generated_at"], self.content_seen_ttl_s)  # first writer wins
        data["generated_at"] = cache.get(key) or data["generated_at"]
        response = Response(data)
        response["Last-Modified"] = http_date(parse_datetime(data["generated_at"]).timestamp())
        return response


class FanStageRefSerializer(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class ExpressionShareSerializer(serializers.Serializer):
    """Percent of faces by top apparent expression."""

    HAPPY = serializers.FloatField()
    SAD = serializers.FloatField()
    ANGRY = serializers.FloatField()
    CONFUSED = serializers.FloatField()
    DISGUSTED = serializers.FloatField()
    SURPRISED = serializers.FloatField()
    CALM = serializers.FloatField()
    FEAR = serializers.FloatField()


class FanNextSetSerializer(serializers.Serializer):
    artist = serializers.CharField()
    starts_at = serializers.DateTimeField()


class FanLiveStageSerializer(serializers.Serializer):
    rank = serializers.IntegerField(allow_null=True)
    stage = FanStageRefSerializer()
    now_playing = serializers.CharField(allow_null=True, help_text="The artist on stage now.")
    now_playing_until = serializers.DateTimeField(
        allow_null=True, help_text="When the current set ends (null: nobody is playing)."
    )
    next = FanNextSetSerializer(allow_null=True, help_text="The stage's next set, if any.")
    suppressed = serializers.BooleanField(help_text="Too few faces to publish a number.")
    faces = serializers.IntegerField(allow_null=True)
    vibe = serializers.FloatField(allow_null=True, help_text="0-100; see the API docs.")
    expression_share = ExpressionShareSerializer(allow_null=True)
    trend = serializers.ChoiceField(["rising", "steady", "falling"], allow_null=True)
    trend_delta = serializers.FloatField(allow_null=True)
    data_age_s = serializers.IntegerField(
        allow_null=True, help_text="Seconds since this stage's newest data was captured."
    )
    no_number_reason = serializers.ChoiceField(
        ["too_few_faces", "no_recent_data", "analysis_behind"],
        allow_null=True,
        help_text="Why there is no vibe: too few faces in the window, nothing captured in the "
        "window, or the analysis is behind (see `analysis`). Null when there is a number.",
    )


class FanAnalysisSerializer(serializers.Serializer):
    queued = serializers.IntegerField(help_text="Crops waiting for analysis.")
    in_progress = serializers.IntegerField()
    oldest_age_s = serializers.IntegerField(
        allow_null=True, help_text="How long the oldest waiting crop has waited."
    )
    behind = serializers.BooleanField()
    measured_at = serializers.DateTimeField()
    stale = serializers.BooleanField(help_text="The measurement is older than a minute.")


class FanLiveSerializer(serializers.Serializer):
    festival = serializers.CharField()
    generated_at = serializers.DateTimeField()
    window_seconds = serializers.IntegerField()
    min_faces = serializers.IntegerField()
    stages = FanLiveStageSerializer(many=True)
    analysis = FanAnalysisSerializer(
        allow_null=True, help_text="The analysis backlog, as last measured (null: never)."
    )


class FanTimelinePointSerializer(serializers.Serializer):
    minute = serializers.DateTimeField()
    suppressed = serializers.BooleanField()
    faces = serializers.IntegerField(allow_null=True)
    vibe = serializers.FloatField(allow_null=True)
    expression_share = ExpressionShareSerializer(allow_null=True)


class FanLiveView(FanView):
    def dispatch(self, request, *args, **kwargs):
        """The hot path of the whole product (every fan's app polls it): a fresh ranking of a
        public festival is answered from this process's memo of the cached entry after the
        throttle's one cache round trip, skipping the rest of the framework. The one request
        that claims an ageing entry's refresh recomputes it here. Anything else (no fresh entry,
        a festival that is not public, other methods, a throttled client) takes the normal path.
        """

        slug = kwargs.get("slug", "")
        entry = live_cache.memoized_live_entry(slug) if request.method == "GET" else None
        if (
            entry is None
            or not entry["public"]
            or not FixedWindowRateThrottle().allow_request(request, self)
        ):
            return super().dispatch(request, *args, **kwargs)
        if live_cache.due_for_refresh(entry) and live_cache.claim_live_refresh(slug, entry):
            entry = live_cache.refresh_claimed_live_entry(slug, entry)
            if entry is None:  # made private (or deleted) since the entry was cached
                return super().dispatch(request, *args, **kwargs)
        return self.live_response(entry)

    @staticmethod
    def live_response(entry: dict) -> HttpResponse:
        response = HttpResponse(entry["json"], content_type="application/json")
        response["Cache-Control"] = "public, max-age=5"
        return response

    @extend_schema(
        responses=FanLiveSerializer,
        operation_id="fan_live_ranking",
        description=(
            "Stages ranked by their vibe over the last five minutes. vibe = 100 × (0.7 × mean "
            "share of happy/surprised apparent expressions + 0.3 × crowd size relative to the "
            "stage's norm). Stages with fewer faces than the festival's minimum are suppressed. "
            "Each stage says how old its newest data is (`data_age_s`) and, without a number, "
            "why (`no_number_reason`); `analysis` is the analysis backlog."
        ),
    )
    def get(self, request, slug: str):
        return self.live_response(live_entry(self.festival(slug)))  # 404 unless public


class FanStageTimelineView(FanView):
    @extend_schema(
        responses=FanTimelinePointSerializer(many=True),
        operation_id="fan_stage_timeline",
        description="One stage's last hour, minute by minute: faces, vibe and expression share; "
        "a minute with too few faces shows no numbers (`suppressed`).",
    )
    def get(self, request, slug: str, stage_slug: str):
        festival = self.festival(slug)
        stage = get_object_or_404(Stage, festival=festival, slug=stage_slug)
        response = Response(
            FanTimelinePointSerializer(stage_timeline(festival, stage), many=True).data
        )
        response["Cache-Control"] = "public, max-age=30"
        return response


# --- published set reports (emotions.reports) ---------------------------------------------------
class FanSetReportSummarySerializer(serializers.Serializer):
    id = serializers.IntegerField()
    artist = serializers.CharField(source="set.artist")
    stage = serializers.CharField(source="stage.slug")
    starts_at = serializers.DateTimeField(source="set.starts_at")
    ends_at = serializers.DateTimeField(source="set.ends_at")
    suppressed = serializers.BooleanField(help_text="Too few faces for any number.")
    faces = serializers.IntegerField(allow_null=True)
    vibe = serializers.FloatField(allow_null=True)
    top_expression = serializers.CharField(allow_blank=True)


class FanSetReportListView(FanView):
    """Set reports an organizer published, for public festivals only; aggregate numbers only."""

    @extend_schema(
        responses=FanSetReportSummarySerializer(many=True), operation_id="fan_set_reports"
    )
    def get(self, request, slug: str):
        festival = self.festival(slug)
        response = Response(
            FanSetReportSummarySerializer(published_reports(festival), many=True).data
        )
        response["Cache-Control"] = "public, max-age=300"
        return response


class FanReportSetSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    artist = serializers.CharField()
    stage = FanStageRefSerializer()
    festival = FanStageRefSerializer(help_text="The festival's slug and name.")
    timezone = serializers.CharField(help_text="The festival's IANA time zone.")
    starts_at = serializers.DateTimeField()
    ends_at = serializers.DateTimeField()
    local_start = serializers.CharField(help_text="YYYY-MM-DD HH:MM in the festival's zone.")
    local_end = serializers.CharField()
    local_span = serializers.CharField(help_text='e.g. "Sun 25 Oct 01:30 CEST – 03:30 CET".')
    duration_minutes = serializers.IntegerField()


class FanReportOverallSerializer(serializers.Serializer):
    faces = serializers.IntegerField(help_text="Faces in the published minutes.")
    vibe = serializers.FloatField(allow_null=True)
    expression_share = ExpressionShareSerializer(allow_null=True)
    mean_scores = ExpressionShareSerializer(
        allow_null=True, help_text="Mean score (0-100) of each apparent expression."
    )
    top_expression = serializers.CharField(allow_blank=True)


class FanReportMomentSerializer(serializers.Serializer):
    minute = serializers.DateTimeField()
    local_time = serializers.CharField()
    local_label = serializers.CharField()
    vibe = serializers.FloatField(allow_null=True)
    faces = serializers.IntegerField(allow_null=True)
    top_expression = serializers.CharField(allow_blank=True)


class FanReportMinuteSerializer(serializers.Serializer):
    minute = serializers.DateTimeField()
    local_time = serializers.CharField()
    suppressed = serializers.BooleanField(help_text="Too few faces in this minute for numbers.")
    faces = serializers.IntegerField(allow_null=True)
    vibe = serializers.FloatField(allow_null=True)
    expression_share = ExpressionShareSerializer(allow_null=True)


class FanSetReportSerializer(serializers.Serializer):
    """A published set report as fans see it: aggregates only, small minutes suppressed."""

    id = serializers.IntegerField()
    set = FanReportSetSerializer()
    built_at = serializers.DateTimeField(allow_null=True)
    min_faces = serializers.IntegerField(help_text="Fewer faces than this in a minute: no numbers.")
    suppressed = serializers.BooleanField(help_text="No minute of the set had enough faces.")
    suppressed_message = serializers.CharField(allow_blank=True)
    overall = FanReportOverallSerializer(allow_null=True)
    peak = FanReportMomentSerializer(allow_null=True)
    low = FanReportMomentSerializer(allow_null=True)
    minutes = FanReportMinuteSerializer(many=True)
    model_statement = serializers.CharField(allow_blank=True)
    method = serializers.CharField(allow_blank=True)


class FanSetReportDetailView(FanView):
    @extend_schema(
        responses=FanSetReportSerializer,
        operation_id="fan_set_report",
        description="One published set report: the crowd's apparent expression over the set, "
        "minute by minute, its peak and low, overall numbers and how they were made.",
    )
    def get(self, request, slug: str, report_id: int):
        festival = self.festival(slug)
        report = get_object_or_404(published_reports(festival), pk=report_id)
        response = Response(public_payload(report))
        response["Cache-Control"] = "public, max-age=300"
        return response
