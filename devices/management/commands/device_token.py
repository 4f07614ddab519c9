"""manage.py device_token <thing>: issue a telemetry token (prints it once)."""

from django.core.management.base import BaseCommand, CommandError

from devices import services
from devices.models import Device


class Command(BaseCommand):
    help = (
        "Issue a new telemetry token for a device (the previous one stops working) and print "
        "it; the device sends it as 'Authorization: Device <token>'."
    )

    def add_arguments(self, parser):
        parser.add_argument("thing_name")

    def handle(self, *args, thing_name, **options):
        device = Device.objects.filter(thing_name=thing_name).first()
        if device is None:
            raise CommandError(f"no device with thing name {thing_name!r}")
        self.stdout.write(services.issue_device_token(device))
