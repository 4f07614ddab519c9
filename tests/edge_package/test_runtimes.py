"""Telemetry publishers and the DeepLens / Greengrass entry points, against fake device runtimes."""

import json
import sys
import threading
import types
from http.server import BaseHTTPRequestHandler, HTTPServer

import boto3
import numpy as np
import pytest
from moto import mock_aws

from edge_package.config import parse_config
from edge_package.contracts import TELEMETRY_SCHEMA
from edge_package.sources import DeepLensSource, SourceError
from edge_package.telemetry import (
    GreengrassV1Publisher,
    GreengrassV2Publisher,
    HttpsPublisher,
    TelemetryError,
    build_payload,
)

BASE = {"device": "cam-1", "festival": "fest", "stage": "main", "bucket": "crops"}


def _valid(payload: dict) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.validate(payload, TELEMETRY_SCHEMA)


def test_payload_follows_the_telemetry_schema():
    payload = build_payload(
        device="cam-1",
        mode="cloud",
        counters={"fps": 14.567, "frames": 10, "uploads": 3, "spool_depth": 0, "unknown": 5},
        sent_at_ms=1_780_000_000_000,
    )
    _valid(payload)
    assert payload["fps"] == 14.57 and "unknown" not in payload
    assert payload["software_version"] and payload["analysis_mode"] == "cloud"


class FakeIotData:
    def __init__(self):
        self.published = []

    def publish(self, **kwargs):
        self.published.append(kwargs)


@pytest.fixture
def greengrasssdk(monkeypatch):
    fake_client = FakeIotData()
    module = types.ModuleType("greengrasssdk")
    module.client = lambda name: fake_client if name == "iot-data" else None
    monkeypatch.setitem(sys.modules, "greengrasssdk", module)
    return fake_client


def test_greengrass_v1_publisher_sends_json_on_the_device_topic(greengrasssdk):
    GreengrassV1Publisher("cam-1").publish({"device_id": "cam-1"})
    (sent,) = greengrasssdk.published
    assert sent["topic"] == "stagepulse/telemetry/cam-1"
    assert json.loads(sent["payload"]) == {"device_id": "cam-1"}


def test_greengrass_v1_publisher_outside_a_device_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "greengrasssdk", None)
    with pytest.raises(TelemetryError, match="Greengrass v1"):
        GreengrassV1Publisher("cam-1")


class FakeIpc:
    """The slice of awsiot's GreengrassCoreIPCClientV2 that the component uses."""

    def __init__(self, config: dict):
        self.config = config
        self.published = []

    def publish_to_iot_core(self, *, topic_name, qos, payload):
        self.published.append((topic_name, json.loads(payload)))

    def get_configuration(self, *, component_name, key_path):
        assert component_name == "com.stagepulse.Edge"
        if key_path == ["source"]:  # a leaf: the nucleus answers {"source": value}
            return types.SimpleNamespace(value={"source": self.source})
        assert key_path == ["stagepulse"]
        return types.SimpleNamespace(value=dict(self.config))

    source = "0"


def test_greengrass_v2_publisher_uses_ipc_publish_to_iot_core():
    ipc = FakeIpc({})
    GreengrassV2Publisher("cam-1", client=ipc).publish({"device_id": "cam-1"})
    assert ipc.published == [("stagepulse/telemetry/cam-1", {"device_id": "cam-1"})]


def test_greengrass_v2_publisher_builds_the_nucleus_ipc_client(monkeypatch):
    ipc = FakeIpc({})
    names = ["awsiot", "awsiot.greengrasscoreipc", "awsiot.greengrasscoreipc.clientv2"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[names[-1]].GreengrassCoreIPCClientV2 = lambda: ipc
    GreengrassV2Publisher("cam-9").publish({"device_id": "cam-9"})
    assert ipc.published == [("stagepulse/telemetry/cam-9", {"device_id": "cam-9"})]


def test_greengrass_v2_without_awsiotsdk_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "awsiot", None)
    with pytest.raises(TelemetryError, match="pip install awsiotsdk"):
        GreengrassV2Publisher("cam-1")


