"""Freshness you can see: /live and the dashboard say how old each stage's data is, why a stage
has no number, and how far behind the analysis is (measured by a beat task from SQS and
CloudWatch); a backlog alerts operators once per incident."""

from datetime import UTC, datetime, timedelta

import boto3
import pytest
from django.core import mail
from django.utils import timezone
from moto import mock_aws

from edge_package.contracts import observation_table_definition
from emotions import services
from emotions.models import AnalysisBacklog, IngestWatermark
from tests.emotions.report_helpers import add_device, add_stage
from tests.emotions.test_ingest import REGION, TABLE, put_face

pytestmark = pytest.mark.django_db
QUEUE = "stagepulse-analysis"


@pytest.fixture
def aws(settings):
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**observation_table_definition(TABLE))
        sqs = boto3.client("sqs", region_name=REGION)
        settings.ANALYSIS_QUEUE_URL = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]
        yield {
            "dynamodb": dynamodb,
            "streams": boto3.client("dynamodbstreams", region_name=REGION),
            "sqs": sqs,
            "cloudwatch": boto3.client("cloudwatch", region_name=REGION),
        }


@pytest.fixture
def festival_now(two_worlds):
    ours, _ = two_worlds
    ours.festival.starts_on = timezone.now().date() - timedelta(days=1)
    ours.festival.ends_on = timezone.now().date() + timedelta(days=1)
    ours.festival.min_faces_public = 5
    ours.festival.ops_emails = "crew@example.org"
    ours.festival.save()
    return two_worlds


def ingest(aws):
    return services.ingest_streams(dynamodb=aws["dynamodb"], streams=aws["streams"])


def measure(aws, now=None):
    return services.measure_analysis_backlog(now=now, sqs=aws["sqs"], cloudwatch=aws["cloudwatch"])


def oldest_message_metric(aws, age_s: float, at: datetime):
    """What SQS itself publishes to CloudWatch every minute on real AWS."""
    aws["cloudwatch"].put_metric_data(
        Namespace="AWS/SQS",
        MetricData=[
            {
                "MetricName": "ApproximateAgeOfOldestMessage",
                "Dimensions": [{"Name": "QueueName", "Value": QUEUE}],
                "Timestamp": at,
                "Value": age_s,
                "Unit": "Seconds",
            }
        ],
    )


def queue_crops(aws, count: int):
    from django.conf import settings

    for i in range(count):
        aws["sqs"].send_message(QueueUrl=settings.ANALYSIS_QUEUE_URL, MessageBody=f"crop {i}")


def live(api_client, world):
    response = api_client.get(f"/api/v1/public/festivals/{world.festival.slug}/live/")
    assert response.status_code == 200
    return response.json()


def by_stage(payload):
    return {row["stage"]["slug"]: row for row in payload["stages"]}


def test_live_says_how_old_each_stages_data_is_and_why_it_has_no_number(
    aws, festival_now, api_client
):
    ours, _ = festival_now
    now = timezone.now()
    tent, harbour = add_stage(ours, "Tent", "tent"), add_stage(ours, "Harbour", "harbour")
    add_stage(ours, "Forest", "forest")  # never any data
    add_device(ours, tent, "tent-cam", "Tent cam")
    add_device(ours, harbour, "harbour-cam", "Harbour cam")
    # six faces 30-41 s old, all in one minute (split 4 + 2 across a minute boundary, neither
    # minute would reach the public threshold and the stage would rightly have no number)
    newest = now - timedelta(seconds=30)
    if newest.second < 5:
        newest = newest.replace(second=0, microsecond=0) - timedelta(seconds=1)
    for i in range(6):
        put_face(ours, newest - timedelta(seconds=i))
    for i in range(2):
        put_face(ours, now - timedelta(seconds=20 + i), stage="tent", device="tent-cam")
    for i in range(8):
        put_face(
            ours, now - timedelta(minutes=20, seconds=i), stage="harbour", device="harbour-cam"
        )
    ingest(aws)
    rows = by_stage(live(api_client, ours))
    assert rows["main"]["vibe"] is not None and rows["main"]["no_number_reason"] is None
    assert 29 <= rows["main"]["data_age_s"] <= 60
    assert rows["tent"]["faces"] is None and rows["tent"]["no_number_reason"] == "too_few_faces"
    assert 19 <= rows["tent"]["data_age_s"] <= 60
    assert rows["harbour"]["no_number_reason"] == "no_recent_data"
    assert rows["harbour"]["data_age_s"] >= 20 * 60
    assert rows["forest"]["no_number_reason"] == "no_recent_data"
    assert rows["forest"]["data_age_s"] is None


