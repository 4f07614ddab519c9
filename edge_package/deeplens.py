"""Legacy AWS DeepLens entry point: a long-lived Greengrass v1 lambda.

AWS ended DeepLens on 2024-01-31 and discontinued Greengrass V1 on 2026-10-07; this path is kept for
owners of existing units. Greengrass v1 imports the module once and keeps it alive: the capture loop
runs in a background thread started at import, and `function_handler` (which Greengrass requires)
does nothing because the lambda is not event-driven. Configuration comes from the lambda's
STAGEPULSE_CONFIG environment variable; telemetry goes out through greengrasssdk's iot-data client.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger("edge_package.deeplens")

_state: dict = {"thread": None, "runner": None, "error": ""}


def build_runner():
    """Config, DeepLens camera, greengrasssdk publisher and the production sink, wired together."""
    from edge_package.config import config_from_env
    from edge_package.pipeline import EdgeRunner
    from edge_package.sources import DeepLensSource
    from edge_package.telemetry import GreengrassV1Publisher

    config = config_from_env()
    source = DeepLensSource()
    runner = EdgeRunner(config, publisher=GreengrassV1Publisher(config.device))
    return runner, source


def capture_loop(retry_s: float = 30.0, max_restarts: int | None = None) -> None:
    """Run forever; a crash is reported and the loop restarts after `retry_s` (device stays up)."""
    restarts = 0
    while True:
        try:
            runner, source = build_runner()
            _state["runner"] = runner
            runner.run(source)
            return  # the loop was stopped on purpose
        except Exception as exc:  # keep the device alive whatever went wrong; say why
            _state["error"] = f"{type(exc).__name__}: {exc}"
            log.error("StagePulse capture loop stopped: %s; restarting in %ss", exc, retry_s)
        restarts += 1
        if max_restarts is not None and restarts > max_restarts:
            return
        time.sleep(retry_s)


def start(**kwargs) -> threading.Thread:
    """Start the capture thread once per process (Greengrass v1 imports the module once)."""
    thread = _state["thread"]
    if thread is None or not thread.is_alive():
        thread = threading.Thread(
            target=capture_loop, kwargs=kwargs, name="stagepulse-capture", daemon=True
        )
        _state["thread"] = thread
        thread.start()
    return thread


def function_handler(event, context):
    """Required by Greengrass v1; the long-lived lambda does its work in the capture thread."""
    return None


if os.environ.get("AWS_GREENGRASS_GROUP_NAME") or os.environ.get("STAGEPULSE_AUTOSTART") == "1":
    start()
