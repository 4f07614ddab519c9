"""Shared API plumbing: parsing, pagination, filtering and the one error format every endpoint
answers with. Input the API cannot use is a clear 4xx here, never a 500 or a silent default.

Every error is `{"error": {"status", "code", "message", "fields"?}}` so a mobile app or a script
handles failures in one place.
"""

from __future__ import annotations

from http import HTTPStatus

from django.conf import settings
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.filters import OrderingFilter
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser
from rest_framework.response import Response
from rest_framework.views import exception_handler

import awsclients as aws
from festival.errors import AwsUnreachable

# No request body the API accepts comes near this; deeper input is refused before any code that
# walks it recursively (the JSON decoder itself, serializers, jsonschema) can hit RecursionError.
MAX_JSON_DEPTH = 32


def nested_deeper_than(value, limit: int) -> bool:
    """Whether decoded JSON nests lists/objects more than `limit` levels (iterative: no recursion
    on attacker-controlled depth)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > limit:
                return True
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    """The JSON parser of every endpoint: JSON nested too deeply is a 400 parse error."""

    def parse(self, stream, media_type=None, parser_context=None):
        too_deep = exceptions.ParseError(
            f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels."
        )
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise too_deep from None
        if nested_deeper_than(data, MAX_JSON_DEPTH):
            raise too_deep
        return data


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"
    default_detail = "The request body is too large."


class AwsUnavailable(exceptions.APIException):
    """AWS could not be reached (network, DNS, timeouts): the request may be retried later."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_code = "aws_unavailable"
    default_detail = "AWS cannot be reached right now; nothing was changed. Try again later."


class StandardPagination(PageNumberPagination):
    """`?page_size=` outside 1..max_page_size (or not a number) is a 400 that says so, instead of
    DRF's silent fallback to the default size."""

    page_size_query_param = "page_size"
    max_page_size = 500

    def get_page_size(self, request):
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise exceptions.ValidationError(
                {self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]}
            )
        return int(raw)

    def get_page_number(self, request, paginator):
        """A page that is not a number is a 400; a number past the last page stays DRF's 404."""
        number = super().get_page_number(request, paginator)
        if not (str(number).isdigit() or number in self.last_page_strings):
            raise exceptions.ValidationError({self.page_query_param: ["A page number."]})
        return number


class StrictOrderingFilter(OrderingFilter):
    """`?ordering=` naming a field that cannot be ordered by is a 400 (DRF ignores it)."""

    def get_ordering(self, request, queryset, view):
        raw = request.query_params.get(self.ordering_param)
        if raw:
            terms = [term.strip() for term in raw.split(",") if term.strip()]
            if len(self.remove_invalid_fields(queryset, terms, view, request)) != len(terms):
                valid = [name for name, _ in self.get_valid_fields(queryset, view, {})]
                raise exceptions.ValidationError(
                    {
                        self.ordering_param: [
                            f"One or more of {', '.join(valid) or 'nothing'} (comma-separated; "
                            "a leading - for descending)."
                        ]
                    }
                )
        return super().get_ordering(request, queryset, view)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            text = _first_message(value)
            return text if key in ("detail", "non_field_errors") else f"{key}: {text}"
    if isinstance(detail, list) and detail:
        return _first_message(detail[0])
    return str(detail)


def error_handler(exc, context):
    if isinstance(exc, AwsUnreachable):  # a service's own "AWS did not answer"
        exc = AwsUnavailable(exc.messages[0])
    elif isinstance(exc, DjangoValidationError):  # services raise these; views need not convert
        detail = exc.message_dict if hasattr(exc, "error_dict") else exc.messages
        exc = exceptions.ValidationError(detail)
    elif isinstance(exc, Http404):
        exc = exceptions.NotFound(str(exc) or "Not found.")
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied(str(exc) or None)
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge(
            f"The request body is larger than {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes."
        )
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = exceptions.ParseError(str(exc))
    elif isinstance(exc, aws.UNREACHABLE):
        exc = AwsUnavailable(f"AWS cannot be reached right now ({type(exc).__name__}).")
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


def error_json(status_code: int, code: str, message: str) -> JsonResponse:
    """The error format for answers produced outside DRF (Django's 404 page, middleware)."""
    body = {"error": {"status": status_code, "code": code, "message": message}}
    return JsonResponse(body, status=status_code)


class ApiErrorsAsJsonMiddleware:
    """Under /api/, an error that Django itself answers (an unknown path, a body over
    DATA_UPLOAD_MAX_MEMORY_SIZE read outside DRF, a 500 page) comes back in the one JSON error
    format instead of an HTML page. DRF's own answers are JSON already and pass untouched."""

    CODES = {400: "invalid", 403: "permission_denied", 404: "not_found", 413: "payload_too_large"}

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if (
            response.status_code < 400
            or not request.path.startswith("/api/")
            or response.get("Content-Type", "").startswith("application/json")
            or (response.status_code >= 500 and settings.DEBUG)  # keep the debug page
        ):
            return response
        status_code = response.status_code
        message = {404: f"No API endpoint at {request.path}."}.get(
            status_code, HTTPStatus(status_code).phrase + "."
        )
        code = self.CODES.get(status_code, "error")
        replacement = error_json(status_code, code, message)
        for header in ("Allow", "Retry-After", "WWW-Authenticate"):
            if response.has_header(header):
                replacement[header] = response[header]
        return replacement