def test_a_stage_without_a_number_says_analysis_behind_when_the_queue_is_old(
    aws, festival_now, api_client
):
    ours, _ = festival_now
    put_face(ours, timezone.now() - timedelta(seconds=40))
    ingest(aws)
    queue_crops(aws, 7)
    oldest_message_metric(aws, 400, datetime.now(UTC) - timedelta(minutes=1))
    backlog = measure(aws)
    assert (backlog.depth, backlog.oldest_age_s, backlog.age_source) == (7, 400, "cloudwatch")
    payload = live(api_client, ours)
    assert payload["analysis"]["queued"] == 7 and payload["analysis"]["oldest_age_s"] == 400
    assert payload["analysis"]["behind"] is True
    (row,) = payload["stages"]
    assert row["faces"] is None and row["no_number_reason"] == "analysis_behind"


def test_without_the_metric_the_age_is_estimated_from_when_rows_last_arrived(aws, festival_now):
    ours, _ = festival_now
    put_face(ours, timezone.now() - timedelta(seconds=5))
    ingest(aws)
    assert measure(aws).oldest_age_s == 0  # nothing waiting
    queue_crops(aws, 3)
    # the analyzer stalls: messages wait, no new rows for three minutes
    IngestWatermark.objects.update(last_run_at=timezone.now() - timedelta(minutes=3))
    backlog = measure(aws)
    assert backlog.age_source == "estimate"
    assert 170 <= backlog.oldest_age_s <= 200


def test_a_backlog_alerts_operators_once_per_incident_and_once_on_recovery(aws, festival_now):
    from django.conf import settings

    t0 = datetime.now(UTC).replace(second=0, microsecond=0)
    queue_crops(aws, 4)
    oldest_message_metric(aws, 600, t0 - timedelta(minutes=1))
    measure(aws, now=t0)
    measure(aws, now=t0 + timedelta(seconds=15))
    assert [m.subject for m in mail.outbox] == [
        "[StagePulse] analysis behind: 4 crops waiting, oldest 600 s"
    ]
    assert AnalysisBacklog.objects.get().alerted_at is not None
    aws["sqs"].purge_queue(QueueUrl=settings.ANALYSIS_QUEUE_URL)
    oldest_message_metric(aws, 0, t0 + timedelta(minutes=2))
    measure(aws, now=t0 + timedelta(minutes=3))
    measure(aws, now=t0 + timedelta(minutes=3, seconds=15))
    assert [m.subject for m in mail.outbox][1:] == ["[StagePulse] analysis caught up"]
    assert AnalysisBacklog.objects.get().alerted_at is None


def test_a_queue_that_cannot_be_read_is_recorded_not_raised(festival_now, settings):
    with mock_aws():
        settings.ANALYSIS_QUEUE_URL = ""
        settings.ANALYSIS_QUEUE_NAME = "no-such-queue"
        backlog = services.measure_analysis_backlog(
            sqs=boto3.client("sqs", region_name=REGION),
            cloudwatch=boto3.client("cloudwatch", region_name=REGION),
        )
    assert "NonExistentQueue" in backlog.error and backlog.measured_at is None


def test_dashboard_shows_refusals_and_backlog_for_our_festival_only(aws, festival_now, client):
    ours, theirs = festival_now
    theirs.festival.starts_on, theirs.festival.ends_on = (
        ours.festival.starts_on,
        ours.festival.ends_on,
    )
    theirs.festival.save()
    put_face(ours, timezone.now(), device=theirs.device.thing_name)  # refused: not our camera
    put_face(theirs, timezone.now() + timedelta(days=2))  # refused: their far-future capture
    ingest(aws)
    queue_crops(aws, 2)
    measure(aws)
    client.force_login(ours.viewer)
    data = client.get(f"/dashboard/{ours.festival.pk}/data.json").json()
    assert [(r["reason"], r["stage"], r["count"]) for r in data["ingest"]["refused"]] == [
        ("wrong_device", "main", 1)
    ]
    assert data["live"]["analysis"]["queued"] == 2
    assert "future" not in str(data["ingest"])
    page = client.get(f"/dashboard/{ours.festival.pk}/").content.decode()
    assert 'id="refusals"' in page and 'id="analysis"' in page


def test_backlog_task_is_scheduled_and_thin(aws, festival_now, settings):
    from emotions.tasks import measure_analysis_backlog

    assert any(
        entry["task"] == "emotions.tasks.measure_analysis_backlog"
        for entry in settings.CELERY_BEAT_SCHEDULE.values()
    )
    queue_crops(aws, 1)
    from unittest import mock

    with mock.patch("awsclients.cached_client", side_effect=lambda name: aws[name]):
        assert measure_analysis_backlog.apply().get()["depth"] == 1
