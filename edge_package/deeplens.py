"""Legacy AWS DeepLens entry point: a long-lived Greengrass v1 lambda.

AWS ended DeepLens on 2024-01-31 and discontinued Greengrass V1 on 2026-10-07: the service no
longer deploys this lambda (every Greengrass v1 step fails on AWS). It stays for a unit whose
core still runs a group deployed before then; a DeepLens today runs the standalone runtime as a
systemd service with `--source deeplens` (docs/edge.md, "DeepLens today").

Greengrass v1 imports the module once and keeps it alive: the capture loop runs in a background
thread started at import. `function_handler` receives what the group's
subscriptions route to the lambda: the device shadow's delta messages
(`$aws/things/<thing>/shadow/update/delta`, synced from the cloud shadow the service writes), whose
settings (pause, masks, thresholds, a rolled-out model) it hands to the capture thread.
Configuration at start comes from STAGEPULSE_CONFIG (set in the Greengrass function definition);
the cloud shadow is also read at start and every telemetry interval (group role credentials), so a
pause made while the unit was off or restarting is not missed. Telemetry goes out through
greengrasssdk's iot-data client.
"""

from __future__ import annotations

import logging
import os
import threading
import time

from edge_package.awscam_first import import_awscam

import_awscam()  # before anything below imports cv2: AWS says cv2 first breaks awscam on a DeepLens

log = logging.getLogger("edge_package.deeplens")

_state: dict = {"thread": None, "runner": None, "error": "", "pending": {}}
_lock = threading.Lock()  # the handler thread and the capture thread share _state


def build_runner(*, shadow_client=None):
    """Config, DeepLens camera, greengrasssdk publisher, the production sink and the shadow
    follower (polled every telemetry interval), wired together."""
    from edge_package.config import config_from_env
    from edge_package.pipeline import EdgeRunner
    from edge_package.shadow import ShadowFollower
    from edge_package.sinks import aws_client
    from edge_package.sources import DeepLensSource
    from edge_package.telemetry import GreengrassV1Publisher

    config = config_from_env()
    source = DeepLensSource()
    runner = EdgeRunner(config, publisher=GreengrassV1Publisher(config.device))
    follower = ShadowFollower(runner, shadow_client or aws_client("iot-data", config.region))
    runner.before_telemetry = follower.poll
    return runner, source


def _adopt(runner) -> None:
    """Before the first frame: make `runner` the one shadow deltas go to, apply the deltas that
    arrived while it was being built, then read the shadow itself (the newest state wins, and a
    pause made while the unit was off is honoured before any frame is looked at)."""
    from edge_package.shadow import apply_pushed

    with _lock:
        _state["runner"] = runner
        pending, _state["pending"] = _state["pending"], {}
    if pending:
        apply_pushed(runner, pending, "device shadow")
    if runner.before_telemetry is not None:
        runner.before_telemetry()


def capture_loop(retry_s: float = 30.0, max_restarts: int | None = None) -> None:
    """Run forever; a crash is reported and the loop restarts after `retry_s` (device stays up)."""
    restarts = 0
    while True:
        try:
            runner, source = build_runner()
            _adopt(runner)
            runner.run(source)
            if runner.stop_event.is_set():
                return  # the loop was stopped on purpose
            # A camera feed has no end: the source gave up (e.g. 50 failed reads in a row).
            raise RuntimeError(runner.last_error or "the camera feed ended")
        except Exception as exc:  # keep the device alive whatever went wrong; say why
            with _lock:  # deltas wait for the next runner, with those this one never applied
                dead, _state["runner"] = _state["runner"], None
                if dead is not None:
                    _state["pending"].update(dead.take_pushed())
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
    """A shadow delta routed to the lambda: hand its StagePulse settings to the capture thread
    (applied between frames). Anything else is ignored: the work is done in the capture thread."""
    from edge_package.shadow import desired_tunables

    if not isinstance(event, dict) or not isinstance(event.get("state"), dict):
        return None
    tunables = desired_tunables(event)
    if not tunables:
        return None
    with _lock:  # held while handing over, so a runner that just died cannot swallow the delta
        runner = _state["runner"]
        if runner is None:  # still starting (or restarting): keep it for the next runner
            _state["pending"].update(tunables)
        else:
            runner.push_tunables(tunables, "device shadow")
    return None


if os.environ.get("AWS_GREENGRASS_GROUP_NAME") or os.environ.get("STAGEPULSE_AUTOSTART") == "1":
    start()
