"""Analyzer cost: local model throughput and DetectFaces calls per 1000 faces (mosaic batching).

Run: .venv/bin/python -m bench.bench_analysis  (writes the "analysis" section of results.json)

- local_faces_per_s: one thread, JPEG crop bytes -> decode -> fer TFLite -> eight scores, on real
  face crops cut from two portraits (skimage astronaut, matplotlib's grace_hopper.jpg) at several
  offsets and scales, the way the edge crops a face with margin.
- detectfaces_calls_per_1000_faces: 1000 crops through RekognitionBackend with botocore's Stubber
  answering each mosaic with one face per tile; every face must come back to its own crop.
"""

from __future__ import annotations

import io
import time

import boto3
import cv2
import numpy as np
import skimage.data
from botocore.stub import ANY, Stubber
from matplotlib import cbook
from PIL import Image

from bench.results import record
from edge_package.emotion_model import EmotionClassifier
from emotions.analysis.backends import LocalBackend, RekognitionBackend
from emotions.analysis.mosaic import MosaicLimits, plan


def _portraits() -> list[tuple[np.ndarray, tuple[int, int, int, int]]]:
    astronaut = skimage.data.astronaut()
    with cbook.get_sample_data("grace_hopper.jpg") as handle:
        grace = np.asarray(Image.open(handle).convert("RGB"))
    return [(astronaut, (170, 55, 285, 185)), (grace, (150, 130, 370, 340))]


def real_crops(count: int) -> list[bytes]:
    """JPEG face crops with jittered margins and sizes, as uploaded by the edge."""
    rng = np.random.default_rng(7)
    crops = []
    portraits = _portraits()
    for i in range(count):
        image, (x1, y1, x2, y2) = portraits[i % len(portraits)]
        margin = rng.uniform(0.0, 0.25)
        w, h = x2 - x1, y2 - y1
        dx, dy = int(w * margin + rng.integers(-8, 9)), int(h * margin + rng.integers(-8, 9))
        crop = image[max(0, y1 - dy) : y2 + dy, max(0, x1 - dx) : x2 + dx]
        side = int(rng.integers(64, 200))
        scale = side / max(crop.shape[:2])
        pil = Image.fromarray(crop).resize(
            (max(16, int(crop.shape[1] * scale)), max(16, int(crop.shape[0] * scale)))
        )
        buffer = io.BytesIO()
        pil.save(buffer, format="JPEG", quality=85)
        crops.append(buffer.getvalue())
    return crops


def bench_local(crops: list[bytes], seconds: float = 10.0) -> dict:
    cv2.setNumThreads(1)
    backend = LocalBackend(EmotionClassifier())
    top_happy_astronaut = 0
    done = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for index, data in enumerate(crops):
            image = Image.open(io.BytesIO(data)).convert("RGB")
            (faces,) = backend.analyze([image])
            scores = faces[0].scores
            if index % 2 == 0 and max(scores, key=scores.get) == "HAPPY":
                top_happy_astronaut += 1
            done += 1
    elapsed = time.perf_counter() - start
    return {
        "local_faces_per_s": round(done / elapsed, 1),
        "local_faces_measured": done,
        "local_astronaut_crops_top_happy_share": round(top_happy_astronaut / (done / 2), 3),
    }


def bench_mosaic(crops: list[bytes]) -> dict:
    images = [Image.open(io.BytesIO(data)).convert("RGB") for data in crops]
    limits = MosaicLimits()
    mosaics = plan(list(enumerate(images)), limits)
    client = boto3.client("rekognition", region_name="eu-west-1")
    stubber = Stubber(client)
    for mosaic in mosaics:
        details = [
            {
                "BoundingBox": mosaic.box_for_tile(tile),
                "Confidence": 99.5,
                "Emotions": [{"Type": "HAPPY", "Confidence": 90.0}],
            }
            for tile in mosaic.tiles
        ]
        stubber.add_response(
            "detect_faces",
            {"FaceDetails": details},
            {"Image": {"Bytes": ANY}, "Attributes": ["EMOTIONS"]},
        )
    backend = RekognitionBackend(client, limits=limits, sleep=lambda _s: None)
    start = time.perf_counter()
    with stubber:
        results = backend.analyze(images)
    elapsed = time.perf_counter() - start
    stubber.assert_no_pending_responses()
    attributed = sum(1 for r in results if isinstance(r, list) and len(r) == 1)
    if attributed != len(images):
        raise SystemExit(f"only {attributed} of {len(images)} faces came back to their crop")
    return {
        "detectfaces_calls_per_1000_faces": round(backend.calls * 1000 / len(images), 1),
        "mosaic_tiles_max": limits.max_tiles,
        "mosaic_max_bytes": max(len(m.jpeg) for m in mosaics),
        "mosaic_max_side_px": max(max(m.width, m.height) for m in mosaics),
        "mosaic_build_ms_per_face": round(elapsed * 1000 / len(images), 3),
    }


def main() -> dict:
    crops = real_crops(1000)
    figures = {**bench_local(crops[:200]), **bench_mosaic(crops)}
    saved = record("analysis", figures)
    for name, value in sorted(saved.items()):
        print(f"{name}: {value}")
    return saved


if __name__ == "__main__":
    main()
