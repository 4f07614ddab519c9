"""Standalone entry point: `python -m edge_package run --source ... --config ...`.

Runs the real capture loop on a video file, RTSP URL, webcam, image folder or a synthetic crowd,
with a one-line live status and a clean stop on Ctrl-C (pending crops are flushed, the spool is
drained once, a last telemetry report is sent). Exit codes: 0 done, 2 bad config, 3 bad source,
4 model or runtime missing.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys

from edge_package import __version__


def _status_line(stream):
    def show(c: dict) -> None:
        line = (
            f"fps {c['fps']:5.1f} | frames {c['frames']} | faces {c['faces_detected']} | "
            f"uploads {c.get('uploads', 0)} | spool {c.get('spool_depth', 0)} | "
            f"errors {c['errors']}"
        )
        if stream.isatty():
            stream.write("\r" + line.ljust(100)[:100])
        else:
            stream.write(line + "\n")
        stream.flush()

    return show


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m edge_package", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--version", action="version", version=f"stagepulse-edge {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the capture loop")
    run.add_argument(
        "--source",
        default=None,
        help="video file, rtsp:// URL, webcam index, image folder, 'deeplens', or "
        "'synthetic:faces=12,mood=0.8,seed=1' (a simulated crowd); default: $STAGEPULSE_SOURCE "
        "(keeps an RTSP password off the command line, e.g. in a systemd EnvironmentFile)",
    )
    run.add_argument("--config", required=True, help="device configuration JSON file")
    run.add_argument("--max-frames", type=int, default=None)
    run.add_argument("--duration", type=float, default=None, help="seconds to run")
    run.add_argument("--loop", action="store_true", help="restart a video file at its end")
    run.add_argument(
        "--telemetry",
        choices=["auto", "none", "https", "greengrass-v2", "greengrass-v1"],
        default="auto",
        help="auto: HTTPS POST when service_url is set, else none",
    )
    run.add_argument("--quiet", action="store_true", help="no live status line")
    run.add_argument(
        "--follow-shadow",
        action="store_true",
        help="apply settings pushed to the device's AWS IoT shadow (pause, masks, thresholds)",
    )
    check = sub.add_parser("check-config", help="validate a configuration file and exit")
    check.add_argument("config")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "run" and not args.source:
        args.source = os.environ.get("STAGEPULSE_SOURCE", "")
        if not args.source:
            parser.error("run: --source is required (or set STAGEPULSE_SOURCE)")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "run" and args.source == "deeplens":
        from edge_package.awscam_first import import_awscam

        import_awscam()  # before the modules below bring in cv2
    from edge_package.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.command == "check-config":
        print(json.dumps({"ok": True, "device": config.device, "mode": config.mode}))
        return 0

    from edge_package.detect import DetectorError
    from edge_package.pipeline import EdgeRunner
    from edge_package.sources import SourceError, open_source
    from edge_package.telemetry import TelemetryError, make_publisher

    kind = args.telemetry
    if kind == "auto":
        kind = "https" if config.service_url else "none"
    try:
        source = open_source(args.source, loop=args.loop)
        publisher = make_publisher(kind, config)
        runner = EdgeRunner(config, publisher=publisher)
    except SourceError as exc:
        print(f"source error: {exc}", file=sys.stderr)
        return 3
    except (DetectorError, TelemetryError, RuntimeError) as exc:
        print(f"cannot start: {exc}", file=sys.stderr)
        return 4

    if args.follow_shadow:
        from edge_package.shadow import ShadowFollower
        from edge_package.sinks import aws_client

        runner.before_telemetry = ShadowFollower(runner, aws_client("iot-data", config.region)).poll

    def stop(signum, _frame):
        runner.stop()

    previous = signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    try:
        final = runner.run(
            source,
            max_frames=args.max_frames,
            duration_s=args.duration,
            status=None if args.quiet else _status_line(sys.stderr),
        )
    finally:
        signal.signal(signal.SIGINT, previous)
    if not args.quiet and sys.stderr.isatty():
        sys.stderr.write("\n")
    summary = {k: v for k, v in final.items() if k != "last_error" or v}
    summary["fps"] = round(summary["fps"], 2)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
