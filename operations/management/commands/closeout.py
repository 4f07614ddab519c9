from django.core.management.base import BaseCommand, CommandError

from festival.models import Festival
from operations.closeout import Closeout


class Command(BaseCommand):
    help = (
        "Stop a festival's cameras, then remove everything it created in AWS (queued analysis, "
        "crops, DynamoDB items, dashboard and alarms, Greengrass v1 and v2, DeepLens Lambdas, "
        "IoT things, certificates, policies, role aliases, IAM roles) and list what remains. "
        "Idempotent: run it again to resume."
    )

    def add_arguments(self, parser):
        parser.add_argument("festival", help="festival slug")
        parser.add_argument("--dry-run", action="store_true", help="list, delete nothing")
        parser.add_argument(
            "--purge", action="store_true", help="also delete observations, rollups and reports"
        )
        parser.add_argument("--stack", metavar="NAME", help="also tear down this infra stack")

    def handle(self, *args, festival, dry_run, purge, stack, **options):
        try:
            target = Festival.objects.get(slug=festival)
        except Festival.DoesNotExist as error:
            raise CommandError(f"no festival with slug {festival!r}") from error
        title = "Closeout plan" if dry_run else "Closeout"
        self.stdout.write(f"{title} for {target.name} ({target.slug}):")
        closeout = Closeout(target, dry_run=dry_run, purge=purge, stack_name=stack)
        reports = closeout.run()
        for report in reports:
            self.stdout.write("  " + report.line(dry_run))
        if not purge:
            self.stdout.write("  aggregates and set reports kept (use --purge to delete them)")
        if not dry_run:
            self.stdout.write("Inventory (found again after closeout):")
            for line in closeout.inventory:
                self.stdout.write("  " + line.line())
        left = any(line.remains for line in closeout.inventory)
        if any(report.errors for report in reports) or left:
            raise CommandError("some steps did not finish; run the same command again to resume")
