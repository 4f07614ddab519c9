"""The Celery app: tasks are autodiscovered in each app's tasks.py; settings come from CELERY_*."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "festival.settings")

app = Celery("stagepulse")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
