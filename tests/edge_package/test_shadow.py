"""A pause (or any tunable) pushed to the device shadow by the service reaches a running camera
at its next telemetry interval, without a restart; bad pushes are refused and reported."""

import json

import boto3
import pytest
from moto import mock_aws

from edge_package.config import parse_config
from edge_package.shadow import ShadowFollower, apply_desired

REGION = "eu-west-1"


class Runner:
    """The part of EdgeRunner the follower talks to."""

    def __init__(self, config):
        self.config = config
        self.errors: list[str] = []

    def update_tunables(self, **changes):
        self.config = self.config.with_tunables(**changes)

    def error(self, message):
        self.errors.append(message)


@pytest.fixture
def iot_data():
    with mock_aws():
        boto3.client("iot", region_name=REGION).create_thing(thingName="cam-1")
        yield boto3.client("iot-data", region_name=REGION)


def push(client, tunables: dict) -> None:
    """What devices.services.health.push_config_to_shadow writes."""
    document = {"state": {"desired": {"stagepulse": tunables}}}
    client.update_thing_shadow(thingName="cam-1", payload=json.dumps(document).encode())


def config():
    return parse_config({"device": "cam-1", "festival": "f", "stage": "s", "bucket": "b"})


def test_a_pushed_pause_reaches_the_running_camera(iot_data):
    runner = Runner(config())
    follower = ShadowFollower(runner, iot_data)
    assert follower.poll() is False  # nothing pushed yet: no shadow, no error
    assert runner.errors == []
    push(iot_data, {"paused": True, "masks": [[[0, 0], [0.3, 0], [0, 0.3]]], "fps_cap": 5})
    assert follower.poll() is True
    assert runner.config.paused is True and runner.config.fps_cap == 5
    assert runner.config.masks == [[[0, 0], [0.3, 0], [0, 0.3]]]
    assert follower.poll() is False  # unchanged since


def test_an_invalid_push_is_refused_and_reported(iot_data):
    runner = Runner(config())
    push(iot_data, {"jpeg_quality": 5})
    assert ShadowFollower(runner, iot_data).poll() is False
    assert runner.config.jpeg_quality == 85
    assert "jpeg_quality" in runner.errors[0]


def test_delta_documents_and_unknown_keys():
    updated = apply_desired(config(), {"state": {"stagepulse": {"paused": True, "shell": "rm"}}})
    assert updated.paused is True
