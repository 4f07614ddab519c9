"""Edge benchmark: the real capture loop on a synthetic 1080p crowd clip with ground truth.

The loop and the scoring live in detectors/evaluation.py, shared with the face model gate.

`python -m bench.bench_edge` (about 6-8 minutes on 2 cores), one thread. Only
EdgeRunner.process_frame is timed (detect, mask/gate, dedupe/throttle, JPEG-encode what is
released); rendering the synthetic frame and the ground-truth bookkeeping are not. The throttle
runs on the clip's own timeline (15 fps), so upload figures do not depend on machine speed.
"""

from __future__ import annotations

import argparse
import os

import cv2

from bench.bench_edge_motion import FIGURE_KEYS as MOTION_FIGURE_KEYS
from bench.results import figures_of_others, record
from detectors.evaluation import (
    MATCH_IOU,
    MIN_FACE,
    SIZE_FLOOR_PX,
    SIZES_PX,
    Clip,
    CountingSink,
    evaluate,
    evaluate_frames,
    size_clip,
    synthetic_frames,
)
from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from edge_package.detect import CAMERA_SCHEDULE, BlazeFaceDetector, DetectorError, HaarDetector, iou

os.environ.setdefault("OMP_NUM_THREADS", "1")
CLIP_FPS = 15.0
NOISY_SENSOR = 8.0  # grey levels: a night camera whose noise trips the tile motion everywhere


def run_clip(
    detector,
    frames: int,
    *,
    faces: int,
    seed: int,
    threshold: float,
    lingering=True,
    score_from=0,
    noise: float = 0.0,
):
    clip = Clip(frames=frames, faces=faces, seed=seed, min_face=MIN_FACE, fps=CLIP_FPS, noise=noise)
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

    result = evaluate(
        detector, clip, threshold=threshold, on_frame=on_frame, sink=sink, score_from=score_from
    )
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


def camera_detector(threshold: float) -> BlazeFaceDetector:
    """What EdgeRunner runs on the camera (edge_package.detect.CAMERA_SCHEDULE), one thread."""
    return BlazeFaceDetector(threshold=threshold, threads=1, **CAMERA_SCHEDULE)


def pyramid_detector(threshold: float) -> BlazeFaceDetector:
    """The detector before the small-faces work: whole frame + 0.325 tiles, every frame."""
    return BlazeFaceDetector(threshold=threshold, threads=1)


def _latency(first_seen: dict, first_found: dict) -> dict:
    """Frames from a face's first frame on screen to its first fresh detection, for the faces
    that came into view during the clip (not those already there when the camera started)."""
    waits = sorted(first_found[f] - first_seen[f] for f in first_seen if f in first_found)
    never = len([f for f in first_seen if f not in first_found])
    if not waits:
        return {"faces": never, "never_found": never}

    def pct(q):
        return waits[min(len(waits) - 1, int(q * len(waits)))]

    return {
        "faces": len(waits) + never,
        "never_found": never,
        "p50": pct(0.5),
        "p95": pct(0.95),
        "max": waits[-1],
    }


def by_size(detector, *, frames: int, seed: int, threshold: float, score_from: int, real=None):
    """Recall, precision and fps per face size: synthetic clips of exactly that size, or, with
    `real` (bench.real_photos patches), still crowds of real faces rescaled to it."""
    from bench.real_photos import real_frames

    out = {}
    for size in SIZES_PX:
        if hasattr(detector, "reset"):
            detector.reset()
        first_seen: dict = {}
        first_found: dict = {}

        def on_frame(frame, detections, cfg, first_seen=first_seen, first_found=first_found):
            for face_id, *box in frame.truth:
                if frame.index == 0:
                    first_seen.setdefault(face_id, None)  # there at start-up: not a latency
                elif face_id not in first_seen:
                    first_seen[face_id] = frame.index
                if face_id not in first_found and any(
                    not getattr(d, "held", False) and iou(d.box, box) >= MATCH_IOU
                    for d in detections
                ):
                    first_found[face_id] = frame.index

        if real is None:
            source, fps = synthetic_frames(size_clip(size, frames=frames, seed=seed)), CLIP_FPS
        else:
            source, fps = real_frames(real, size, frames=frames, seed=seed), CLIP_FPS
        result = evaluate_frames(
            detector,
            source,
            fps=fps,
            threshold=threshold,
            min_face=min(size, SIZE_FLOOR_PX),
            on_frame=on_frame,
            score_from=score_from,
        )
        seen = {f: i for f, i in first_seen.items() if i is not None}
        result["first_found_frames"] = _latency(seen, first_found)
        out[str(size)] = result
    return out