class _Collector(BaseHTTPRequestHandler):
    received: list = []
    status = 201

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, self.headers["Authorization"], json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def telemetry_server():
    _Collector.received = []
    _Collector.status = 201
    server = HTTPServer(("127.0.0.1", 0), _Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", _Collector
    server.shutdown()


def test_https_publisher_posts_to_the_service_with_the_device_token(telemetry_server):
    url, collector = telemetry_server
    HttpsPublisher(url + "/", "tok-123").publish({"device_id": "cam-1"})
    assert collector.received == [("/api/v1/telemetry/", "Device tok-123", {"device_id": "cam-1"})]
    collector.status = 401
    with pytest.raises(TelemetryError, match="401 .check device_token"):
        HttpsPublisher(url, "bad").publish({"device_id": "cam-1"})


def test_https_publisher_reports_an_unreachable_service():
    with pytest.raises(TelemetryError, match="failed"):
        HttpsPublisher("http://127.0.0.1:9", "t", timeout_s=1).publish({})


# --- DeepLens ------------------------------------------------------------------------------------
def _fake_awscam(monkeypatch, frames):
    module = types.ModuleType("awscam")
    queue = list(frames)
    module.getLastFrame = lambda: (True, queue.pop(0)) if queue else (False, None)
    monkeypatch.setitem(sys.modules, "awscam", module)


def test_deeplens_source_outside_a_deeplens_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "awscam", None)
    with pytest.raises(SourceError, match="only on an AWS DeepLens"):
        DeepLensSource()


@mock_aws
def test_deeplens_lambda_runs_the_loop_with_the_camera_and_iot_data(
    monkeypatch, greengrasssdk, tmp_path
):
    from edge_package import deeplens
    from edge_package.synthetic import SyntheticCrowdSource

    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    crowd = SyntheticCrowdSource(width=960, height=540, faces=3, min_face=70, max_face=110)
    _fake_awscam(monkeypatch, [crowd.render(i).image for i in range(30)])
    # faces of 70-110 px: min_face_px 64 leaves out the full-resolution tiles (8 of the 11 model
    # runs a frame), which only find faces smaller than these
    config = {**BASE, "spool_dir": str(tmp_path), "throttle_interval_s": 1.0, "min_face_px": 64}
    monkeypatch.setenv("STAGEPULSE_CONFIG", json.dumps(config))
    runner, source = deeplens.build_runner()
    final = runner.run(source, max_frames=30)
    assert deeplens.function_handler({}, None) is None
    assert final["frames"] == 30 and final["uploads"] >= 3
    assert greengrasssdk.published, "telemetry went out through iot-data"
    payload = json.loads(greengrasssdk.published[-1]["payload"])
    _valid(payload)
    assert payload["frames"] == 30


def test_deeplens_capture_loop_survives_a_startup_error(monkeypatch):
    from edge_package import deeplens

    monkeypatch.delenv("STAGEPULSE_CONFIG", raising=False)
    deeplens.capture_loop(retry_s=0, max_restarts=1)
    assert "STAGEPULSE_CONFIG is not set" in deeplens._state["error"]


# --- Greengrass v2 -------------------------------------------------------------------------------
@mock_aws
def test_greengrass_v2_component_reads_ipc_config_and_applies_a_pause(tmp_path):
    from edge_package import greengrass

    boto3.client("s3", region_name="eu-west-1").create_bucket(
        Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
    )
    ipc = FakeIpc({**BASE, "spool_dir": str(tmp_path), "telemetry_interval_s": 0.5})
    source = "synthetic:frames=6,width=640,height=360,faces=2,min_face=60,max_face=90"
    assert greengrass.main(["--source", source, "--max-frames", "6"], client=ipc) == 0
    assert ipc.published and ipc.published[-1][1]["frames"] == 6

    from edge_package.pipeline import EdgeRunner

    runner = EdgeRunner(parse_config(ipc.config), sink=object())
    ipc.config["paused"] = True
    assert greengrass.ConfigWatcher(ipc, runner).poll() is True
    assert runner.config.paused is True
    ipc.config["fps_cap"] = 0  # a bad push is reported, the running settings stay
    assert greengrass.ConfigWatcher(ipc, runner).poll() is False
    assert "fps_cap" in runner.last_error and runner.config.fps_cap == 15.0


