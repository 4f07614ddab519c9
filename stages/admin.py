from django import forms
from django.contrib import admin
from django.utils import timezone

from festival.tenancy import TenantAdminMixin
from stages import services
from stages.models import Set, Stage
from stages.selectors import set_playing


@admin.register(Stage)
class StageAdmin(TenantAdminMixin, admin.ModelAdmin):
    organization_source = "festival"
    list_display = ["name", "festival", "position", "now_playing"]
    list_filter = ["festival"]
    search_fields = ["name", "slug", "festival__name"]
    prepopulated_fields = {"slug": ["name"]}
    list_select_related = ["festival"]

    @admin.display(description="Now playing")
    def now_playing(self, stage):
        playing = set_playing(stage.pk, timezone.now())
        return playing.artist if playing else "—"


class SetAdminForm(forms.ModelForm):
    class Meta:
        model = Set
        fields = ["stage", "artist", "starts_at", "ends_at", "notes"]

    def clean(self):
        data = super().clean()
        if data.get("stage") and data.get("starts_at") and data.get("ends_at"):
            services.validate_set_slot(
                data["stage"], data["starts_at"], data["ends_at"], exclude_id=self.instance.pk
            )
        return data


@admin.register(Set)
class SetAdmin(TenantAdminMixin, admin.ModelAdmin):
    form = SetAdminForm
    organization_source = "stage"
    list_display = ["artist", "stage", "festival_name", "starts_at", "ends_at"]
    list_filter = ["stage__festival", "stage"]
    search_fields = ["artist", "stage__name"]
    date_hierarchy = "starts_at"
    list_select_related = ["stage", "stage__festival"]

    @admin.display(description="Festival", ordering="stage__festival__name")
    def festival_name(self, item):
        return item.stage.festival.name

    def save_model(self, request, obj, form, change):
        services.save_set(obj)
