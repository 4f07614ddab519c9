"""Ingest by change capture: the observations table's stream (moto) into the database. Every
item the analyzer wrote lands exactly once whatever its capture time; refused items are counted
per reason; checkpoints survive crashes, expired iterators and trimmed data."""

import functools
from datetime import UTC, datetime, timedelta
from unittest import mock

import boto3
import pytest
from botocore.exceptions import ClientError
from django.db import OperationalError
from django.utils import timezone
from moto import mock_aws

from edge_package.contracts import (
    CropKey,
    build_observation_item,
    observation_table_definition,
    to_dynamodb,
)
from emotions import services
from emotions.models import (
    IngestRejection,
    IngestWatermark,
    MinuteRollup,
    Observation,
    ReportStatus,
    SetReport,
    StreamCheckpoint,
)
from stages.models import Set

pytestmark = pytest.mark.django_db

TABLE = "stagepulse-observations"
REGION = "eu-west-1"


@pytest.fixture
def aws():
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        dynamodb.create_table(**observation_table_definition(TABLE))
        yield dynamodb, boto3.client("dynamodbstreams", region_name=REGION)


@pytest.fixture
def now_worlds(two_worlds):
    """Both festivals running today, with a set on our main stage from 3 h ago to 1 h ahead."""
    today = timezone.now().date()
    for world in two_worlds:
        world.festival.starts_on = today - timedelta(days=1)
        world.festival.ends_on = today + timedelta(days=1)
        world.festival.min_faces_public = 1
        world.festival.save()
    ours = two_worlds[0]
    ours.set = Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Now Artist",
        starts_at=timezone.now() - timedelta(hours=3),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    return two_worlds


_seq = iter(range(1, 10_000_000))


@functools.cache
def observations_table():
    """The observations table, through one boto3 resource for the module (a resource costs
    ~10 ms of CPU to make; moto answers it inside each test's own mock)."""
    return boto3.resource("dynamodb", region_name=REGION).Table(TABLE)


def put_face(world, when: datetime, *, happy=80.0, calm=10.0, device=None, stage=None, **extra):
    crop = CropKey(
        festival=world.festival.slug,
        stage=stage or world.stage.slug,
        device=device or world.device.thing_name,
        captured_at_ms=int(when.timestamp() * 1000),
        seq=next(_seq),
    )
    item = build_observation_item(
        crop=crop,
        face_index=0,
        scores={"HAPPY": happy, "CALM": calm},
        face_confidence=99.1,
        source="local",
        organization=world.organization.slug,
        model="fer-quantized",
        analyzed_at_ms=int(datetime.now(UTC).timestamp() * 1000),
    )
    item.update(extra)
    observations_table().put_item(Item=to_dynamodb(item))
    return item


def ingest(aws, **kwargs):
    dynamodb, streams = aws
    return services.ingest_streams(dynamodb=dynamodb, streams=streams, **kwargs)


def minute_of(when: datetime) -> datetime:
    return when.replace(second=0, microsecond=0)


def refused(reason: str, stage=None) -> int:
    rows = IngestRejection.objects.filter(reason=reason)
    if stage is not None:
        rows = rows.filter(stage=stage)
    return sum(rows.values_list("count", flat=True))


def test_stream_items_become_observations_with_set_device_and_rollups(aws, now_worlds):
    ours, _ = now_worlds
    base = minute_of(timezone.now() - timedelta(minutes=2))
    for i in range(6):
        put_face(ours, base + timedelta(seconds=10 * i))
    put_face(ours, base + timedelta(minutes=1), happy=5, calm=90)
    result = ingest(aws)
    assert (result.read, result.created, result.skipped_invalid) == (7, 7, 0)
    first = Observation.objects.filter(stage=ours.stage).order_by("captured_at").first()
    assert first.set == ours.set and first.device == ours.device
    assert first.organization == ours.organization and first.top_emotion == "HAPPY"
    minute = MinuteRollup.objects.get(stage=ours.stage, minute=base)
    assert minute.faces == 6 and minute.counts == {"HAPPY": 6}
    assert MinuteRollup.objects.get(minute=base + timedelta(minutes=1)).counts == {"CALM": 1}
    # each record is read once: a second run reads nothing
    assert ingest(aws).read == 0


