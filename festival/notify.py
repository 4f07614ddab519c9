"""Tell a festival's operations contacts something: e-mail to `ops_emails`, JSON to
`ops_webhook_url`. One place for both channels, used by device alerts and set-report
announcements. A failing channel is logged and never stops the other or the caller; it is tried
again by a Celery task (`festival.tasks.retry_notification`) after NOTIFY_RETRY_DELAYS_S, so an
alert survives an SMTP or webhook outage of up to about half an hour."""

from __future__ import annotations

import json
import logging
import urllib.error
import urllib.request
from functools import partial

from celery import shared_task
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction

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


def configured_channels(festival: Festival) -> list[str]:
    channels = ["email"] if festival.ops_email_list() else []
    return channels + (["webhook"] if festival.ops_webhook_url else [])


def deliver(festival: Festival, channel: str, *, subject: str, body: str, payload: dict) -> bool:
    """One channel, once; False (logged) when it failed."""
    if channel == "email":
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, festival.ops_email_list())
            return True
        except Exception as exc:  # noqa: BLE001 - SMTP errors vary; report and go on
            log.error("e-mail %r to %s failed: %s", subject, festival.slug, exc)
            return False
    return post_json(
        festival.ops_webhook_url,
        {"text": f"{subject}\n{body}", "festival": festival.slug, **payload},
    )


def notify_operations(festival: Festival, *, subject: str, body: str, payload: dict) -> list[str]:
    """Send to every configured channel; returns the channels that accepted it now. The others
    are queued for retries once the caller's transaction commits."""
    sent = []
    for channel in configured_channels(festival):
        if deliver(festival, channel, subject=subject, body=body, payload=payload):
            sent.append(channel)
        else:
            message = json.loads(json.dumps(payload, default=str))  # as the broker will carry it
            transaction.on_commit(
                partial(queue_retry, festival.pk, channel, subject, body, message)
            )
    return sent


def queue_retry(festival_id: int, channel: str, subject: str, body: str, payload: dict) -> None:
    try:
        retry_notification.apply_async(
            (festival_id, channel, subject, body, payload),
            countdown=settings.NOTIFY_RETRY_DELAYS_S[0],
        )
    except Exception as exc:  # noqa: BLE001 - broker down: the log line is all that is left
        log.error("%s %r lost, no retry queued: %s", channel, subject, exc)


# Here, beside the channels it retries (festival.tasks would import this module and this module
# it); the name stays festival.tasks.retry_notification for tasks already queued.
@shared_task(bind=True, name="festival.tasks.retry_notification", ignore_result=True)
def retry_notification(self, festival_id, channel, subject, body, payload) -> bool:
    """Try a failed alert or announcement channel again, backing off along
    NOTIFY_RETRY_DELAYS_S; after the last delay it is logged as given up."""
    festival = Festival.objects.filter(pk=festival_id).first()
    if festival is None:
        return False  # the festival was deleted meanwhile: nobody to tell
    if deliver(festival, channel, subject=subject, body=body, payload=payload):
        return True
    delays = settings.NOTIFY_RETRY_DELAYS_S
    if self.request.retries + 1 >= len(delays):
        log.error(
            "%s %r for %s given up after %d tries", channel, subject, festival.slug, len(delays) + 1
        )
        return False
    raise self.retry(countdown=delays[self.request.retries + 1], max_retries=len(delays))