def test_greengrass_recipe_renders_with_a_validated_config():
    from edge_package.greengrass import render_recipe

    text = render_recipe(version="1.2.3", artifact_uri="s3://b/edge.zip", config=BASE)
    assert 'ComponentVersion: "1.2.3"' in text and "s3://b/edge.zip" in text
    assert '"festival": "fest"' in text and "{{" not in text
    assert "{work:path}" in text and "{artifacts:decompressedPath}" in text  # Greengrass's own
    assert "{configuration:" not in text  # nothing from the configuration reaches a script
    yaml = pytest.importorskip("yaml")
    recipe = yaml.safe_load(text)
    assert recipe["ComponentConfiguration"]["DefaultConfiguration"]["stagepulse"] == BASE
    assert "edge_package.greengrass" in recipe["Manifests"][0]["Lifecycle"]["Run"]["Script"]
    # exactly the platforms ai-edge-litert has wheels for, each installing the release's own pins
    platforms = [m["Platform"] for m in recipe["Manifests"]]
    assert platforms == [
        {"os": "linux", "architecture": "amd64"},
        {"os": "linux", "architecture": "aarch64"},
    ]
    for manifest in recipe["Manifests"]:
        install = manifest["Lifecycle"]["Install"]["Script"]
        assert "stagepulse-edge/requirements.txt" in install
        assert (
            "--no-deps -r {artifacts:decompressedPath}/stagepulse-edge/requirements-nodeps"
            in install
        )
    with pytest.raises(ValueError, match="stage: missing"):
        render_recipe(version="1", artifact_uri="s3://b/e.zip", config={"device": "d"})
    # a default source with quotes and shell syntax stays one YAML string, byte for byte
    nasty = "rtsp://cam:p\"a$(id)`x`'s: #y@h/s"
    text = render_recipe(version="1", artifact_uri="s3://b/e.zip", config=BASE, source=nasty)
    assert yaml.safe_load(text)["ComponentConfiguration"]["DefaultConfiguration"]["source"] == nasty


def test_greengrass_v2_component_reads_its_video_source_through_ipc_and_logs_it_redacted(
    tmp_path, caplog
):
    import cv2

    from edge_package import greengrass

    video = tmp_path / "cam.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for _ in range(3):
        writer.write(np.zeros((120, 160, 3), np.uint8))
    writer.release()
    ipc = FakeIpc({**BASE, "spool_dir": str(tmp_path / "spool"), "telemetry_interval_s": 60})
    ipc.source = str(video)
    assert greengrass.main([], client=ipc, shadow=_NoShadow()) == 0
    assert ipc.published[-1][1]["frames"] == 3  # the whole file, from the configured source

    ipc.source = "rtsp://cam:s3cr$(id)`x`@127.0.0.1:9/stream"  # nothing listens there
    caplog.set_level("INFO")
    assert greengrass.main([], client=ipc, shadow=_NoShadow()) == 2
    assert "rtsp://cam:***@127.0.0.1:9/stream" in caplog.text
    assert "s3cr" not in caplog.text