@pytest.mark.parametrize("late", [timedelta(minutes=15), timedelta(hours=2)])
def test_late_data_reaches_its_own_minute(aws, now_worlds, late):
    """A camera's spool draining after an outage: captured long before the newest data."""
    ours, _ = now_worlds
    now = timezone.now()
    for i in range(3):
        put_face(ours, now - timedelta(seconds=5 + i))
    ingest(aws)
    late_minute = minute_of(now - late)  # both late faces in one minute, whatever the second
    put_face(ours, late_minute + timedelta(seconds=20), happy=90)
    put_face(ours, late_minute + timedelta(seconds=21), happy=90)
    result = ingest(aws)
    assert result.created == 2
    assert Observation.objects.filter(stage=ours.stage).count() == 5
    assert MinuteRollup.objects.get(stage=ours.stage, minute=late_minute).faces == 2


def test_late_data_for_a_set_with_a_built_report_queues_its_rebuild(aws, now_worlds):
    ours, _ = now_worlds
    report = SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=ours.set,
        status=ReportStatus.READY,
        faces=10,
    )
    put_face(ours, timezone.now() - timedelta(minutes=40))
    ingest(aws)
    report.refresh_from_db()
    assert report.status == ReportStatus.PENDING
    assert "late data" in report.rebuild_reason


def test_a_camera_whose_clock_runs_fast_moves_nothing_forward(aws, now_worlds):
    """Its crops are kept (within the tolerance), and another camera's crops captured before
    them are not lost; the stage's data age never goes negative."""
    ours, _ = now_worlds
    from tests.emotions.report_helpers import add_device

    other = add_device(ours, ours.stage, "ours-cam-2", "Second cam")
    now = timezone.now()
    for i in range(3):
        put_face(ours, now + timedelta(minutes=4, seconds=i))  # this camera is 4 min fast
    ingest(aws)
    for i in range(3):
        put_face(ours, now - timedelta(minutes=1, seconds=i), device=other.thing_name)
    result = ingest(aws)
    assert result.created == 3 and Observation.objects.count() == 6
    newest = IngestWatermark.objects.get(stage=ours.stage).captured_until_ms
    assert newest <= int(timezone.now().timestamp() * 1000)
    from emotions.selectors import compute_live_ranking

    (row,) = compute_live_ranking(ours.festival)["stages"]
    assert row["data_age_s"] >= 0 and row["faces"] == 3


def test_a_far_future_capture_is_refused_counted_and_does_not_freeze_the_stage(aws, now_worlds):
    ours, _ = now_worlds
    now = timezone.now()
    put_face(ours, now + timedelta(days=3))
    put_face(ours, now - timedelta(seconds=3))
    ingest(aws)
    put_face(ours, now - timedelta(seconds=2))
    put_face(ours, now - timedelta(minutes=12))  # older than the refused one, still arrives
    result = ingest(aws)
    assert result.created == 2
    assert Observation.objects.filter(stage=ours.stage).count() == 3
    assert refused("future", ours.stage) == 1
    counter = IngestRejection.objects.get(reason="future")
    assert counter.festival == ours.festival and "ahead" in counter.last_detail
    assert not Observation.objects.filter(captured_at__gt=timezone.now()).exists()


def test_a_capture_too_old_or_outside_the_festival_is_refused(aws, now_worlds, settings):
    ours, _ = now_worlds
    settings.INGEST_MAX_AGE_S = 3 * 3600
    put_face(ours, timezone.now() - timedelta(hours=5))
    ours.festival.starts_on = timezone.now().date() + timedelta(days=5)
    ours.festival.ends_on = timezone.now().date() + timedelta(days=7)
    ours.festival.save()
    put_face(ours, timezone.now() - timedelta(minutes=1))
    assert ingest(aws).created == 0
    assert refused("too_old") == 1 and refused("outside_festival") == 1


def test_a_device_of_another_organization_cannot_write_into_our_stage(aws, now_worlds):
    """The key names our stage, the item claims our organization: the Device row says the
    camera is theirs, so it is refused and counted where our operators look."""
    ours, theirs = now_worlds
    put_face(ours, timezone.now() - timedelta(seconds=5), device=theirs.device.thing_name)
    put_face(ours, timezone.now() - timedelta(seconds=4), device="nobody-cam")
    put_face(ours, timezone.now() - timedelta(seconds=3))
    result = ingest(aws)
    assert result.created == 1
    assert result.rejected == {"wrong_device": 1, "unknown_device": 1}
    assert refused("wrong_device", ours.stage) == 1 and refused("unknown_device") == 1
    assert IngestRejection.objects.get(reason="wrong_device").last_detail == "theirs-cam-1"
    assert list(Observation.objects.values_list("device__thing_name", flat=True)) == ["ours-cam-1"]


