"""Motion energy and crowd fill: how much the crowd moves, and how much of its area is taken.

Measured on the camera from a small thumbnail (THUMB_WIDTH wide, whatever the camera's
resolution), a few frame pairs a second, inside the crowd area (the frame less the privacy masks:
masked pixels are blanked before anything is computed). Only numbers come out.

Why it is built this way (docs/edge.md, "Crowd signals"):
- **Dense optical flow (DIS), not frame differencing.** A difference measures how much the pixels
  changed, so a strobe or a colour wash over a still crowd reads as dancing; flow measures how
  far things moved. Its magnitude is in thumbnail widths per second, so 720p and 1080p agree.
- **Lighting-normalised input.** Each colour channel goes to log, less its own smooth local mean
  (a retinex-like high-pass): a light's gain on a channel, even one that varies smoothly across
  the frame (a spot, a colour wash), is a constant in log and cancels. What is left is the
  scene's structure, which only moves when people move.
- **Pairs across a lighting jump are not measured.** A strobe flash clips highlights and lifts
  blacks, which no normalisation undoes: a pair whose crowd-area brightness jumps by more than
  LIGHT_JUMP, or that is largely clipped, is skipped (counted in `skipped_light`), not read as 0.
- **Global motion removed.** The median flow (camera shake, a zoom, what is left of a global
  light change) is subtracted before the magnitudes are taken.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

THUMB_WIDTH = 160
# A pair is two frames at least this far apart, and the second frame starts the next pair: about
# 2.5 pairs a second, one thumbnail each, at any frame rate from 2 fps up (a demo camera at 2 fps
# pairs frames 0.5 s apart). Not a whole beat (0.5 s at 120 bpm), where a bounce would cancel.
PAIR_GAP_S = 0.4
MAX_PAIR_GAP_S = 1.5  # frames further apart than this make no pair (the camera stalled)
LIGHT_JUMP = 1.25  # crowd-area brightness ratio between the two frames of a pair, at most
CLIPPED_SHARE = 0.25  # share of crowd-area pixels at 250+ in either frame, at most
LOG_EPS = 8.0  # grey levels added before the log: dark sensor noise is not blown up
SIGMA_PX = 6.0  # of the local mean taken out of each channel (thumbnail pixels)
NOISE_FLOOR_PX = 0.15  # flow magnitudes under this (thumbnail px) are sensor noise
# Speed (thumbnail widths per second, averaged over the crowd area) that reads as energy 0.63;
# energy = 1 - exp(-speed / SPEED_SCALE), so it saturates smoothly towards 1.
SPEED_SCALE = 0.015
GRID = (16, 9)  # crowd fill cells across and down
CELL_MIN_CROWD = 0.5  # a cell counts when at least this share of it is crowd area
FILL_MOTION_PX = 0.3  # mean flow in a cell (thumbnail px) that says someone moves there
FILL_CHANGE = 0.12  # mean |normalised image - background| that says someone is there
FILL_MEMORY_S = 3.0  # a cell stays occupied this long after it was last seen moving
BACKGROUND_TIME_S = 60.0  # the background model forgets with this time constant


def shrink(image: np.ndarray) -> np.ndarray:
    """The frame as a float32 BGR thumbnail THUMB_WIDTH wide (aspect kept)."""
    height, width = image.shape[:2]
    size = (THUMB_WIDTH, max(1, round(THUMB_WIDTH * height / width)))
    step = max(1, width // (THUMB_WIDTH * 2))  # strided view first: a 1080p resize costs less
    small = cv2.resize(image[::step, ::step], size, interpolation=cv2.INTER_AREA)
    if small.ndim == 2:
        small = small[..., None]
    return small.astype(np.float32)


def crowd_area(masks, width: int, height: int) -> np.ndarray:
    """True where the crowd is measured: everywhere but the mask polygons (normalised 0..1)."""
    area = np.ones((height, width), np.uint8)
    for polygon in masks or []:
        points = np.asarray(polygon, np.float32) * np.float32([width, height])
        cv2.fillPoly(area, [np.round(points).astype(np.int32)], 0)
    return area.astype(bool)


_THIRDS = ((1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0),)  # cv2.transform: the channels' mean
_BLUR = 2 * int(2.5 * SIGMA_PX) + 1  # a stack blur about as wide as a Gaussian of SIGMA_PX


def normalise(thumb: np.ndarray, area: np.ndarray) -> np.ndarray:
    """Lighting-free structure: per channel log, less its smooth local mean, then the channels'
    mean; 0 (flat) outside the crowd area."""
    logs = cv2.log(thumb + np.float32(LOG_EPS))
    if area.all():
        local = cv2.stackBlur(logs, (_BLUR, _BLUR)).reshape(logs.shape)
    else:  # the local mean of crowd pixels only: nothing behind a mask leaks in at its edge
        weight = area.astype(np.float32)
        logs *= weight[..., None]
        spread = np.maximum(cv2.stackBlur(weight, (_BLUR, _BLUR)), 1e-3)
        local = cv2.stackBlur(logs, (_BLUR, _BLUR)).reshape(logs.shape) / spread[..., None]
    structure = logs - local
    grey = (
        cv2.transform(structure, np.float32(_THIRDS))
        if structure.shape[2] == 3
        else structure[..., 0]
    )
    grey[~area] = 0.0
    return grey


def _to_u8(structure: np.ndarray) -> np.ndarray:
    return cv2.convertScaleAbs(structure, alpha=100.0, beta=128.0)


class Snapshot:
    """What one frame contributes: its normalised structure and its crowd-area brightness."""

    __slots__ = ("structure", "u8", "luma", "clipped", "at")

    def __init__(self, image: np.ndarray, area: np.ndarray | None, masks, at: float):
        thumb = shrink(image)
        h, w = thumb.shape[:2]
        if area is None or area.shape != (h, w):
            area = crowd_area(masks, w, h)
        self.at = at
        count = int(np.count_nonzero(area))
        if thumb.shape[2] == 3:
            channels = cv2.split(thumb)
            brightest = cv2.max(cv2.max(channels[0], channels[1]), channels[2])
            luma = cv2.transform(thumb, np.float32(_THIRDS))
        else:
            brightest = luma = thumb[..., 0]
        self.luma = float(luma[area].sum()) / count if count else 0.0
        clipped = np.count_nonzero((brightest >= 250) & area)
        self.clipped = clipped / count if count else 0.0
        self.structure = normalise(thumb, area)
        self.u8 = _to_u8(self.structure)


class MotionMeter:
    """Feed it every frame (`update`); it looks at about 2.5 frames a second and returns, for
    each pair, the motion energy (0..1) and the crowd fill (0..1)."""

    def __init__(self, masks=None):
        self.set_masks(masks)
        self._flow = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST)
        self._first: Snapshot | None = None
        self._background: np.ndarray | None = None
        self._last_moving: np.ndarray | None = None  # per cell, when it last moved
        self.pairs = 0
        self.skipped_light = 0

    def set_masks(self, masks) -> None:
        """New privacy masks: measured from the next pair on, with a fresh background."""
        self.masks = [list(p) for p in (masks or [])]
        self._area = None
        self._first = None
        self._background = None
        self._last_moving = None

    def reset(self) -> None:
        """Forget the pair in progress (the camera was paused: nothing was looked at)."""
        self._first = None

    def update(self, image: np.ndarray, now: float) -> tuple[float, float] | None:
        """Look at a frame if a pair needs it; returns (energy, fill) when a pair completes.
        `now` is the frame's time in seconds on any steady timeline (a file's media time)."""
        first = self._first
        if first is not None and now - first.at > MAX_PAIR_GAP_S:
            first = self._first = None  # stalled: start again
        if first is not None and now - first.at < PAIR_GAP_S:
            return None
        snap = Snapshot(image, self._area, self.masks, now)
        self._area = self._area_for(snap)
        measured = self._measure(first, snap) if first is not None else None
        self._first = snap  # the frame that ends a pair starts the next one
        return measured

    def _area_for(self, snap: Snapshot) -> np.ndarray:
        h, w = snap.structure.shape
        if self._area is None or self._area.shape != (h, w):
            self._area = crowd_area(self.masks, w, h)
            self._background = None
            self._last_moving = None
        return self._area

    def _measure(self, a: Snapshot, b: Snapshot) -> tuple[float, float] | None:
        if a.structure.shape != b.structure.shape:
            return None
        dark, light = sorted((max(a.luma, 1.0), max(b.luma, 1.0)))
        if light / dark > LIGHT_JUMP or max(a.clipped, b.clipped) > CLIPPED_SHARE:
            self.skipped_light += 1
            return None
        area = self._area
        if not area.any():
            return None  # the whole frame is masked: nothing to measure
        flow = self._flow.calc(a.u8, b.u8, None)
        flow -= np.median(flow[area], axis=0)  # camera shake, global change
        magnitude = np.hypot(flow[..., 0], flow[..., 1])
        magnitude[~area] = 0.0
        moving = np.maximum(magnitude - NOISE_FLOOR_PX, 0.0)
        dt = max(b.at - a.at, 1e-3)
        speed = float(moving[area].mean()) / magnitude.shape[1] / dt
        energy = 1.0 - math.exp(-speed / SPEED_SCALE)
        fill = self._fill(b, magnitude)
        self.pairs += 1
        return energy, fill

    def _cells(self, values: np.ndarray) -> np.ndarray:
        cols, rows = GRID
        h, w = values.shape
        return (
            cv2.resize(values, (cols, rows), interpolation=cv2.INTER_AREA) if h >= rows else values
        )

    def _fill(self, snap: Snapshot, magnitude: np.ndarray) -> float:
        """Share of crowd cells where someone is: moving in the last FILL_MEMORY_S, or different
        from the slow background model (which learns only where nothing moves)."""
        area = self._area.astype(np.float32)
        crowd_cells = self._cells(area) >= CELL_MIN_CROWD
        if not crowd_cells.any():
            return 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            share = np.maximum(self._cells(area), 1e-6)
            motion = self._cells(magnitude) / share
        if self._last_moving is None or self._last_moving.shape != motion.shape:
            self._last_moving = np.full(motion.shape, -math.inf)
        self._last_moving[motion > FILL_MOTION_PX] = snap.at
        moving = snap.at - self._last_moving <= FILL_MEMORY_S
        if self._background is None:
            self._background = snap.structure.copy()
            changed = np.zeros_like(moving)
        else:
            change = self._cells(np.abs(snap.structure - self._background)) / share
            changed = change > FILL_CHANGE
            rate = min(1.0, PAIR_GAP_S / BACKGROUND_TIME_S)
            still = cv2.resize(
                (~moving).astype(np.float32),
                snap.structure.shape[::-1],
                interpolation=cv2.INTER_NEAREST,
            )
            self._background += rate * still * (snap.structure - self._background)
        occupied = (moving | changed) & crowd_cells
        return float(occupied.sum() / crowd_cells.sum())
