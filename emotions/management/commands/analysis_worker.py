"""`manage.py analysis_worker`: the analyzer's SQS worker mode, configured from Django settings.

The same handler as the Lambda; used by the embedded demo and by deployments without Lambda.
"""

from __future__ import annotations

import os
from dataclasses import replace

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

import awsclients as aws
from analyzer.config import AnalyzerSettings
from analyzer.worker import run_worker


class Command(BaseCommand):
    help = "Consume the analysis queue: analyze crops, write observations, delete crops."

    def add_arguments(self, parser):
        parser.add_argument(
            "--backend",
            choices=["local", "rekognition"],
            default=os.environ.get("STAGEPULSE_ANALYZER_BACKEND", "rekognition"),
        )
        parser.add_argument("--queue-url", default=os.environ.get("STAGEPULSE_ANALYZER_QUEUE_URL"))
        parser.add_argument("--batch-size", type=int, default=64)
        parser.add_argument("--batch-window", type=float, default=2.0)
        parser.add_argument("--wait", type=int, default=20, help="long-poll seconds (1-20)")
        parser.add_argument("--max-messages", type=int, default=None)
        parser.add_argument("--idle-exit", action="store_true", help="stop when the queue is empty")

    def handle(self, *args, **options):
        queue_url = options["queue_url"] or self.queue_url_by_name(settings.ANALYSIS_QUEUE_NAME)
        # The analyzer's own variables (retention, stage allowlist, TTL, crop size, local model:
        # docs/analysis.md) apply as in the Lambda; table and namespace default to the service's.
        analyzer_settings = replace(
            AnalyzerSettings.from_env(),
            backend=options["backend"],
            table_name=os.environ.get("STAGEPULSE_OBSERVATIONS_TABLE")
            or settings.OBSERVATIONS_TABLE,
            metrics_namespace=os.environ.get("STAGEPULSE_METRICS_NAMESPACE")
            or settings.CLOUDWATCH_NAMESPACE,
            queue_url=queue_url,
        )
        self.stdout.write(f"analysis worker ({options['backend']}) on {queue_url}")
        stats = run_worker(
            settings=analyzer_settings,
            batch_size=options["batch_size"],
            batch_window_s=options["batch_window"],
            wait_time_s=options["wait"],
            max_messages=options["max_messages"],
            idle_exit=options["idle_exit"],
            handle_signals=True,
        )
        self.stdout.write(
            f"stopped: {stats.received} messages, {stats.faces_written} faces written, "
            f"{stats.retried} left for retry"
        )

    @staticmethod
    def queue_url_by_name(name: str) -> str:
        try:
            return aws.client("sqs").get_queue_url(QueueName=name)["QueueUrl"]
        except Exception as error:  # noqa: BLE001 - any failure means: not configured
            raise CommandError(
                f"cannot find the analysis queue {name!r} ({error}); deploy infra first "
                "(manage.py infra deploy) or pass --queue-url"
            ) from error
