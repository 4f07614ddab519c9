from django.contrib import admin

from emotions.models import (
    AnalysisBacklog,
    IngestRejection,
    IngestWatermark,
    MinuteRollup,
    Observation,
    SetReport,
    StreamCheckpoint,
)
from emotions.reports.services import request_rebuild
from festival.localtime import FestivalZoneAdminMixin, local_label, local_time_label
from festival.tenancy import TenantAdminMixin, has_role


class ReadOnlyTenantAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Pipeline data is written by ingest only; organizers look, never edit."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class InternalPipelineAdmin(ReadOnlyTenantAdmin):
    """Pipeline internals (observations, rollups, watermarks): superusers debug with them;
    organizers work from reports and the dashboard and never see these pages."""

    def has_module_permission(self, request):
        return self._is_super(request)

    def has_view_permission(self, request, obj=None):
        return self._is_super(request)


@admin.register(Observation)
class ObservationAdmin(InternalPipelineAdmin):
    list_display = ["captured_at", "stage", "set", "top_emotion", "happy", "calm", "source"]
    list_filter = ["festival", "stage", "top_emotion", "source"]
    date_hierarchy = "captured_at"
    list_select_related = ["stage", "set"]
    show_full_result_count = False


@admin.register(MinuteRollup)
class MinuteRollupAdmin(InternalPipelineAdmin):
    list_display = ["minute", "stage", "faces"]
    list_filter = ["festival", "stage"]
    date_hierarchy = "minute"
    list_select_related = ["stage"]


@admin.register(IngestWatermark)
class IngestWatermarkAdmin(InternalPipelineAdmin):
    list_display = ["stage", "captured_until_ms", "last_run_at", "last_count", "lag_ms"]
    list_select_related = ["stage"]


@admin.register(IngestRejection)
class IngestRejectionAdmin(ReadOnlyTenantAdmin):
    """Observations the ingest refused, per festival, stage and reason."""

    list_display = ["reason", "festival", "stage", "count", "last_at", "last_detail", "last_key"]
    list_filter = ["reason", "festival"]
    list_select_related = ["festival", "stage"]


class OperationsOnlyAdmin(admin.ModelAdmin):
    """Service-wide ingest state (no tenant): superusers only, read only."""

    def has_module_permission(self, request):
        return request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return request.user.is_superuser

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(StreamCheckpoint)
class StreamCheckpointAdmin(OperationsOnlyAdmin):
    list_display = ["shard_id", "parent_shard_id", "sequence_number", "finished", "records"]
    list_filter = ["finished"]


@admin.register(AnalysisBacklog)
class AnalysisBacklogAdmin(OperationsOnlyAdmin):
    list_display = ["queue", "measured_at", "depth", "in_flight", "oldest_age_s", "alerted_at"]


@admin.register(SetReport)
class SetReportAdmin(FestivalZoneAdminMixin, ReadOnlyTenantAdmin):
    festival_zone_path = "festival__timezone"
    list_display = [
        "set",
        "stage",
        "set_time",
        "status",
        "built_local",
        "faces",
        "vibe",
        "peak",
        "published",
        "rebuild_reason",
    ]
    list_filter = ["festival", "stage", "status", "published", "suppressed"]
    list_select_related = ["set", "stage", "festival"]
    readonly_fields = ["page_link", "time_zone", "set_time", "peak", "low", "built_local"]
    # The raw UTC columns are replaced by the local-time fields above.
    exclude = ["payload", "peak_at", "low_at", "built_at", "claimed_at", "announced_at"]
    actions = ["rebuild_reports"]

    def festival_zone_for(self, obj):
        return obj.festival.tz

    @admin.display(description="time zone")
    def time_zone(self, obj):
        return obj.festival.timezone

    @admin.display(description="set (local)", ordering="set__starts_at")
    def set_time(self, obj):
        tz = obj.festival.tz
        return f"{local_label(obj.set.starts_at, tz)} – {local_time_label(obj.set.ends_at, tz)}"

    @admin.display(description="built (local)", ordering="built_at")
    def built_local(self, obj):
        return local_label(obj.built_at, obj.festival.tz)

    @admin.display(description="peak")
    def peak(self, obj):
        if obj.peak_at is None:
            return "—"
        return f"Peak at {local_time_label(obj.peak_at, obj.festival.tz)} (vibe {obj.peak_vibe})"

    @admin.display(description="low")
    def low(self, obj):
        if obj.low_at is None:
            return "no low (a single minute, or a flat curve)" if obj.peak_at else "—"
        return f"Low at {local_time_label(obj.low_at, obj.festival.tz)} (vibe {obj.low_vibe})"

    @admin.display(description="report page")
    def page_link(self, obj):
        from django.urls import reverse
        from django.utils.html import format_html

        return format_html(
            '<a href="{}">open the printable report</a>', reverse("set-report-page", args=[obj.pk])
        )

    @admin.action(description="Rebuild the selected reports (late data)")
    def rebuild_reports(self, request, queryset):
        queued = 0
        for report in queryset:
            if has_role(request.user, report.organization_id, self.write_role):
                queued += request_rebuild(report, f"requested by {request.user.get_username()}")
        self.message_user(
            request, f"{queued} report(s) queued; the sweeper rebuilds them within a minute."
        )
