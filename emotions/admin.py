from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.utils import timezone

from devices.models import Device
from emotions.comparison import services as comparison
from emotions.models import (
    AnalysisBacklog,
    ComparisonRun,
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


class ComparisonRunForm(forms.ModelForm):
    """Starting a run: the same checks as the API (comparison.services.validate_comparison)."""

    class Meta:
        model = ComparisonRun
        fields = ["festival", "name", "devices", "starts_at", "ends_at", "sample_rate"]

    def clean(self):
        data = super().clean()
        if self.instance.pk or self.errors:
            return data
        try:
            comparison.validate_comparison(
                data["festival"],
                list(data.get("devices") or []),
                data["starts_at"],
                data["ends_at"],
                data["sample_rate"],
                now=timezone.now(),
            )
        except ValidationError as error:
            for field, messages in error.message_dict.items():
                for message in messages:
                    self.add_error(field if field in self.fields else None, message)
        return data


@admin.register(ComparisonRun)
class ComparisonRunAdmin(FestivalZoneAdminMixin, TenantAdminMixin, admin.ModelAdmin):
    """Cloud or edge? Start a run for chosen cameras and a window (docs/comparison.md); its page
    shows the result. A run is started and cancelled through the services the API calls."""

    form = ComparisonRunForm
    festival_zone_path = "festival__timezone"
    list_display = ["__str__", "festival", "window", "sample_rate", "status", "pairs"]
    list_filter = ["festival"]
    list_select_related = ["festival"]
    readonly_fields = [
        "page_link", "status", "cancel_reason", "key", "pairs", "refused", "result_at"
    ]  # fmt: skip
    actions = ["cancel_runs", "recompute_results"]

    def festival_zone_for(self, obj):
        return obj.festival.tz

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [*self.readonly_fields, "festival", "name", "devices", "starts_at", "ends_at",
                "sample_rate"]  # fmt: skip

    def get_fields(self, request, obj=None):
        fields = ["festival", "name", "devices", "starts_at", "ends_at", "sample_rate"]
        return fields if obj is None else [*self.readonly_fields, *fields]

    def formfield_for_manytomany(self, db_field, request, **kwargs):
        if db_field.name == "devices" and not self._is_super(request):
            kwargs["queryset"] = Device.objects.for_user(request.user, self.write_role)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    @admin.display(description="status")
    def status(self, obj):
        return obj.status_at(timezone.now())

    @admin.display(description="window (local)", ordering="starts_at")
    def window(self, obj):
        tz = obj.festival.tz
        return f"{local_label(obj.starts_at, tz)} – {local_label(obj.ends_at, tz)}"

    @admin.display(description="result page")
    def page_link(self, obj):
        from django.urls import reverse
        from django.utils.html import format_html

        return format_html(
            '<a href="{}">open the comparison page</a>',
            reverse("comparison-page", args=[obj.pk]),
        )

    def save_model(self, request, obj, form, change):
        if change:
            return  # a run is not edited: cancel it and start another
        data = form.cleaned_data
        run = comparison.start_comparison(
            data["festival"],
            list(data["devices"]),
            starts_at=data["starts_at"],
            ends_at=data["ends_at"],
            sample_rate=data["sample_rate"],
            name=data.get("name", ""),
            user=request.user,
        )
        obj.pk, obj.key, obj.organization_id = run.pk, run.key, run.organization_id
        obj._state.adding = False

    def delete_model(self, request, obj):
        comparison.delete_comparison(obj)

    def delete_queryset(self, request, queryset):
        for run in queryset:
            comparison.delete_comparison(run)

    def save_related(self, request, form, formsets, change):
        """The service set the cameras (and pushed their configuration)."""

    @admin.action(description="Cancel the selected runs (cameras stop sampling)")
    def cancel_runs(self, request, queryset):
        cancelled = 0
        for run in queryset:
            if not has_role(request.user, run.organization_id, self.write_role):
                continue
            try:
                comparison.cancel_comparison(run)
            except ValidationError:
                continue
            cancelled += 1
        self.message_user(request, f"{cancelled} run(s) cancelled.")

    @admin.action(description="Recompute the selected runs' results now")
    def recompute_results(self, request, queryset):
        done = 0
        for run in queryset:
            if has_role(request.user, run.organization_id, self.write_role):
                comparison.compute_result(run)
                done += 1
        self.message_user(request, f"{done} result(s) recomputed.")
