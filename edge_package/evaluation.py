"""Detector accuracy and speed on a synthetic crowd clip with ground truth.

Shared by the edge benchmark (`bench/bench_edge.py`) and the server's model evaluation gate
(`detectors.services`), so both report the same recall / precision / fps figures: the real capture
loop (EdgeRunner.process_frame: detect, mask/gate, dedupe/throttle, JPEG-encode what is released)
is timed; rendering the synthetic frame and the ground-truth bookkeeping are not. The throttle
runs on the clip's own timeline, so upload figures do not depend on machine speed.

Faces smaller than `min_face` px are "don't care": finding them is neither a hit nor a false alarm.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from edge_package.detect import iou

MIN_FACE = 48
MATCH_IOU = 0.4


@dataclass(frozen=True)
class Clip:
    """A synthetic crowd clip (edge_package.synthetic) and how it is scored.

    The defaults are the benchmark's 1080p clip; the gate and the tests pass smaller ones.
    """

    frames: int = 600
    width: int = 1920
    height: int = 1080
    faces: int = 16
    seed: int = 2026
    min_face: int = MIN_FACE
    max_face: int = 160
    fps: float = 15.0
    dwell_s: float = 24.0

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> Clip:
        """'frames=8,width=640,height=360' -> Clip; unknown or bad keys raise ValueError."""
        values: dict = {}
        fields = cls.__dataclass_fields__
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            key, sep, raw = part.partition("=")
            key = key.strip()
            if not sep or key not in fields:
                raise ValueError(f"clip parameter {part!r}: use {', '.join(fields)} as key=value")
            kind = float if fields[key].type in ("float", float) else int
            try:
                values[key] = kind(raw)
            except ValueError as exc:
                raise ValueError(f"clip parameter {key}: {raw!r} is not a number") from exc
        clip = cls(**values)
        if clip.frames < 1 or clip.width < 64 or clip.height < 64 or clip.faces < 1:
            raise ValueError("a clip needs frames >= 1, width and height >= 64 and faces >= 1")
        if not 8 <= clip.min_face <= clip.max_face:
            raise ValueError("a clip needs 8 <= min_face <= max_face")
        return clip


class CountingSink:
    """Counts what the loop would send (the evaluation measures the loop, not the network)."""

    def __init__(self):
        self.releases = []
        self.bytes = 0

    def send(self, release):
        self.releases.append(release.box)
        self.bytes += len(release.jpeg)


class RecordingDetector:
    """Keeps the last frame's detections so accuracy is scored on exactly what the loop saw."""

    def __init__(self, inner):
        self.inner = inner
        self.threshold = getattr(inner, "threshold", None)
        self.last = []

    def detect(self, frame):
        if self.threshold is not None:
            self.inner.threshold = self.threshold
        self.last = self.inner.detect(frame)
        return self.last


def score_frame(detections, truth, min_score=0.0, min_face=MIN_FACE):
    """(true positives, false positives, misses) for faces >= min_face px; smaller faces are
    'don't care': finding them is neither a hit nor a false alarm."""
    dets = [d for d in detections if d.score >= min_score]
    big = [t for t in truth if max(t[3], t[4]) >= min_face]
    small = [t for t in truth if max(t[3], t[4]) < min_face]
    matched, tp, fp = set(), 0, 0
    for det in sorted(dets, key=lambda d: -d.score):
        best = max(big, key=lambda t: iou(det.box, t[1:]), default=None)
        if best is not None and best[0] not in matched and iou(det.box, best[1:]) >= MATCH_IOU:
            matched.add(best[0])
            tp += 1
        elif det.size < min_face or any(iou(det.box, t[1:]) >= MATCH_IOU for t in small):
            continue
        else:
            fp += 1
    return tp, fp, len(big) - len(matched)


def evaluate(detector, clip: Clip, *, threshold: float, on_frame=None, sink=None) -> dict:
    """Run the capture loop over `clip` with `detector`; recall, precision and fps (frames per
    second of process_frame), plus upload counts. `on_frame(frame, detections, config)` sees each
    frame after it was processed (the benchmark measures lingering faces with it)."""
    from edge_package.config import parse_config
    from edge_package.pipeline import EdgeRunner
    from edge_package.synthetic import SyntheticCrowdSource

    cfg = parse_config(
        {
            "device": "bench",
            "festival": "bench",
            "stage": "main",
            "bucket": "unused",
            "detection_threshold": threshold,
        }
    )
    sink = sink if sink is not None else CountingSink()
    recorder = RecordingDetector(detector)
    runner = EdgeRunner(cfg, detector=recorder, sink=sink)
    source = SyntheticCrowdSource(
        width=clip.width,
        height=clip.height,
        faces=clip.faces,
        min_face=clip.min_face,
        max_face=clip.max_face,
        dwell=int(clip.dwell_s * clip.fps),
        seed=clip.seed,
    )
    totals = {"tp": 0, "fp": 0, "fn": 0, "tp06": 0, "fp06": 0, "fn06": 0}
    busy = 0.0
    detections = 0
    # One untimed warm-up pass (interpreter and delegate set-up), so the first model scored in a
    # process is not slower on paper than the second.
    detector.detect(source.render(0).image)
    for index in range(clip.frames):
        frame = source.render(index)
        started = time.perf_counter()
        runner.process_frame(frame, index / clip.fps)
        busy += time.perf_counter() - started
        detections += len(recorder.last)
        tp, fp, fn = score_frame(recorder.last, frame.truth, min_face=clip.min_face)
        totals["tp"] += tp
        totals["fp"] += fp
        totals["fn"] += fn
        tp, fp, fn = score_frame(recorder.last, frame.truth, 0.6, min_face=clip.min_face)
        totals["tp06"] += tp
        totals["fp06"] += fp
        totals["fn06"] += fn
        if on_frame is not None:
            on_frame(frame, recorder.last, cfg)
    runner.flush(clip.frames / clip.fps)
    return {
        "fps": clip.frames / busy if busy > 0 else 0.0,
        "recall": totals["tp"] / max(1, totals["tp"] + totals["fn"]),
        "precision": totals["tp"] / max(1, totals["tp"] + totals["fp"]),
        "recall_at_0_6": totals["tp06"] / max(1, totals["tp06"] + totals["fn06"]),
        "precision_at_0_6": totals["tp06"] / max(1, totals["tp06"] + totals["fp06"]),
        "faces_scored": totals["tp"] + totals["fn"],
        "true_positives": totals["tp"],
        "false_positives": totals["fp"],
        "uploads": len(sink.releases),
        "budget_refusals": runner.throttle.budget.refused,
        "naive_uploads": detections,
        "bytes_sent": sink.bytes,
        "throttle_interval_s": cfg.throttle_interval_s,
        "jpeg_quality": cfg.jpeg_quality,
    }
