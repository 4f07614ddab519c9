"""Greengrass v2 component entry point: `python -m edge_package.greengrass`.

The recipe template (edge_package/recipes/greengrass-v2.yaml) installs a venv with the release's
pinned dependencies and runs this module, with the spool and model cache in the component's work
folder (the default run-as user has no home). The camera it reads is the component's `source`
configuration, read here through IPC: never on a shell command line. The device configuration
is the component's `stagepulse` configuration object, read through the nucleus IPC at start;
it changes only with a deployment. Pause, masks, thresholds and model rollouts between
deployments arrive through the device's shadow (the service writes `state.desired.stagepulse`),
read before the first frame and every telemetry interval. Telemetry is published to IoT Core
through the IPC client; AWS credentials come from the TokenExchangeService dependency.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

log = logging.getLogger("edge_package.greengrass")

RECIPE_PATH = os.path.join(os.path.dirname(__file__), "recipes", "greengrass-v2.yaml")
COMPONENT_NAME = "com.stagepulse.Edge"


def render_recipe(*, version: str, artifact_uri: str, config: dict, source: str = "0") -> str:
    """The recipe with its placeholders filled; the config is validated first (fail before deploy).

    JSON is valid YAML, so the configuration object is embedded as JSON.
    """
    from edge_package.config import parse_config

    parse_config(config, "component configuration")
    with open(RECIPE_PATH, encoding="utf-8") as handle:
        text = handle.read()
    for name, value in {
        "VERSION": version,
        "ARTIFACT_URI": artifact_uri,
        "SOURCE": json.dumps(source),  # a JSON string is a YAML scalar, quotes and all
        "CONFIG_JSON": json.dumps(config, sort_keys=True),
    }.items():
        text = text.replace("{{" + name + "}}", value)
    return text


def ipc_client():
    """The nucleus IPC client; only present inside a Greengrass v2 component."""
    try:
        from awsiot.greengrasscoreipc.clientv2 import GreengrassCoreIPCClientV2
    except ImportError as exc:
        raise RuntimeError(
            "awsiotsdk is not installed: the component's install step runs "
            "'pip install awsiotsdk' (see docs/edge.md)"
        ) from exc
    return GreengrassCoreIPCClientV2()


def read_component_source(client) -> str:
    """The camera this device reads (`source` in the component configuration, set per device by
    the deployment). Read through IPC so a password in an RTSP URL never passes through a shell
    command line, where `$` and backticks would be expanded and `ps` would show it."""
    response = client.get_configuration(component_name=COMPONENT_NAME, key_path=["source"])
    value = getattr(response, "value", None)
    if isinstance(value, dict):  # the nucleus answers a leaf as {"source": value}
        value = value.get("source")
    if value is None or value == "":
        return "0"
    return str(value)


def read_component_config(client) -> dict:
    """The component's `stagepulse` configuration object, as the deployment set it."""
    response = client.get_configuration(component_name=COMPONENT_NAME, key_path=["stagepulse"])
    value = getattr(response, "value", None)
    return dict(value or {})


class ConfigWatcher:
    """Polls the component configuration and applies what a deployment changed in it.

    Only changes of the component configuration itself are applied (compared with what it said
    last time), not every difference from the running settings: those may come from the shadow,
    which is newer, and must not be undone at each poll.

    The video source is watched too (when it came from the configuration): no script interpolates
    it, so the nucleus does not restart the component when a redeploy changes it. A new source
    stops the current run; main() then opens the new one (`new_source`).
    """

    def __init__(self, client, runner, source: str | None = None):
        self.client = client
        self.runner = runner
        self.seen = dict(runner.config.edge)
        self.source = source
        self.new_source: str | None = None

    def poll(self) -> bool:
        changed = self._poll_settings()
        if self.source is not None:
            self._poll_source()
        return changed

    def _poll_source(self) -> None:
        from edge_package.redact import redact_source

        try:
            spec = read_component_source(self.client)
        except Exception as exc:  # IPC hiccup: keep the current camera
            self.runner.error(f"reading the component's video source failed: {exc}")
            return
        if spec != self.source:
            log.info("video source changed to %s: reopening", redact_source(spec))
            self.new_source = spec
            self.runner.stop()

    def _poll_settings(self) -> bool:
        from edge_package.config import ConfigError, parse_config

        try:
            fresh = parse_config(read_component_config(self.client), "component configuration")
        except ConfigError as exc:
            self.runner.error(str(exc).replace("\n", " "))
            return False
        except Exception as exc:  # IPC hiccup: keep the current settings
            self.runner.error(f"reading the component configuration failed: {exc}")
            return False
        changed = {k: v for k, v in fresh.edge.items() if self.seen.get(k, "") != v}
        self.seen = dict(fresh.edge)
        if changed:
            self.runner.update_tunables(**changed)
            return True
        return False