def test_a_redeployed_video_source_is_opened_without_a_restart(tmp_path, caplog):
    """The nucleus restarts a component when an interpolated script changes, and the source is no
    longer in one: the component notices the new source itself and reopens."""
    import cv2

    from edge_package import greengrass

    clips = {}
    for name, frames in (("old", 30), ("new", 3)):
        clips[name] = tmp_path / f"{name}.mp4"
        writer = cv2.VideoWriter(str(clips[name]), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
        for _ in range(frames):
            writer.write(np.zeros((120, 160, 3), np.uint8))
        writer.release()

    class Redeployed(FakeIpc):
        reads = 0

        @property
        def source(self):  # what the nucleus says: the old camera, then the redeployed one
            self.reads += 1
            return str(clips["old" if self.reads == 1 else "new"])

    ipc = Redeployed({**BASE, "spool_dir": str(tmp_path / "spool"), "telemetry_interval_s": 60})
    caplog.set_level("INFO")
    assert greengrass.main([], client=ipc, shadow=_NoShadow()) == 0
    assert "video source changed to " + str(clips["new"]) in caplog.text
    assert ipc.published[-1][1]["frames"] == 1 + 3  # one frame of the old camera, then the new


class _NoShadow:
    def get_thing_shadow(self, **_):
        from botocore.exceptions import ClientError

        raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "GetThingShadow")


@pytest.mark.parametrize(
    ("source", "shown"),
    [
        ("rtsp://admin:p@ss/w#rd?@10.0.0.5:554/s", "rtsp://admin:***@10.0.0.5:554/s"),
        ("rtsp://token@cam.local/live", "rtsp://***@cam.local/live"),
        (
            "https://cam/live.m3u8?ch=1&access_token=abc",
            "https://cam/live.m3u8?ch=1&access_token=***",
        ),
        ("rtsp://10.0.0.5/stream", "rtsp://10.0.0.5/stream"),
        ("/data/crowd.mp4", "/data/crowd.mp4"),
        ("0", "0"),
    ],
)
def test_a_source_is_shown_without_its_credentials(source, shown):
    from edge_package.redact import redact_source

    assert redact_source(source) == shown


def test_frame_source_shape_guard_keeps_the_loop_running():
    from edge_package.pipeline import EdgeRunner
    from edge_package.sources import Frame

    runner = EdgeRunner(parse_config(BASE), sink=object())
    bad = Frame(image=np.zeros((10, 10), np.uint8), index=0, captured_at_ms=0)
    assert runner.process_frame(bad, 0.0) == []
    assert runner.errors == 1 and "frame 0 skipped" in runner.last_error


# --- Settings pushed through the device shadow reach DeepLens and Greengrass v2 cameras ----------
@pytest.fixture
def shadow():
    """moto's IoT data plane with the camera's thing; push() writes what the service writes
    (devices.services.health.push_config_to_shadow)."""
    with mock_aws():
        boto3.client("iot", region_name="eu-west-1").create_thing(thingName="cam-1")
        boto3.client("s3", region_name="eu-west-1").create_bucket(
            Bucket="crops", CreateBucketConfiguration={"LocationConstraint": "eu-west-1"}
        )
        client = boto3.client("iot-data", region_name="eu-west-1")

        def push(tunables: dict) -> dict:
            document = {"state": {"desired": {"stagepulse": tunables}}}
            client.update_thing_shadow(thingName="cam-1", payload=json.dumps(document).encode())
            return json.loads(client.get_thing_shadow(thingName="cam-1")["payload"].read())

        client.push = push
        yield client


def delta_message(document: dict) -> dict:
    """The message AWS IoT publishes on $aws/things/<thing>/shadow/update/delta (and Greengrass
    v1 hands the subscribed lambda, JSON-decoded): the shadow's delta as `state`."""
    return {
        "version": document["version"],
        "timestamp": document["timestamp"],
        "state": document["state"]["delta"],
        "metadata": document["metadata"]["desired"],
    }


@pytest.fixture
def deeplens_state(monkeypatch):
    from edge_package import deeplens

    monkeypatch.setitem(deeplens._state, "runner", None)
    monkeypatch.setitem(deeplens._state, "pending", {})
    return deeplens


