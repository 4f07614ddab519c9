"""The festival's admin page: festivals are edited through operations.services (like the API),
with the lineup CSV import beside them (stages.admin)."""

from django.contrib import admin
from django.urls import path, reverse
from django.utils.html import format_html

from festival.admin import SingleOrganizationDefaultMixin
from festival.models import Festival
from festival.tenancy import TenantAdminMixin
from operations import services
from stages.admin import lineup_import_view


@admin.register(Festival)
class FestivalAdmin(SingleOrganizationDefaultMixin, TenantAdminMixin, admin.ModelAdmin):
    list_display = [
        "name",
        "slug",
        "organization",
        "starts_on",
        "ends_on",
        "public",
        "analysis_mode",
        "closed_at",
    ]
    list_filter = ["public", "analysis_mode", "organization"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}
    date_hierarchy = "starts_on"
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "organization",
                    "name",
                    "slug",
                    "timezone",
                    "starts_on",
                    "ends_on",
                    "public",
                ]
            },
        ),
        ("Privacy", {"fields": ["min_faces_public", "crop_retention_hours", "analysis_mode"]}),
        ("Operations", {"fields": ["ops_emails", "ops_webhook_url"]}),
        (
            "AWS resources (leave empty for the service defaults)",
            {
                "classes": ["collapse"],
                "fields": ["cloudwatch_namespace", "crops_bucket", "observations_table"],
            },
        ),
    ]
    list_display = [*list_display, "lineup"]

    def save_model(self, request, obj, form, change):
        if not change:
            return super().save_model(request, obj, form, change)
        services.update_festival(obj)  # like the API: cameras hear of a changed analysis mode

    @admin.display(description="lineup")
    def lineup(self, festival):
        url = reverse("admin:festival_lineup_import", args=[festival.pk])
        return format_html('<a href="{}">import CSV</a>', url)

    def get_urls(self):
        def view(request, object_id):
            return lineup_import_view(self, request, object_id)

        custom = [
            path(
                "<int:object_id>/lineup/",
                self.admin_site.admin_view(view),
                name="festival_lineup_import",
            )
        ]
        return custom + super().get_urls()
