"""Tenancy (Organization, Membership) and the Festival, the unit everything else hangs off."""

from __future__ import annotations

import zoneinfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models


class Role(models.TextChoices):
    VIEWER = "viewer", "Viewer (read only)"
    OPERATOR = "operator", "Operator (changes festivals, lineup, devices)"
    OWNER = "owner", "Owner (also manages members)"


ROLE_RANK = {Role.VIEWER: 1, Role.OPERATOR: 2, Role.OWNER: 3}


class AnalysisMode(models.TextChoices):
    CLOUD = "cloud", "Cloud (crops analyzed by the service)"
    EDGE = "edge", "Edge (scores computed on the camera; no image leaves)"


class TenantQuerySet(models.QuerySet):
    """Every tenant-owned model's manager: the scoped query is the easy one to write."""

    def for_organizations(self, organizations):
        return self.filter(organization__in=organizations)

    def for_user(self, user, min_role: str = Role.VIEWER):
        if user is None or not user.is_authenticated:
            return self.none()
        if user.is_superuser:
            return self
        return self.filter(organization_id__in=organization_ids_for(user, min_role))


class Organization(models.Model):
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=80, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "organization"], name="one_membership_per_org")
        ]
        ordering = ["organization__name", "user__username"]

    def __str__(self) -> str:
        return f"{self.user} — {self.organization} ({self.role})"


class InvitationStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    ACCEPTED = "accepted", "Accepted"
    DECLINED = "declined", "Declined"


class Invitation(models.Model):
    """An owner's offer of a role in their organization; nobody joins without accepting it.

    `invitee` is the username or e-mail as the owner typed it. It is matched to an account only
    when someone accepts, so the inviter never learns whether an account exists (festival.services
    .invite answers alike for every name).
    """

    organization = models.ForeignKey(
        Organization, on_delete=models.CASCADE, related_name="invitations"
    )
    invitee = models.CharField("username or e-mail", max_length=254)
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.VIEWER)
    status = models.CharField(
        max_length=16, choices=InvitationStatus.choices, default=InvitationStatus.PENDING
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)

    objects = TenantQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.invitee} to {self.organization} as {self.role} ({self.status})"


class MyInvitation(Invitation):
    """The invitations addressed to the staff user looking at the admin (accept or decline)."""

    class Meta:
        proxy = True
        verbose_name = "invitation to me"
        verbose_name_plural = "invitations to me"


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (e.g. Europe/Amsterdam)")


class TenantModel(models.Model):
    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")

    objects = TenantQuerySet.as_manager()

    class Meta:
        abstract = True


def check_festival_dates(starts_on, ends_on) -> None:
    """The one rule for a festival's dates ("it ends after it starts"; a one-day festival ends on
    the day it starts), for the model's clean (admin), the API serializer and
    operations.services.update_festival."""
    if starts_on and ends_on and ends_on < starts_on:
        raise ValidationError({"ends_on": "The festival cannot end before it starts."})


class Festival(TenantModel):
    name = models.CharField(max_length=200)
    slug = models.SlugField(
        max_length=80, unique=True, help_text="Used in public URLs and in crop keys; keep it short."
    )
    timezone = models.CharField(
        max_length=64, default="Europe/Amsterdam", validators=[validate_timezone]
    )
    starts_on = models.DateField()
    ends_on = models.DateField()
    public = models.BooleanField(
        default=False, help_text="Publish the fan API (live ranking, lineup) for this festival."
    )
    min_faces_public = models.PositiveIntegerField(
        "minimum faces for a public number",
        default=5,
        validators=[MinValueValidator(1), MaxValueValidator(1000)],
        help_text="Buckets with fewer faces are suppressed in every public number.",
    )
    crop_retention_hours = models.PositiveIntegerField(
        default=0,
        validators=[MaxValueValidator(24)],
        help_text="0 deletes each crop right after analysis; the bucket lifecycle caps it (1 day).",
    )
    analysis_mode = models.CharField(
        max_length=8, choices=AnalysisMode.choices, default=AnalysisMode.CLOUD
    )
    cloudwatch_namespace = models.CharField(
        max_length=255, blank=True, help_text="Leave empty for the service default."
    )
    crops_bucket = models.CharField(max_length=63, blank=True, help_text="Empty: service default.")
    observations_table = models.CharField(
        max_length=255, blank=True, help_text="Empty: service default."
    )
    ops_emails = models.TextField(
        "operations e-mails",
        blank=True,
        help_text="Alert recipients, one per line or comma-separated.",
    )
    ops_webhook_url = models.URLField("operations webhook", blank=True)
    closed_at = models.DateTimeField(
        null=True,
        blank=True,
        editable=False,
        help_text="Set by closeout: nothing is created in AWS for the festival any more.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-starts_on", "name"]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def from_db(cls, db, field_names, values):
        """Remembers the analysis mode as loaded, so operations.services.update_festival sees a real
        change without a query (None when the field was deferred)."""
        festival = super().from_db(db, field_names, values)
        festival.saved_analysis_mode = festival.__dict__.get("analysis_mode")
        return festival

    def clean(self) -> None:
        check_festival_dates(self.starts_on, self.ends_on)

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def namespace(self) -> str:
        return self.cloudwatch_namespace or settings.CLOUDWATCH_NAMESPACE

    @property
    def bucket(self) -> str:
        return self.crops_bucket or settings.CROPS_BUCKET

    @property
    def table(self) -> str:
        return self.observations_table or settings.OBSERVATIONS_TABLE

    def ops_email_list(self) -> list[str]:
        return [e.strip() for e in self.ops_emails.replace("\n", ",").split(",") if e.strip()]


# --- Role lookups ---------------------------------------------------------------------------------
# Plain queries on Membership, here beside it so that models (TenantQuerySet.for_user) need neither
# DRF nor festival.tenancy, which re-exports them for views and admin classes.
def organization_ids_for(user, min_role: str = Role.VIEWER) -> list[int]:
    """Ids of the organizations where `user` holds at least `min_role` (cached per request)."""
    if user is None or not user.is_authenticated:
        return []
    cache = user.__dict__.setdefault("_stagepulse_roles", None)
    if cache is None:
        cache = dict(Membership.objects.filter(user=user).values_list("organization_id", "role"))
        user.__dict__["_stagepulse_roles"] = cache
    floor = ROLE_RANK[Role(min_role)]
    return [org_id for org_id, role in cache.items() if ROLE_RANK[Role(role)] >= floor]


def role_in(user, organization_id: int) -> str:
    """The user's role in one organization ("" when not a member)."""
    if user is not None and user.is_authenticated and user.is_superuser:
        return Role.OWNER
    organization_ids_for(user)
    return (user.__dict__.get("_stagepulse_roles") or {}).get(organization_id, "")


def organizations_for(user, min_role: str = Role.VIEWER):
    if user is not None and user.is_authenticated and user.is_superuser:
        return Organization.objects.all()
    return Organization.objects.filter(id__in=organization_ids_for(user, min_role))


def has_role(user, organization_id: int, min_role: str) -> bool:
    if user is None or not user.is_authenticated:
        return False
    if user.is_superuser:
        return True
    return organization_id in organization_ids_for(user, min_role)


def forget_roles(user) -> None:
    """Drop the per-request role cache (after a membership change in the same request)."""
    user.__dict__.pop("_stagepulse_roles", None)
