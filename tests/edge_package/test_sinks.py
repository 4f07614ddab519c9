"""Delivery: private encrypted S3 crops, a spool while S3 fails, drain on recovery, edge records."""

import errno
import threading

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from moto import mock_aws

from edge_package.config import parse_config
from edge_package.contracts import EMOTIONS, observation_table_definition, parse_crop_key
from edge_package.sinks import ObservationSink, Release, S3CropSink
from edge_package.spool import Spool

CFG = parse_config(
    {
        "device": "cam-1",
        "festival": "fest",
        "stage": "main",
        "bucket": "crops",
        "organization": "o1",
    }
)
EDGE_CFG = parse_config(
    {
        "device": "cam-1",
        "festival": "fest",
        "stage": "main",
        "mode": "edge",
        "observations_table": "observations",
    }
)


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def release(seq: int, size: int = 2000) -> Release:
    return Release(
        image=np.full((64, 64, 3), 128, np.uint8),
        jpeg=b"\xff\xd8" + bytes(size),
        captured_at_ms=1_780_000_000_000 + seq,
        seq=seq,
        score=0.91,
        box=(10, 20, 64, 64),
    )


class FlakyS3:
    """Wraps a real (moto) client and fails put_object while `down` is set."""

    def __init__(self, client):
        self.client = client
        self.down = False
        self.error = EndpointConnectionError(endpoint_url="https://s3.example")

    def put_object(self, **kwargs):
        if self.down:
            raise self.error
        return self.client.put_object(**kwargs)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="eu-west-1")
        client.create_bucket(
            Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        yield client


def test_crop_is_private_encrypted_and_routable_from_its_key(s3, tmp_path):
    sink = S3CropSink(CFG, Spool(str(tmp_path), 10_000_000), client=s3)
    sink.send(release(7))
    (obj,) = s3.list_objects_v2(Bucket="crops")["Contents"]
    crop = parse_crop_key(obj["Key"])
    assert (crop.festival, crop.stage, crop.device, crop.seq) == ("fest", "main", "cam-1", 7)
    head = s3.head_object(Bucket="crops", Key=obj["Key"])
    assert head["ServerSideEncryption"] == "AES256"
    assert head["Metadata"]["box"] == "10,20,64,64"
    assert head["Metadata"]["organization"] == "o1"
    grants = s3.get_object_acl(Bucket="crops", Key=obj["Key"])["Grants"]
    assert all("URI" not in g["Grantee"] for g in grants)  # no AllUsers / public grant
    assert sink.uploads == 1 and sink.bytes_sent == 2002


def test_spool_holds_crops_while_s3_is_down_and_drains_in_order(s3, tmp_path):
    flaky, clock = FlakyS3(s3), Clock()
    sink = S3CropSink(CFG, Spool(str(tmp_path), 10_000_000), client=flaky, clock=clock)
    flaky.down = True
    for seq in range(1, 6):
        sink.send(release(seq))
        clock.now += 0.5
    assert sink.spool.depth == 5 and sink.uploads == 0
    assert "S3 unreachable" in sink.last_error
    assert sink.pump() == 0  # still down (or still backing off)
    flaky.down = False
    clock.now += 120  # past the longest backoff
    sent = 0
    while sink.spool.depth:
        sent += sink.pump(max_items=2)
    assert sent == 5 and sink.spool.dropped == 0
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="crops")["Contents"]]
    assert sorted(parse_crop_key(k).seq for k in keys) == [1, 2, 3, 4, 5]
    sink.send(release(6))  # link healthy again: straight to S3
    assert sink.spool.depth == 0 and sink.uploads == 6


def test_spool_cap_drops_the_oldest_and_counts_it(s3, tmp_path):
    flaky, clock = FlakyS3(s3), Clock()
    spool = Spool(str(tmp_path), max_bytes=3 * 2100)
    sink = S3CropSink(CFG, spool, client=flaky, clock=clock)
    flaky.down = True
    for seq in range(1, 6):
        sink.send(release(seq))
    assert spool.depth == 2 and spool.dropped == 3
    assert sink.stats()["spool_dropped"] == 3
    flaky.down, clock.now = False, 1000.0
    sink.pump()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="crops")["Contents"]]
    assert sorted(parse_crop_key(k).seq for k in keys) == [4, 5]  # the newest survive


def test_access_denied_says_which_permission_is_missing_and_keeps_the_crop(s3, tmp_path):
    flaky = FlakyS3(s3)
    flaky.down = True
    flaky.error = ClientError(
        {"Error": {"Code": "AccessDenied", "Message": "Access Denied"}}, "PutObject"
    )
    sink = S3CropSink(CFG, Spool(str(tmp_path), 10_000_000), client=flaky, clock=Clock())
    sink.send(release(1))
    assert "lack s3:PutObject on arn:aws:s3:::crops/faces/fest/main/*" in sink.last_error
    assert sink.spool.depth == 1 and sink.errors == 1


def test_a_full_disk_drops_the_entry_with_a_clear_message(tmp_path, monkeypatch):
    spool = Spool(str(tmp_path), 10_000_000)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("builtins.open", no_space)
    assert spool.put({"captured_at_ms": 1}, b"x") is False
    monkeypatch.undo()
    assert spool.dropped == 1 and "disk full" in spool.last_error
    assert spool.depth == 0 and list(tmp_path.iterdir()) == []