def test_a_device_of_another_stage_is_refused(aws, now_worlds):
    ours, _ = now_worlds
    from tests.emotions.report_helpers import add_stage

    add_stage(ours, "Tent", "tent")
    put_face(ours, timezone.now() - timedelta(seconds=5), stage="tent")  # main's camera
    assert ingest(aws).rejected == {"wrong_device": 1}


def test_malformed_items_are_refused_and_counted_without_sinking_the_page(aws, now_worlds):
    ours, _ = now_worlds
    now = timezone.now()
    put_face(ours, now - timedelta(seconds=3))
    put_face(ours, now - timedelta(seconds=2), emotions={"HAPPY": "very"})
    put_face(ours, now - timedelta(seconds=1), top_emotion="BORED")  # not in the taxonomy
    put_face(ours, now, captured_at_ms=99999999999999999)  # digits, out of range
    result = ingest(aws)
    assert result.created == 1 and result.rejected == {"malformed": 3}


def test_a_replay_after_a_lost_checkpoint_writes_nothing_new(aws, now_worlds):
    ours, _ = now_worlds
    for i in range(5):
        put_face(ours, timezone.now() - timedelta(seconds=i))
    ingest(aws)
    faces = sum(MinuteRollup.objects.values_list("faces", flat=True))
    StreamCheckpoint.objects.all().delete()  # lost: read again from TRIM_HORIZON
    again = ingest(aws)
    assert again.read == 5 and again.created == 0 and again.duplicates == 5
    assert Observation.objects.count() == 5
    assert sum(MinuteRollup.objects.values_list("faces", flat=True)) == faces == 5


def test_resuming_from_the_shard_checkpoint_after_a_crash(aws, now_worlds, settings):
    """A crash while storing the third page: the first two pages are in, with the checkpoint;
    the next run reads from there only, and every item is there exactly once."""
    ours, _ = now_worlds
    settings.INGEST_STREAM_PAGE_LIMIT = 3
    for i in range(10):
        put_face(ours, timezone.now() - timedelta(seconds=i))
    real = services._add_to_rollups
    calls = []

    def crash_on_third(stage, rows):
        calls.append(1)
        if len(calls) == 3:
            raise OperationalError("server closed the connection")
        return real(stage, rows)

    with (
        mock.patch.object(services, "_add_to_rollups", side_effect=crash_on_third),
        pytest.raises(OperationalError),
    ):
        ingest(aws)
    assert Observation.objects.count() == 6
    checkpoint = StreamCheckpoint.objects.get()
    assert checkpoint.sequence_number and checkpoint.records == 6
    result = ingest(aws)
    assert result.read == 4 and result.created == 4 and result.duplicates == 0
    assert Observation.objects.count() == 10
    assert sum(MinuteRollup.objects.values_list("faces", flat=True)) == 10


class FlakyStreams:
    """The real (moto) streams client, failing chosen calls once with AWS's error shape."""

    def __init__(self, client, fail: dict[str, str]):
        self.client, self.fail = client, dict(fail)

    def __getattr__(self, name):
        call = getattr(self.client, name)

        def wrapped(**kwargs):
            code = self.fail.get(name)
            if code and (name != "get_shard_iterator" or "SequenceNumber" in kwargs):
                del self.fail[name]
                raise ClientError({"Error": {"Code": code, "Message": "injected"}}, name)
            return call(**kwargs)

        return wrapped


def test_an_expired_iterator_is_renewed_from_the_checkpoint(aws, now_worlds):
    ours, _ = now_worlds
    dynamodb, streams = aws
    for i in range(3):
        put_face(ours, timezone.now() - timedelta(seconds=i))
    ingest(aws)
    for i in range(2):
        put_face(ours, timezone.now() - timedelta(seconds=10 + i))
    flaky = FlakyStreams(streams, {"get_records": "ExpiredIteratorException"})
    result = services.ingest_streams(dynamodb=dynamodb, streams=flaky)
    assert result.iterators_renewed == 1
    assert (result.read, result.created) == (2, 2)
    assert Observation.objects.count() == 5


