"""Service-level tasks: a health probe proving the broker, a worker and the database all answer;
beat's heartbeat; the notification retry (defined beside its channels in festival.notify, and
registered under this module's name)."""

from celery import shared_task
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from festival.notify import retry_notification  # noqa: F401  (autodiscovered from here)


@shared_task(name="festival.tasks.health_check")
def health_check() -> dict:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        database_ok = cursor.fetchone()[0] == 1
    return {"status": "ok", "database": database_ok, "at": timezone.now().isoformat()}


@shared_task(name="festival.tasks.heartbeat", ignore_result=True)
def heartbeat() -> None:
    """Beat's own pulse: its last run time tells operators that beat is alive."""
    cache.set("stagepulse:beat:last", timezone.now().isoformat(), timeout=None)
