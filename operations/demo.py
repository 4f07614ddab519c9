"""The embedded demo's topology: a moto server for AWS, the infra stack deployed into it, the
service processes, the analyzer worker, and one simulated camera per stage running the real
edge_package on a synthetic crowd whose size and mood differ per stage.

`manage.py run_demo` drives it; the end-to-end test starts the same topology for about a minute
(40 s of cameras).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

import awsclients as aws
from devices.models import Device, DeviceStatus
from devices.services.health import update_device
from devices.services.registration import device_config
from devices.services.tokens import issue_device_token
from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from emotions.comparison import services as comparison
from emotions.models import ComparisonRun
from infra import cfn_template, deploy
from stages.models import Stage
from stages.services import LINEUP_COLUMNS, format_local_datetime

DEMO_FESTIVAL = "pulse-2026"
DEMO_STACK = "stagepulse-demo"

# Per stage, the scripted mood: people in view, the share of smiling faces, how hard the crowd
# dances (0..1) to which tempo, how loud the stage is (dBFS at the camera's microphone), and its
# lights (the tent is the night stage: strobe and colour-wash episodes, which must not read as
# dancing). The ranking means something with faces and without (face-free mode): the livelier
# the mood, the more smiles, the harder the dancing and the louder the sound.
CROWDS = {
    "main": {"faces": 12, "mood": 1.0, "dance": 0.9, "bpm": 128, "sound": -10, "lighting": "none"},
    "forest": {
        "faces": 10,
        "mood": 0.7,
        "dance": 0.6,
        "bpm": 118,
        "sound": -15,
        "lighting": "none",
    },
    "tent": {"faces": 8, "mood": 0.3, "dance": 0.3, "bpm": 124, "sound": -19, "lighting": "show"},
    "harbour": {
        "faces": 6,
        "mood": 0.0,
        "dance": 0.05,
        "bpm": 84,
        "sound": -28,
        "lighting": "none",
    },
}
DEFAULT_CROWD = {
    "faces": 6,
    "mood": 0.5,
    "dance": 0.4,
    "bpm": 120,
    "sound": -18,
    "lighting": "none",
}
# Fresher crops for a live demo (production default: 10 s); with CROWDS and the upload budget it
# sets the demo's arrival rate at the analyzer (demo_arrival_crops_per_s).
DEMO_THROTTLE_INTERVAL_S = 3
DEMO_MIN_FACE_PX = 64  # the smallest face a demo camera sends (its crowd is drawn from there up)


def demo_arrival_crops_per_s() -> float:
    """Crops per second the demo's cameras can send at most: per camera, one crop per face in view
    per throttle interval, capped by its upload budget (bench/bench_analysis.py compares)."""

    budget_per_s = EDGE_CONFIG_DEFAULTS["upload_budget_per_min"] / 60.0
    return sum(
        min(crowd["faces"] / DEMO_THROTTLE_INTERVAL_S, budget_per_s) for crowd in CROWDS.values()
    )


@dataclass
class Process:
    name: str
    command: list[str]


def free_port(preferred: int) -> int:
    with socket.socket() as probe:
        if probe.connect_ex(("127.0.0.1", preferred)) != 0:
            return preferred
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise RuntimeError(f"nothing answered on 127.0.0.1:{port} after {timeout_s:.0f} s")


def start_moto(port: int, log_path: Path) -> subprocess.Popen:
    """A moto server on loopback: every boto3 client of every process points here."""
    log = log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port)
    return process


def aws_environment(moto_port: int) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{moto_port}",
        "AWS_ACCESS_KEY_ID": "demo",
        "AWS_SECRET_ACCESS_KEY": "demo",
        "AWS_DEFAULT_REGION": settings.AWS_DEFAULT_REGION,
    }


def deploy_infra(emit) -> dict[str, str]:
    """The same CloudFormation template as production, deployed into the moto server."""

    result = deploy.deploy(
        DEMO_STACK,
        {
            "EnvironmentName": "demo",
            "Embedded": "true",
            "AnalyzerMode": "worker",
            "CropsBucketName": settings.CROPS_BUCKET,
            "ArtifactsBucketName": settings.ARTIFACTS_BUCKET,
            "ObservationsTableName": settings.OBSERVATIONS_TABLE,
            "AnalysisQueueName": settings.ANALYSIS_QUEUE_NAME,
            "MetricsNamespace": settings.CLOUDWATCH_NAMESPACE,
        },
        emit=emit,
    )
    return cfn_template.service_env(result.outputs)


def live_lineup(festival, set_minutes: int, hours: int = 3) -> str:
    """Short sets from about now on every stage, so a set ends (and its report appears) within
    minutes of starting the demo. Replaces the seeded lineup of the demo festival."""

    tz = festival.tz
    now = timezone.now().replace(second=0, microsecond=0)
    lines = [",".join(LINEUP_COLUMNS)]
    names = ["Nova Tide", "Kiko Bass", "Deep Static", "Sol Parade", "Haze Theory", "Atlas Bloom"]
    for index, stage in enumerate(Stage.objects.filter(festival=festival).order_by("position")):
        # staggered a minute per stage: reports then arrive one after another, not all at once
        start = now - timedelta(minutes=1) + timedelta(minutes=index)
        number = 0
        while start < now + timedelta(hours=hours):
            end = start + timedelta(minutes=set_minutes)
            artist = f"{names[(index + number) % len(names)]} #{number + 1}"
            lines.append(
                f"{stage.slug},{artist},{format_local_datetime(start, tz)},"
                f"{format_local_datetime(end, tz)},demo"
            )
            start, number = end, number + 1
    return "\n".join(lines) + "\n"


def festival_runs_today(festival) -> None:
    """A demo database seeded on an earlier day keeps its festival dates; move them to today,
    since the ingest refuses captures outside the festival's dates (± 1 day)."""
    today = timezone.localdate()
    if not festival.starts_on <= today <= festival.ends_on:
        festival.starts_on, festival.ends_on = today, today + timedelta(days=1)
        festival.save(update_fields=["starts_on", "ends_on", "updated_at"])


