"""`make demo`: migrate, seed, then run web + Celery worker + beat together until Ctrl-C."""

from __future__ import annotations

import os
import signal
import sys

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from festival.services import DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Run the whole StagePulse demo on embedded defaults."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))
        parser.add_argument(
            "--duration", type=float, default=0, help="Stop after this many seconds (0: run)."
        )

    def handle(self, *args, port: int, duration: float, **options):
        from honcho.manager import Manager

        self.stdout.write("Preparing the database …")
        call_command("migrate", verbosity=0, interactive=False)
        logins = seed_demo()
        python = sys.executable
        manager = Manager()
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        manager.add_process(
            "web", f"{python} manage.py runserver 127.0.0.1:{port} --noreload", env=env
        )
        manager.add_process(
            "worker",
            f"{python} -m celery -A festival worker --pool=threads --concurrency=4 "
            "--loglevel=INFO --without-heartbeat --without-gossip --without-mingle",
            env=env,
        )
        manager.add_process(
            "beat",
            f"{python} -m celery -A festival beat --loglevel=INFO "
            f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}",
            env=env,
        )
        if duration:
            manager.add_process("timer", f"{python} -c 'import time; time.sleep({duration})'")
        base = f"http://127.0.0.1:{port}"
        self.stdout.write(
            self.style.SUCCESS("\nStagePulse demo starting. Look here:")
            + f"\n  admin        {base}/admin/"
            + f"\n  API docs     {base}/api/docs/"
            + f"\n  fan API      {base}/api/v1/public/festivals/pulse-2026/lineup/"
            + f"\n  health       {base}/healthz"
            + f"\n  logins (password '{DEMO_PASSWORD}'): "
            + ", ".join(f"{login.username} ({login.role})" for login in logins)
            + "\n  Ctrl-C stops everything.\n"
        )
        signal.signal(signal.SIGTERM, lambda *_: manager.terminate())
        manager.loop()
        sys.exit(manager.returncode if not duration else 0)
