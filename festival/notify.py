"""Tell a festival's operations contacts something: e-mail to `ops_emails`, JSON to
`ops_webhook_url`. One place for both channels, used by device alerts and set-report
announcements. A failing channel is logged and never stops the other or the caller."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request

from django.conf import settings
from django.core.mail import send_mail

from festival.models import Festival

log = logging.getLogger(__name__)
WEBHOOK_TIMEOUT_S = 5


def post_json(url: str, payload: dict) -> bool:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as response:
            response.read()
        return True
    except (urllib.error.URLError, OSError, ValueError) as exc:
        log.error("webhook %s failed: %s", url, exc)
        return False


def notify_operations(festival: Festival, *, subject: str, body: str, payload: dict) -> list[str]:
    """Send to every configured channel; returns the channels that accepted it."""
    sent = []
    recipients = festival.ops_email_list()
    if recipients:
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients)
            sent.append("email")
        except Exception as exc:  # noqa: BLE001 - SMTP errors vary; report and go on
            log.error("e-mail %r to %s failed: %s", subject, festival.slug, exc)
    if festival.ops_webhook_url and post_json(
        festival.ops_webhook_url,
        {"text": f"{subject}\n{body}", "festival": festival.slug, **payload},
    ):
        sent.append("webhook")
    return sent
