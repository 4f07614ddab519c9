"""Re-read observations from the table itself (a Query per stage), for when the stream cannot
help: an ingest outage longer than the stream's 24 h retention, or a table without a stream yet.
The live path is the stream (emotions.tasks.ingest_observations); this is only a repair tool.
Idempotent: what is in the database already is not written or counted again."""

from __future__ import annotations

from datetime import datetime

from django.core.management.base import BaseCommand, CommandError

from emotions.services import backfill_stage
from festival.models import Festival
from stages.models import Stage


class Command(BaseCommand):
    help = "Backfill observations of a festival (or one stage) by querying DynamoDB."

    def add_arguments(self, parser):
        parser.add_argument("festival", help="festival slug")
        parser.add_argument("--stage", help="stage slug (default: every stage)")
        parser.add_argument(
            "--since", help="ISO capture time to start from, e.g. 2026-07-10T18:00:00+00:00"
        )

    def handle(self, *args, festival, stage=None, since=None, **options):
        found = Festival.objects.filter(slug=festival).first()
        if found is None:
            raise CommandError(f"no festival {festival!r}")
        stages = Stage.objects.filter(festival=found).select_related("festival")
        if stage:
            stages = stages.filter(slug=stage)
            if not stages.exists():
                raise CommandError(f"no stage {stage!r} in {festival}")
        since_ms = int(datetime.fromisoformat(since).timestamp() * 1000) if since else 0
        for one in stages:
            result = backfill_stage(one, since_ms)
            self.stdout.write(
                f"{one.slug}: {result.read} read, {result.created} new, "
                f"{result.duplicates} already there, {result.skipped_invalid} refused "
                f"{result.rejected or ''}".rstrip()
            )
