import io
import json
import zipfile

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import HttpResponse, HttpResponseRedirect
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import escape, format_html
from django.utils.safestring import mark_safe
from django.utils.timesince import timesince

from devices import selectors, services
from devices.models import Deployment, Device, EdgeRelease, Rollout
from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from festival.models import Role
from festival.tenancy import (
    HideOtherTenantsAdminMixin,
    TenantAdminMixin,
    has_role,
    organization_ids_for,
)


def _error_text(exc: DjangoValidationError) -> str:
    return "; ".join(exc.messages)


class DeploymentInline(admin.TabularInline):
    model = Deployment
    fk_name = "device"
    extra = 0
    max_num = 0
    can_delete = False
    fields = ["release", "state", "wave", "reason", "hold_reason", "updated_at"]
    readonly_fields = fields
    ordering = ["-created_at"]
    show_change_link = True


class DeviceForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        if self.instance.pk and "stage" in cleaned:
            # A form error on the stage field, before anything is saved.
            services.check_stage_change(self.instance, cleaned["stage"])
        return cleaned


@admin.register(Device)
class DeviceAdmin(TenantAdminMixin, admin.ModelAdmin):
    form = DeviceForm
    organization_source = "festival"
    list_display = [
        "name",
        "thing_name",
        "festival",
        "stage",
        "platform",
        "status",
        "seen",
        "fps",
        "faces",
        "spool",
        "errors",
        "input",
        "software_version",
        "deployment",
    ]
    list_filter = ["status", "platform", "festival"]
    search_fields = ["name", "thing_name"]
    list_select_related = ["festival", "stage"]
    readonly_fields = [
        "status",
        "last_seen_at",
        "software_version",
        "health",
        "input_alerts",
        "current_release",
        "certificate_arn",
        "registered_at",
        "greengrass_group_id",
        "shadow_synced_at",
        "shadow_error",
        "created_at",
        "updated_at",
    ]
    exclude = ["policy_name", "role_name", "role_alias", "certificate_id"]
    inlines = [DeploymentInline]
    actions = [
        "register",
        "deploy_latest",
        "deploy_latest_forced",
        "roll_out_latest",
        "pause",
        "resume",
        "deregister",
    ]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and obj.registered_at:
            fields.append("thing_name")  # its certificate, policy and role are named after it
        return fields

    def formfield_for_dbfield(self, db_field, request, **kwargs):
        field = super().formfield_for_dbfield(db_field, request, **kwargs)
        if db_field.name == "config" and field is not None:
            defaults = ", ".join(f"{k}={v!r}" for k, v in EDGE_CONFIG_DEFAULTS.items())
            field.help_text = (
                f"Overrides of the edge defaults: {defaults}. Masks are polygons in 0..1 frame "
                "coordinates. Changes are pushed to the device's shadow (no redeploy)."
            )
        return field

    @admin.display(description="input")
    def input(self, device):
        """The camera's open input-health incidents (black, frozen, dark...), or ok."""
        return ", ".join(sorted(device.input_alerts)) or "ok"

    @admin.display(description="Last seen", ordering="last_seen_at")
    def seen(self, device):
        if device.last_seen_at is None:
            return "never"
        return f"{timesince(device.last_seen_at, timezone.now())} ago"

    @admin.display(description="fps")
    def fps(self, device):
        return device.health.get("fps", "–")

    @admin.display(description="faces")
    def faces(self, device):
        return device.health.get("faces_detected", "–")

    @admin.display(description="spool")
    def spool(self, device):
        return device.health.get("spool_depth", "–")

    @admin.display(description="errors")
    def errors(self, device):
        return device.health.get("errors", "–")

    @admin.display(description="Last deployment")
    def deployment(self, device):
        latest = device.deployments.order_by("-created_at", "-id").first()
        if latest is None:
            return "–"
        url = reverse("admin:devices_deployment_change", args=[latest.pk])
        return format_html('<a href="{}">{} {}</a>', url, latest.release.version, latest.state)

    def save_model(self, request, obj, form, change):
        if not change:
            super().save_model(request, obj, form, change)
            return
        # Through the service (same rules as the API): config pushed to the shadow, a registered
        # camera's stage kept (DeviceForm.clean already showed why).
        saved = Device.objects.get(pk=obj.pk)
        changes = {name: getattr(obj, name) for name in form.changed_data}
        try:
            services.update_device(saved, **changes)
        except DjangoValidationError as exc:  # it was registered meanwhile
            messages.error(request, f"{obj} was not changed: {_error_text(exc)}")
            return
        if "config" in form.changed_data and saved.registered_at and saved.shadow_error:
            messages.warning(request, f"{obj}: saved, but {saved.shadow_error}")

    def delete_model(self, request, obj):
        try:
            services.delete_device(obj)
        except DjangoValidationError as exc:
            messages.error(request, f"{obj} was kept: {_error_text(exc)}")

    def delete_queryset(self, request, queryset):
        for device in queryset:
            self.delete_model(request, device)

    def _writable(self, request, queryset):
        """Selected devices where the user may make changes; the others are reported."""
        allowed = []
        for device in queryset.select_related("festival", "stage", "organization"):
            if has_role(request.user, device.organization_id, Role.OPERATOR):
                allowed.append(device)
            else:
                messages.error(request, f"{device}: your role there is read-only.")
        return allowed

    @admin.action(description="Register in AWS IoT and download credentials (shown once)")
    def register(self, request, queryset):
        buffer = io.BytesIO()
        done = 0
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            for device in self._writable(request, queryset):
                try:
                    bundle = services.register_device(device)
                except DjangoValidationError as exc:
                    messages.error(request, f"{device}: {_error_text(exc)}")
                    continue
                for name, text in bundle.files().items():
                    archive.writestr(f"{device.thing_name}/{name}", text)
                done += 1
        if not done:
            return None
        response = HttpResponse(buffer.getvalue(), content_type="application/zip")
        response["Content-Disposition"] = 'attachment; filename="stagepulse-credentials.zip"'
        return response

    @admin.action(description="Deploy the newest edge release (waits for a gap between sets)")
    def deploy_latest(self, request, queryset, force: bool = False):
        release = selectors.latest_release()
        if release is None:
            messages.error(request, "No edge release exists yet: build one first.")
            return
        for device in self._writable(request, queryset):
            try:
                deployment = services.start_deployment(
                    device, release, user=request.user, force=force
                )
            except DjangoValidationError as exc:
                messages.error(request, f"{device}: {_error_text(exc)}")
                continue
            note = f": {deployment.hold_reason}" if deployment.hold_reason else ""
            messages.success(
                request, f"{device}: deployment #{deployment.pk} of {release} queued{note}"
            )

    @admin.action(description="Deploy the newest edge release now, even during a set (forced)")
    def deploy_latest_forced(self, request, queryset):
        self.deploy_latest(request, queryset, force=True)

    @admin.action(description="Roll out the newest edge release: canaries first, then the rest")
    def roll_out_latest(self, request, queryset):
        release = selectors.latest_release()
        if release is None:
            messages.error(request, "No edge release exists yet: build one first.")
            return
        devices = list(self._writable(request, queryset))
        for festival_id in sorted({d.festival_id for d in devices}):
            chosen = [d for d in devices if d.festival_id == festival_id]
            try:
                rollout = services.start_rollout(chosen, release, user=request.user)
            except DjangoValidationError as exc:
                messages.error(request, _error_text(exc))
                continue
            messages.success(request, f"rollout #{rollout.pk}: {rollout.history[-1]['note']}")

    def _set_paused(self, request, queryset, paused: bool):
        for device in self._writable(request, queryset):
            services.set_paused(device, paused)
            word = "paused" if paused else "resumed"
            if device.shadow_error:
                messages.warning(request, f"{device}: {word}, but {device.shadow_error}")
            else:
                messages.success(request, f"{device}: {word}")

    @admin.action(description="Pause (privacy switch, pushed to the device)")
    def pause(self, request, queryset):
        self._set_paused(request, queryset, True)

    @admin.action(description="Resume")
    def resume(self, request, queryset):
        self._set_paused(request, queryset, False)

    @admin.action(description="Deregister (revoke and delete certificate, policy, thing)")
    def deregister(self, request, queryset):
        for device in self._writable(request, queryset):
            try:
                services.deregister_device(device)
            except DjangoValidationError as exc:
                messages.error(request, f"{device}: {_error_text(exc)}")
                continue
            messages.success(request, f"{device}: deregistered")