def _table(results: dict, key: str, digits: int = 3) -> dict:
    return {size: round(r[key], digits) for size, r in results.items()}


def _mean_fps(results: dict) -> float:
    return round(sum(r["fps"] for r in results.values()) / max(1, len(results)), 2)


def peer_figures(name, make, args, patches) -> dict:
    """A peer detector on the same per-size clips (few frames: they are slow and stateless)."""
    try:
        detector = make()
    except DetectorError as exc:
        return {"absent": str(exc)}
    frames = args.peer_frames if name != "haar" else args.haar_frames
    synthetic = by_size(
        detector, frames=frames, seed=args.seed, threshold=args.threshold, score_from=0
    )
    figures = {
        "recall_by_size_px": _table(synthetic, "recall"),
        "precision_by_size_px": _table(synthetic, "precision"),
        "fps_1080p": _mean_fps(synthetic),
        "frames_per_size": frames,
    }
    if patches and name != "haar":
        real = by_size(
            detector, frames=1, seed=0, threshold=args.threshold, score_from=0, real=patches
        )
        figures["real_photo_recall_by_size_px"] = _table(real, "recall")
        figures["real_photo_precision_by_size_px"] = _table(real, "precision")
    if hasattr(detector, "backend"):
        figures["backend"] = detector.backend
    return figures


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--frames", type=int, default=600, help="main clip length (15 fps)")
    parser.add_argument("--size-frames", type=int, default=150, help="per-size clip length")
    parser.add_argument("--real-frames", type=int, default=45, help="real-photo still, frames")
    parser.add_argument("--before-frames", type=int, default=45, help="per size, old detector")
    parser.add_argument("--peer-frames", type=int, default=3, help="per size, CenterFace")
    parser.add_argument("--haar-frames", type=int, default=1, help="per size; ~10 s a frame")
    parser.add_argument(
        "--warmup", type=int, default=15, help="frames not scored at start (the first sweep)"
    )
    parser.add_argument("--peers", default="centerface,res10_ssd,haar", help="'' for none")
    parser.add_argument("--faces", type=int, default=16)
    # 0.45 was chosen on a different seed (11) than the one reported here (2026): see docs/edge.md.
    parser.add_argument("--threshold", type=float, default=0.45)
    parser.add_argument("--seed", type=int, default=2026)
    # Over-fitting guard: the schedule was tuned on seeds 11, 2026 and 7 (the full-resolution
    # min score); 3 and 42 were first run after it. The same per-size clips on each, reported
    # apart (recall_by_size_px_seed<k>).
    parser.add_argument("--extra-seeds", default="11,7,3,42", help="'' for none")
    parser.add_argument("--seed-frames", type=int, default=90, help="per size, extra seeds")
    # Worst case for the tile schedule: sensor noise makes every fine tile read as moving, so no
    # tile is idle (fps_1080p_cpu_all_moving).
    parser.add_argument("--noisy-frames", type=int, default=150, help="0 to skip")
    parser.add_argument(
        "--dry-run", action="store_true", help="print the figures, do not write results.json"
    )
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    from bench.peers import CenterFace, Res10SSD
    from bench.real_photos import load_faces

    patches, missing_photos = load_faces()
    ours_detector = camera_detector(args.threshold)
    ours = run_clip(
        ours_detector,
        args.frames,
        faces=args.faces,
        seed=args.seed,
        threshold=args.threshold,
        score_from=args.warmup,
    )
    sizes = by_size(
        ours_detector,
        frames=args.size_frames,
        seed=args.seed,
        threshold=args.threshold,
        score_from=args.warmup,
    )
    extra_seeds = {}
    for seed in [int(k) for k in filter(None, args.extra_seeds.split(","))]:
        extra_seeds[seed] = by_size(
            ours_detector,
            frames=args.seed_frames,
            seed=seed,
            threshold=args.threshold,
            score_from=args.warmup,
        )
    noisy = None
    if args.noisy_frames:
        ours_detector.reset()
        noisy = run_clip(
            ours_detector,
            args.noisy_frames,
            faces=args.faces,
            seed=args.seed,
            threshold=args.threshold,
            lingering=False,
            score_from=args.warmup,
            noise=NOISY_SENSOR,
        )
    real = (
        by_size(
            ours_detector,
            frames=args.real_frames,
            seed=0,
            threshold=args.threshold,
            score_from=args.warmup,
            real=patches,
        )
        if patches
        else {}
    )
    old = pyramid_detector(args.threshold)
    before_sizes = by_size(
        old, frames=args.before_frames, seed=args.seed, threshold=args.threshold, score_from=0
    )
    before_real = (
        by_size(old, frames=2, seed=0, threshold=args.threshold, score_from=0, real=patches)
        if patches
        else {}
    )
    makers = {
        "centerface": CenterFace,
        "res10_ssd": Res10SSD,
        "haar": lambda: HaarDetector(min_size=SIZE_FLOOR_PX + 4),
    }
    peers = {
        name: peer_figures(name, makers[name], args, patches)
        for name in filter(None, args.peers.split(","))
    }
    figures = {
        "fps_1080p": round(ours["fps"], 2),
        "fps_1080p_cpu": round(ours["cpu_fps"], 2),
        "recall_48px": round(ours["recall"], 4),
        "precision": round(ours["precision"], 4),
        "recall_by_size_px": _table(sizes, "recall"),
        "precision_by_size_px": _table(sizes, "precision"),
        "fps_by_size_px": _table(sizes, "fps", 2),
        "cpu_fps_by_size_px": _table(sizes, "cpu_fps", 2),
        "first_found_frames_by_size_px": {k: r["first_found_frames"] for k, r in sizes.items()},
        "real_photo_recall_by_size_px": _table(real, "recall"),
        "real_photo_precision_by_size_px": _table(real, "precision"),
        "real_photos_missing": missing_photos,
        "before": {
            "detector": "blazeface full range, whole frame + 0.325 tiles every frame (9 runs)",
            "recall_by_size_px": _table(before_sizes, "recall"),
            "precision_by_size_px": _table(before_sizes, "precision"),
            "real_photo_recall_by_size_px": _table(before_real, "recall"),
            "real_photo_precision_by_size_px": _table(before_real, "precision"),
            "fps_1080p": _mean_fps(before_sizes),
            "frames_per_size": args.before_frames,
        },
        "peers": peers,
        **{
            f"{name}_seed{seed}": _table(results, key)
            for seed, results in extra_seeds.items()
            for name, key in (
                ("recall_by_size_px", "recall"),
                ("precision_by_size_px", "precision"),
            )
        },
        **(
            {
                "fps_1080p_cpu_all_moving": round(noisy["cpu_fps"], 2),
                "recall_48px_all_moving": round(noisy["recall"], 4),
                "precision_all_moving": round(noisy["precision"], 4),
            }
            if noisy
            else {}
        ),
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
            "size_frames": args.size_frames,
            "real_frames": args.real_frames,
            "warmup_frames_not_scored": args.warmup,
            "clip_fps": CLIP_FPS,
            "faces_on_screen": args.faces,
            "face_px": [MIN_FACE, 160],
            "sizes_px": list(SIZES_PX),
            "size_floor_px": SIZE_FLOOR_PX,
            "seed": args.seed,
            "extra_seeds": sorted(extra_seeds),
            "seed_frames": args.seed_frames,
            "all_moving": f"the main clip, {args.noisy_frames} frames, sensor noise {NOISY_SENSOR}"
            " grey levels (every fine tile reads as moving)",
            "detector": "blazeface full range; whole frame every frame, tiles at "
            + ", ".join(f"{lv[0]} ({lv[1]}/frame)" for lv in CAMERA_SCHEDULE["scheduled"])
            + f" round-robin, motion first, faces held between visits, at most"
            f" {CAMERA_SCHEDULE.get('max_runs', 0) or 'any'} model runs a frame; 1 thread",
            "detection_threshold": args.threshold,
            "match_iou": MATCH_IOU,
            "throttle_interval_s": EDGE_CONFIG_DEFAULTS["throttle_interval_s"],
            "jpeg_quality": EDGE_CONFIG_DEFAULTS["jpeg_quality"],
        },
    }
    # bench_edge_motion's figures share the section: a rerun here keeps them
    motion = figures_of_others("edge", lambda key: key in MOTION_FIGURE_KEYS)
    saved = figures if args.dry_run else record("edge", {**motion, **figures})
    for key, value in saved.items():
        print(f"{key}: {value}")
    return saved


if __name__ == "__main__":
    main()
