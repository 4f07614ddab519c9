from django.core.management.base import BaseCommand

from operations.services import DEMO_PASSWORD, seed_demo


class Command(BaseCommand):
    help = "Create the demo organizations, festivals, lineup and cameras (idempotent)."

    def handle(self, *args, **options):
        logins = seed_demo()
        self.stdout.write(
            self.style.SUCCESS(f"Demo data ready. Logins (password '{DEMO_PASSWORD}'):")
        )
        for login in logins:
            self.stdout.write(f"  {login.username:<8} {login.role:<9} {login.organization}")
