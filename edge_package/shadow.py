"""Settings pushed from the service through the device's AWS IoT shadow (pause, masks,
thresholds, a rolled-out face model) take effect on the camera without a redeploy or restart.

The service writes `state.desired.stagepulse` (devices.services.health.push_config_to_shadow);
the camera reads it once per telemetry interval and applies what changed.
"""

from __future__ import annotations

import json
import logging

from botocore.exceptions import BotoCoreError, ClientError

from edge_package.config import ConfigError, DeviceConfig
from edge_package.contracts import (
    COMPARISON_KEYS,
    EDGE_CONFIG_DEFAULTS,
    FACE_MODEL_KEYS,
    aws_error_code,
)

log = logging.getLogger("edge_package")
SHADOW_KEY = "stagepulse"
_TUNABLES = set(EDGE_CONFIG_DEFAULTS) | set(FACE_MODEL_KEYS) | set(COMPARISON_KEYS)


def desired_tunables(document: dict) -> dict:
    """The StagePulse tunables of a shadow document: a full GetThingShadow answer
    (state.desired) or a delta message (state)."""
    state = document.get("state") or {}
    desired = state.get("desired", state)
    tunables = desired.get(SHADOW_KEY) or {}
    return {key: value for key, value in tunables.items() if key in _TUNABLES}


def apply_desired(config: DeviceConfig, document: dict) -> DeviceConfig:
    """The config with the shadow's desired tunables applied (validated; raises ConfigError)."""
    changes = desired_tunables(document)
    return config.with_tunables(**changes) if changes else config


def apply_pushed(runner, tunables: dict, origin: str) -> bool:
    """Apply the tunables that differ from the runner's; returns whether anything changed.
    A push the contract refuses is reported through the runner and changes nothing."""
    current = runner.config.edge
    changes = {
        key: value
        for key, value in tunables.items()
        if key in _TUNABLES and current.get(key, "") != value
    }
    if not changes:
        return False
    try:
        runner.update_tunables(**changes)
    except ConfigError as exc:
        runner.error(f"{origin} refused: {exc}")
        return False
    log.info("applied from the %s: %s", origin, ", ".join(sorted(changes)))
    return True


class ShadowFollower:
    """Polls the thing's shadow and hands changed tunables to the runner (EdgeRunner)."""

    def __init__(self, runner, client):
        self.runner = runner
        self.client = client

    def poll(self) -> bool:
        """Returns whether anything changed. A missing shadow means nothing was pushed yet."""
        try:
            answer = self.client.get_thing_shadow(thingName=self.runner.config.device)
            document = json.loads(answer["payload"].read())
        except ClientError as exc:
            if aws_error_code(exc) != "ResourceNotFoundException":
                self.runner.error(f"device shadow: {exc}")
            return False
        except (BotoCoreError, ValueError) as exc:
            self.runner.error(f"device shadow unreadable: {exc}")
            return False
        return apply_pushed(self.runner, desired_tunables(document), "device shadow")
