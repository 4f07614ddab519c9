"""A real labelled clip for tests: synthetic crowd frames written to an MJPG .avi with
cv2.VideoWriter (works offline), and their truth boxes as the annotation document."""

from __future__ import annotations

import json
from pathlib import Path

import cv2

from edge_package.synthetic import SyntheticCrowdSource

# Crowd-sized faces a close-range model misses, and medium faces both bundled models find.
SMALL_FACES = dict(width=640, height=360, faces=4, min_face=24, max_face=40, seed=1)
MEDIUM_FACES = dict(width=480, height=270, faces=3, min_face=60, max_face=110, seed=7)


def write_labelled_clip(
    path: Path, *, frames: int = 3, labelled=None, fps: int = 15, score_from: int = 16, **crowd
) -> tuple[bytes, dict]:
    """Render `frames` frames into `path`; (video bytes, annotations) labelling the frames in
    `labelled` (default: all) with every face, clipped to the frame; faces from `score_from` px
    are scored."""
    crowd = {**SMALL_FACES, **crowd}
    width, height = crowd["width"], crowd["height"]
    source = SyntheticCrowdSource(**crowd)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    boxes = {}
    for index in range(frames):
        frame = source.render(index)
        writer.write(frame.image)
        if labelled is None or index in labelled:
            boxes[str(index)] = [
                [max(0, x), max(0, y), min(w, width - max(0, x)), min(h, height - max(0, y))]
                for _, x, y, w, h in frame.truth
            ]
    writer.release()
    return path.read_bytes(), {"fps": fps, "min_face": score_from, "frames": boxes}


def annotations_bytes(document: dict) -> bytes:
    return json.dumps(document).encode()
