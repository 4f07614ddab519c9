"""Vibe, second version: expression energy, motion energy, sound energy and crowd fill, each
normalised per stage against that stage's own recent history, blended with the festival's weights.

For one stage and one window (a live 5-minute window, a timeline minute, a set):

    raw_c     = the component's value over the window's public buckets
                expression: mean over read faces of (HAPPY + SURPRISED) / 100 (v1's energy)
                motion:     mean motion_energy of the cameras' windows (0..1, from the device)
                sound:      power mean of sound_level_dbfs (dBFS)
                fill:       mean crowd_fill (0..1)
    own_c     = the stage's per-minute raw_c values in the reference period
    pooled_c  = every stage of the festival's per-minute raw_c values in the same period
    ref(x)    = midrank percentile of x in pooled_c when it has >= POOLED_MIN_MINUTES values,
                else the cold-start prior (PRIORS: the value itself, sound mapped -60..-10 dBFS)
    w_own     = min(n_own / (n_own + OWN_PRIOR_MINUTES), OWN_WEIGHT_MAX)
    score_c   = w_own * percentile(x, own_c) + (1 - w_own) * ref(x)          (0..1)
    vibe_v2   = 100 * sum(weight_c * score_c) / sum(weight_c)   over components with data

A component without data (no camera reported, no published faces, face-free mode) drops out and
the remaining weights are renormalised; with no component at all there is no vibe. The own
history takes over gradually (a stage with an hour of history is judged half against itself) and
never entirely (at most OWN_WEIGHT_MAX), so a chill stage at its own best can outrank a dance tent
at its usual, while a crowd that really dances harder still counts. docs/analysis.md has the rule
and its reasons. Django-free on purpose: the selectors feed it plain numbers.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from edge_package.contracts import LIVELY_EMOTIONS

COMPONENTS = ("expression", "motion", "sound", "fill")
OWN_PRIOR_MINUTES = 60.0
OWN_WEIGHT_MAX = 0.75
POOLED_MIN_MINUTES = 5
SOUND_PRIOR_DBFS = (-60.0, -10.0)


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


PRIORS = {
    "expression": _clip,
    "motion": _clip,
    "fill": _clip,
    "sound": lambda db: _clip((db - SOUND_PRIOR_DBFS[0]) / (SOUND_PRIOR_DBFS[1] - SOUND_PRIOR_DBFS[0])),
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


def percentile(value: float, ordered: list[float]) -> float:
    """Midrank percentile (0..1) of `value` among `ordered` (sorted); ties count half."""
    below = bisect.bisect_left(ordered, value)
    upto = bisect.bisect_right(ordered, value)
    return (below + upto) / (2.0 * len(ordered))


@dataclass
class Reference:
    """Per component, the sorted per-minute values of one stage and of the whole festival."""

    own: dict[str, list[float]]
    pooled: dict[str, list[float]]

    def score(self, component: str, value: float) -> float:
        pooled = self.pooled.get(component, [])
        if len(pooled) >= POOLED_MIN_MINUTES:
            reference = percentile(value, pooled)
        else:
            reference = PRIORS[component](value)
        own = self.own.get(component, [])
        if not own:
            return reference
        w_own = min(len(own) / (len(own) + OWN_PRIOR_MINUTES), OWN_WEIGHT_MAX)
        return w_own * percentile(value, own) + (1.0 - w_own) * reference


def build_references(
    per_stage: dict[int, dict[str, list[float]]], stage_ids: Iterable[int] = ()
) -> dict[int, Reference]:
    """`per_stage`: stage id -> component -> per-minute values in the reference period; every
    stage of `stage_ids` gets a reference (one without history: the pooled one alone)."""
    pooled: dict[str, list[float]] = {c: [] for c in COMPONENTS}
    for values in per_stage.values():
        for component in COMPONENTS:
            pooled[component].extend(values.get(component, []))
    pooled = {c: sorted(v) for c, v in pooled.items()}
    return {
        stage_id: Reference({c: sorted(values.get(c, [])) for c in COMPONENTS}, pooled)
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
