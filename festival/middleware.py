"""Request-wide behaviour that belongs to no single app."""

from __future__ import annotations

import awsclients as aws


class AwsFailsFastMiddleware:
    """AWS calls made while answering a request use awsclients.INTERACTIVE_CONFIG: during an AWS
    outage the person gets "try again" (a 503 in the API, a message in the admin) in seconds,
    not after the minutes of retries that background work can afford."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        with aws.someone_waiting():
            return self.get_response(request)
