"""Writes for tenancy and festivals, including the idempotent demo seed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from devices.services import push_festival_cameras
from festival.models import (
    Festival,
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    Role,
    check_festival_dates,
)
from festival.selectors import invitations_for
from stages.models import Set, Stage
from stages.services import demo_lineup_rows, import_lineup

DEMO_PASSWORD = "stagepulse-demo"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    organization: str
    role: str


DEMO_ORGS = [
    {
        "slug": "northwind",
        "name": "Northwind Events",
        "users": [("alice", Role.OWNER), ("oscar", Role.OPERATOR), ("vera", Role.VIEWER)],
        "festival": {
            "slug": "pulse-2026",
            "name": "Pulse Festival",
            "timezone": "Europe/Amsterdam",
            "public": True,
            "stages": [
                ("main", "Main Stage", 40),
                ("forest", "Forest Stage", 25),
                ("tent", "The Tent", 15),
                ("harbour", "Harbour Stage", 8),
            ],
        },
    },
    {
        "slug": "southbank",
        "name": "Southbank Live",
        "users": [("bob", Role.OWNER)],
        "festival": {
            "slug": "riverside-2026",
            "name": "Riverside Sessions",
            "timezone": "Europe/London",
            "public": False,
            "stages": [("river", "River Stage", 20), ("garden", "Garden Stage", 10)],
        },
    },
]


def ensure_member(organization: Organization, username: str, role: str, password: str):
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=username,
        defaults={"email": f"{username}@{organization.slug}.example", "is_staff": True},
    )
    if created:
        user.set_password(password)
        user.save()
    Membership.objects.get_or_create(user=user, organization=organization, defaults={"role": role})
    return user


@transaction.atomic
def seed_demo(today: date | None = None, password: str = DEMO_PASSWORD) -> list[DemoLogin]:
    """Two organizations, each with a festival, stages, a two-day lineup and cameras.

    Idempotent: existing rows are kept as they are, so a second run changes nothing.
    """
    from devices.models import Device, Platform

    logins: list[DemoLogin] = []
    for spec in DEMO_ORGS:
        organization, _ = Organization.objects.get_or_create(
            slug=spec["slug"], defaults={"name": spec["name"]}
        )
        for username, role in spec["users"]:
            ensure_member(organization, username, role, password)
            logins.append(DemoLogin(username, organization.name, role))
        fest = spec["festival"]
        festival, created = Festival.objects.get_or_create(
            slug=fest["slug"],
            defaults={
                "organization": organization,
                "name": fest["name"],
                "timezone": fest["timezone"],
                "starts_on": today or timezone.localdate(),
                "ends_on": (today or timezone.localdate()) + timedelta(days=1),
                "public": fest["public"],
            },
        )
        for position, (slug, name, crowd) in enumerate(fest["stages"]):
            stage, _ = Stage.objects.get_or_create(
                festival=festival,
                slug=slug,
                defaults={
                    "organization": organization,
                    "name": name,
                    "position": position,
                    "typical_crowd": crowd,
                },
            )
            Device.objects.get_or_create(
                thing_name=f"{festival.slug}-{slug}-cam1",
                defaults={
                    "organization": organization,
                    "festival": festival,
                    "stage": stage,
                    "name": f"{name} camera",
                    "platform": Platform.STANDALONE,
                },
            )
        if not Set.objects.filter(stage__festival=festival).exists():
            rows = demo_lineup_rows(festival, festival.starts_on, days=2)
            header = "stage,artist,starts_at,ends_at,notes\n"
            body = "".join(
                f"{r['stage']},{r['artist']},{r['starts_at']},{r['ends_at']},\n" for r in rows
            )
            result = import_lineup(festival, header + body)
            if not result.ok:
                raise RuntimeError(f"demo lineup did not import: {result.errors[:3]}")
    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        user_model.objects.create_superuser("admin", "admin@stagepulse.example", password)
    logins.append(DemoLogin("admin", "(superuser: every organization)", "superuser"))
    return logins


# --- Members and invitations ---------------------------------------------------------------------
# The one place for membership rules, called by the API and the admin alike: nobody joins an
# organization without accepting an invitation, and an organization always keeps an owner.
INVITATION_DAYS = 14


# --- Festivals ------------------------------------------------------------------------------------
def update_festival(festival: Festival, **changes) -> Festival:
    """The one way the API and the admin change a festival: `changes` applied and saved. When the
    analysis mode really changed (compared with the row as loaded, Festival.from_db: no query),
    the festival's registered cameras get their new config pushed to their shadows, after commit
    (devices.services.push_festival_cameras). Any other save of a festival does nothing more."""
    for name, value in changes.items():
        setattr(festival, name, value)
    check_festival_dates(festival.starts_on, festival.ends_on)
    before = getattr(festival, "saved_analysis_mode", None)
    if before is None and festival.pk:  # not loaded from the database, or the field deferred
        before = (
            Festival.objects.filter(pk=festival.pk).values_list("analysis_mode", flat=True).first()
        )
    festival.save()
    festival.saved_analysis_mode = festival.analysis_mode
    if before is not None and before != festival.analysis_mode:
        festival_id = festival.pk
        transaction.on_commit(lambda: push_festival_cameras(festival_id))
    return festival


def check_invitable(organization: Organization, invitee: str) -> str:
    """The cleaned name, unless it is empty or already a member's (which the owner can see in
    the member list anyway, so saying so reveals nothing)."""
    invitee = (invitee or "").strip()
    if not invitee:
        raise ValidationError({"invitee": "Give the person's username or e-mail."})
    members = get_user_model().objects.filter(memberships__organization=organization)
    if members.filter(Q(username=invitee) | Q(email__iexact=invitee)).exists():
        raise ValidationError({"invitee": f"{invitee} is already a member."})
    return invitee


def invite(organization: Organization, invitee: str, role: str, *, invited_by) -> Invitation:
    """Invite a username or e-mail. The answer is the same whether or not an account has that
    name (no enumeration); a second invitation of the same name updates the pending one."""
    invitee = check_invitable(organization, invitee)
    if role not in Role.values:
        raise ValidationError({"role": f"{role!r} is not one of {', '.join(Role.values)}."})
    expires_at = timezone.now() + timedelta(days=INVITATION_DAYS)
    with transaction.atomic():
        pending = (
            Invitation.objects.select_for_update()
            .filter(organization=organization, invitee__iexact=invitee)
            .filter(status=InvitationStatus.PENDING)
            .first()
        )
        if pending is not None:
            pending.role, pending.expires_at, pending.invited_by = role, expires_at, invited_by
            pending.save(update_fields=["role", "expires_at", "invited_by"])
            return pending
        return Invitation.objects.create(
            organization=organization,
            invitee=invitee,
            role=role,
            invited_by=invited_by,
            expires_at=expires_at,
        )


def _answerable(invitation: Invitation, user) -> Invitation:
    """The invitation, locked, if `user` may still answer it; otherwise "no such invitation"."""
    found = invitations_for(user).select_for_update(of=("self",)).filter(pk=invitation.pk).first()
    if found is None:
        raise ValidationError({"invitation": "No pending invitation of yours has this id."})
    return found


@transaction.atomic
def accept_invitation(invitation: Invitation, user) -> Membership:
    """`user` joins the organization with the invited role (the only way anybody joins)."""
    invitation = _answerable(invitation, user)
    membership, created = Membership.objects.get_or_create(
        user=user, organization=invitation.organization, defaults={"role": invitation.role}
    )
    invitation.status, invitation.accepted_by = InvitationStatus.ACCEPTED, user
    invitation.answered_at = timezone.now()
    invitation.save(update_fields=["status", "accepted_by", "answered_at"])
    from festival.tenancy import forget_roles

    forget_roles(user)
    return membership


@transaction.atomic
def decline_invitation(invitation: Invitation, user) -> None:
    invitation = _answerable(invitation, user)
    invitation.status, invitation.answered_at = InvitationStatus.DECLINED, timezone.now()
    invitation.save(update_fields=["status", "answered_at"])


def revoke_invitation(invitation: Invitation) -> None:
    """The owner withdraws a pending invitation (an answered one is history and stays)."""
    if invitation.status != InvitationStatus.PENDING:
        raise ValidationError({"invitation": "Only a pending invitation can be withdrawn."})
    invitation.delete()


def check_keeps_an_owner(membership: Membership, new_role: str | None, *, lock=False) -> None:
    """Refuse a change that would leave the organization without an owner (new_role None: the
    membership goes). With `lock`, inside a transaction, the owners are locked while checking."""
    if membership.role != Role.OWNER or new_role == Role.OWNER:
        return
    owners = Membership.objects.filter(organization_id=membership.organization_id, role=Role.OWNER)
    if lock:
        owners = owners.select_for_update()
    if len(owners) <= 1:
        raise ValidationError({"role": "An organization needs at least one owner."})


@transaction.atomic
def change_role(membership: Membership, role: str) -> Membership:
    check_keeps_an_owner(membership, role, lock=True)
    membership.role = role
    membership.save(update_fields=["role"])
    return membership


@transaction.atomic
def remove_member(membership: Membership) -> None:
    check_keeps_an_owner(membership, None, lock=True)
    membership.delete()
