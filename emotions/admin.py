from django.contrib import admin

from emotions.models import IngestWatermark, MinuteRollup, Observation
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
    list_display = ["stage", "captured_until_ms", "last_run_at", "last_count"]
    list_select_related = ["stage"]
