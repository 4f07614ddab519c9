"""manage.py deploy_device <thing> [--release VERSION] [--wait]."""

import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from devices import selectors, services
from devices.models import Device, EdgeRelease


class Command(BaseCommand):
    help = (
        "Deploy an edge release (default: the newest) to a device. Without --wait the Celery "
        "worker drives it; with --wait this command runs the steps itself and polls."
    )

    def add_arguments(self, parser):
        parser.add_argument("thing_name")
        parser.add_argument("--release", default="", help="release version (default: newest)")
        parser.add_argument("--wait", action="store_true")

    def handle(self, *args, thing_name, release, wait, **options):
        device = Device.objects.filter(thing_name=thing_name).first()
        if device is None:
            raise CommandError(f"no device with thing name {thing_name!r}")
        chosen = (
            EdgeRelease.objects.filter(version=release).first()
            if release
            else selectors.latest_release()
        )
        if chosen is None:
            raise CommandError("no such edge release; run build_edge_release first")
        try:
            deployment = services.start_deployment(device, chosen, enqueue=not wait)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"deployment #{deployment.pk}: {chosen.version} -> {thing_name}")
        if not wait:
            return
        while (wait_s := services.run_deployment(deployment.pk)) is not None:
            deployment.refresh_from_db()
            self.stdout.write(f"  {deployment.state}: {deployment.history[-1]['note']}")
            time.sleep(wait_s)
        deployment.refresh_from_db()
        self.stdout.write(f"  {deployment.state} {deployment.reason}")