def test_deeplens_handler_applies_a_shadow_delta_between_frames(shadow, deeplens_state):
    from edge_package.pipeline import EdgeRunner

    runner = EdgeRunner(parse_config(BASE), sink=object())
    deeplens_state._adopt(runner)
    document = shadow.push({"paused": True, "fps_cap": 5, "masks": [[[0, 0], [1, 0], [0, 1]]]})
    assert deeplens_state.function_handler(delta_message(document), None) is None
    assert runner.config.paused is False  # not in the middle of a frame: at the next tick
    runner.tick(0.0)
    assert runner.config.paused is True and runner.config.fps_cap == 5
    assert runner.config.masks == [[[0, 0], [1, 0], [0, 1]]]


def test_deeplens_handler_refuses_a_bad_delta_and_ignores_other_events(deeplens_state):
    from edge_package.pipeline import EdgeRunner

    runner = EdgeRunner(parse_config(BASE), sink=object())
    deeplens_state._adopt(runner)
    for event in (None, {}, {"state": "x"}, {"state": {"other": {"paused": True}}}, [1]):
        assert deeplens_state.function_handler(event, None) is None
    deeplens_state.function_handler({"state": {"stagepulse": {"jpeg_quality": 5}}}, None)
    runner.tick(0.0)
    assert runner.config.jpeg_quality == 85 and not runner.config.paused
    assert "device shadow refused" in runner.last_error and "jpeg_quality" in runner.last_error


def test_deeplens_pause_made_while_the_unit_was_off_holds_from_the_first_frame(
    monkeypatch, greengrasssdk, shadow, deeplens_state, tmp_path
):
    from edge_package.synthetic import SyntheticCrowdSource

    crowd = SyntheticCrowdSource(width=640, height=360, faces=2, min_face=70, max_face=90)
    _fake_awscam(monkeypatch, [crowd.render(i).image for i in range(5)])
    monkeypatch.setenv("STAGEPULSE_CONFIG", json.dumps({**BASE, "spool_dir": str(tmp_path)}))
    shadow.push({"paused": True})  # STAGEPULSE_CONFIG (deploy time) still says not paused
    runner, source = deeplens_state.build_runner(shadow_client=shadow)
    # A delta that arrived while the runner was being built is kept for it, too.
    deeplens_state.function_handler({"state": {"stagepulse": {"fps_cap": 7}}}, None)
    deeplens_state._adopt(runner)
    assert runner.config.paused is True and runner.config.fps_cap == 7
    final = runner.run(source, max_frames=5)
    assert final["frames"] == 5 and final["faces_detected"] == 0  # no frame was looked at


def test_greengrass_v2_component_follows_the_shadow_without_fighting_its_config(shadow, tmp_path):
    from edge_package import greengrass
    from edge_package.pipeline import EdgeRunner
    from edge_package.shadow import ShadowFollower

    # A pause pushed while the component was stopped holds from its first frame.
    shadow.push({"paused": True})
    ipc = FakeIpc({**BASE, "spool_dir": str(tmp_path), "telemetry_interval_s": 0.5})
    source = "synthetic:frames=4,width=640,height=360,faces=2,min_face=60,max_face=90"
    assert (
        greengrass.main(["--source", source, "--max-frames", "4"], client=ipc, shadow=shadow) == 0
    )
    assert ipc.published[-1][1]["paused"] is True and ipc.published[-1][1]["faces_detected"] == 0

    # While running: the shadow (newer) is not undone by the unchanged component configuration,
    # and a redeploy's change of the component configuration still applies.
    runner = EdgeRunner(parse_config(ipc.config), sink=object())
    watcher, follower = greengrass.ConfigWatcher(ipc, runner), ShadowFollower(runner, shadow)
    shadow.push({"paused": True, "detection_threshold": 0.5})
    assert watcher.poll() is False  # the component configuration did not change: hands off
    assert follower.poll() is True
    for _ in range(2):  # no tug of war at later intervals (each would reset pending crops)
        assert watcher.poll() is False and follower.poll() is False
        assert runner.config.paused is True and runner.config.detection_threshold == 0.5
    ipc.config["min_face_px"] = 64  # a redeploy
    assert watcher.poll() is True and runner.config.min_face_px == 64
    assert follower.poll() is False and runner.config.paused is True


