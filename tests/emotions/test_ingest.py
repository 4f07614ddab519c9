"""Ingest from DynamoDB into Postgres: rows, set attribution, rollups, idempotency, late data,
malformed items, and a database outage that loses nothing."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import pytest
from django.db import OperationalError
from moto import mock_aws

from edge_package.contracts import (
    CropKey,
    build_observation_item,
    observation_table_definition,
    to_dynamodb,
)
from emotions import services
from emotions.models import IngestWatermark, MinuteRollup, Observation

pytestmark = pytest.mark.django_db

TABLE = "stagepulse-observations"
BASE = datetime(2026, 7, 10, 18, 10, tzinfo=UTC)  # during ours.set (18:00-19:30 UTC)


@pytest.fixture
def dynamodb():
    with mock_aws():
        client = boto3.client("dynamodb", region_name="eu-west-1")
        client.create_table(**observation_table_definition(TABLE))
        yield client


def put_face(world, when: datetime, *, happy=80.0, calm=10.0, seq=0, face=0, table=None):
    crop = CropKey(
        festival=world.festival.slug,
        stage=world.stage.slug,
        device=world.device.thing_name,
        captured_at_ms=int(when.timestamp() * 1000),
        seq=seq,
    )
    item = build_observation_item(
        crop=crop,
        face_index=face,
        scores={"HAPPY": happy, "CALM": calm},
        face_confidence=99.1,
        source="local",
        organization=world.organization.slug,
        model="fer-quantized",
        analyzed_at_ms=crop.captured_at_ms + 900,
    )
    boto3.resource("dynamodb", region_name="eu-west-1").Table(TABLE).put_item(
        Item=to_dynamodb(item)
    )
    return item


def test_items_become_observations_with_set_device_and_rollups(dynamodb, two_worlds):
    ours, _ = two_worlds
    for i in range(6):
        put_face(ours, BASE + timedelta(seconds=10 * i), seq=i)  # 18:10:00..18:10:50
    put_face(ours, BASE + timedelta(minutes=1), happy=5, calm=90, seq=99)  # 18:11
    result = services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert (result.read, result.created, result.skipped_invalid) == (7, 7, 0)
    rows = Observation.objects.filter(stage=ours.stage)
    assert rows.count() == 7
    first = rows.order_by("captured_at").first()
    assert first.set == ours.set and first.device == ours.device
    assert first.happy == 80.0 and first.top_emotion == "HAPPY"
    assert first.organization == ours.organization
    minute = MinuteRollup.objects.get(stage=ours.stage, minute=BASE)
    assert minute.faces == 6
    assert minute.counts == {"HAPPY": 6}
    assert minute.sums["HAPPY"] == pytest.approx(480.0)
    later = MinuteRollup.objects.get(stage=ours.stage, minute=BASE + timedelta(minutes=1))
    assert later.counts == {"CALM": 1}
    assert IngestWatermark.objects.get(stage=ours.stage).captured_until_ms == int(
        (BASE + timedelta(minutes=1)).timestamp() * 1000
    )


def test_rerunning_changes_nothing(dynamodb, two_worlds):
    ours, _ = two_worlds
    for i in range(3):
        put_face(ours, BASE + timedelta(seconds=i), seq=i)
    services.ingest_stage(ours.stage, dynamodb=dynamodb)
    again = services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert again.read == 3 and again.created == 0
    assert Observation.objects.count() == 3
    assert MinuteRollup.objects.get(stage=ours.stage).faces == 3


def test_late_arrival_inside_the_overlap_window_is_picked_up(dynamodb, two_worlds):
    ours, _ = two_worlds
    put_face(ours, BASE + timedelta(minutes=5), seq=1)
    services.ingest_stage(ours.stage, dynamodb=dynamodb)
    put_face(ours, BASE + timedelta(minutes=1), seq=2)  # captured earlier, arrived later
    result = services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert result.created == 1
    assert Observation.objects.count() == 2


def test_observation_outside_any_set_has_no_set(dynamodb, two_worlds):
    ours, _ = two_worlds
    put_face(ours, datetime(2026, 7, 10, 17, 0, tzinfo=UTC))
    services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert Observation.objects.get().set is None


def test_malformed_items_are_skipped_and_counted(dynamodb, two_worlds):
    ours, _ = two_worlds
    put_face(ours, BASE, seq=1)
    bad = put_face(ours, BASE + timedelta(seconds=1), seq=2)
    bad["emotions"] = {"HAPPY": "very"}  # a string score, as the old workshop wrote
    bad["sk"] = bad["sk"] + "x"
    boto3.resource("dynamodb", region_name="eu-west-1").Table(TABLE).put_item(Item=to_dynamodb(bad))
    result = services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert (result.read, result.created, result.skipped_invalid) == (3, 2, 1)


def test_database_down_moves_no_watermark_and_loses_nothing(dynamodb, two_worlds):
    ours, _ = two_worlds
    for i in range(4):
        put_face(ours, BASE + timedelta(seconds=i), seq=i)
    with (
        # the connection drops after the rows went in, before the rollups: all or nothing
        mock.patch.object(
            services, "_add_to_rollups", side_effect=OperationalError("server closed")
        ),
        pytest.raises(OperationalError),
    ):
        services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert not IngestWatermark.objects.filter(stage=ours.stage, captured_until_ms__gt=0).exists()
    assert not MinuteRollup.objects.exists()
    assert not Observation.objects.exists()
    result = services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert result.created == 4
    assert MinuteRollup.objects.get(stage=ours.stage).faces == 4


def test_task_retries_through_a_database_outage(dynamodb, two_worlds, settings):
    from emotions.tasks import ingest_observations

    ours, _ = two_worlds
    put_face(ours, BASE)
    real = services.ingest_active_festivals
    calls = []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("could not connect to server")
        return real(dynamodb=dynamodb)

    with (
        mock.patch.object(services, "ingest_active_festivals", side_effect=flaky),
        mock.patch.object(
            services, "active_festivals", return_value=type(ours.festival).objects.all()
        ),
    ):
        outcome = ingest_observations.apply()
    assert len(calls) == 2
    assert outcome.successful(), outcome.traceback
    assert Observation.objects.count() == 1


def test_other_festivals_stage_is_separate(dynamodb, two_worlds):
    ours, theirs = two_worlds
    put_face(ours, BASE)
    put_face(theirs, BASE)
    services.ingest_stage(ours.stage, dynamodb=dynamodb)
    assert list(Observation.objects.values_list("organization__slug", flat=True)) == ["ours-org"]
