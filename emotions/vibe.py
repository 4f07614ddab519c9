"""Vibe, second version: expression energy, motion energy, sound energy and crowd fill, each
normalised per stage against that stage's own recent history (a robust z-score), blended with
the festival's weights.

For one stage and one window (a live 5-minute window, a timeline minute, a set):

    raw_c     = the component's value over the window's public buckets
                expression: mean over read faces of (HAPPY + SURPRISED) / 100 (v1's energy)
                motion:     mean motion_energy of the cameras' windows (0..1, from the device)
                sound:      power mean of sound_level_dbfs (dBFS)
                fill:       mean crowd_fill (0..1)
    own_c     = the stage's per-minute raw_c values in the reference period
    pooled_c  = every stage of the festival's per-minute raw_c values in the same period
    robust(x, values) = logistic(1.702 * (x - median) / max(1.4826 * MAD, SCALE_FLOOR_c))
                (a robust z-score through the normal CDF's logistic approximation: 0.5 is
                the history's median, continuous in x, a constant history still has a scale)
    ref(x)    = robust(x, pooled_c) when pooled_c has >= POOLED_MIN_MINUTES values,
                else the cold-start prior (PRIORS: the value itself, sound mapped -60..-10 dBFS)
    w_own     = min(n_own / (n_own + OWN_PRIOR_MINUTES), OWN_WEIGHT_MAX)
    score_c   = w_own * robust(x, own_c) + (1 - w_own) * ref(x)          (0..1)
    vibe_v2   = 100 * sum(weight_c * score_c) / sum(weight_c)   over components with data

A component without data (no camera reported, no published faces, face-free mode) drops out and
the remaining weights are renormalised; with no component at all there is no vibe. The own
history takes over gradually (a stage with an hour of history is judged half against itself) and
never entirely (at most OWN_WEIGHT_MAX), so a chill stage at its own best can outrank a dance tent
at its usual, while a crowd that really dances harder still counts. docs/analysis.md has the rule
and its reasons. Django-free on purpose: the selectors feed it plain numbers.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from edge_package.contracts import LIVELY_EMOTIONS

COMPONENTS = ("expression", "motion", "sound", "fill")
OWN_PRIOR_MINUTES = 60.0
OWN_WEIGHT_MAX = 0.75
POOLED_MIN_MINUTES = 5
SOUND_PRIOR_DBFS = (-60.0, -10.0)
# The smallest spread a history is given (a stage whose crowd never changed still has a scale):
# about a tenth of a component's usual range.
SCALE_FLOOR = {"expression": 0.05, "motion": 0.05, "fill": 0.05, "sound": 2.0}
LOGISTIC_NORMAL = 1.702  # logistic(1.702 z) is within 0.01 of the normal CDF


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


PRIORS = {
    "expression": _clip,
    "motion": _clip,
    "fill": _clip,
    "sound": lambda db: _clip(
        (db - SOUND_PRIOR_DBFS[0]) / (SOUND_PRIOR_DBFS[1] - SOUND_PRIOR_DBFS[0])
    ),
}


@dataclass
class CrowdStats:
    """Crowd signals over one or more minutes (anything with CrowdMinute's sums and counts)."""

    signals: int = 0
    motion_sum: float = 0.0
    motion_max: float = 0.0
    sound_signals: int = 0
    sound_power_sum: float = 0.0
    fill_sum: float = 0.0
    devices: set = field(default_factory=set)

    def add(self, bucket) -> None:
        self.signals += bucket.signals
        self.motion_sum += bucket.motion_sum
        self.motion_max = max(self.motion_max, bucket.motion_max)
        self.sound_signals += bucket.sound_signals
        self.sound_power_sum += bucket.sound_power_sum
        self.fill_sum += bucket.fill_sum
        self.devices |= set(bucket.devices)

    @property
    def cameras(self) -> int:
        return len(self.devices)

    def raw(self) -> dict[str, float | None]:
        if not self.signals:
            return {"motion": None, "sound": None, "fill": None}
        sound = None
        if self.sound_signals and self.sound_power_sum > 0:
            sound = 10.0 * math.log10(self.sound_power_sum / self.sound_signals)
        return {
            "motion": self.motion_sum / self.signals,
            "sound": sound,
            "fill": self.fill_sum / self.signals,
        }


def expression_energy(stats) -> float | None:
    """v1's energy over read faces (a WindowStats of published buckets only), or None."""
    read = stats.read_faces
    if read == 0:
        return None
    return min(1.0, sum(stats.sums.get(name, 0.0) for name in LIVELY_EMOTIONS) / (100.0 * read))


def raw_components(expression: float | None, crowd: CrowdStats | None) -> dict:
    values = {"expression": expression, "motion": None, "sound": None, "fill": None}
    if crowd is not None:
        values.update(crowd.raw())
    return values


def _median(ordered: list[float]) -> float:
    middle = len(ordered) // 2
    if len(ordered) % 2:
        return ordered[middle]
    return (ordered[middle - 1] + ordered[middle]) / 2.0


@dataclass(frozen=True)
class Spread:
    """A history's robust location and scale: median, 1.4826 x MAD (floored), and its size."""

    median: float
    scale: float
    n: int

    @classmethod
    def of(cls, values: list[float], component: str) -> Spread | None:
        if not values:
            return None
        ordered = sorted(values)
        median = _median(ordered)
        mad = _median(sorted(abs(v - median) for v in ordered))
        return cls(median, max(1.4826 * mad, SCALE_FLOOR[component]), len(ordered))

    def score(self, value: float) -> float:
        z = (value - self.median) / self.scale
        return 1.0 / (1.0 + math.exp(-LOGISTIC_NORMAL * max(-30.0, min(30.0, z))))


@dataclass
class Reference:
    """Per component, the robust spread of one stage's per-minute values and of the festival's."""

    own: dict[str, Spread | None]
    pooled: dict[str, Spread | None]

    def score(self, component: str, value: float) -> float:
        pooled = self.pooled.get(component)
        if pooled is not None and pooled.n >= POOLED_MIN_MINUTES:
            reference = pooled.score(value)
        else:
            reference = PRIORS[component](value)
        own = self.own.get(component)
        if own is None:
            return reference
        w_own = min(own.n / (own.n + OWN_PRIOR_MINUTES), OWN_WEIGHT_MAX)
        return w_own * own.score(value) + (1.0 - w_own) * reference


def build_references(
    per_stage: dict[int, dict[str, list[float]]], stage_ids: Iterable[int] = ()
) -> dict[int, Reference]:
    """`per_stage`: stage id -> component -> per-minute values in the reference period; every
    stage of `stage_ids` gets a reference (one without history: the pooled one alone)."""
    pooled: dict[str, list[float]] = {c: [] for c in COMPONENTS}
    for values in per_stage.values():
        for component in COMPONENTS:
            pooled[component].extend(values.get(component, []))
    spreads = {c: Spread.of(v, c) for c, v in pooled.items()}
    return {
        stage_id: Reference({c: Spread.of(values.get(c, []), c) for c in COMPONENTS}, spreads)
        for stage_id, values in {**{i: {} for i in stage_ids}, **per_stage}.items()
    }


EMPTY_REFERENCE = Reference({}, {})


def blend(raw: dict, reference: Reference, weights: dict[str, float]) -> tuple[float | None, dict]:
    """vibe_v2 (0..100, None without any component) and each component's raw value, score
    (0..100) and the weight it had after renormalisation (None for a component without data)."""
    present = {
        c: reference.score(c, raw[c])
        for c in COMPONENTS
        if raw.get(c) is not None and weights.get(c, 0) > 0
    }
    total = sum(weights[c] for c in present)
    components: dict[str, dict | None] = {}
    for c in COMPONENTS:
        if c not in present:
            components[c] = None
            continue
        components[c] = {
            "raw": round(raw[c], 1 if c == "sound" else 3),
            "score": round(100.0 * present[c], 1),
            "weight": round(weights[c] / total, 3),
        }
    if not present:
        return None, components
    vibe = 100.0 * sum(weights[c] * present[c] for c in present) / total
    return round(vibe, 1), components


def minute_values(expression_buckets: Iterable, crowd_buckets: Iterable, energy) -> dict:
    """Per stage and component, the per-minute raw values of the given buckets (expression from
    published face buckets, `energy` turning one into its energy; crowd from CrowdMinutes)."""
    per_stage: dict[int, dict[str, list[float]]] = {}
    for bucket in expression_buckets:
        value = energy(bucket)
        if value is not None:
            per_stage.setdefault(bucket.stage_id, {}).setdefault("expression", []).append(value)
    for bucket in crowd_buckets:
        stats = CrowdStats()
        stats.add(bucket)
        for component, value in stats.raw().items():
            if value is not None:
                per_stage.setdefault(bucket.stage_id, {}).setdefault(component, []).append(value)
    return per_stage
