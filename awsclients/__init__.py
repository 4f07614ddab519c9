"""The one place that builds boto3 clients and resources.

Django-free on purpose: the analyzer Lambda imports it too. Every client honours AWS_ENDPOINT_URL
(a moto server in the embedded mode) and AWS_DEFAULT_REGION, and retries with adaptive backoff so
throttling is absorbed here instead of in every caller.

Account-ID based DynamoDB endpoints are switched off (AWS_ACCOUNT_ID_ENDPOINT_MODE=disabled,
unless the environment says otherwise): the regional endpoint works the same on real AWS, and moto
only answers DynamoDB Streams calls there (the ingest reads the observations table's stream).
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import threading
from functools import lru_cache

import boto3
import botocore.exceptions
from botocore.config import Config

os.environ.setdefault("AWS_ACCOUNT_ID_ENDPOINT_MODE", "disabled")

DEFAULT_REGION = "eu-west-1"
# Background work (Celery tasks, the analyzer, commands) can wait out a throttle or a blip.
# botocore's `max_attempts` counts retries: 8 is 9 calls in all.
RETRY_CONFIG = Config(
    retries={"max_attempts": 8, "mode": "adaptive"},
    connect_timeout=5,
    read_timeout=30,
)
# A person is waiting (a web request: the admin, the API, the dashboard): RETRY_CONFIG would keep
# them up to ~4.5 minutes on an AWS that accepts connections and never answers (9 calls of a 30 s
# read), ~8 s on one that refuses them. Two calls in all and short timeouts answer "try again"
# (503) within about 25 s at worst, 1 s on a refused connection; the work is safe to repeat.
INTERACTIVE_CONFIG = Config(
    retries={"total_max_attempts": 2, "mode": "standard"},
    connect_timeout=2,
    read_timeout=10,
)
_someone_waiting: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "aws_someone_waiting", default=False
)


@contextlib.contextmanager
def someone_waiting():
    """Within this block (a web request), clients made or fetched here give up fast."""
    token = _someone_waiting.set(True)
    try:
        yield
    finally:
        _someone_waiting.reset(token)


def default_config() -> Config:
    """INTERACTIVE_CONFIG while someone waits for the answer, else RETRY_CONFIG."""
    return INTERACTIVE_CONFIG if _someone_waiting.get() else RETRY_CONFIG


# AWS could not be reached at all (network, DNS, TLS, timeouts), as opposed to a ClientError,
# where AWS answered and refused: callers answer "try again later", not "you asked wrongly".
UNREACHABLE = (botocore.exceptions.ConnectionError, botocore.exceptions.HTTPClientError)


def region() -> str:
    return os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or DEFAULT_REGION


def endpoint_url() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL") or None


# One boto3 Session is reused for every client: each new Session parses botocore's service
# models again (7.4 s of a 58 s test profile). It is kept per region and per credentials found
# in the environment, so a process that changes them (run_demo pointing at moto, a test's
# mock) gets a session that sees the change. Sessions are not thread-safe: clients are made
# under a lock (the clients themselves are).
SESSION_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_SECURITY_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)
_sessions: dict[tuple, boto3.session.Session] = {}
_sessions_lock = threading.Lock()


def _session_key() -> tuple:
    return (region(), *(os.environ.get(name) for name in SESSION_ENVIRONMENT))


def _session() -> boto3.session.Session:
    """The shared Session for this region and these credentials (made once)."""
    key = _session_key()
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = boto3.session.Session(region_name=key[0])
        return session


def _made(kind: str, service_name: str, kwargs: dict):
    kwargs.setdefault("endpoint_url", endpoint_url())
    kwargs.setdefault("config", default_config())
    session = _session()
    with _sessions_lock:
        return getattr(session, kind)(service_name, **kwargs)


def forget_sessions() -> None:
    """Drop the reused sessions (and so their credentials): the next client starts afresh."""
    with _sessions_lock:
        _sessions.clear()


def client(service_name: str, **kwargs):
    """A boto3 client for `service_name`; pass keyword arguments to override (e.g. config)."""
    return _made("client", service_name, kwargs)


def resource(service_name: str, **kwargs):
    return _made("resource", service_name, kwargs)


def cached_client(service_name: str):
    """A process-wide client for hot paths (clients are thread-safe; creating one costs ~50 ms),
    one for background work and one for a waiting person (see someone_waiting)."""
    return _cached_client(service_name, _someone_waiting.get())


@lru_cache(maxsize=64)
def _cached_client(service_name: str, waiting: bool):
    return client(service_name, config=INTERACTIVE_CONFIG if waiting else RETRY_CONFIG)


# Every AWS resource a festival's cameras get is tagged with the festival at creation, so closeout
# can find it by what it is even when the database row that pointed at it is gone.
FESTIVAL_TAG = "stagepulse:festival"
THING_TAG = "stagepulse:thing"


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for any other exception): the one place
    that reads `exc.response["Error"]["Code"]`, for the server, the analyzer and infra alike."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Code") or "")


def tag_map(festival: str, thing: str = "") -> dict[str, str]:
    """Tags as Lambda, Greengrass v1 and v2 take them ({key: value})."""
    return {FESTIVAL_TAG: festival, **({THING_TAG: thing} if thing else {})}


def tag_list(festival: str, thing: str = "") -> list[dict[str, str]]:
    """Tags as IAM and IoT take them ([{Key, Value}])."""
    return [{"Key": key, "Value": value} for key, value in tag_map(festival, thing).items()]


# --- ARNs -----------------------------------------------------------------------------------------
def partition(region_name: str | None = None) -> str:
    """The ARN partition of a region (aws, aws-cn, aws-us-gov), from botocore's endpoint data, so
    an ARN built here matches what AWS gives out in China and GovCloud as well."""
    name = region_name or region()
    return _session().get_partition_for_region(name) or "aws"


def arn(service: str, resource: str, *, region_name: str = "", account: str = "") -> str:
    """arn:<partition>:<service>:<region>:<account>:<resource>; S3 and IAM ARNs leave region (and
    for S3 the account) empty. The partition follows the client's region even when the ARN's
    own region is empty (and follows region_name when it is given)."""
    return f"arn:{partition(region_name or None)}:{service}:{region_name}:{account}:{resource}"
