"""Crowd signals: one item per camera per window (contracts.build_crowd_signal_item).

Gathers, for the window in progress, the motion meter's pairs (grouped per wall-clock second), the
largest number of faces seen in one frame and, with a microphone, the sound meter's seconds; when a
frame falls in the next window the finished one becomes an item. Windows are aligned to the epoch
(contracts.crowd_window_end_ms), so a replay or a restart inside a window names the same item.
"""

from __future__ import annotations

import logging

from edge_package.audio import leq
from edge_package.contracts import (
    CROWD_SIGNAL_WINDOW_S,
    ContractError,
    build_crowd_signal_item,
    crowd_window_end_ms,
)
from edge_package.motion import MotionMeter

log = logging.getLogger("edge_package")


class CrowdSignals:
    def __init__(self, config, *, sound=None, window_s: int = CROWD_SIGNAL_WINDOW_S):
        self.config = config
        self.sound = sound  # audio.SoundMeter or None
        self.window_s = int(window_s)
        self.meter = MotionMeter(config.masks)
        self._end_ms: int | None = None
        self._seconds: dict[int, list] = {}  # wall second -> [(energy, fill)]
        self._faces_peak = 0
        self.windows = 0
        self.empty_windows = 0  # windows with no measured pair (all skipped: strobes, a stall)
        self.last_energy: float | None = None
        self.last_fill: float | None = None

    def set_masks(self, masks) -> None:
        self.meter.set_masks(masks)

    def reset(self) -> None:
        self.meter.reset()

    def update(self, image, now: float, wall_ms: int) -> list[dict]:
        """Measure a frame; returns the items of windows that this frame closed (0 or 1)."""
        items = self._roll(wall_ms)
        measured = self.meter.update(image, now)
        if measured is not None:
            self._seconds.setdefault(int(wall_ms // 1000), []).append(measured)
            second = self._seconds[int(wall_ms // 1000)]
            self.last_energy = sum(e for e, _ in second) / len(second)
            self.last_fill = measured[1]
        return items

    def faces(self, count: int, wall_ms: int) -> list[dict]:
        """Faces found (and not masked) in one frame; the window keeps the largest count."""
        items = self._roll(wall_ms)
        self._faces_peak = max(self._faces_peak, int(count))
        return items

    def _roll(self, wall_ms: int) -> list[dict]:
        end = crowd_window_end_ms(wall_ms, self.window_s)
        items = []
        if self._end_ms is not None and end != self._end_ms:
            items = self.close()
        self._end_ms = end
        return items

    def close(self) -> list[dict]:
        """The window in progress as an item (none when no pair was measured in it)."""
        end, seconds, faces = self._end_ms, self._seconds, self._faces_peak
        self._seconds, self._faces_peak, self._end_ms = {}, 0, None
        if end is None:
            return []
        if not seconds:
            self.empty_windows += 1
            return []
        per_second = [sum(e for e, _ in v) / len(v) for v in seconds.values()]
        fills = [f for v in seconds.values() for _, f in v]
        sound = None
        if self.sound is not None:
            sound = leq(self.sound.between(end // 1000 - self.window_s, end // 1000))
        cfg = self.config
        face_free = bool(cfg.face_free)
        try:
            item = build_crowd_signal_item(
                festival=cfg.festival,
                stage=cfg.stage,
                device=cfg.device,
                organization=cfg.organization,
                window_end_ms=end,
                window_s=self.window_s,
                motion_energy=sum(per_second) / len(per_second),
                motion_energy_max=max(per_second),
                crowd_fill=sum(fills) / len(fills),
                faces_seen=0 if face_free else faces,
                face_free=face_free,
                sound_level_dbfs=sound,
            )
        except ContractError as exc:  # a bug here must cost one window, not the camera
            log.warning("crowd signal for the window ending %s dropped: %s", end, exc)
            return []
        self.windows += 1
        return [item]
