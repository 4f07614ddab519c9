"""Keeping a camera's credentials out of logs: the service and the device show sources alike.

Django-free and without OpenCV, so the service can import it as cheaply as the camera.
"""

from __future__ import annotations

import re

_SECRET_QUERY = re.compile(
    r"([?&;][^=&;#]*(?:pass|pwd|token|key|secret|auth|sig|cred)[^=&;#]*=)[^&;#]*", re.IGNORECASE
)


def redact_source(spec) -> str:
    """A --source value fit for a log or status line: a URL's password (everything between the
    user name and the last '@' of its authority) and secret-looking query values become ***.

    Parsed by hand, not with urllib: a camera password is often typed unencoded and may hold
    '#', '?', '/' or '@', which would make urlsplit cut the URL in the wrong place.
    """
    text = str(spec)
    scheme, sep, rest = text.partition("://")
    if not sep:
        return text
    at = rest.rfind("@")
    if at >= 0:
        userinfo, rest = rest[:at], rest[at + 1 :]
        user, colon, _ = userinfo.partition(":")
        rest = (f"{user}:***@" if colon else "***@") + rest
    return scheme + sep + _SECRET_QUERY.sub(r"\1***", rest)
