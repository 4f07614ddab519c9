"""`make demo`: a whole festival on embedded defaults, in one command; Ctrl-C stops everything.

moto server -> infra stack deployed into it -> database migrated and seeded, a live lineup of
short sets around now -> web, Celery worker and beat, the analyzer worker (local model) and one
simulated camera per stage running the real edge_package.
"""

from __future__ import annotations

import os
import signal
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand

from emotions.services import ingest_streams
from festival.models import Festival
from operations import demo
from operations.services import DEMO_PASSWORD, seed_demo, update_festival
from stages.services import import_lineup


class Command(BaseCommand):
    help = "Run the whole StagePulse demo on embedded defaults."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PORT", 8000)))
        parser.add_argument(
            "--moto-port", type=int, default=int(os.environ.get("DEMO_MOTO_PORT", 5055))
        )
        parser.add_argument(
            "--duration", type=float, default=0, help="Stop after this many seconds (0: run)."
        )
        parser.add_argument(
            "--set-minutes", type=int, default=4, help="Length of the demo's live sets."
        )
        parser.add_argument("--camera-fps", type=float, default=2.0, help="fps cap per camera")
        parser.add_argument("--no-cameras", action="store_true")
        parser.add_argument(
            "--no-comparison",
            action="store_true",
            help="no comparison run (by default one starts, its harbour camera in edge mode)",
        )
        parser.add_argument(
            "--face-free",
            action="store_true",
            help="the festival in face-free mode: cameras send only motion, sound and fill",
        )

    def step(self, message: str) -> None:
        self.stdout.write(f"[{time.strftime('%H:%M:%S')}] {message}")
        self.stdout.flush()

    def handle(
        self, *args, port, moto_port, duration, set_minutes, camera_fps, no_cameras,
        no_comparison=False, face_free=False, **_,
    ):  # fmt: skip
        folder = settings.VAR_DIR / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        port = demo.free_port(port)
        base = f"http://127.0.0.1:{port}"
        moto_port = demo.free_port(moto_port)
        self.step(f"starting the moto server (local AWS) on 127.0.0.1:{moto_port} …")
        moto = demo.start_moto(moto_port, folder / "moto.log")
        extra = {
            **demo.aws_environment(moto_port),
            "INGEST_INTERVAL_S": os.environ.get("INGEST_INTERVAL_S", "1"),
            "REPORT_GRACE_MINUTES": os.environ.get("REPORT_GRACE_MINUTES", "1"),
            "REPORT_SWEEP_INTERVAL_S": os.environ.get("REPORT_SWEEP_INTERVAL_S", "10"),
            "CLOUDWATCH_DASHBOARDS": os.environ.get("CLOUDWATCH_DASHBOARDS", "1"),
            # no device answers a deployment in the demo: one that waits ends visibly, soon
            "DEPLOYMENT_TIMEOUT_MINUTES": os.environ.get("DEPLOYMENT_TIMEOUT_MINUTES", "2"),
            "STAGEPULSE_PUBLIC_URL": base,
        }
        os.environ.update(extra)
        try:
            self.step("deploying the CloudFormation stack into moto …")
            extra.update(demo.deploy_infra(emit=lambda line: self.step(f"  {line}")))
            os.environ.update(extra)
            self.step("migrating and seeding the database …")
            call_command("migrate", verbosity=0, interactive=False)
            logins = seed_demo()
            festival = Festival.objects.get(slug=demo.DEMO_FESTIVAL)
            demo.festival_runs_today(festival)  # the ingest refuses captures outside its dates
            if face_free:
                update_festival(festival, face_free=True)  # pushed into every camera's config
                self.step("face-free mode: no face is detected; the ranking runs on the crowd")
            import_lineup(
                festival, demo.live_lineup(festival, set_minutes), replace=True, force=True
            )
            if not no_cameras and not no_comparison and not face_free:  # no crop in face-free
                run = demo.start_demo_comparison(festival)
                self.step(f"comparison run {run.key} started: {base}/comparisons/{run.pk}/")
            processes = demo.service_processes(port, float(extra["INGEST_INTERVAL_S"]))
            cameras = (
                []
                if no_cameras
                else demo.prepare_cameras(festival, base, folder / "cameras", camera_fps)
            )
            group = demo.ProcessGroup(demo.child_environment(extra), out=self.stdout._out)
            for process in processes:
                group.start(process)
            demo.wait_for_port(port, timeout_s=60)
            for camera in cameras:
                group.start(camera)
            stop = self.stop_on_signals()  # before the banner: a Ctrl-C after it is always heard
            self.stdout.write(
                self.style.SUCCESS("\nStagePulse demo is running. Look here:")
                + f"\n  dashboard    {base}/dashboard/"
                + f"\n  admin        {base}/admin/"
                + f"\n  API docs     {base}/api/docs/"
                + f"\n  fan API      {base}/api/v1/public/festivals/{festival.slug}/live/"
                + f"\n  comparison   {base}/admin/emotions/comparisonrun/"
                + f"\n  health       {base}/healthz"
                + f"\n  local AWS    http://127.0.0.1:{moto_port} (moto)"
                + f"\n  logins (password '{DEMO_PASSWORD}'): "
                + ", ".join(f"{login.username} ({login.role})" for login in logins)
                + f"\n  Sets last {set_minutes} minutes; a set's report appears shortly after"
                " it ends.\n  Ctrl-C stops everything.\n"
            )
            self.run_until_stopped(group, duration, stop)
            self.step("stopping the cameras, then letting the analyzer drain its queue …")
            group.stop([camera.name for camera in cameras])
            left = demo.drain(extra["STAGEPULSE_ANALYZER_QUEUE_URL"], timeout_s=45)
            self.step("queue drained" if not left else f"{left} crops left in the queue")
            group.stop()
            created = ingest_streams(force=True).created  # the last crops; workers stopped
            self.step(f"final ingest: {created} observations")
        finally:
            moto.terminate()
            demo.wait_or_kill(moto, timeout_s=10)
        self.step("demo stopped")

    @staticmethod
    def stop_on_signals() -> dict:
        """From now on SIGTERM and Ctrl-C ask the demo to stop (the cameras first, then a drain)
        instead of interrupting it."""
        stop = {"now": False}

        def request_stop(*_):
            stop["now"] = True

        signal.signal(signal.SIGTERM, request_stop)
        signal.signal(signal.SIGINT, request_stop)
        return stop

    def run_until_stopped(self, group, duration: float, stop: dict) -> None:
        deadline = time.monotonic() + duration if duration else None
        while not stop["now"]:
            if deadline and time.monotonic() >= deadline:
                break
            if group.exited():
                self.stderr.write(f"stopping: {', '.join(group.exited())} exited")
                break
            time.sleep(0.5)
