"""Service-level tasks: a health probe proving the broker, a worker and the database all answer."""

from celery import shared_task
from django.db import connection
from django.utils import timezone


@shared_task(name="festival.tasks.health_check")
def health_check() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        database_ok = cursor.fetchone()[0] == 1
    return {"status": "ok", "database": database_ok, "at": timezone.now().isoformat()}


@shared_task(name="festival.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Beat's own pulse: its last run time tells operators that beat is alive."""
    from django.core.cache import cache

    cache.set("stagepulse:beat:last", timezone.now().isoformat(), timeout=None)


@shared_task(bind=True, name="festival.tasks.retry_notification", ignore_result=True)
def retry_notification(self, festival_id, channel, subject, body, payload) -> bool:
    """Try a failed alert or announcement channel again, backing off along
    NOTIFY_RETRY_DELAYS_S; after the last delay it is logged as given up."""
    import logging

    from django.conf import settings

    from festival.models import Festival
    from festival.notify import deliver

    festival = Festival.objects.filter(pk=festival_id).first()
    if festival is None:
        return False  # the festival was deleted meanwhile: nobody to tell
    if deliver(festival, channel, subject=subject, body=body, payload=payload):
        return True
    delays = settings.NOTIFY_RETRY_DELAYS_S
    if self.request.retries + 1 >= len(delays):
        logging.getLogger(__name__).error(
            "%s %r for %s given up after %d tries", channel, subject, festival.slug, len(delays) + 1
        )
        return False
    raise self.retry(countdown=delays[self.request.retries + 1], max_retries=len(delays))
