from django import forms
from django.contrib import admin, messages
from django.contrib.admin.forms import AdminAuthenticationForm
from django.core.exceptions import ValidationError

from festival import login_guard, selectors, services
from festival.authentication import lockout_message
from festival.models import (
    Invitation,
    InvitationStatus,
    Membership,
    MyInvitation,
    Organization,
    Role,
)
from festival.tenancy import (
    HideOtherTenantsAdminMixin,
    TenantAdminMixin,
    organization_ids_for,
    organizations_for,
)


class GuardedAdminLoginForm(AdminAuthenticationForm):
    """The admin login says when the brute-force guard has locked the account or address (the
    backend refuses the login either way; this only makes the page say why)."""

    def clean(self):
        wait = login_guard.locked_for(self.request, self.cleaned_data.get("username") or "")
        if wait:
            raise forms.ValidationError(lockout_message(wait), code="login_locked")
        return super().clean()


admin.site.login_form = GuardedAdminLoginForm


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
    """Only the role changes here; people join by accepting an invitation."""

    class Meta:
        model = Membership
        fields = ["role"]

    def clean(self):
        data = super().clean()
        if self.instance.pk and data.get("role"):
            services.check_keeps_an_owner(self.instance, data["role"])  # instance: still the old
        return data


@admin.register(Membership)
class MembershipAdmin(TenantAdminMixin, admin.ModelAdmin):
    """Roles and removals go through festival.services, like the API: an organization keeps an
    owner. Nobody is added here: owners invite (Invitations) and the person accepts."""

    form = MembershipAdminForm
    write_role = Role.OWNER
    list_display = ["user", "organization", "role", "created_at"]
    list_filter = ["role", "organization"]
    search_fields = ["user__username", "user__email", "organization__name"]
    fields = ["user", "organization", "role"]
    readonly_fields = ["user", "organization"]

    def has_add_permission(self, request, *args):
        return False

    def has_delete_permission(self, request, obj=None):
        if obj is not None:
            try:
                services.check_keeps_an_owner(obj, None)
            except ValidationError:
                return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        services.change_role(Membership.objects.get(pk=obj.pk), form.cleaned_data["role"])

    def delete_model(self, request, obj):
        services.remove_member(obj)

    def delete_queryset(self, request, queryset):
        for membership in queryset:
            try:
                services.remove_member(membership)
            except ValidationError as exc:
                self.message_user(request, f"{membership}: {exc.messages[0]}", messages.ERROR)


class InvitationAdminForm(forms.ModelForm):
    class Meta:
        model = Invitation
        fields = ["organization", "invitee", "role"]

    def clean(self):
        data = super().clean()
        if data.get("organization") and data.get("invitee"):
            data["invitee"] = services.check_invitable(data["organization"], data["invitee"])
        return data


@admin.register(Invitation)
class InvitationAdmin(SingleOrganizationDefaultMixin, TenantAdminMixin, admin.ModelAdmin):
    """Owners invite a username or e-mail (the same answer whether or not an account has it)
    and may withdraw a pending invitation. The person accepts under "Invitations to me"."""

    form = InvitationAdminForm
    write_role = Role.OWNER
    list_display = ["invitee", "organization", "role", "status", "invited_by", "expires_at"]
    list_filter = ["status", "organization"]
    search_fields = ["invitee"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["organization", "invitee", "role"]
        return ["organization", "invitee", "role", "status", "invited_by", "expires_at"]

    def get_readonly_fields(self, request, obj=None):
        return [] if obj is None else self.get_fields(request, obj)

    def has_delete_permission(self, request, obj=None):
        pending = obj is None or obj.status == InvitationStatus.PENDING
        return pending and super().has_delete_permission(request, obj)

    def save_model(self, request, obj, form, change):
        if change:
            return
        data = form.cleaned_data
        sent = services.invite(
            data["organization"], data["invitee"], data["role"], invited_by=request.user
        )
        # The admin saved nothing itself: show the row the service made (or updated).
        obj.__dict__.update({k: v for k, v in sent.__dict__.items() if not k.startswith("_")})
        obj._state.adding = False

    def delete_model(self, request, obj):
        services.revoke_invitation(obj)

    def delete_queryset(self, request, queryset):
        for invitation in queryset.filter(status=InvitationStatus.PENDING):
            services.revoke_invitation(invitation)


@admin.register(MyInvitation)
class MyInvitationAdmin(admin.ModelAdmin):
    """Invitations addressed to the signed-in user's username or e-mail: accept or decline."""

    list_display = ["organization", "role", "invited_by", "expires_at"]
    actions = ["accept", "decline"]

    def get_queryset(self, request):
        mine = selectors.invitations_for(request.user).values("pk")
        return MyInvitation.objects.filter(pk__in=mine).select_related("organization")

    def has_module_permission(self, request):
        return self.get_queryset(request).exists()

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.action(description="Accept: join the organization with this role")
    def accept(self, request, queryset):
        for invitation in queryset:
            membership = services.accept_invitation(invitation, request.user)
            self.message_user(
                request, f"You are now {membership.role} of {membership.organization}."
            )

    @admin.action(description="Decline")
    def decline(self, request, queryset):
        for invitation in queryset:
            services.decline_invitation(invitation, request.user)
        self.message_user(request, "Declined.")
