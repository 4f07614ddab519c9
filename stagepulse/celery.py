"""The Celery app: tasks are autodiscovered in each app's tasks.py; settings come from CELERY_*.

The embedded filesystem broker, the file result backend and beat's schedule file need their
folders. The settings create none (importing them has no side effects): they are made here, when
the app is configured in a process that sends or runs tasks.
"""

from __future__ import annotations

import os
from pathlib import Path

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stagepulse.settings")

BROKER_FOLDER_OPTIONS = ("data_folder_in", "data_folder_out", "processed_folder", "control_folder")


def make_embedded_folders(conf) -> list[Path]:
    """Create the filesystem broker's (and, beside it, the beat schedule's) and the file result
    backend's folders; return them."""
    folders = []
    if str(conf.broker_url or "").startswith("filesystem://"):
        options = conf.broker_transport_options or {}
        folders += [Path(options[key]) for key in BROKER_FOLDER_OPTIONS if options.get(key)]
        if conf.beat_schedule_filename:
            folders.append(Path(conf.beat_schedule_filename).parent)
    backend = conf.result_backend
    if isinstance(backend, str) and backend.startswith("file://"):
        folders.append(Path(backend.removeprefix("file://")))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


app = Celery("stagepulse")


@app.on_after_configure.connect
def _make_embedded_folders(sender, source, **kwargs) -> None:
    make_embedded_folders(source)


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
