from django.db import connection
from django.http import JsonResponse


def healthz(request):
    """Load balancer probe: answers 200 only when the database answers."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
    except Exception as error:  # noqa: BLE001 - any database failure means unhealthy
        return JsonResponse({"status": "unhealthy", "database": str(error)[:200]}, status=503)
    return JsonResponse({"status": "ok"})


def ping(request):
    """A trivial JSON answer (no database, no cache): the baseline the API benchmark compares
    the live ranking against (bench/bench_api.py)."""
    return JsonResponse({"ok": True})
