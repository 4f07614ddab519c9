"""Writes for tenancy: members and invitations (the admin and the API call the same ones)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from festival.models import (
    Invitation,
    InvitationStatus,
    Membership,
    Organization,
    Role,
    forget_roles,
)
from festival.selectors import invitations_for

# --- Members and invitations ---------------------------------------------------------------------
# The one place for membership rules, called by the API and the admin alike: nobody joins an
# organization without accepting an invitation, and an organization always keeps an owner.
INVITATION_DAYS = 14


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
