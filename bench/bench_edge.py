"""Edge benchmark: the real capture loop on a synthetic 1080p crowd clip with ground truth.

`python -m bench.bench_edge` (about 1-2 minutes on 2 cores), one thread. Only
EdgeRunner.process_frame is timed (detect, mask/gate, dedupe/throttle, JPEG-encode what is
released); rendering the synthetic frame and the ground-truth bookkeeping are not. The throttle
runs on the clip's own timeline (15 fps), so upload figures do not depend on machine speed.
"""

from __future__ import annotations

import argparse
import os
import time

import cv2

from bench.results import record
from edge_package.config import parse_config
from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from edge_package.detect import BlazeFaceDetector, HaarDetector, iou
from edge_package.pipeline import EdgeRunner
from edge_package.synthetic import SyntheticCrowdSource

os.environ.setdefault("OMP_NUM_THREADS", "1")
CLIP_FPS = 15.0
MIN_FACE = 48
MATCH_IOU = 0.4


class CountingSink:
    """Counts what the loop would send (the bench measures the loop, not the network)."""

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


def score_frame(detections, truth, min_score=0.0):
    """(true positives, false positives, misses) for faces >= MIN_FACE px; smaller faces are
    'don't care': finding them is neither a hit nor a false alarm."""
    dets = [d for d in detections if d.score >= min_score]
    big = [t for t in truth if max(t[3], t[4]) >= MIN_FACE]
    small = [t for t in truth if max(t[3], t[4]) < MIN_FACE]
    matched, tp, fp = set(), 0, 0
    for det in sorted(dets, key=lambda d: -d.score):
        best = max(big, key=lambda t: iou(det.box, t[1:]), default=None)
        if best is not None and best[0] not in matched and iou(det.box, best[1:]) >= MATCH_IOU:
            matched.add(best[0])
            tp += 1
        elif det.size < MIN_FACE or any(iou(det.box, t[1:]) >= MATCH_IOU for t in small):
            continue
        else:
            fp += 1
    return tp, fp, len(big) - len(matched)


