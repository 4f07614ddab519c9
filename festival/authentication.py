"""Logins and API tokens: the guarded password backend, the token endpoints (obtain, rotate,
revoke) and the rule that a password change ends every token of the account."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.exceptions import PermissionDenied
from django.db.models.signals import pre_save
from django.dispatch import receiver
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.authtoken.models import Token
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import APIView

from festival import login_guard

TOKEN_RESPONSE = inline_serializer("AuthToken", {"token": serializers.CharField()})


class LoginLocked(Throttled):
    """429 with Retry-After, in the project's error format (code "login_locked")."""

    default_code = "login_locked"

    def __init__(self, wait: int):
        super().__init__(detail=lockout_message(wait))
        self.wait = wait


def lockout_message(wait: int) -> str:
    return (
        "Too many failed logins for this account or from this address; "
        f"try again in {wait} seconds."
    )


class LockoutModelBackend(ModelBackend):
    """Django's password backend behind the brute-force guard (festival.login_guard): while a
    login's account and address are locked out even the right password is refused, on every
    login path."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if login_guard.locked_for(request, username or ""):
            raise PermissionDenied("locked out")  # stops the other backends too
        user = super().authenticate(request, username=username, password=password, **kwargs)
        if user is not None:
            login_guard.record_success(request, username or "")
        return user


@receiver(user_login_failed)
def _count_failed_login(sender, credentials, request=None, **kwargs):
    login_guard.record_failure(request, credentials.get("username", ""))


@receiver(pre_save, sender=get_user_model())
def _end_tokens_on_password_change(sender, instance, update_fields=None, **kwargs):
    """A new password ends every API token of the account (sessions end through Django's own
    session hash), so a leaked token does not outlive the password it was obtained with."""
    if instance.pk is None or (update_fields is not None and "password" not in update_fields):
        return
    old = sender.objects.filter(pk=instance.pk).values_list("password", flat=True).first()
    if old is not None and old != instance.password:
        Token.objects.filter(user_id=instance.pk).delete()


class ObtainTokenView(ObtainAuthToken):
    """POST username and password for an API token (the same token until revoked or rotated).
    Failed logins are limited per account and per address: then 429 with Retry-After."""

    # DRF's view names its own parsers; take the project's (bounded JSON nesting).
    parser_classes = api_settings.DEFAULT_PARSER_CLASSES

    @extend_schema(
        request=inline_serializer(
            "TokenLogin",
            {"username": serializers.CharField(), "password": serializers.CharField()},
        ),
        responses={200: TOKEN_RESPONSE},
    )
    def post(self, request, *args, **kwargs):
        username = request.data.get("username", "") if hasattr(request.data, "get") else ""
        wait = login_guard.locked_for(request, str(username))
        if wait:
            raise LoginLocked(wait)
        return super().post(request, *args, **kwargs)


class RotateTokenView(APIView):
    """A new API token for the caller; the old one stops working at once."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={201: TOKEN_RESPONSE})
    def post(self, request):
        Token.objects.filter(user=request.user).delete()
        token = Token.objects.create(user=request.user)
        return Response({"token": token.key}, status=status.HTTP_201_CREATED)


class RevokeTokenView(APIView):
    """Log out of the API: the caller's token stops working (a new login makes a new one)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None})
    def post(self, request):
        Token.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)
