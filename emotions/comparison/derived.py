"""Per-pair figures the result aggregates in SQL, worked out once when a pair is stored
(services.store_pairs) and by the migration that added them: pure functions, no Django, so the
migration computes exactly what the ingest does."""

from __future__ import annotations

from datetime import datetime

from edge_package.contracts import EMOTIONS, LIVELY_EMOTIONS


def lively(scores: dict) -> float:
    """HAPPY + SURPRISED of one reading: the vibe's expression term sums these over read faces."""
    return sum(scores.get(name, 0.0) for name in LIVELY_EMOTIONS)


def is_read(scores: dict) -> bool:
    """Whether a backend read an expression at all (some score above zero)."""
    return any(scores.get(name, 0) > 0 for name in EMOTIONS)


def latency_s(
    mode: str, captured_at: datetime, received_at: datetime, visible_at: datetime, local_done_ms
) -> float | None:
    """Capture to visible for the pair's mode (docs/comparison.md). Cloud mode: the pair is
    written right after the crop's observation and ingested with it. Edge mode: the camera's
    scores were written when its model was done; they wait for the ingest as the pair did. None
    for an edge-mode pair without the camera's reading time."""
    captured_ms = captured_at.timestamp() * 1000
    ingest_wait_ms = max(0.0, (visible_at - received_at).total_seconds() * 1000)
    if mode == "cloud":
        return (visible_at.timestamp() * 1000 - captured_ms) / 1000
    if mode == "edge" and local_done_ms:
        return (local_done_ms - captured_ms + ingest_wait_ms) / 1000
    return None


def derived_fields(
    *, mode, captured_at, received_at, visible_at, rekognition_scores, local_scores, local_done_ms
) -> dict:
    """The stored per-pair figures (ComparisonReading's latency_s, *_lively, *_read)."""
    return {
        "latency_s": latency_s(mode, captured_at, received_at, visible_at, local_done_ms),
        "rekognition_lively": lively(rekognition_scores),
        "rekognition_read": is_read(rekognition_scores),
        "local_lively": lively(local_scores),
        "local_read": is_read(local_scores),
    }
