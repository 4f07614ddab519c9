"""The one privacy rule behind every public number (fan API, published reports, dashboard).

The unit of suppression is the **bucket**: one stage's faces in one minute (a MinuteRollup).

1. A bucket with fewer than the festival's `min_faces_public` *read* faces is *suppressed*: it
   shows no number at all. Read faces are those whose expression was read (top emotion not
   UNKNOWN): shares over a few read faces among many unread ones would reveal those few
   people's expressions, so unread faces never make a bucket big enough.
2. Every number over several buckets (the live 5-minute window, its trend, a report's overall
   figures, a set's comparison entry) is computed from the published buckets **only**. A
   suppressed bucket adds nothing to it, so a total minus the visible buckets is always zero:
   no combination of public answers (totals, shares, complementary or sliding windows) can
   isolate a suppressed bucket. An aggregate with no published bucket is itself suppressed.

3. Crowd signals (motion energy, sound level, crowd fill) come from whole-picture and
   whole-room measurements, not from faces: no person's expression is in them. A minute's crowd
   numbers are shown when at least CROWD_MIN_CAMERAS camera reported in it; they are averages
   over the crowd area (never a count of people, never a face count), and a window sums the
   minutes that are shown. Expression numbers keep rules 1 and 2 whatever the crowd signals.

docs/privacy.md explains the rule and its limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from edge_package.contracts import UNKNOWN_EXPRESSION
from emotions.vibe import CrowdStats


def read_faces(bucket) -> int:
    """Faces whose expression was read: the denominator of energy and expression shares."""
    return max(0, bucket.faces - int(bucket.counts.get(UNKNOWN_EXPRESSION, 0)))


@dataclass
class WindowStats:
    """Faces, faces per top expression and score sums over one or more buckets."""

    faces: int = 0
    counts: dict = field(default_factory=dict)
    sums: dict = field(default_factory=dict)

    @property
    def read_faces(self) -> int:
        return read_faces(self)

    def add(self, bucket) -> None:
        """Add a bucket (anything with faces, counts and sums: a MinuteRollup, a WindowStats)."""
        self.faces += bucket.faces
        for name, value in bucket.counts.items():
            self.counts[name] = self.counts.get(name, 0) + value
        for name, value in bucket.sums.items():
            self.sums[name] = self.sums.get(name, 0.0) + value


def is_published(faces: int, min_faces: int) -> bool:
    """Rule 1: a bucket (or an aggregate of published buckets) may show numbers."""
    return faces >= max(min_faces, 1)


def published_buckets(buckets: Iterable, min_faces: int) -> list:
    """The buckets that may show numbers; everything public is built from these only."""
    return [bucket for bucket in buckets if is_published(read_faces(bucket), min_faces)]


def published_total(buckets: Iterable, min_faces: int) -> WindowStats:
    """Rule 2: the aggregate of the published buckets only (0 faces when none is published)."""
    total = WindowStats()
    for bucket in published_buckets(buckets, min_faces):
        total.add(bucket)
    return total


CROWD_MIN_CAMERAS = 1


def is_crowd_published(bucket) -> bool:
    """Rule 3: a minute's crowd numbers are shown when a camera reported in it."""
    return bucket.signals > 0 and len(bucket.devices) >= CROWD_MIN_CAMERAS


def published_crowd_total(buckets: Iterable) -> CrowdStats:
    """Rule 3 over several minutes: the published minutes' signals summed."""
    total = CrowdStats()
    for bucket in buckets:
        if is_crowd_published(bucket):
            total.add(bucket)
    return total
