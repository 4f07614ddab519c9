"""The OpenAPI document lists the errors every endpoint really answers, in the one error format
(festival.api_common), so generated clients and schemathesis see no undocumented status codes.

Which errors an operation can answer follows from how its view is built (authentication,
throttles, path parameters, a request body, list filters), so a new endpoint is documented by
construction; views add their own special ones (e.g. 503 when AWS does not answer).
"""

from __future__ import annotations

from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers
from rest_framework.permissions import AllowAny


class ErrorBodySerializer(serializers.Serializer):
    status = serializers.IntegerField()
    code = serializers.CharField(help_text="Machine-readable, e.g. not_found, throttled.")
    message = serializers.CharField(help_text="One sentence for a person.")
    fields = serializers.DictField(
        required=False, help_text="Validation errors only: the problems, field by field."
    )


class ErrorSerializer(serializers.Serializer):
    """Every error answer of the API."""

    error = ErrorBodySerializer()


ERRORS = {
    "400": "Invalid input: a body, filter or paging parameter (see error.fields).",
    "401": "Not authenticated, or an unknown or revoked token.",
    "403": "Authenticated, but your role does not allow this.",
    "404": "No such object (other organizations' objects are not found either), or a page past "
    "the end of a list.",
    "413": "The request body is too large.",
    "429": "Too many requests: wait for the Retry-After seconds.",
    "503": "A service this needs (AWS) does not answer: try again later.",
}
BODY_METHODS = {"POST", "PUT", "PATCH"}


def error_response(code: str | int) -> OpenApiResponse:
    """For a view's own extend_schema(responses=...): {503: error_response(503)}."""
    return OpenApiResponse(ErrorSerializer, description=ERRORS[str(code)])


class AutoSchema(SpectacularAutoSchema):
    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        if direction != "response":
            return responses
        for code in self._error_codes():
            if code not in responses:
                responses[code] = self._get_response_for_code(
                    error_response(code), code, direction=direction
                )
        return responses

    def _error_codes(self) -> list[str]:
        view = self.view
        codes = []
        if self.method in BODY_METHODS or self._has_query_parameters():
            codes.append("400")
        if not all(isinstance(p, AllowAny) for p in view.get_permissions()):
            codes += ["401", "403"]
        if "{" in self.path or self._has_query_parameters():  # lists: a page past the end
            codes.append("404")
        if self.method in BODY_METHODS:
            codes.append("413")
        if view.get_throttles() or getattr(view, "throttled_in_initial", False):
            codes.append("429")
        return codes

    def _has_query_parameters(self) -> bool:
        return self._is_list_view() and self.method == "GET"
