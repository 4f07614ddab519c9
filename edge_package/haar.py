"""OpenCV's Haar frontal-face cascade, evaluated with numpy (OpenCV 5 dropped CascadeClassifier).

The comparison baseline must run on the device with only numpy and OpenCV, so the stump cascade
(`haarcascade_frontalface_default.xml`, shipped by `fer`) is evaluated here the way OpenCV does it:
the image is shrunk instead of the window, each 24x24 window is variance-normalised over its inner
22x22 area, a stump adds its left value when `feature < threshold * norm`, a stage rejects a window
whose sum is below the stage threshold, and survivors are merged like groupRectangles.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np


class CascadeFormatError(ValueError):
    """The XML is not an old-format stump Haar cascade."""


@dataclass
class _Stage:
    rx: np.ndarray  # (n, 3) rectangle x in the 24x24 window
    ry: np.ndarray
    rw: np.ndarray
    rh: np.ndarray
    weight: np.ndarray  # (n, 3); 0 where a feature has fewer rectangles
    threshold: np.ndarray  # (n,)
    left: np.ndarray
    right: np.ndarray
    stage_threshold: float


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split()]


class HaarCascade:
    def __init__(self, path: str):
        try:
            root = ET.parse(path).getroot()
        except (ET.ParseError, OSError) as exc:
            raise CascadeFormatError(f"{path}: not a readable cascade XML ({exc})") from exc
        cascade = next(iter(root), None)
        if cascade is None or cascade.find("size") is None or cascade.find("stages") is None:
            raise CascadeFormatError(f"{path}: no <size>/<stages> (only the old Haar format)")
        self.window = tuple(int(v) for v in cascade.find("size").text.split())
        self.stages: list[_Stage] = []
        for stage in cascade.find("stages"):
            rows = []
            for tree in stage.find("trees"):
                nodes = list(tree)
                if len(nodes) != 1 or nodes[0].find("left_val") is None:
                    raise CascadeFormatError(f"{path}: only stump cascades are supported")
                node = nodes[0]
                feature = node.find("feature")
                if feature.findtext("tilted", "0").strip() != "0":
                    raise CascadeFormatError(f"{path}: tilted features are not supported")
                rects = [_floats(r.text) for r in feature.find("rects")][:3]
                rows.append(
                    (
                        rects,
                        float(node.findtext("threshold")),
                        float(node.findtext("left_val")),
                        float(node.findtext("right_val")),
                    )
                )
            n = len(rows)
            geom = np.zeros((4, n, 3), np.int32)
            weight = np.zeros((n, 3), np.float64)
            for i, (rects, _, _, _) in enumerate(rows):
                for k, (x, y, w, h, wt) in enumerate(rects):
                    geom[:, i, k] = (x, y, w, h)
                    weight[i, k] = wt
            self.stages.append(
                _Stage(
                    *geom,
                    weight,
                    np.array([r[1] for r in rows]),
                    np.array([r[2] for r in rows]),
                    np.array([r[3] for r in rows]),
                    float(stage.findtext("stage_threshold")),
                )
            )
        if not self.stages:
            raise CascadeFormatError(f"{path}: the cascade has no stages")

    def _scan(self, gray: np.ndarray, step: int) -> np.ndarray:
        """Top-left corners (x, y) of windows that pass every stage, in `gray` pixels."""
        ww, wh = self.window
        h, w = gray.shape
        if h < wh or w < ww:
            return np.zeros((0, 2), np.int64)
        # int32 sums are exact up to 8 Mpx; squares need float64.
        total, squares = cv2.integral2(gray, sdepth=cv2.CV_32S, sqdepth=cv2.CV_64F)
        total, squares = total.ravel(), squares.ravel()
        stride = w + 1
        ys, xs = np.mgrid[0 : h - wh + 1 : step, 0 : w - ww + 1 : step]
        pos = (ys * stride + xs).ravel().astype(np.int32)

        def box(table, p, x, y, bw, bh):
            a = y * stride + x
            return (
                table[p + a + bh * stride + bw]
                - table[p + a + bw]
                - table[p + a + bh * stride]
                + table[p + a]
            )

        area = (ww - 2) * (wh - 2)
        s = box(total, pos, 1, 1, ww - 2, wh - 2).astype(np.float64)
        sq = box(squares, pos, 1, 1, ww - 2, wh - 2)
        norm = area * sq - s * s
        norm = np.where(norm > 0, np.sqrt(np.maximum(norm, 0)), 1.0)
        for stage in self.stages:
            # All of a stage's stumps at once: (windows, stumps) matrices, no per-stump loop.
            value = np.zeros((pos.size, stage.threshold.size), np.float64)
            for k in range(3):
                used = stage.weight[:, k] != 0
                if not used.any():
                    continue
                x, y = stage.rx[used, k], stage.ry[used, k]
                bw, bh = stage.rw[used, k], stage.rh[used, k]
                top_left = y * stride + x
                corners = pos[:, None] + top_left[None, :]
                sums = (
                    total[corners + (bh * stride + bw)[None, :]]
                    - total[corners + bw[None, :]]
                    - total[corners + (bh * stride)[None, :]]
                    + total[corners]
                )
                value[:, used] += sums * stage.weight[used, k][None, :]
            below = value < stage.threshold[None, :] * norm[:, None]
            stage_sum = np.where(below, stage.left[None, :], stage.right[None, :]).sum(axis=1)
            keep = stage_sum >= stage.stage_threshold
            pos, norm = pos[keep], norm[keep]
            if not pos.size:
                break
        return np.stack([pos % stride, pos // stride], axis=-1)

    def detect_multi_scale(
        self, gray: np.ndarray, *, scale_factor=1.1, min_neighbors=3, min_size=24, max_size=None
    ) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in `gray` pixels, grouped like OpenCV's detectMultiScale."""
        ww, wh = self.window
        height, width = gray.shape
        max_size = max_size or min(width, height)
        factor = max(1.0, min_size / ww)
        found = []
        while ww * factor <= max_size and wh * factor <= min(width, height):
            small = cv2.resize(
                gray,
                (max(1, round(width / factor)), max(1, round(height / factor))),
                interpolation=cv2.INTER_LINEAR,
            )
            step = 1 if factor > 2.0 else 2  # OpenCV's own stepping
            for x, y in self._scan(small, step):
                found.append((x * factor, y * factor, ww * factor, wh * factor))
            factor *= scale_factor
        return group_rectangles(found, min_neighbors)


