"""Edge benchmark: the real capture loop on a synthetic 1080p crowd clip with ground truth.

The loop and the scoring live in detectors/evaluation.py, shared with the face model gate.

`python -m bench.bench_edge` (about 1-2 minutes on 2 cores), one thread. Only
EdgeRunner.process_frame is timed (detect, mask/gate, dedupe/throttle, JPEG-encode what is
released); rendering the synthetic frame and the ground-truth bookkeeping are not. The throttle
runs on the clip's own timeline (15 fps), so upload figures do not depend on machine speed.
"""

from __future__ import annotations

import argparse
import os

import cv2

from bench.results import record
from detectors.evaluation import MATCH_IOU, MIN_FACE, Clip, CountingSink, evaluate
from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from edge_package.detect import BlazeFaceDetector, HaarDetector, iou

os.environ.setdefault("OMP_NUM_THREADS", "1")
CLIP_FPS = 15.0


def run_clip(detector, frames: int, *, faces: int, seed: int, threshold: float, lingering=True):
    clip = Clip(frames=frames, faces=faces, seed=seed, min_face=MIN_FACE, fps=CLIP_FPS)
    sink = CountingSink()
    positions: dict[int, list] = {}
    detected_ids: set[int] = set()
    jpeg_bytes = [0]

    def on_frame(frame, detections, cfg):
        if not lingering:
            return
        for face_id, *box in frame.truth:
            positions.setdefault(face_id, []).append(box)
            if any(iou(d.box, box) >= MATCH_IOU for d in detections):
                detected_ids.add(face_id)
        ok, buf = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, cfg.jpeg_quality])
        jpeg_bytes[0] += len(buf)

    result = evaluate(detector, clip, threshold=threshold, on_frame=on_frame, sink=sink)
    result["frame_jpeg_bytes"] = jpeg_bytes[0]
    if lingering:
        need = 2 * result["throttle_interval_s"] * CLIP_FPS
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
