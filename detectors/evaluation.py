"""Detector accuracy and speed on a clip with ground truth: a synthetic crowd, or a recorded video
with labelled boxes (an organization's own clip, for the model gate).

Server-side code: it never ships to a camera (the release zip holds `edge_package/` only). Shared
by the edge benchmark (`bench/bench_edge.py`) and the server's model evaluation gate
(`detectors.services`), so both report the same recall / precision / fps figures: the real capture
loop (EdgeRunner.process_frame: detect, mask/gate, dedupe/throttle, JPEG-encode what is released)
is timed; rendering the synthetic frame and the ground-truth bookkeeping are not. The throttle
runs on the clip's own timeline, so upload figures do not depend on machine speed.

Faces smaller than `min_face` px are "don't care": finding them is neither a hit nor a false alarm.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import cv2

from edge_package.detect import iou
from edge_package.sources import Frame

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
    # Sensor noise (grey levels, per pixel and frame): at 8 every fine tile reads as moving, the
    # camera's worst case for the tile schedule (edge_package.detect, IDLE_SWEEPS).
    noise: float = 0.0

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


def evaluate_frames(
    detector,
    frames: Iterable[Frame],
    *,
    fps: float,
    threshold: float,
    min_face: int = MIN_FACE,
    on_frame=None,
    sink=None,
    score_from: int = 0,
) -> dict:
    """Run the capture loop over `frames` (edge_package.sources.Frame, in order) with `detector`;
    recall, precision and fps (frames per second of process_frame), plus upload counts.

    The throttle runs on the clip's timeline (frame.index / fps). A frame whose `truth` is None is
    not labelled: it goes through the loop (tracker and throttle see it) but is not scored; an
    empty list is a labelled frame without faces (every detection there is a false alarm). Frames
    before `score_from` go through the loop unscored (a scheduled detector's first sweep).
    `on_frame(frame, detections, config)` sees each frame after it was processed."""
    from edge_package.config import parse_config
    from edge_package.pipeline import EdgeRunner

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
    totals = {"tp": 0, "fp": 0, "fn": 0, "tp06": 0, "fp06": 0, "fn06": 0}
    busy = busy_cpu = 0.0
    detections = 0
    played = 0
    last_index = -1
    for frame in frames:
        if played == 0:
            # One untimed warm-up pass (interpreter and delegate set-up), so the first model
            # scored in a process is not slower on paper than the second.
            detector.detect(frame.image)
            if hasattr(detector, "reset"):
                detector.reset()  # the warm-up must not leave faces held or tiles visited
        started, started_cpu = time.perf_counter(), time.thread_time()
        runner.process_frame(frame, frame.index / fps)
        busy += time.perf_counter() - started
        busy_cpu += time.thread_time() - started_cpu
        played += 1
        last_index = frame.index
        detections += len(recorder.last)
        if frame.truth is not None and frame.index >= score_from:
            tp, fp, fn = score_frame(recorder.last, frame.truth, min_face=min_face)
            totals["tp"] += tp
            totals["fp"] += fp
            totals["fn"] += fn
            tp, fp, fn = score_frame(recorder.last, frame.truth, 0.6, min_face=min_face)
            totals["tp06"] += tp
            totals["fp06"] += fp
            totals["fn06"] += fn
        if on_frame is not None:
            on_frame(frame, recorder.last, cfg)
    runner.flush((last_index + 1) / fps)
    return {
        "fps": played / busy if busy > 0 else 0.0,
        # The same loop on this thread's CPU time: what a quiet machine's wall clock would show
        # (one thread), much less disturbed by other work on a shared machine.
        "cpu_fps": played / busy_cpu if busy_cpu > 0 else 0.0,
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


def synthetic_frames(clip: Clip) -> Iterator[Frame]:
    """The clip's frames, rendered in order (each Frame.truth lists every face)."""
    from edge_package.synthetic import SyntheticCrowdSource

    source = SyntheticCrowdSource(
        width=clip.width,
        height=clip.height,
        faces=clip.faces,
        min_face=clip.min_face,
        max_face=clip.max_face,
        dwell=int(clip.dwell_s * clip.fps),
        seed=clip.seed,
        noise=clip.noise,
    )
    for index in range(clip.frames):
        yield source.render(index)


def evaluate(
    detector, clip: Clip, *, threshold: float, on_frame=None, sink=None, score_from: int = 0
) -> dict:
    """Run the capture loop over the synthetic `clip` with `detector` (evaluate_frames)."""
    return evaluate_frames(
        detector,
        synthetic_frames(clip),
        fps=clip.fps,
        threshold=threshold,
        min_face=clip.min_face,
        on_frame=on_frame,
        sink=sink,
        score_from=score_from,
    )


# --- recorded, labelled clips --------------------------------------------------------------------
# Annotation format (docs/detectors.md): JSON
#   {"fps": 15, "min_face": 48, "frames": {"0": [[x, y, w, h], ...], "12": [], ...}}
# Boxes are pixels, top-left corner, inside the frame. A listed frame is labelled (an empty list:
# no face in it, so any detection there is a false alarm); frames not listed are played through
# the loop but not scored. `fps` (default: the video's own) sets the throttle's timeline;
# `min_face` (default MIN_FACE) makes smaller labelled faces "don't care", as in the bench.


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float  # as the container says; 0.0 when it does not


@dataclass(frozen=True)
class Annotations:
    boxes: dict  # frame index -> tuple of (x, y, w, h)
    fps: float | None = None
    min_face: int = MIN_FACE

    @property
    def labelled_frames(self) -> int:
        return len(self.boxes)

    @property
    def faces(self) -> int:
        return sum(len(b) for b in self.boxes.values())

    def as_json(self) -> dict:
        """The normalised document (the format above), as stored beside the video."""
        doc: dict = {
            "min_face": self.min_face,
            "frames": {str(i): [list(b) for b in boxes] for i, boxes in sorted(self.boxes.items())},
        }
        if self.fps is not None:
            doc["fps"] = self.fps
        return doc

    def truth(self, index: int) -> list | None:
        """Frame.truth for a frame: (face_id, x, y, w, h) tuples, or None when not labelled."""
        if index not in self.boxes:
            return None
        return [(n, *box) for n, box in enumerate(self.boxes[index])]


# The largest frame a labelled clip may have (4K UHD): a bigger one costs the gate too much memory.
MAX_FRAME_PIXELS = 3840 * 2160


class VideoTooLarge(ValueError):
    """A readable video with too many frames or frames too large to be played through the loop."""


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _number(value) and math.isfinite(value)


def _refuse_constant(name: str):
    # Python's json accepts NaN, Infinity and -Infinity: not JSON, and PostgreSQL refuses them.
    raise ValueError(f"annotations are not valid JSON: {name} is not allowed (use finite numbers)")


def parse_annotations(raw, *, frames: int, width: int, height: int) -> Annotations:
    """Check an annotation document (str, bytes or an already-parsed dict) against the video it
    labels; ValueError with a message that names the problem (and the frame) otherwise."""
    if isinstance(raw, (bytes, bytearray)):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError("annotations are not UTF-8 text (expected a JSON document)") from exc
    if isinstance(raw, str):
        try:
            raw = json.loads(raw, parse_constant=_refuse_constant)
        except RecursionError as exc:
            raise ValueError(
                "annotations are nested too deeply (not an annotation document)"
            ) from exc
        except ValueError as exc:
            if str(exc).startswith("annotations are"):
                raise
            raise ValueError(f"annotations are not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError('annotations must be a JSON object like {"frames": {"0": [[x, y, w, h]]}}')
    unknown = set(raw) - {"fps", "min_face", "frames"}
    if unknown:
        raise ValueError(
            f"unknown annotation keys {', '.join(sorted(unknown))}: use fps, min_face, frames"
        )
    fps = raw.get("fps")
    if fps is not None and (not _finite(fps) or not 0 < fps <= 240):
        raise ValueError(f"fps {fps!r} must be a number above 0 and at most 240")
    min_face = raw.get("min_face", MIN_FACE)
    if not isinstance(min_face, int) or isinstance(min_face, bool) or min_face < 8:
        raise ValueError(f"min_face {min_face!r} must be a whole number of pixels, at least 8")
    labelled = raw.get("frames")
    if not isinstance(labelled, dict):
        raise ValueError('annotations need "frames": an object of frame index -> list of boxes')
    boxes: dict[int, tuple] = {}
    for key, items in labelled.items():
        if not str(key).isdigit():
            raise ValueError(f"frame index {key!r} is not a whole number >= 0")
        index = int(key)
        if index >= frames:
            raise ValueError(
                f"frame {index} is outside the video, which has {frames} frames (0..{frames - 1})"
            )
        if index in boxes:
            raise ValueError(f"frame {index} is labelled twice")
        if not isinstance(items, list):
            raise ValueError(f"frame {index}: expected a list of [x, y, w, h] boxes")
        frame_boxes = []
        for n, box in enumerate(items):
            where = f"frame {index}, box {n}"
            if not isinstance(box, list) or len(box) != 4 or not all(map(_number, box)):
                raise ValueError(f"{where}: expected [x, y, w, h] in pixels, got {box!r}")
            if not all(map(math.isfinite, box)):
                raise ValueError(f"{where}: [x, y, w, h] must be finite numbers, got {box!r}")
            x, y, w, h = box
            if w <= 0 or h <= 0:
                raise ValueError(f"{where}: width and height must be positive, got {w} x {h}")
            if x < 0 or y < 0 or x + w > width or y + h > height:
                raise ValueError(
                    f"{where}: [{x}, {y}, {w}, {h}] is outside the {width}x{height} frame"
                )
            frame_boxes.append(tuple(box))
        boxes[index] = tuple(frame_boxes)
    if not boxes:
        raise ValueError('no labelled frame: list at least one frame under "frames"')
    return Annotations(boxes=boxes, fps=float(fps) if fps is not None else None, min_face=min_face)


def probe_video(
    path: str, *, max_frames: int | None = None, max_pixels: int = MAX_FRAME_PIXELS
) -> VideoInfo:
    """Size, frame count (by decoding every frame: containers' counts can lie) and fps of a video
    file; ValueError when OpenCV cannot read it or its frames change size, VideoTooLarge (a
    ValueError) when it has more than `max_frames` frames (decoding stops at the one past the cap)
    or frames of more than `max_pixels` pixels (checked on the header and the first frame)."""

    def check_size(width: int, height: int) -> None:
        if width * height > max_pixels:
            raise VideoTooLarge(
                f"its {width}x{height} frames are larger than {max_pixels} pixels (at most 4K UHD,"
                " 3840x2160)"
            )

    capture = cv2.VideoCapture(path)
    try:
        if not capture.isOpened():
            raise ValueError("the video cannot be opened (not a video file OpenCV can decode)")
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        # The container's size, before decoding anything (a huge first frame costs memory too).
        check_size(
            int(capture.get(cv2.CAP_PROP_FRAME_WIDTH) or 0),
            int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT) or 0),
        )
        count, size = 0, None
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                break
            shape = image.shape[:2]
            if size is None:
                check_size(shape[1], shape[0])
                size = shape
            elif shape != size:
                raise ValueError(f"frame {count} is {shape[1]}x{shape[0]}, not {size[1]}x{size[0]}")
            count += 1
            if max_frames is not None and count > max_frames:
                raise VideoTooLarge(f"it has more than {max_frames} frames")
    finally:
        capture.release()
    if size is None:
        raise ValueError("the video has no frame OpenCV can decode")
    return VideoInfo(width=size[1], height=size[0], frames=count, fps=fps)