def test_spool_survives_a_restart_and_is_private(tmp_path):
    folder = tmp_path / "spool"
    Spool(str(folder), 10_000_000).put({"captured_at_ms": 5, "key": "k"}, b"payload")
    assert folder.stat().st_mode & 0o777 == 0o700
    assert [p.stat().st_mode & 0o777 for p in folder.iterdir()] == [0o600]
    reopened = Spool(str(folder), 10_000_000)
    (entry,) = reopened.peek()
    assert entry.meta["key"] == "k" and entry.payload == b"payload"


class HappyClassifier:
    model_name = "test-double"

    def classify(self, face):
        return {name: (90.0 if name == "HAPPY" else 1.0) for name in EMOTIONS}


def _observations_table():
    ddb = boto3.client("dynamodb", region_name="eu-west-1")
    ddb.create_table(**observation_table_definition("observations"))
    return ddb


@mock_aws
def test_edge_mode_writes_scores_only_and_replays_write_nothing_new(tmp_path):
    ddb = _observations_table()
    sink = ObservationSink(
        EDGE_CFG, Spool(str(tmp_path), 10_000_000), classifier=HappyClassifier(), client=ddb
    )
    sink.send(release(3))
    sink.send(release(3))  # the same face again (e.g. a replay from the spool)
    items = ddb.scan(TableName="observations")["Items"]
    assert len(items) == 1
    item = items[0]
    assert item["pk"]["S"] == "fest/main"
    assert item["source"]["S"] == "edge" and item["top_emotion"]["S"] == "HAPPY"
    assert item["emotions"]["M"]["HAPPY"]["N"] == "90.0"
    assert item["face_confidence"]["N"] == "91.0"  # 0..100, the scale the cloud analyzer writes
    assert not any(v.get("B") for v in item.values())  # no image bytes in the record
    assert set(s3_buckets()) == set()  # nothing was uploaded to S3 in edge mode


def s3_buckets():
    return [
        b["Name"] for b in boto3.client("s3", region_name="eu-west-1").list_buckets()["Buckets"]
    ]


@mock_aws
def test_edge_mode_with_the_real_fer_model(tmp_path, astronaut):
    pytest.importorskip("fer")
    from edge_package.emotion_model import EmotionClassifier

    ddb = _observations_table()
    sink = ObservationSink(
        EDGE_CFG, Spool(str(tmp_path), 10_000_000), classifier=EmotionClassifier(), client=ddb
    )
    face = release(1)
    face.image = astronaut[70:175, 174:279]
    sink.send(face)
    (item,) = ddb.scan(TableName="observations")["Items"]
    assert item["top_emotion"]["S"] == "HAPPY"
    assert item["model"]["S"].startswith("fer-")
    assert float(item["emotions"]["M"]["HAPPY"]["N"]) > 50


class BlockedS3:
    """put_object hangs until released, like a black-holed network."""

    def __init__(self, client):
        self.client = client
        self.release = threading.Event()
        self.entered = threading.Event()

    def put_object(self, **kwargs):
        self.entered.set()
        assert self.release.wait(30)
        return self.client.put_object(**kwargs)


def test_background_uploads_never_block_the_camera_and_drain_on_stop(s3, tmp_path):
    blocked = BlockedS3(s3)
    sink = S3CropSink(CFG, Spool(str(tmp_path), 10_000_000), client=blocked, background=True)
    sink.start()
    sink.send(release(1))
    assert blocked.entered.wait(30)  # the uploader is now stuck inside PutObject
    for seq in range(2, 6):
        sink.send(release(seq))  # returns although the network hangs
    assert sink.spool.depth == 5 and sink.uploads == 0
    blocked.release.set()
    sink.stop()
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="crops")["Contents"]]
    assert sorted(parse_crop_key(k).seq for k in keys) == [1, 2, 3, 4, 5]
    assert sink.spool.depth == 0 and sink.uploads == 5


def test_an_abandoned_sink_sends_none_of_the_entries_it_already_read(tmp_path):
    """A switch to edge mode mid-drain: entries the uploader had already read are not sent."""
    from edge_package.sinks import SpoolingSink
    from edge_package.spool import Spool

    class Recording(SpoolingSink):
        sent: list = []

        def _deliver(self, meta, payload):
            self.sent.append(meta["n"])
            self.abandon()  # the switch happens while the first crop is on the wire
            return len(payload)

    sink = Recording(Spool(str(tmp_path), 10**6))
    for n in range(3):
        sink.spool.put({"captured_at_ms": n, "n": n}, b"jpeg")
    sink.pump(max_items=8)
    assert Recording.sent == [0]  # the one already on the wire, and nothing after it
    assert sink.pump(max_items=8) == 0


def test_clients_share_one_session_until_the_cameras_credentials_change(monkeypatch):
    """A camera makes several clients (crops, records, shadow, models); a new boto3 Session each
    parsed botocore's models again. One is reused, but rotated credentials are never missed."""
    from edge_package.sinks import aws_client

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "first-key")
    s3, dynamodb = aws_client("s3"), aws_client("dynamodb")
    assert s3._loader is dynamodb._loader  # one Session's model cache
    assert s3._request_signer._credentials.access_key == "first-key"
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "rotated-key")
    rotated = aws_client("s3")
    assert rotated._loader is not s3._loader
    assert rotated._request_signer._credentials.access_key == "rotated-key"
    assert aws_client("s3", "us-east-1").meta.region_name == "us-east-1"
