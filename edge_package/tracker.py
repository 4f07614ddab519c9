"""Dedupe and throttle: one face seen on many frames is sent at most once per interval.

A light IoU tracker links detections across frames. Each track keeps the sharpest crop seen in its
current window and releases it when the window ends (or when the face leaves), so the analyzer gets
the best picture, not the first one. A per-device budget caps uploads per minute whatever the crowd.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from edge_package.detect import iou


@dataclass
class Track:
    track_id: int
    box: tuple
    first_seen: float
    last_seen: float
    window_start: float
    window_s: float
    best: object = None  # the candidate (any object) with the highest quality in this window
    best_quality: float = -1.0


@dataclass
class UploadBudget:
    """At most `per_minute` releases in any sliding 60 s window, paced: a token bucket refills at
    per_minute / 60 a second and holds a tenth of the minute (at least 3). Without the pacing a
    busy camera spent its minute in the first seconds and then sent nothing for the rest of it,
    so its crops waited up to a minute (most of the demo's capture-to-visible tail)."""

    per_minute: int
    _times: deque = field(default_factory=deque)
    refused: int = 0
    _tokens: float | None = None
    _refilled_at: float = 0.0

    @property
    def burst(self) -> float:
        return max(3.0, self.per_minute / 10.0)

    def allow(self, now: float) -> bool:
        while self._times and now - self._times[0] >= 60.0:
            self._times.popleft()
        if self._tokens is None:
            self._tokens = self.burst
        else:  # time going backwards refills nothing (new_timeline starts afresh)
            elapsed = max(0.0, now - self._refilled_at)
            self._tokens = min(self.burst, self._tokens + elapsed * self.per_minute / 60.0)
        self._refilled_at = now
        if len(self._times) >= self.per_minute or self._tokens < 1.0:
            self.refused += 1
            return False
        self._tokens -= 1.0
        self._times.append(now)
        return True

    def restart(self) -> None:
        """Forget the releases kept (their times are on another timeline)."""
        self._times.clear()
        self._tokens = None


class Throttle:
    """Feed every frame's candidates with update(); it returns the candidates to send now.

    A candidate is any object; the caller supplies its box and a quality score (sharpness).
    A track's first window is short (`first_wait_s`) so a new face is sent soon; later windows last
    `interval_s`. A track unseen for `max_gap_s` ends and flushes its best candidate; the gap is in
    seconds, not frames, so a detector that flickers on a hard face does not split one person into
    many tracks (each of which would be sent).
    """

    def __init__(
        self,
        interval_s: float,
        budget_per_min: int,
        *,
        iou_threshold: float = 0.3,
        max_gap_s: float = 1.5,
        first_wait_s: float = 1.0,
    ):
        self.interval_s = interval_s
        self.first_wait_s = min(first_wait_s, interval_s)
        self.iou_threshold = iou_threshold
        self.max_gap_s = max_gap_s
        self.budget = UploadBudget(budget_per_min)
        self.tracks: list[Track] = []
        self._next_id = 0

    def _match(self, boxes: list[tuple]) -> list[int | None]:
        """Greedy best-IoU assignment of boxes to live tracks."""
        pairs = sorted(
            (
                (iou(box, track.box), bi, ti)
                for bi, box in enumerate(boxes)
                for ti, track in enumerate(self.tracks)
            ),
            reverse=True,
        )
        assigned: list[int | None] = [None] * len(boxes)
        used = set()
        for score, bi, ti in pairs:
            if score < self.iou_threshold:
                break
            if assigned[bi] is None and ti not in used:
                assigned[bi] = ti
                used.add(ti)
        return assigned

    def update(self, now: float, candidates: list[tuple[tuple, float, object]]) -> list[tuple]:
        """candidates: (box, quality, payload). Returns [(track_id, payload)] to send now."""
        boxes = [c[0] for c in candidates]
        assigned = self._match(boxes)
        for (box, quality, payload), ti in zip(candidates, assigned):  # same length by construction
            if ti is None:
                track = Track(self._next_id, box, now, now, now, self.first_wait_s)
                self._next_id += 1
                self.tracks.append(track)
            else:
                track = self.tracks[ti]
                track.box, track.last_seen = box, now
            if payload is not None and quality > track.best_quality:
                track.best, track.best_quality = payload, quality
        out = []
        alive = []
        # Longest-waiting tracks first, so a tight budget is shared instead of starving faces.
        for track in sorted(self.tracks, key=lambda t: t.window_start):
            ended = now - track.last_seen > self.max_gap_s
            due = ended or now - track.window_start >= track.window_s
            if due and track.best is not None:
                if not self.budget.allow(now):
                    # keep the crop and retry when the budget frees up; while it waits, a newer
                    # crop of at least half its sharpness takes its place, so what is sent is fresh
                    track.best_quality *= 0.5
                    alive.append(track)
                    continue
                out.append((track.track_id, track.best))
                track.best, track.best_quality = None, -1.0
                track.window_start, track.window_s = now, self.interval_s
            elif due:
                track.window_start = now  # nothing usable this window: start a fresh one
            if not ended:
                alive.append(track)
        self.tracks = alive
        return out

    def new_timeline(self) -> None:
        """Time went backwards (another file, or a file after a live camera): the times kept are
        on the old timeline and would hold the budget shut, so they are forgotten."""
        self.budget.restart()
        for track in self.tracks:
            track.first_seen = track.last_seen = track.window_start = float("-inf")

    def flush(self, now: float) -> list[tuple]:
        """Release every pending best candidate (on shutdown), within the budget."""
        out = []
        for track in self.tracks:
            if track.best is not None and self.budget.allow(now):
                out.append((track.track_id, track.best))
            track.best = None
        self.tracks = []
        return out