def shadow_client(region: str):
    """boto3 iot-data for GetThingShadow on the cloud shadow, with the TokenExchangeService's
    role credentials (boto3 finds AWS_CONTAINER_CREDENTIALS_FULL_URI, set by the nucleus).

    Chosen over the IPC shadow API because that needs the ShadowManager component with its cloud
    sync configured for the classic shadow, plus IPC access control; the cloud call needs only
    iot:GetThingShadow on the device's own thing (its role allows exactly that) and is the same
    code path as the standalone `--follow-shadow`.
    """
    from edge_package.sinks import aws_client

    return aws_client("iot-data", region)


def main(argv: list[str] | None = None, *, client=None, shadow=None) -> int:
    """Run the component; `client` (IPC) and `shadow` (iot-data) are built here when not given."""
    parser = argparse.ArgumentParser(prog="python -m edge_package.greengrass")
    parser.add_argument(
        "--source",
        default=None,
        help="camera: webcam index, rtsp:// URL, file (default: the component configuration's "
        "`source`, read through IPC)",
    )
    parser.add_argument("--config-json", default="", help="configuration JSON (from the recipe)")
    parser.add_argument("--max-frames", type=int, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from edge_package.config import ConfigError, parse_config
    from edge_package.pipeline import EdgeRunner
    from edge_package.shadow import ShadowFollower
    from edge_package.sources import SourceError, open_source, redact_source
    from edge_package.telemetry import GreengrassV2Publisher

    try:
        client = client or ipc_client()
        raw = json.loads(args.config_json) if args.config_json else read_component_config(client)
        config = parse_config(raw, "component configuration")
        spec = args.source if args.source is not None else read_component_source(client)
        log.info("StagePulse component %s reading %s", config.device, redact_source(spec))
        source = open_source(spec)
    except (ConfigError, SourceError, RuntimeError, json.JSONDecodeError) as exc:
        print(f"StagePulse component cannot start: {exc}", file=sys.stderr)
        return 2
    runner = EdgeRunner(config, publisher=GreengrassV2Publisher(config.device, client=client))
    watcher = ConfigWatcher(client, runner, source=spec if args.source is None else None)
    follower = ShadowFollower(runner, shadow or shadow_client(config.region))

    def refresh() -> None:
        watcher.poll()  # a redeploy's configuration first, then the (newer) shadow on top
        follower.poll()

    follower.poll()  # a pause made while the component was stopped holds from the first frame
    runner.before_telemetry = refresh
    terminated = []

    def terminate(*_) -> None:  # how Greengrass stops a component
        terminated.append(True)
        runner.stop()

    signal.signal(signal.SIGTERM, terminate)
    while True:
        final = runner.run(source, max_frames=args.max_frames)
        if terminated or watcher.new_source is None:
            break
        spec, watcher.new_source = watcher.new_source, None
        watcher.source = spec
        runner.stop_event.clear()
        try:
            source = open_source(spec)
        except SourceError as exc:  # the nucleus restarts an errored component and says so
            print(f"StagePulse component cannot open its new source: {exc}", file=sys.stderr)
            return 2
    log.info("StagePulse component stopped: %s", json.dumps(final))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
