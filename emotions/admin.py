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
from festival.tenancy import TenantAdminMixin


class ReadOnlyTenantAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Pipeline data is written by ingest only; organizers look, never edit."""

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


@admin.register(Observation)
class ObservationAdmin(ReadOnlyTenantAdmin):
    list_display = ["captured_at", "stage", "set", "top_emotion", "happy", "calm", "source"]
    list_filter = ["festival", "stage", "top_emotion", "source"]
    date_hierarchy = "captured_at"
    list_select_related = ["stage", "set"]
    show_full_result_count = False


@admin.register(MinuteRollup)
class MinuteRollupAdmin(ReadOnlyTenantAdmin):
    list_display = ["minute", "stage", "faces"]
    list_filter = ["festival", "stage"]
    date_hierarchy = "minute"
    list_select_related = ["stage"]


@admin.register(IngestWatermark)
class IngestWatermarkAdmin(ReadOnlyTenantAdmin):
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
class SetReportAdmin(ReadOnlyTenantAdmin):
    list_display = [
        "set",
        "stage",
        "status",
        "built_at",
        "faces",
        "vibe",
        "published",
        "rebuild_reason",
    ]
    list_filter = ["festival", "stage", "status", "published", "suppressed"]
    list_select_related = ["set", "stage"]
    readonly_fields = ["page_link"]
    exclude = ["payload"]
    actions = ["rebuild_reports"]

    @admin.display(description="report page")
    def page_link(self, obj):
        from django.urls import reverse
        from django.utils.html import format_html

        return format_html(
            '<a href="{}">open the printable report</a>', reverse("set-report-page", args=[obj.pk])
        )

    @admin.action(description="Rebuild the selected reports (late data)")
    def rebuild_reports(self, request, queryset):
        from emotions.reports.services import request_rebuild
        from festival.tenancy import has_role

        queued = 0
        for report in queryset:
            if has_role(request.user, report.organization_id, self.write_role):
                queued += request_rebuild(report, f"requested by {request.user.get_username()}")
        self.message_user(
            request, f"{queued} report(s) queued; the sweeper rebuilds them within a minute."
        )
