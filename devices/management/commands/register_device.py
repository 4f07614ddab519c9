"""manage.py register_device <thing> <folder>: register in AWS IoT and write the bundle."""

from pathlib import Path

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from devices import services
from devices.models import Device


class Command(BaseCommand):
    help = (
        "Create the device's IoT thing, certificate, policy and S3 role, and write the "
        "credentials bundle (certificate, private key, root CA, endpoints, stagepulse.json) into "
        "a folder. The private key is not kept anywhere else."
    )

    def add_arguments(self, parser):
        parser.add_argument("thing_name")
        parser.add_argument("folder", type=Path)

    def handle(self, *args, thing_name, folder, **options):
        device = Device.objects.filter(thing_name=thing_name).first()
        if device is None:
            raise CommandError(f"no device with thing name {thing_name!r}")
        try:
            bundle = services.register_device(device)
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in bundle.files().items():
            path = folder / name
            path.write_text(text, encoding="utf-8")
            if name.startswith("private") or name == "stagepulse.json":
                path.chmod(0o600)
        self.stdout.write(f"{thing_name} registered; credentials in {folder}")
