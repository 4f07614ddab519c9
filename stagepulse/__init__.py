"""The project package: settings, URLs, the Celery app, WSGI/ASGI. The only package that imports
every app (docs/architecture.md, "Layers").

The Celery app is loaded with the project so that every ``shared_task`` binds to it, in the web
process as in the worker (configuring it stays lazy: importing makes no folder).
"""

from stagepulse.celery import app as celery_app

__all__ = ["celery_app"]