def test_a_trimmed_checkpoint_rereads_from_trim_horizon_without_duplicates(aws, now_worlds):
    ours, _ = now_worlds
    dynamodb, streams = aws
    for i in range(3):
        put_face(ours, timezone.now() - timedelta(seconds=i))
    ingest(aws)
    put_face(ours, timezone.now() - timedelta(seconds=9))
    flaky = FlakyStreams(streams, {"get_shard_iterator": "TrimmedDataAccessException"})
    result = services.ingest_streams(dynamodb=dynamodb, streams=flaky)
    assert result.trimmed == 1 and result.created == 1 and result.duplicates == 3
    assert Observation.objects.count() == 4


class SplitStream:
    """A stream whose shard split: a closed parent and two open children (moto keeps one shard,
    so the shard graph is faked; records are real observation images)."""

    def __init__(self, records_by_shard: dict[str, list[dict]]):
        self.records = records_by_shard
        self.reads: list[str] = []

    def describe_stream(self, StreamArn, **_):
        def shard(shard_id, parent=None, closed=False):
            seqs = [r["dynamodb"]["SequenceNumber"] for r in self.records[shard_id]] or ["1"]
            described = {
                "ShardId": shard_id,
                "SequenceNumberRange": {"StartingSequenceNumber": seqs[0]},
            }
            if closed:
                described["SequenceNumberRange"]["EndingSequenceNumber"] = seqs[-1]
            if parent:
                described["ParentShardId"] = parent
            return described

        # children listed first: the order AWS lists them in is no promise
        return {
            "StreamDescription": {
                "Shards": [
                    shard("child-a", "parent"),
                    shard("child-b", "parent"),
                    shard("parent", closed=True),
                ]
            }
        }

    def get_shard_iterator(self, StreamArn, ShardId, ShardIteratorType, SequenceNumber=None):
        start = 0
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            seqs = [r["dynamodb"]["SequenceNumber"] for r in self.records[ShardId]]
            start = seqs.index(SequenceNumber) + 1
        return {"ShardIterator": f"{ShardId}:{start}"}

    def get_records(self, ShardIterator, Limit):
        shard_id, start = ShardIterator.rsplit(":", 1)
        self.reads.append(shard_id)
        records = self.records[shard_id][int(start) : int(start) + Limit]
        end = int(start) + len(records)
        closed = shard_id == "parent"
        done = closed and end >= len(self.records[shard_id])
        return {"Records": records, **({} if done else {"NextShardIterator": f"{shard_id}:{end}"})}


def stream_record(item: dict, sequence: int) -> dict:
    from boto3.dynamodb.types import TypeSerializer

    serializer = TypeSerializer()
    return {
        "eventName": "INSERT",
        "dynamodb": {
            "ApproximateCreationDateTime": datetime.now(UTC),
            "SequenceNumber": str(sequence),
            "NewImage": {k: serializer.serialize(v) for k, v in to_dynamodb(item).items()},
        },
    }


def test_a_split_shard_is_read_parent_first_then_its_children(aws, now_worlds):
    ours, _ = now_worlds
    dynamodb, _ = aws
    now = timezone.now()
    items = [put_face(ours, now - timedelta(seconds=i)) for i in range(6)]
    fake = SplitStream(
        {
            "parent": [stream_record(items[0], 100), stream_record(items[1], 101)],
            "child-a": [stream_record(items[2], 200), stream_record(items[3], 201)],
            "child-b": [stream_record(items[4], 300), stream_record(items[5], 301)],
        }
    )
    result = services.ingest_streams(dynamodb=dynamodb, streams=fake)
    assert result.created == 6
    assert fake.reads.index("parent") < fake.reads.index("child-a")
    assert fake.reads.index("parent") < fake.reads.index("child-b")
    checkpoints = {c.shard_id: c for c in StreamCheckpoint.objects.all()}
    assert checkpoints["parent"].finished and checkpoints["parent"].sequence_number == "101"
    assert not checkpoints["child-a"].finished and checkpoints["child-a"].sequence_number == "201"
    # a replay of the whole graph (checkpoints lost) writes nothing new
    StreamCheckpoint.objects.all().delete()
    assert services.ingest_streams(dynamodb=dynamodb, streams=fake).created == 0


def test_children_wait_while_the_parent_is_unfinished(aws, now_worlds, settings):
    ours, _ = now_worlds
    dynamodb, _ = aws
    settings.INGEST_STREAM_PAGE_LIMIT = 1
    settings.INGEST_MAX_PAGES_PER_SHARD = 1
    items = [put_face(ours, timezone.now() - timedelta(seconds=i)) for i in range(3)]
    fake = SplitStream(
        {
            "parent": [stream_record(items[0], 100), stream_record(items[1], 101)],
            "child-a": [stream_record(items[2], 200)],
            "child-b": [],
        }
    )
    services.ingest_streams(dynamodb=dynamodb, streams=fake)
    assert fake.reads == ["parent"]  # one page only this run: the children wait
    assert Observation.objects.count() == 1
    services.ingest_streams(dynamodb=dynamodb, streams=fake)  # the parent ends: children next
    assert fake.reads[:2] == ["parent", "parent"] and set(fake.reads[2:]) == {"child-a", "child-b"}
    assert Observation.objects.count() == 3