def prepare_cameras(festival, service_url: str, folder: Path, fps: float) -> list[Process]:
    """A device config per camera (with a fresh telemetry token) and its edge process."""

    folder.mkdir(parents=True, exist_ok=True)
    processes = []
    devices = Device.objects.filter(festival=festival, stage__isnull=False).select_related(
        "stage", "festival", "organization"
    )
    for seed, device in enumerate(devices.order_by("stage__position")):
        # The tunables live on the Device (the service sends them back with every telemetry
        # answer, and the camera applies them), so set them there, not only in the file.
        device.config = {
            **device.config,
            "fps_cap": fps,
            "throttle_interval_s": DEMO_THROTTLE_INTERVAL_S,
            # the simulated crowd's faces are 64-120 px: sending from 64 px lets the camera skip
            # its full-resolution tiles (edge_package.detect.camera_schedule), a third of its CPU
            "min_face_px": DEMO_MIN_FACE_PX,
        }
        device.save(update_fields=["config", "updated_at"])
        config = device_config(device, token=issue_device_token(device))
        crowd = CROWDS.get(device.stage.slug, DEFAULT_CROWD)
        config.update(
            service_url=service_url,
            telemetry_interval_s=10,
            spool_dir=str(folder / f"{device.thing_name}-spool"),
            # the stage's sound at the camera's (simulated) microphone: only levels leave it
            audio=f"synthetic:level={crowd['sound']},bpm={crowd['bpm']},seed={seed + 1}",
        )
        if device.status == DeviceStatus.NEW:
            device.status = DeviceStatus.REGISTERED
            device.save(update_fields=["status"])
        path = folder / f"{device.thing_name}.json"
        path.write_text(json.dumps(config, indent=2))
        source = (
            f"synthetic:faces={crowd['faces']},mood={crowd['mood']},seed={seed + 1},"
            f"width=960,height=540,min_face={DEMO_MIN_FACE_PX},max_face=120,"
            f"dance={crowd['dance']},bpm={crowd['bpm']},lighting={crowd['lighting']},noise=2"
        )
        processes.append(
            Process(
                f"cam-{device.stage.slug}",
                [sys.executable, "-m", "edge_package", "run", "--source", source, "--config",
                 str(path), "--quiet"],
            )
        )  # fmt: skip
    return processes


