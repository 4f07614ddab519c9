"""Shared API plumbing: pagination and the one error format every endpoint answers with.

Every error is `{"error": {"status", "code", "message", "fields"?}}` so a mobile app or a script
handles failures in one place.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, status
from rest_framework.pagination import PageNumberPagination
from rest_framework.response import Response
from rest_framework.views import exception_handler


class StandardPagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 500


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key in ("detail", "non_field_errors") else f"{key}: {text}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def error_handler(exc, context):
    if isinstance(exc, DjangoValidationError):
        detail = exc.message_dict if hasattr(exc, "error_dict") else {"detail": exc.messages}
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    response = exception_handler(exc, context)
    if response is None:
        return None
    codes = exc.get_codes() if isinstance(exc, exceptions.APIException) else "error"
    body = {
        "status": response.status_code,
        "code": codes if isinstance(codes, str) else _code_for(response.status_code),
        "message": _first_message(response.data),
    }
    if isinstance(exc, exceptions.ValidationError) and isinstance(response.data, dict):
        body["fields"] = response.data
    elif isinstance(exc, exceptions.ValidationError):
        body["fields"] = {"non_field_errors": response.data}
    response.data = {"error": body}
    return response


def _code_for(status_code: int) -> str:
    return {
        status.HTTP_400_BAD_REQUEST: "invalid",
        status.HTTP_404_NOT_FOUND: "not_found",
        status.HTTP_403_FORBIDDEN: "permission_denied",
    }.get(status_code, "error")


def error_response(status_code: int, code: str, message: str, **extra) -> Response:
    """For views that report a domain error themselves (e.g. a lineup import report)."""
    return Response(
        {"error": {"status": status_code, "code": code, "message": message, **extra}},
        status=status_code,
    )
