"""Reads for tenancy: which invitations a person can answer."""

from __future__ import annotations

from django.db.models import Q
from django.utils import timezone

from festival.models import Invitation, InvitationStatus


def addressed_to(user) -> Q:
    """Invitations whose username or e-mail is this account's."""
    match = Q(invitee=user.get_username())
    if user.email:
        match |= Q(invitee__iexact=user.email)
    return match


def invitations_for(user):
    """Pending, unexpired invitations addressed to `user`'s username or e-mail."""
    if user is None or not user.is_authenticated:
        return Invitation.objects.none()
    return (
        Invitation.objects.filter(addressed_to(user))
        .filter(status=InvitationStatus.PENDING, expires_at__gt=timezone.now())
        .select_related("organization", "invited_by")
    )