class _TokenExchange(BaseHTTPRequestHandler):
    """What the Greengrass v2 TokenExchangeService answers at AWS_CONTAINER_CREDENTIALS_FULL_URI."""

    seen: list = []

    def do_GET(self):
        type(self).seen.append(self.headers.get("Authorization"))
        body = json.dumps(
            {
                "AccessKeyId": "ASIATESTEXCHANGE",
                "SecretAccessKey": "secret",
                "Token": "session",
                "Expiration": "2099-01-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_greengrass_v2_shadow_client_uses_the_token_exchange_credentials(monkeypatch, tmp_path):
    from edge_package.greengrass import shadow_client

    server = HTTPServer(("127.0.0.1", 0), _TokenExchange)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv(
        "AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{server.server_port}/creds"
    )
    monkeypatch.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "tes-token")
    try:
        client = shadow_client("eu-west-1")
        frozen = client._request_signer._credentials.get_frozen_credentials()
    finally:
        server.shutdown()
    assert frozen.access_key == "ASIATESTEXCHANGE" and frozen.token == "session"
    assert _TokenExchange.seen == ["tes-token"]
    assert client.meta.region_name == "eu-west-1"


def test_deeplens_capture_loop_restarts_when_the_camera_feed_gives_up(monkeypatch):
    """50 failed reads in a row end the source; the device must try again, not go quiet."""
    from edge_package import deeplens
    from edge_package.pipeline import EdgeRunner

    class DeadCamera:
        name = "awscam"

        def __iter__(self):  # as DeepLensSource: the read fails inside the iteration
            raise SourceError("awscam.getLastFrame failed 50 times in a row")
            yield  # a generator, so the runner sees the error from next()

    built = []

    def build_runner():
        runner = EdgeRunner(
            parse_config({"device": "cam-1", "festival": "f", "stage": "s", "bucket": "b"}),
            sink=types.SimpleNamespace(send=lambda release: None),
        )
        built.append(runner)
        return runner, DeadCamera()

    monkeypatch.setattr(deeplens, "build_runner", build_runner)
    monkeypatch.setattr(deeplens, "_adopt", lambda runner: None)
    deeplens.capture_loop(retry_s=0, max_restarts=2)
    assert len(built) == 3  # first start and two restarts
    assert "failed 50 times in a row" in deeplens._state["error"]


def test_a_delta_handed_to_a_runner_that_then_dies_reaches_the_next_one(monkeypatch):
    from edge_package import deeplens
    from edge_package.pipeline import EdgeRunner

    class DeadCamera:
        name = "awscam"

        def __iter__(self):
            raise SourceError("awscam.getLastFrame failed 50 times in a row")
            yield

    runners = []

    def build_runner():
        runner = EdgeRunner(
            parse_config({"device": "cam-1", "festival": "f", "stage": "s", "bucket": "b"}),
            sink=types.SimpleNamespace(send=lambda release: None),
        )
        if not runners:  # a pause arrives just as the first runner's feed gives up
            runner.push_tunables({"paused": True}, "device shadow")
        runners.append(runner)
        return runner, DeadCamera()

    monkeypatch.setattr(deeplens, "build_runner", build_runner)
    monkeypatch.setattr(deeplens, "_adopt", lambda runner: deeplens._state.update(runner=runner))
    deeplens._state["pending"].clear()
    deeplens.capture_loop(retry_s=0, max_restarts=0)
    assert deeplens._state["pending"] == {"paused": True}  # kept for the next runner
    deeplens._state["pending"].clear()
