"""Which failures are worth a retry and which are final.

Retryable failures make the message (or Lambda event) come back later; permanent ones are logged,
counted under their reason and the crop is dropped, so that one bad crop never blocks a batch.
Unknown AWS errors count as retryable on purpose: the queue's redrive policy (maxReceiveCount) sends
a message that keeps failing to the dead-letter queue, whereas a wrong "permanent" loses data.
"""

from __future__ import annotations

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    EndpointConnectionError,
    HTTPClientError,
)

from awsclients import error_code

THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
    }
)
QUOTA_CODES = frozenset({"LimitExceededException"})


class AnalysisError(Exception):
    """A failure with a short machine-readable reason (used as the metric dimension)."""

    retryable = False

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class RetryableError(AnalysisError):
    retryable = True


class PermanentError(AnalysisError):
    retryable = False


def from_aws_error(exc: Exception, service: str) -> AnalysisError:
    """Map a boto3 exception raised while talking to `service` to a counted reason."""
    if isinstance(exc, AnalysisError):
        return exc
    code = error_code(exc)
    if code in THROTTLING_CODES:
        return RetryableError(f"{service}_throttled", code)
    if code in QUOTA_CODES:
        return RetryableError(f"{service}_quota_exhausted", code)
    if isinstance(exc, (EndpointConnectionError, ConnectionError, HTTPClientError)):
        return RetryableError(f"{service}_unreachable", type(exc).__name__)
    if isinstance(exc, ClientError):
        return RetryableError(f"{service}_error", code or "ClientError")
    if isinstance(exc, BotoCoreError):
        return RetryableError(f"{service}_error", type(exc).__name__)
    return RetryableError(f"{service}_error", repr(exc))
