"""Crop geometry, privacy masks and the quality gate: only a usable face ever leaves the frame.

A crop is the face box grown by a margin and clamped to the frame (a face at the border gives a
smaller crop, never padding or a wrapped slice). Faces whose centre lies inside a mask polygon are
dropped before any pixel is copied. Blurry (variance of Laplacian) or badly exposed crops are
rejected so bandwidth goes to faces the analyzer can read.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from edge_package.contracts import EDGE_CONFIG_DEFAULTS
from edge_package.detect import Detection

MAX_CROP_SIDE = 320  # the analyzers work at <= 256 px; larger crops only cost bytes
# A "crop" covering more than this share of the frame is nearly the frame itself (usually a false
# detection): never sent, so no frame-sized picture can leave the device through the crop path.
MAX_CROP_FRAME_SHARE = 0.5


@dataclass(frozen=True)
class QualityGate:
    min_face_px: int = EDGE_CONFIG_DEFAULTS["min_face_px"]
    min_sharpness: float = 20.0  # variance of the Laplacian on the grey crop
    min_brightness: float = 35.0  # mean grey level
    max_brightness: float = 225.0


@dataclass
class Crop:
    detection: Detection
    image: np.ndarray  # BGR, at most MAX_CROP_SIDE on its long side
    region: tuple[int, int, int, int]  # x, y, w, h of the crop in the frame
    sharpness: float
    brightness: float


def crop_region(det: Detection, frame_w: int, frame_h: int, margin: float):
    """The face box grown by `margin` of its size on every side, clamped inside the frame."""
    grow_w, grow_h = det.w * margin, det.h * margin
    x0 = int(np.floor(max(0.0, det.x - grow_w)))
    y0 = int(np.floor(max(0.0, det.y - grow_h)))
    x1 = int(np.ceil(min(float(frame_w), det.x + det.w + grow_w)))
    y1 = int(np.ceil(min(float(frame_h), det.y + det.h + grow_h)))
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)


class MaskSet:
    """Polygons in normalised 0..1 frame coordinates (the config's `masks`)."""

    def __init__(self, polygons: list | None = None):
        self.polygons = [np.asarray(p, dtype=np.float32) for p in (polygons or [])]

    def __bool__(self) -> bool:
        return bool(self.polygons)

    def covers(self, det: Detection, frame_w: int, frame_h: int) -> bool:
        """True when the face centre is inside (or on the edge of) any mask."""
        cx = (det.x + det.w / 2) / frame_w
        cy = (det.y + det.h / 2) / frame_h
        return any(
            cv2.pointPolygonTest(p, (float(cx), float(cy)), False) >= 0 for p in self.polygons
        )


def sharpness(gray: np.ndarray) -> float:
    return float(cv2.Laplacian(gray, cv2.CV_64F).var())


def make_crop(
    frame: np.ndarray, det: Detection, *, margin: float, gate: QualityGate
) -> tuple[Crop | None, str]:
    """(crop, "") when the face passes the gate, else (None, reason) with a short reason."""
    if det.size < gate.min_face_px:
        return None, "small"
    h, w = frame.shape[:2]
    x, y, cw, ch = crop_region(det, w, h, margin)
    if cw < 8 or ch < 8:
        return None, "small"
    if cw * ch > MAX_CROP_FRAME_SHARE * w * h:
        return None, "frame-sized"
    image = frame[y : y + ch, x : x + cw]
    # Judge the face itself, not the margin (background in the margin would skew both measures).
    fx, fy, fw, fh = det.box
    face = frame[max(0, fy) : min(h, fy + fh), max(0, fx) : min(w, fx + fw)]
    gray = cv2.cvtColor(face, cv2.COLOR_BGR2GRAY)
    if gray.shape[0] > 96:  # measure at a fixed scale so the blur score is size-independent
        gray = cv2.resize(gray, (96, 96), interpolation=cv2.INTER_AREA)
    sharp = sharpness(gray)
    bright = float(gray.mean())
    if bright < gate.min_brightness:
        return None, "dark"
    if bright > gate.max_brightness:
        return None, "bright"
    if sharp < gate.min_sharpness:
        return None, "blurry"
    long_side = max(cw, ch)
    if long_side > MAX_CROP_SIDE:
        scale = MAX_CROP_SIDE / long_side
        image = cv2.resize(
            image, (max(1, round(cw * scale)), max(1, round(ch * scale))), cv2.INTER_AREA
        )
    else:
        image = image.copy()  # detach from the frame buffer (the frame is dropped right after)
    return Crop(det, image, (x, y, cw, ch), sharp, bright), ""


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()
