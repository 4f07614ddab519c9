"""An organizer pauses a standalone camera; the camera's next telemetry report carries the new
settings back and the running edge code stops sending crops — no redeploy, no restart."""

import pytest

from devices import services
from edge_package.config import parse_config
from edge_package.pipeline import EdgeRunner
from edge_package.telemetry import HttpsPublisher

pytestmark = pytest.mark.django_db(transaction=True)


class NoSink:
    def submit(self, *args, **kwargs):
        raise AssertionError("a paused camera sends nothing")


def test_pause_set_on_the_service_takes_effect_at_the_next_report(live_server, two_worlds):
    ours, _ = two_worlds
    token = services.issue_device_token(ours.device)
    config = parse_config(
        {
            "device": ours.device.thing_name,
            "festival": ours.festival.slug,
            "stage": ours.stage.slug,
            "bucket": "crops",
            "service_url": live_server.url,
            "device_token": token,
        }
    )
    runner = EdgeRunner(config, detector=object(), sink=NoSink(),
                        publisher=HttpsPublisher(live_server.url, token))  # fmt: skip
    runner.telemetry()
    assert runner.config.paused is False and runner.errors == 0
    services.set_paused(ours.device, True)  # the organizer's switch (admin action / API)
    runner.telemetry()
    assert runner.config.paused is True
    services.set_paused(ours.device, False)
    runner.telemetry()
    assert runner.config.paused is False
