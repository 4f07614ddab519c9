from django import forms
from django.contrib import admin
from django.contrib.admin.widgets import AdminSplitDateTime
from django.utils import timezone

from festival.localtime import FestivalZoneAdminMixin, local_label
from festival.models import Role
from festival.tenancy import TenantAdminMixin, has_role
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
    readonly_fields = ["booth_screen"]
    actions = ["issue_screen_links", "revoke_screen_links"]

    @admin.display(description="DJ booth screen")
    def booth_screen(self, stage):
        from django.urls import reverse
        from django.utils.html import format_html

        if not stage.pk or not stage.screen_key:
            return "No link. Use the action “Create a new booth screen link” in the stage list."
        url = reverse("stage-screen", args=[stage.screen_key])
        return format_html(
            '<a href="{}" target="_blank" rel="noreferrer">{}</a> — anyone with this link sees '
            "this stage's live vibe; revoke it with the action in the stage list.",
            url,
            url,
        )

    def _operated(self, request, queryset):
        return [s for s in queryset if has_role(request.user, s.organization_id, Role.OPERATOR)]

    @admin.action(description="Create a new booth screen link (the old one stops working)")
    def issue_screen_links(self, request, queryset):
        stages = self._operated(request, queryset)
        for stage in stages:
            services.issue_screen_link(stage)
        self.message_user(request, f"New booth screen link for {len(stages)} stage(s).")

    @admin.action(description="Revoke the booth screen link")
    def revoke_screen_links(self, request, queryset):
        stages = self._operated(request, queryset)
        for stage in stages:
            services.revoke_screen_link(stage)
        self.message_user(request, f"Booth screen link revoked for {len(stages)} stage(s).")

    @admin.display(description="Now playing")
    def now_playing(self, stage):
        playing = set_playing(stage.pk, timezone.now())
        return playing.artist if playing else "—"


class LocalSplitDateTimeWidget(AdminSplitDateTime):
    """The admin's date + time inputs, fed a local 'YYYY-MM-DD HH:MM[+offset]' string so the
    hour the clocks go back keeps its offset when the form is shown again."""

    def decompress(self, value):
        if isinstance(value, str) and " " in value:
            return value.split(" ", 1)
        return super().decompress(value)


class LocalDateTimeField(forms.MultiValueField):
    """A date and a wall-clock time in the festival's zone, as text; the form turns it into UTC
    once it knows the stage (and so the zone) with the lineup CSV's parser, which refuses times
    a DST change makes ambiguous or void with the same messages the import gives."""

    widget = LocalSplitDateTimeWidget

    def __init__(self, **kwargs):
        fields = (forms.DateField(), forms.CharField())
        super().__init__(fields=fields, require_all_fields=True, **kwargs)

    def compress(self, data_list):
        if not data_list:
            return None
        day, time = data_list
        return f"{day.isoformat()} {time.strip()}"