def group_rectangles(rects, min_neighbors: int, eps: float = 0.2) -> list:
    """OpenCV's groupRectangles: cluster similar boxes, average them, keep well-supported ones,
    and drop a cluster that sits inside a much stronger one."""
    if not rects:
        return []
    r = np.asarray(rects, np.float64)
    x, y, w, h = r.T
    delta = eps * (np.minimum.outer(w, w) + np.minimum.outer(h, h)) * 0.5
    similar = (
        (np.abs(np.subtract.outer(x, x)) <= delta)
        & (np.abs(np.subtract.outer(y, y)) <= delta)
        & (np.abs(np.subtract.outer(x + w, x + w)) <= delta)
        & (np.abs(np.subtract.outer(y + h, y + h)) <= delta)
    )
    labels = -np.ones(len(r), np.int64)
    current = 0
    for i in range(len(r)):  # connected components of the similarity graph
        if labels[i] >= 0:
            continue
        stack = [i]
        labels[i] = current
        while stack:
            j = stack.pop()
            for k in np.flatnonzero(similar[j] & (labels < 0)):
                labels[k] = current
                stack.append(k)
        current += 1
    clusters = []
    for label in range(current):
        members = r[labels == label]
        if len(members) > min_neighbors:
            clusters.append((members.mean(axis=0), len(members)))
    kept = []
    for i, (box, n) in enumerate(clusters):
        inside = False
        for j, (other, m) in enumerate(clusters):
            if i == j or m <= max(3, n):
                continue
            dx, dy = other[2] * eps, other[3] * eps
            if (
                box[0] >= other[0] - dx
                and box[1] >= other[1] - dy
                and box[0] + box[2] <= other[0] + other[2] + dx
                and box[1] + box[3] <= other[1] + other[3] + dy
            ):
                inside = True
                break
        if not inside:
            kept.append(tuple(int(round(v)) for v in box))
    return kept
