"""Domain errors shared by every app's services and answered in one place by the API's error
handler (festival.api_common.error_handler)."""

from django.core.exceptions import ValidationError


class AwsUnreachable(ValidationError):
    """AWS could not be reached at all (network, DNS, timeouts), not a refusal: try again later.
    A ValidationError so the admin and manage.py show the message as they show refusals; the
    API answers it with a 503 (aws_unavailable)."""