def run_clip(detector, frames: int, *, faces: int, seed: int, threshold: float, lingering=True):
    cfg = parse_config(
        {
            "device": "bench",
            "festival": "bench",
            "stage": "main",
            "bucket": "unused",
            "detection_threshold": threshold,
        }
    )
    sink = CountingSink()
    recorder = RecordingDetector(detector)
    runner = EdgeRunner(cfg, detector=recorder, sink=sink)
    source = SyntheticCrowdSource(
        faces=faces, min_face=MIN_FACE, max_face=160, dwell=int(24 * CLIP_FPS), seed=seed
    )
    totals = {"tp": 0, "fp": 0, "fn": 0, "tp06": 0, "fp06": 0, "fn06": 0}
    positions: dict[int, list] = {}
    detected_ids: set[int] = set()
    busy = 0.0
    detections = 0
    frame_jpeg_bytes = 0
    for index in range(frames):
        frame = source.render(index)
        started = time.perf_counter()
        runner.process_frame(frame, index / CLIP_FPS)
        busy += time.perf_counter() - started
        detections += len(recorder.last)
        tp, fp, fn = score_frame(recorder.last, frame.truth)
        totals["tp"] += tp
        totals["fp"] += fp
        totals["fn"] += fn
        tp, fp, fn = score_frame(recorder.last, frame.truth, min_score=0.6)
        totals["tp06"] += tp
        totals["fp06"] += fp
        totals["fn06"] += fn
        if lingering:
            for face_id, *box in frame.truth:
                positions.setdefault(face_id, []).append(box)
                if any(iou(d.box, box) >= MATCH_IOU for d in recorder.last):
                    detected_ids.add(face_id)
            ok, buf = cv2.imencode(
                ".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality]
            )
            frame_jpeg_bytes += len(buf)
    runner.flush(frames / CLIP_FPS)
    result = {
        "fps": frames / busy,
        "recall": totals["tp"] / max(1, totals["tp"] + totals["fn"]),
        "precision": totals["tp"] / max(1, totals["tp"] + totals["fp"]),
        "recall_at_0_6": totals["tp06"] / max(1, totals["tp06"] + totals["fn06"]),
        "precision_at_0_6": totals["tp06"] / max(1, totals["tp06"] + totals["fp06"]),
        "uploads": len(sink.releases),
        "budget_refusals": runner.throttle.budget.refused,
        "naive_uploads": detections,
        "bytes_sent": sink.bytes,
        "frame_jpeg_bytes": frame_jpeg_bytes,
    }
    if lingering:
        need = 2 * cfg.throttle_interval_s * CLIP_FPS
        long_faces = [fid for fid, boxes in positions.items() if len(boxes) >= need]
        covered = [
            fid
            for fid in long_faces
            if any(iou(box, pos) > 0.3 for box in sink.releases for pos in positions[fid])
        ]
        result["lingering_faces"] = len(long_faces)
        result["lingering_faces_sent"] = len(covered)
        # Split detector misses from throttle misses: of the lingering faces the detector saw at
        # least once, how many did the throttle send?
        result["lingering_faces_detected"] = len([f for f in long_faces if f in detected_ids])
    return result


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=600, help="clip length (15 fps)")
    parser.add_argument("--haar-frames", type=int, default=3, help="the cascade takes ~9 s/frame")
    parser.add_argument("--faces", type=int, default=16)
    # 0.45 was chosen on a different seed (11) than the one reported here (2026): see docs/edge.md.
    parser.add_argument("--threshold", type=float, default=0.45)
    parser.add_argument("--seed", type=int, default=2026)
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)

    blaze = BlazeFaceDetector(threshold=args.threshold, threads=1)
    ours = run_clip(blaze, args.frames, faces=args.faces, seed=args.seed, threshold=args.threshold)
    haar = HaarDetector(min_size=MIN_FACE - 8)
    cascade = run_clip(
        haar,
        args.haar_frames,
        faces=args.faces,
        seed=args.seed,
        threshold=args.threshold,
        lingering=False,
    )
    figures = {
        "fps_1080p": round(ours["fps"], 2),
        "recall_48px": round(ours["recall"], 4),
        "precision": round(ours["precision"], 4),
        "upload_ratio_vs_naive": round(ours["uploads"] / max(1, ours["naive_uploads"]), 5),
        "bytes_ratio_vs_frames": round(ours["bytes_sent"] / max(1, ours["frame_jpeg_bytes"]), 5),
        "lingering_faces": ours["lingering_faces"],
        "lingering_faces_sent": ours["lingering_faces_sent"],
        "lingering_faces_detected": ours["lingering_faces_detected"],
        "uploads": ours["uploads"],
        "naive_uploads": ours["naive_uploads"],
        "budget_refusals": ours["budget_refusals"],
        "bytes_sent": ours["bytes_sent"],
        "frame_jpeg_bytes": ours["frame_jpeg_bytes"],
        # The same run scored at the contract's default threshold (0.6), for comparison.
        "recall_48px_at_threshold_0_6": round(ours["recall_at_0_6"], 4),
        "precision_at_threshold_0_6": round(ours["precision_at_0_6"], 4),
        "settings": {
            "frames": args.frames,
            "clip_fps": CLIP_FPS,
            "faces_on_screen": args.faces,
            "face_px": [MIN_FACE, 160],
            "detector": "blazeface full range, pyramid of whole frame + tiles, 1 thread",
            "detection_threshold": args.threshold,
            "match_iou": MATCH_IOU,
            "throttle_interval_s": EDGE_CONFIG_DEFAULTS["throttle_interval_s"],
            "jpeg_quality": EDGE_CONFIG_DEFAULTS["jpeg_quality"],
        },
        "haar": {
            "backend": haar.backend,
            "frames": args.haar_frames,
            "fps_1080p": round(cascade["fps"], 2),
            "recall_48px": round(cascade["recall"], 4),
            "precision": round(cascade["precision"], 4),
        },
    }
    saved = record("edge", figures)
    for key, value in saved.items():
        print(f"{key}: {value}")
    return saved


if __name__ == "__main__":
    main()
