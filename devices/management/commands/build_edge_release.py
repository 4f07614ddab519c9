"""manage.py build_edge_release: package edge_package/ and upload it to the artifacts bucket."""

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from devices import services


class Command(BaseCommand):
    help = (
        "Package edge_package/ into a reproducible zip with its dependency manifest and sha256, "
        "upload it to ARTIFACTS_BUCKET and record an EdgeRelease (the same content returns the "
        "existing release)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--release-version", default="", help="default: edge_package.__version__"
        )

    def handle(self, *args, **options):
        try:
            release = services.build_edge_release(version=options["release_version"])
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        manifest = release.manifest
        self.stdout.write(
            f"edge release {release.version}\n  sha256 {release.sha256}\n  {release.uri} "
            f"({release.size_bytes} bytes, {len(manifest.get('files', []))} files)"
        )
        if manifest.get("unprovided_imports"):
            self.stdout.write(
                self.style.WARNING(
                    "  imported but not in the edge requirements (optional features only?): "
                    + ", ".join(manifest["unprovided_imports"])
                )
            )
