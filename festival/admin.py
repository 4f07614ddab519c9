from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Q

from festival.models import Festival, Membership, Organization, Role
from festival.tenancy import (
    HideOtherTenantsAdminMixin,
    TenantAdminMixin,
    organization_ids_for,
    organizations_for,
)


class SingleOrganizationDefaultMixin:
    """Pre-fills `organization` when the staff user can only write to one."""

    def get_changeform_initial_data(self, request):
        initial = super().get_changeform_initial_data(request)
        choices = list(organizations_for(request.user, self.write_role)[:2])
        if len(choices) == 1:
            initial.setdefault("organization", choices[0].pk)
        return initial


@admin.register(Organization)
class OrganizationAdmin(HideOtherTenantsAdminMixin, admin.ModelAdmin):
    list_display = ["name", "slug", "created_at"]
    search_fields = ["name", "slug"]
    prepopulated_fields = {"slug": ["name"]}

    def get_queryset(self, request):
        if request.user.is_superuser:
            return super().get_queryset(request)
        return super().get_queryset(request).filter(id__in=organization_ids_for(request.user))

    def has_module_permission(self, request):
        return request.user.is_superuser or bool(organization_ids_for(request.user))

    def has_view_permission(self, request, obj=None):
        return self.has_module_permission(request)

    def has_add_permission(self, request):
        return request.user.is_superuser

    def has_change_permission(self, request, obj=None):
        if request.user.is_superuser:
            return True
        owned = organization_ids_for(request.user, Role.OWNER)
        return bool(owned) if obj is None else obj.pk in owned

    def has_delete_permission(self, request, obj=None):
        return request.user.is_superuser


class MembershipAdminForm(forms.ModelForm):
    """Owners add people by username or e-mail: a user picker would list every tenant's users."""

    person = forms.CharField(label="Username or e-mail", required=False)

    class Meta:
        model = Membership
        fields = ["organization", "role"]

    def clean(self):
        data = super().clean()
        if self.instance.pk is None:
            person = (data.get("person") or "").strip()
            user = (
                get_user_model()
                .objects.filter(Q(username=person) | Q(email__iexact=person))
                .first()
                if person
                else None
            )
            if user is None:
                raise forms.ValidationError(
                    {"person": "No StagePulse user with that username or e-mail."}
                )
            self.instance.user = user
            organization = data.get("organization")
            if (
                organization
                and Membership.objects.filter(organization=organization, user=user).exists()
            ):
                raise forms.ValidationError({"person": f"{user} is already a member."})
        return data


@admin.register(Membership)
class MembershipAdmin(SingleOrganizationDefaultMixin, TenantAdminMixin, admin.ModelAdmin):
    form = MembershipAdminForm
    write_role = Role.OWNER
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]

    def get_fields(self, request, obj=None):
        return ["organization", "role"] if obj else ["person", "organization", "role"]

    def get_readonly_fields(self, request, obj=None):
        return ["organization"] if obj else []


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
