"""Real faces at exact sizes: faces cut from photos that ship in installed packages
(bench/real_faces.json says which and how their boxes were found), each rescaled so the face is
exactly N px wide and laid out as a 1080p crowd frame on the synthetic crowd's background.

Nothing is downloaded: a photo whose package is not installed is skipped, and the bench says so.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import cv2
import numpy as np

from edge_package.detect import DetectorError, package_file
from edge_package.sources import Frame

FACES_FILE = Path(__file__).resolve().parent / "real_faces.json"
CONTEXT = 0.5  # hair and neck around each face, as a share of the face box on every side


def load_faces() -> tuple[list[np.ndarray], list[str]]:
    """(head patches with the face box at CONTEXT inside, names of photos not installed)."""
    patches, missing = [], []
    for photo in json.loads(FACES_FILE.read_text())["photos"]:
        try:
            path = package_file(photo["package"], *photo["path"].split("/"))
        except DetectorError:
            missing.append(f"{photo['package']}:{photo['path']}")
            continue
        image = cv2.imread(path, cv2.IMREAD_COLOR)
        if image is None or [image.shape[1], image.shape[0]] != photo["size"]:
            missing.append(f"{photo['package']}:{photo['path']} (not the photo annotated)")
            continue
        for x, y, w, h in photo["faces"]:
            gx, gy = int(CONTEXT * w), int(CONTEXT * h)
            x0, y0 = max(0, x - gx), max(0, y - gy)
            x1, y1 = min(image.shape[1], x + w + gx), min(image.shape[0], y + h + gy)
            patches.append((image[y0:y1, x0:x1].copy(), (x - x0, y - y0, w, h)))
    return patches, missing


def crowd_frame(patches, size: int, *, width=1920, height=1080, copies=4, seed=0):
    """One frame: every face `copies` times, each exactly `size` px wide, in a jittered grid.
    Returns (image, truth) with truth as the synthetic source's (face_id, x, y, w, h)."""
    from edge_package.synthetic import make_background

    rng = random.Random(seed)
    image = make_background(width, height, np.random.default_rng(seed))
    count = len(patches) * copies
    cols = max(1, round((count * width / height) ** 0.5))
    rows = -(-count // cols)
    cw, ch = width / cols, height / rows
    order = [i % len(patches) for i in range(count)]
    rng.shuffle(order)
    truth = []
    for n, index in enumerate(order):
        patch, (fx, fy, fw, fh) = patches[index]
        scale = size / fw
        head = cv2.resize(patch, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        hh, hw = head.shape[:2]
        if hw > cw or hh > ch:
            raise ValueError(f"{size} px faces do not fit {count} to a {width}x{height} frame")
        col, row = n % cols, n // cols
        ox = int(col * cw + rng.uniform(0, cw - hw))
        oy = int(row * ch + rng.uniform(0, ch - hh))
        image[oy : oy + hh, ox : ox + hw] = head
        truth.append((n, ox + fx * scale, oy + fy * scale, fw * scale, fh * scale))
    return image, truth


def real_frames(patches, size: int, *, frames: int, seed: int = 0):
    """A still crowd of real faces shown for `frames` frames (a camera's view of a still
    crowd), each Frame carrying the truth."""
    image, truth = crowd_frame(patches, size, seed=seed)
    for index in range(frames):
        yield Frame(image=image.copy(), index=index, captured_at_ms=index * 66, truth=truth)
