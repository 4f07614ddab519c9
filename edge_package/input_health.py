"""Is the camera seeing anything? Cheap checks of the picture itself, for telemetry.

A covered lens, a dead RTSP stream that repeats its last frame, or a stage gone dark all look like
"no faces" downstream; these numbers let the service tell them apart (docs/edge.md, "Camera input
health"). Each frame costs a strided view of about 64 x 36 pixels (no resize, no copy of the
full frame), its mean luminance and its mean absolute difference from the previous one.
"""

from __future__ import annotations

from collections import deque

import numpy as np

THUMB_WIDTH = 64
BLACK_LUMA = 12.0  # mean luminance (0..255) under which a frame counts as black
FROZEN_MOTION = 0.1  # mean |difference| under which a frame counts as unchanged (exact repeats ~0)
WINDOW = 30  # frames the reported luminance and motion are averaged over
BGR_WEIGHTS = (0.114, 0.587, 0.299)  # ITU-R BT.601 luma, in OpenCV's channel order


def thumbnail(image) -> np.ndarray:
    """A grey float32 thumbnail about THUMB_WIDTH wide (a strided view, then the weights)."""
    step = max(1, int(image.shape[1]) // THUMB_WIDTH)
    small = np.asarray(image[::step, ::step], dtype=np.float32)
    if small.ndim == 3:
        weights = np.asarray(BGR_WEIGHTS, dtype=np.float32)
        small = small[..., :3] @ weights if small.shape[2] >= 3 else small[..., 0]
    return small


class InputHealth:
    """Per-frame luminance and motion, and how long the picture has been black or frozen."""

    def __init__(self, *, black_luma: float = BLACK_LUMA, frozen_motion: float = FROZEN_MOTION):
        self.black_luma = black_luma
        self.frozen_motion = frozen_motion
        self.reset()

    def reset(self) -> None:
        """Forget everything (the camera was paused: nothing was looked at meanwhile)."""
        self._previous = None
        self._luma: deque = deque(maxlen=WINDOW)
        self._motion: deque = deque(maxlen=WINDOW)
        self._black_since = None
        self._frozen_since = None
        self._now = None

    def update(self, image, now: float) -> None:
        thumb = thumbnail(image)
        luma = float(thumb.mean()) if thumb.size else 0.0
        self._luma.append(luma)
        self._now = now
        if luma < self.black_luma:
            if self._black_since is None:
                self._black_since = now
        else:
            self._black_since = None
        previous, self._previous = self._previous, thumb
        if previous is None or previous.shape != thumb.shape:
            return
        motion = float(np.abs(thumb - previous).mean())
        self._motion.append(motion)
        if motion < self.frozen_motion:
            if self._frozen_since is None:
                self._frozen_since = now  # from the first repeat on
        else:
            self._frozen_since = None

    def stats(self) -> dict:
        """Telemetry fields (contracts.TELEMETRY_SCHEMA input_*); empty before the first frame."""
        if self._now is None:
            return {}
        now = self._now
        stats = {
            "input_luma": sum(self._luma) / len(self._luma),
            "input_black_s": now - self._black_since if self._black_since is not None else 0.0,
            "input_frozen_s": now - self._frozen_since if self._frozen_since is not None else 0.0,
        }
        if self._motion:
            stats["input_motion"] = sum(self._motion) / len(self._motion)
        return stats
