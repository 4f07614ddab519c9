"""manage.py device_token <thing> [--config [--service-url URL]]: issue a telemetry token."""

import json

from django.core.management.base import BaseCommand, CommandError

from devices import services
from devices.models import Device


class Command(BaseCommand):
    help = (
        "Issue a new telemetry token for a device (the previous one stops working) and print "
        "it; the device sends it as 'Authorization: Device <token>'. With --config, print the "
        "device's whole edge_package configuration (JSON) with the token in it instead."
    )

    def add_arguments(self, parser):
        parser.add_argument("thing_name")
        parser.add_argument("--config", action="store_true", help="print the edge config JSON")
        parser.add_argument(
            "--service-url", default="", help="telemetry target (default STAGEPULSE_PUBLIC_URL)"
        )

    def handle(self, *args, thing_name, config, service_url, **options):
        device = (
            Device.objects.select_related("festival", "stage", "organization")
            .filter(thing_name=thing_name)
            .first()
        )
        if device is None:
            raise CommandError(f"no device with thing name {thing_name!r}")
        token = services.issue_device_token(device)
        if not config:
            self.stdout.write(token)
            return
        edge_config = services.device_config(device, token=token)
        if service_url:
            edge_config["service_url"] = service_url
        self.stdout.write(json.dumps(edge_config, indent=2, sort_keys=True))