def clip_fps(annotations: Annotations, info: VideoInfo) -> float:
    """The clip's timeline: the annotations' fps, else the video's, else 15."""
    return annotations.fps or (info.fps if 0 < info.fps <= 240 else 15.0)


def recorded_frames(path: str, annotations: Annotations, *, fps: float) -> Iterator[Frame]:
    """Every frame of a video file, in order, with its labelled boxes as truth (None if none)."""
    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise ValueError("the video cannot be opened (not a video file OpenCV can decode)")
    try:
        index = 0
        while True:
            ok, image = capture.read()
            if not ok or image is None:
                return
            yield Frame(
                image=image,
                index=index,
                captured_at_ms=int(index * 1000 / fps),
                truth=annotations.truth(index),
            )
            index += 1
    finally:
        capture.release()


def evaluate_recording(detector, path: str, annotations: Annotations, *, threshold: float) -> dict:
    """The capture loop over a recorded, labelled clip; the same figures as `evaluate`, plus the
    clip's frame counts."""
    info = probe_video(path)
    fps = clip_fps(annotations, info)
    figures = evaluate_frames(
        detector,
        recorded_frames(path, annotations, fps=fps),
        fps=fps,
        threshold=threshold,
        min_face=annotations.min_face,
    )
    figures.update(frames=info.frames, labelled_frames=annotations.labelled_frames, clip_fps=fps)
    return figures


# --- per face size -------------------------------------------------------------------------------
SIZES_PX = (24, 32, 48, 64, 96)
# When faces of one size are scored, detections and faces under this many px are "don't care".
SIZE_FLOOR_PX = 16


def size_clip(size: int, *, frames: int, seed: int, faces: int = 16) -> Clip:
    """A 1080p crowd clip whose faces are all exactly `size` px wide."""
    return Clip(frames=frames, faces=faces, seed=seed, min_face=size, max_face=size)


def evaluate_size(
    detector, size: int, *, frames: int, seed: int, threshold: float, score_from: int = 0, **kw
) -> dict:
    """The capture loop over a clip of `size` px faces only (never pooled with other sizes)."""
    clip = size_clip(size, frames=frames, seed=seed)
    return evaluate_frames(
        detector,
        synthetic_frames(clip),
        fps=clip.fps,
        threshold=threshold,
        min_face=min(size, SIZE_FLOOR_PX),
        score_from=score_from,
        **kw,
    )
