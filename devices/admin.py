from django.contrib import admin
from django.utils import timezone
from django.utils.timesince import timesince

from devices.models import Device
from festival.tenancy import TenantAdminMixin


@admin.register(Device)
class DeviceAdmin(TenantAdminMixin, admin.ModelAdmin):
    organization_source = "festival"
    list_display = [
        "name",
        "thing_name",
        "festival",
        "stage",
        "platform",
        "status",
        "seen",
        "software_version",
    ]
    list_filter = ["status", "platform", "festival"]
    search_fields = ["name", "thing_name"]
    list_select_related = ["festival", "stage"]
    readonly_fields = ["status", "last_seen_at", "software_version", "created_at", "updated_at"]

    @admin.display(description="Last seen", ordering="last_seen_at")
    def seen(self, device):
        if device.last_seen_at is None:
            return "never"
        return f"{timesince(device.last_seen_at, timezone.now())} ago"
