"""Lambda entry point: `analyzer.handler.lambda_handler`.

Accepts raw S3 ObjectCreated events (S3 -> Lambda) and SQS events whose bodies are S3 events
(S3 -> SQS -> Lambda, or the worker). With SQS, only the messages that hit a retryable error are
returned in batchItemFailures (the function needs ReportBatchItemFailures enabled); with a raw S3
event a retryable error raises, so that Lambda's asynchronous retries and on-failure destination
take over (replays are harmless: observations are written conditionally).
"""

from __future__ import annotations

import logging

from botocore.config import Config

from awsclients import client

from .analyzer import Analyzer, BatchReport
from .backends import LocalBackend, RekognitionBackend
from .config import AnalyzerSettings
from .events import crops_from_s3_event, crops_from_sqs_event, is_s3_test_event, is_sqs_event

log = logging.getLogger("stagepulse.analysis")

# Throttling backoff is done (and counted) by RekognitionBackend, not hidden inside botocore.
REKOGNITION_CONFIG = Config(
    retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=5, read_timeout=30
)


class RetryableBatchError(RuntimeError):
    """Raised for a raw S3 event with a retryable failure, so that Lambda invokes it again."""


def build_backend(settings: AnalyzerSettings, *, rekognition=None, classifier=None):
    if settings.backend == "local":
        if classifier is None:
            from edge_package.emotion_model import EmotionClassifier

            classifier = EmotionClassifier(settings.local_model_path)
        return LocalBackend(classifier)
    return RekognitionBackend(rekognition or client("rekognition", config=REKOGNITION_CONFIG))


def build_analyzer(
    settings: AnalyzerSettings | None = None,
    *,
    s3=None,
    dynamodb=None,
    cloudwatch=None,
    rekognition=None,
    classifier=None,
    backend=None,
) -> Analyzer:
    """An Analyzer from settings (default: environment); any client may be injected."""
    settings = settings or AnalyzerSettings.from_env()
    return Analyzer(
        settings=settings,
        backend=backend or build_backend(settings, rekognition=rekognition, classifier=classifier),
        s3=s3 or client("s3"),
        dynamodb=dynamodb or client("dynamodb"),
        cloudwatch=cloudwatch or client("cloudwatch"),
    )


def process_event(event: dict, analyzer: Analyzer) -> BatchReport:
    """Analyze everything an S3 or SQS event names; never raises for a bad record."""
    if is_sqs_event(event):
        crops, problems, _ = crops_from_sqs_event(event)
    elif is_s3_test_event(event):
        return BatchReport()
    else:
        crops, problems = crops_from_s3_event(event)
    return analyzer.process(crops, problems)


def handle_event(event: dict, analyzer: Analyzer) -> dict:
    """The Lambda contract on top of process_event (separate so tests inject an Analyzer)."""
    report = process_event(event, analyzer)
    if is_sqs_event(event):
        return {"batchItemFailures": [{"itemIdentifier": i} for i in report.failed_message_ids()]}
    retries = [o for o in report.outcomes if o.status == "retry"]
    if retries:
        reasons = sorted({o.reason for o in retries})
        raise RetryableBatchError(f"{len(retries)} crops need a retry: {', '.join(reasons)}")
    return report.summary()


_analyzer: Analyzer | None = None


def lambda_handler(event, context):
    """Built once per Lambda container: clients and the model are reused across invocations."""
    global _analyzer
    if _analyzer is None:
        logging.getLogger("stagepulse").setLevel(logging.INFO)
        _analyzer = build_analyzer()
    return handle_event(event, _analyzer)