def service_processes(port: int, ingest_interval: float) -> list[Process]:
    python = sys.executable
    return [
        Process("web", [python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"]),
        Process(
            "worker",
            [python, "-m", "celery", "-A", "stagepulse", "worker", "--pool=threads",
             "--concurrency=4", "--loglevel=WARNING", "--without-heartbeat", "--without-gossip",
             "--without-mingle"],
        ),
        Process(
            "beat",
            [python, "-m", "celery", "-A", "stagepulse", "beat", "--loglevel=WARNING",
             f"--schedule={settings.CELERY_BEAT_SCHEDULE_FILENAME}"],
        ),
        Process(
            "analyzer",
            [python, "manage.py", "analysis_worker", "--backend", "local", "--wait", "2",
             "--batch-window", "0.5", "--batch-size", "32"],
        ),
    ]  # fmt: skip


def child_environment(extra: dict[str, str]) -> dict[str, str]:
    return {**os.environ, "PYTHONUNBUFFERED": "1", "STAGEPULSE_ENV": "demo", **extra}


class ProcessGroup:
    """Runs named processes with prefixed output; stops cameras first so nothing is in flight."""

    COLORS = ["36", "33", "35", "32", "34", "31", "96", "93", "95", "92"]

    def __init__(self, env: dict[str, str], out=None):
        self.env = env
        self.out = out or sys.stdout
        self.children: dict[str, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def start(self, process: Process) -> None:
        child = subprocess.Popen(
            process.command,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the children in order
        )
        self.children[process.name] = child
        color = self.COLORS[len(self.children) % len(self.COLORS)]
        prefix = (
            f"\033[{color}m{process.name:<12}|\033[0m "
            if self.out.isatty()
            else (f"{process.name:<12}| ")
        )
        threading.Thread(target=self._pump, args=(child, prefix), daemon=True).start()

    def _pump(self, child: subprocess.Popen, prefix: str) -> None:
        for line in child.stdout:
            with self._lock:
                self.out.write(f"{time.strftime('%H:%M:%S')} {prefix}{line}")
                self.out.flush()

    def exited(self) -> list[str]:
        return [name for name, child in self.children.items() if child.poll() is not None]

    def stop(self, names: list[str] | None = None, timeout_s: float = 15.0) -> None:
        chosen = [n for n in (names or list(self.children)) if n in self.children]
        for name in chosen:
            if self.children[name].poll() is None:
                self.children[name].send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for name in chosen:
            wait_or_kill(self.children[name], max(0.1, deadline - time.monotonic()))


def wait_or_kill(child: subprocess.Popen, timeout_s: float) -> None:
    """Wait for a child told to stop; one still busy after `timeout_s` is killed, so stopping
    the demo never ends in a traceback on a loaded machine."""
    try:
        child.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def queue_depth(queue_url: str) -> int:
    """Messages waiting or in flight on the analysis queue."""

    attributes = aws.client("sqs").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return sum(int(value) for value in attributes.values())


def drain(queue_url: str, timeout_s: float = 60.0) -> int:
    """Wait until the analyzer has emptied its queue; returns what is left (0 when drained)."""
    deadline = time.monotonic() + timeout_s
    depth = queue_depth(queue_url)
    while depth and time.monotonic() < deadline:
        time.sleep(1.0)
        depth = queue_depth(queue_url)
    return depth


# The demo's comparison run (docs/comparison.md): this stage's camera runs in edge mode, so that
# both modes have real traffic, and every camera samples this share of its crops.
DEMO_EDGE_STAGE = "harbour"
DEMO_COMPARISON_SAMPLE_RATE = 0.25


def start_demo_comparison(festival, hours: float = 3.0):
    """A comparison run over the demo's cameras, started when the demo starts, so a new user
    finds one on the admin's Comparison runs page. There is no Rekognition in the demo: its page
    shows the measured bandwidth and latency of both modes and says that agreement needs
    Rekognition. A run left over from an earlier demo is cancelled first."""
    now = timezone.now()
    for run in ComparisonRun.objects.filter(
        festival=festival, cancelled_at__isnull=True, ends_at__gt=now
    ):
        comparison.cancel_comparison(run, now=now)
    cameras = list(
        Device.objects.filter(festival=festival, stage__isnull=False).select_related(
            "festival", "stage"
        )
    )
    for device in cameras:
        if device.stage.slug == DEMO_EDGE_STAGE and device.config.get("mode") != "edge":
            update_device(device, config={**device.config, "mode": "edge"})
    return comparison.start_comparison(
        festival,
        cameras,
        ends_at=now + timedelta(hours=hours),
        sample_rate=DEMO_COMPARISON_SAMPLE_RATE,
        name="Demo: cloud or edge?",
    )
