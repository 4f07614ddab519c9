"""Device telemetry through one publisher interface: Greengrass v1, Greengrass v2 IPC, or HTTPS.

The payload follows contracts.TELEMETRY_SCHEMA. The device runtimes (greengrasssdk on DeepLens,
awsiot's IPC client on Greengrass v2) exist only on those devices, so they are imported lazily when
a publisher is built. A failed publish is counted and never stops the capture loop.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request

from edge_package import __version__
from edge_package.contracts import (
    INPUT_SECONDS_MAX,
    SOUND_DBFS_MAX,
    SOUND_DBFS_MIN,
    TELEMETRY_CONTRACT_VERSION,
    TELEMETRY_SCHEMA,
)

TOPIC_TEMPLATE = "stagepulse/telemetry/{device}"
_ALLOWED = set(TELEMETRY_SCHEMA["properties"])


class TelemetryError(RuntimeError):
    """A publisher cannot be built (runtime missing) or a publish failed."""


def build_payload(
    *, device: str, mode: str, counters: dict, paused: bool = False, sent_at_ms: int | None = None
) -> dict:
    """A schema-shaped payload: unknown counters are left out, numbers stay numbers."""
    payload = {
        "contract": TELEMETRY_CONTRACT_VERSION,
        "device_id": device,
        "software_version": __version__,
        "sent_at_ms": int(sent_at_ms if sent_at_ms is not None else time.time() * 1000),
        "analysis_mode": mode,
        "paused": bool(paused),
    }
    for key, value in counters.items():
        if key not in _ALLOWED or key in payload:
            continue
        if key == "last_error":
            if value:
                payload[key] = str(value)[:500]
        elif key == "fps":
            payload[key] = round(min(1000.0, max(0.0, float(value))), 2)
        elif key in ("input_luma", "input_motion"):
            if value is not None:
                payload[key] = round(min(255.0, max(0.0, float(value))), 2)
        elif key in ("input_black_s", "input_frozen_s"):
            if value is not None:
                payload[key] = round(min(float(INPUT_SECONDS_MAX), max(0.0, float(value))), 1)
        elif key in ("motion_energy", "crowd_fill"):
            if value is not None:
                payload[key] = round(min(1.0, max(0.0, float(value))), 4)
        elif key == "sound_level_dbfs":
            if value is not None:
                payload[key] = round(min(SOUND_DBFS_MAX, max(SOUND_DBFS_MIN, float(value))), 2)
        elif key == "face_free":
            payload[key] = bool(value)
        else:
            payload[key] = max(0, int(value))
    return payload


class Publisher:
    """publish(payload) -> None; raises TelemetryError on failure."""

    name = "none"

    def publish(self, payload: dict) -> None:
        raise NotImplementedError


class GreengrassV1Publisher(Publisher):
    """DeepLens / Greengrass v1: greengrasssdk's iot-data client, MQTT topic per device."""

    name = "greengrass-v1"

    def __init__(self, device: str):
        try:
            import greengrasssdk
        except ImportError as exc:
            raise TelemetryError(
                "greengrasssdk is missing: the Greengrass v1 publisher runs only inside a "
                "Greengrass v1 (DeepLens) lambda"
            ) from exc
        self.client = greengrasssdk.client("iot-data")
        self.topic = TOPIC_TEMPLATE.format(device=device)

    def publish(self, payload: dict) -> None:
        try:
            self.client.publish(
                topic=self.topic, queueFullPolicy="AllOrException", payload=json.dumps(payload)
            )
        except Exception as exc:  # the SDK raises its own exception types
            raise TelemetryError(f"Greengrass v1 publish to {self.topic} failed: {exc}") from exc


class GreengrassV2Publisher(Publisher):
    """Greengrass v2: PublishToIoTCore through the nucleus IPC (awsiotsdk's GreengrassCoreIPC)."""

    name = "greengrass-v2"

    def __init__(self, device: str, *, client=None, timeout_s: float = 10.0):
        if client is None:
            try:
                from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
            except ImportError as exc:
                raise TelemetryError(
                    "awsiotsdk is missing: install it in the component (pip install awsiotsdk); "
                    "the Greengrass v2 publisher needs the nucleus IPC"
                ) from exc
            client = GreengrassCoreIPCClientV2()
        self.client = client
        self.topic = TOPIC_TEMPLATE.format(device=device)
        self.timeout_s = timeout_s

    def publish(self, payload: dict) -> None:
        try:
            self.client.publish_to_iot_core(
                topic_name=self.topic, qos="1", payload=json.dumps(payload).encode()
            )
        except Exception as exc:  # IPC errors (UnauthorizedError, timeouts) vary by SDK version
            raise TelemetryError(f"Greengrass v2 publish to {self.topic} failed: {exc}") from exc


class HttpsPublisher(Publisher):
    """Standalone devices: POST to <service_url>/api/v1/telemetry/ with the device token."""

    name = "https"

    def __init__(self, service_url: str, token: str, *, timeout_s: float = 5.0):
        if not service_url:
            raise TelemetryError("service_url is required for HTTPS telemetry")
        self.url = service_url.rstrip("/") + "/api/v1/telemetry/"
        self.token = token
        self.timeout_s = timeout_s

    def publish(self, payload: dict) -> dict | None:
        """Returns the service's answer, whose `desired` carries the device's current settings."""
        request = urllib.request.Request(
            self.url,
            data=json.dumps(payload).encode(),
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Device {self.token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                body = response.read()
        except urllib.error.HTTPError as exc:
            hint = " (check device_token)" if exc.code in (401, 403) else ""
            raise TelemetryError(f"telemetry POST {self.url} answered {exc.code}{hint}") from exc
        except (urllib.error.URLError, OSError) as exc:
            raise TelemetryError(f"telemetry POST {self.url} failed: {exc}") from exc
        try:
            answer = json.loads(body or b"null")
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None


class NullPublisher(Publisher):
    """No telemetry target configured: the CLI status line is the only report."""

    name = "none"

    def publish(self, payload: dict) -> None:
        return None


def make_publisher(kind: str, config) -> Publisher:
    if kind == "greengrass-v1":
        return GreengrassV1Publisher(config.device)
    if kind == "greengrass-v2":
        return GreengrassV2Publisher(config.device)
    if kind == "https":
        return HttpsPublisher(config.service_url, config.device_token)
    if kind in ("none", ""):
        return NullPublisher()
    raise TelemetryError(f"unknown telemetry publisher {kind!r}")