@admin.register(Deployment)
class DeploymentAdmin(TenantAdminMixin, admin.ModelAdmin):
    list_display = ["id", "device", "release", "platform", "state", "why", "updated_at"]
    list_filter = ["state", "platform", "device__festival"]
    list_select_related = ["device", "release"]
    search_fields = ["device__thing_name", "device__name", "release__version"]
    readonly_fields = [
        "device",
        "release",
        "platform",
        "state",
        "reason",
        "hold_reason",
        "held_until",
        "force",
        "rollout",
        "wave",
        "progress",
        "resources_pretty",
        "rollback_of",
        "created_by",
        "created_at",
        "updated_at",
        "finished_at",
    ]
    exclude = ["resources", "history", "lease_until", "organization", "polls", "deadline_at"]

    @admin.display(description="Why")
    def why(self, deployment):
        """A failure's reason, or why it is still waiting (a set playing on the stage)."""
        return deployment.reason or deployment.hold_reason

    @admin.display(description="Progress")
    def progress(self, deployment):
        rows = "".join(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>".format(
                escape(e["at"]), escape(e["state"]), escape(e["note"])
            )
            for e in deployment.history
        )
        return mark_safe(f"<table>{rows}</table>")  # every cell is escaped above

    @admin.display(description="AWS resources")
    def resources_pretty(self, deployment):
        return format_html("<pre>{}</pre>", json.dumps(deployment.resources, indent=2))

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Rollout)
class RolloutAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Read-only: a rollout is started from the device list and moved on by the beat task."""

    list_display = ["id", "festival", "release", "state", "reason", "updated_at"]
    list_filter = ["state", "festival"]
    list_select_related = ["festival", "release"]
    readonly_fields = [
        "festival",
        "release",
        "state",
        "force",
        "reason",
        "watch_until",
        "progress",
        "created_by",
        "created_at",
        "finished_at",
    ]
    exclude = ["organization", "history", "baseline", "canaries", "rest"]
    inlines = []

    @admin.display(description="Progress")
    def progress(self, rollout):
        rows = "".join(
            "<tr><td>{}</td><td>{}</td></tr>".format(escape(e["at"]), escape(e["note"]))
            for e in rollout.history
        )
        cells = (
            (d.pk, d.wave, d.device.thing_name, d.state, d.reason or d.hold_reason)
            for d in rollout.deployments.select_related("device").order_by("pk")
        )
        deps = "".join(
            "<tr>" + "".join(f"<td>{escape(cell)}</td>" for cell in row) + "</tr>" for row in cells
        )
        return mark_safe(f"<table>{rows}</table><table>{deps}</table>")  # cells escaped above

    def has_add_permission(self, request, *args):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(EdgeRelease)
class EdgeReleaseAdmin(HideOtherTenantsAdminMixin, admin.ModelAdmin):
    """Global: the same software for every organization (no tenant data in a release)."""

    list_display = ["version", "short_sha", "size_bytes", "created_at"]
    readonly_fields = ["version", "sha256", "bucket", "key", "size_bytes", "manifest", "created_at"]
    exclude = ["created_by"]
    change_list_template = "admin/devices/edgerelease/change_list.html"

    @admin.display(description="sha256")
    def short_sha(self, release):
        return release.sha256[:12]

    def get_urls(self):
        return [
            path("build/", self.admin_site.admin_view(self.build_view), name="devices_build"),
            *super().get_urls(),
        ]

    def _can_build(self, request) -> bool:
        user = request.user
        return user.is_superuser or bool(organization_ids_for(user, Role.OPERATOR))

    def build_view(self, request):
        if request.method != "POST" or not self._can_build(request):
            raise PermissionDenied
        try:
            release = services.build_edge_release(user=request.user)
        except DjangoValidationError as exc:
            messages.error(request, _error_text(exc))
        else:
            messages.success(request, f"{release} ({release.uri})")
        return HttpResponseRedirect(reverse("admin:devices_edgerelease_changelist"))

    def changelist_view(self, request, extra_context=None):
        extra_context = {**(extra_context or {}), "can_build": self._can_build(request)}
        return super().changelist_view(request, extra_context)

    def has_module_permission(self, request):
        return request.user.is_superuser or bool(organization_ids_for(request.user))

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