class SetAdminForm(forms.ModelForm):
    starts_at = LocalDateTimeField(label="Starts (festival local time)")
    ends_at = LocalDateTimeField(label="Ends (festival local time)")

    class Meta:
        model = Set
        fields = ["stage", "artist", "starts_at", "ends_at", "notes"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        zone = self._zone_hint()
        for name in ("starts_at", "ends_at"):
            self.fields[name].help_text = (
                f"In the festival's time zone ({zone}). For the hour the clocks go back, "
                "add the offset to the time, e.g. 02:30+01:00."
            )
            value = getattr(self.instance, name, None)
            if self.instance.pk and value is not None:
                self.initial[name] = services.format_local_datetime(
                    value, self.instance.stage.festival.tz
                )

    def _zone_hint(self) -> str:
        if self.instance.pk:
            return self.instance.stage.festival.timezone
        stage_field = self.fields.get("stage")
        zones = set()
        if stage_field is not None:
            zones = set(stage_field.queryset.values_list("festival__timezone", flat=True))
        if len(zones) == 1:
            return zones.pop()
        return "the time zone of the stage's festival"

    def clean(self):
        data = super().clean()
        stage = data.get("stage")
        if stage is None:
            return data
        tz = stage.festival.tz
        for name in ("starts_at", "ends_at"):
            text = data.get(name)
            if not isinstance(text, str):
                continue
            try:
                data[name] = services.parse_local_datetime(text, tz)
            except ValueError as error:
                del data[name]
                self.add_error(name, str(error))
        if data.get("starts_at") and data.get("ends_at"):
            services.validate_set_slot(
                stage, data["starts_at"], data["ends_at"], exclude_id=self.instance.pk
            )
        return data


@admin.register(Set)
class SetAdmin(FestivalZoneAdminMixin, TenantAdminMixin, admin.ModelAdmin):
    form = SetAdminForm
    organization_source = "stage"
    festival_zone_path = "stage__festival__timezone"
    list_display = ["artist", "stage", "festival_name", "starts_local", "ends_local"]
    list_filter = ["stage__festival", "stage"]
    search_fields = ["artist", "stage__name"]
    date_hierarchy = "starts_at"
    list_select_related = ["stage", "stage__festival"]

    def festival_zone_for(self, obj):
        return obj.stage.festival.tz

    @admin.display(description="Festival", ordering="stage__festival__name")
    def festival_name(self, item):
        return item.stage.festival.name

    @admin.display(description="Starts (local)", ordering="starts_at")
    def starts_local(self, item):
        return local_label(item.starts_at, item.stage.festival.tz)

    @admin.display(description="Ends (local)", ordering="ends_at")
    def ends_local(self, item):
        return local_label(item.ends_at, item.stage.festival.tz)

    def save_model(self, request, obj, form, change):
        services.save_set(obj)


# --- Lineup CSV in the admin ---------------------------------------------------------------------
class LineupUploadForm(forms.Form):
    file = forms.FileField(label="Lineup CSV", help_text="stage,artist,starts_at,ends_at,notes")
    replace = forms.BooleanField(
        required=False,
        label="Replace the lineup",
        help_text="Make the lineup exactly the file (unchanged rows keep their set and report).",
    )
    force = forms.BooleanField(
        required=False,
        label="Also delete sets that have a report",
        help_text="Only with replace: the sets missing from the file go, with their reports.",
    )


def lineup_import_view(model_admin, request, object_id):
    """Upload, dry-run preview, then apply: the API's import_lineup, twice on the same text.

    The preview page carries the file's text in a hidden field, so "Apply" imports exactly what
    was previewed (and a lineup edited meanwhile is checked again, all-or-nothing)."""
    from django.contrib import messages
    from django.core.exceptions import PermissionDenied
    from django.shortcuts import get_object_or_404, redirect
    from django.template.response import TemplateResponse
    from django.urls import reverse

    festival = get_object_or_404(model_admin.get_queryset(request), pk=object_id)
    if not has_role(request.user, festival.organization_id, Role.OPERATOR):
        raise PermissionDenied
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.model._meta,
        "festival": festival,
        "title": f"Import lineup: {festival.name}",
        "form": LineupUploadForm(),
    }
    if request.method == "POST" and request.POST.get("step") == "apply":
        content = request.POST.get("content", "")
        replace = request.POST.get("replace") == "1"
        force = request.POST.get("force") == "1"
        result = services.import_lineup(festival, content, replace=replace, force=force)
        if result.ok:
            messages.success(
                request,
                f"Lineup imported: {result.created} new, {result.unchanged} unchanged, "
                f"{result.deleted} deleted.",
            )
            changelist = reverse("admin:stages_set_changelist")
            return redirect(f"{changelist}?stage__festival__id__exact={festival.pk}")
        context.update(result=result, content=content, replace=replace, force=force)
        messages.error(request, "The lineup changed since the preview; nothing was imported.")
    elif request.method == "POST":
        form = LineupUploadForm(request.POST, request.FILES)
        context["form"] = form
        if form.is_valid():
            raw = form.cleaned_data["file"].read()
            replace, force = form.cleaned_data["replace"], form.cleaned_data["force"]
            result = services.import_lineup(
                festival, raw, replace=replace, force=force, dry_run=True
            )
            text = raw.decode("utf-8-sig", errors="replace")
            context.update(result=result, content=text, replace=replace, force=force)
    return TemplateResponse(request, "admin/stages/lineup_import.html", context)