def test_database_down_moves_no_checkpoint_and_loses_nothing(aws, now_worlds):
    ours, _ = now_worlds
    for i in range(4):
        put_face(ours, timezone.now() - timedelta(seconds=i))
    with (
        mock.patch.object(
            services, "_add_to_rollups", side_effect=OperationalError("server closed")
        ),
        pytest.raises(OperationalError),
    ):
        ingest(aws)
    assert not Observation.objects.exists() and not MinuteRollup.objects.exists()
    assert not StreamCheckpoint.objects.exclude(sequence_number="").exists()
    assert ingest(aws).created == 4
    assert sum(MinuteRollup.objects.values_list("faces", flat=True)) == 4


def test_task_retries_through_a_database_outage(aws, now_worlds):
    from emotions.tasks import ingest_observations

    ours, _ = now_worlds
    put_face(ours, timezone.now())
    real = services.ingest_streams
    calls = []

    def flaky(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("could not connect to server")
        return real(dynamodb=aws[0], streams=aws[1])

    with mock.patch.object(services, "ingest_streams", side_effect=flaky):
        outcome = ingest_observations.apply()
    assert len(calls) == 2
    assert outcome.successful(), outcome.traceback
    assert Observation.objects.count() == 1


def test_a_second_run_while_one_holds_the_lease_skips(aws, now_worlds):
    from django.core.cache import cache

    ours, _ = now_worlds
    put_face(ours, timezone.now())
    cache.add(services.INGEST_LOCK_KEY, "someone", timeout=60)
    assert ingest(aws).read == 0
    cache.delete(services.INGEST_LOCK_KEY)
    assert ingest(aws).created == 1


def test_a_table_without_a_stream_is_reported_not_silently_skipped(now_worlds, caplog):
    with mock_aws():
        dynamodb = boto3.client("dynamodb", region_name=REGION)
        definition = observation_table_definition(TABLE)
        definition.pop("StreamSpecification")
        dynamodb.create_table(**definition)
        services.ingest_streams(
            dynamodb=dynamodb, streams=boto3.client("dynamodbstreams", region_name=REGION)
        )
    assert "has no stream" in caplog.text


def test_other_festivals_stage_is_separate(aws, now_worlds):
    ours, theirs = now_worlds
    put_face(ours, timezone.now())
    put_face(theirs, timezone.now())
    ingest(aws)
    assert sorted(Observation.objects.values_list("organization__slug", flat=True)) == [
        "ours-org",
        "theirs-org",
    ]
    assert set(Observation.objects.values_list("device__thing_name", flat=True)) == {
        "ours-cam-1",
        "theirs-cam-1",
    }


def test_backfill_command_queries_a_stage_and_agrees_with_the_stream(aws, now_worlds):
    from io import StringIO

    from django.core.management import call_command

    ours, _ = now_worlds
    for i in range(3):
        put_face(ours, timezone.now() - timedelta(seconds=i))
    put_face(ours, timezone.now(), device="nobody-cam")
    out = StringIO()
    with mock.patch("awsclients.cached_client", return_value=aws[0]):
        call_command("backfill_observations", ours.festival.slug, "--stage", "main", stdout=out)
    assert "3 new" in out.getvalue() and "1 refused" in out.getvalue()
    assert ingest(aws).created == 0  # the stream then brings nothing new
    assert Observation.objects.count() == 3


def test_ttl_removals_on_the_stream_are_read_past_and_delete_nothing(aws, now_worlds):
    ours, _ = now_worlds
    first = put_face(ours, timezone.now() - timedelta(seconds=2))
    put_face(ours, timezone.now() - timedelta(seconds=1))
    observations_table().delete_item(
        Key={"pk": first["pk"], "sk": first["sk"]}  # as the TTL would, days later
    )
    result = ingest(aws)
    assert (result.read, result.created, result.skipped_invalid) == (3, 2, 0)
    assert Observation.objects.count() == 2
    assert StreamCheckpoint.objects.get().records == 3
