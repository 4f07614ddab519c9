"""Analyzer settings, read from environment variables.

The analyzer runs as a Lambda function (no Django) and as a worker under Django; both build an
AnalyzerSettings, the Lambda from os.environ, the Django wrapper from its settings if it wants to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from edge_package.contracts import DEFAULT_OBSERVATION_TTL_S

BACKENDS = ("rekognition", "local")
DEFAULT_NAMESPACE = "StagePulse"
DEFAULT_TABLE = "stagepulse-observations"
# The S3 lifecycle rule deletes crops after one day at the latest; retention cannot outlive it.
MAX_RETENTION_HOURS = 24
# Rekognition accepts at most 5 MB of image bytes; a crop bigger than that is not a face crop.
DEFAULT_MAX_CROP_BYTES = 5 * 1024 * 1024
DEFAULT_MAX_CROP_SIDE_PX = 4096
DEFAULT_MIN_CROP_SIDE_PX = 16  # the smallest face the edge is allowed to send (min_face_px)
# A decoded crop is kept at most this big: the mosaic tile is 160 px and the local model reads
# 64x64, so more pixels add nothing but memory (a 4096 px crop would hold ~50 MB per image).
DEFAULT_ANALYSIS_SIDE_PX = 512
# Concurrent S3 GETs / PutItems per analyzer: the work is waiting on I/O, not CPU.
DEFAULT_IO_WORKERS = 8
# Full-size decodes at once (each up to max_crop_side_px squared before it is shrunk).
DEFAULT_DECODE_SLOTS = 2


class SettingsError(ValueError):
    """An analyzer setting is missing or malformed; the message names the variable."""


def _int_env(env: dict, name: str, default: int, low: int, high: int) -> int:
    raw = env.get(name, "")
    if raw.strip() == "":
        return default
    try:
        value = int(float(raw))
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise SettingsError(f"{name} must be between {low} and {high}, got {value}")
    return value


def parse_allowlist(raw: str) -> frozenset[str]:
    """'fest/main,fest/*' -> entries matched by stage_allowed; empty means every stage."""
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


@dataclass(frozen=True)
class AnalyzerSettings:
    backend: str = "rekognition"
    table_name: str = DEFAULT_TABLE
    metrics_namespace: str = DEFAULT_NAMESPACE
    retention_hours: int = 0
    stage_allowlist: frozenset[str] = field(default_factory=frozenset)
    observation_ttl_s: int = DEFAULT_OBSERVATION_TTL_S
    max_crop_bytes: int = DEFAULT_MAX_CROP_BYTES
    max_crop_side_px: int = DEFAULT_MAX_CROP_SIDE_PX
    min_crop_side_px: int = DEFAULT_MIN_CROP_SIDE_PX
    local_model_path: str | None = None
    queue_url: str = ""
    analysis_side_px: int = DEFAULT_ANALYSIS_SIDE_PX
    io_workers: int = DEFAULT_IO_WORKERS
    decode_slots: int = DEFAULT_DECODE_SLOTS

    def __post_init__(self):
        if self.backend not in BACKENDS:
            raise SettingsError(f"analyzer backend must be one of {BACKENDS}, got {self.backend!r}")
        if not 0 <= self.retention_hours <= MAX_RETENTION_HOURS:
            raise SettingsError(
                f"crop retention must be 0..{MAX_RETENTION_HOURS} hours, got {self.retention_hours}"
            )

    def stage_allowed(self, festival: str, stage: str) -> bool:
        """No allowlist: every stage is accepted (ingest drops stages the database lacks)."""
        if not self.stage_allowlist:
            return True
        return (
            f"{festival}/{stage}" in self.stage_allowlist or f"{festival}/*" in self.stage_allowlist
        )

    @classmethod
    def from_env(cls, env: dict | None = None) -> AnalyzerSettings:
        env = dict(os.environ if env is None else env)
        return cls(
            backend=(env.get("STAGEPULSE_ANALYZER_BACKEND") or "rekognition").strip().lower(),
            table_name=env.get("STAGEPULSE_OBSERVATIONS_TABLE") or DEFAULT_TABLE,
            metrics_namespace=env.get("STAGEPULSE_METRICS_NAMESPACE") or DEFAULT_NAMESPACE,
            retention_hours=_int_env(
                env, "STAGEPULSE_CROP_RETENTION_HOURS", 0, 0, MAX_RETENTION_HOURS
            ),
            stage_allowlist=parse_allowlist(env.get("STAGEPULSE_STAGE_ALLOWLIST", "")),
            observation_ttl_s=_int_env(
                env, "STAGEPULSE_OBSERVATION_TTL_S", DEFAULT_OBSERVATION_TTL_S, 60, 366 * 86400
            ),
            max_crop_bytes=_int_env(
                env, "STAGEPULSE_MAX_CROP_BYTES", DEFAULT_MAX_CROP_BYTES, 1, DEFAULT_MAX_CROP_BYTES
            ),
            local_model_path=env.get("STAGEPULSE_LOCAL_MODEL_PATH") or None,
            queue_url=env.get("STAGEPULSE_ANALYZER_QUEUE_URL", ""),
            io_workers=_int_env(env, "STAGEPULSE_ANALYZER_IO_WORKERS", DEFAULT_IO_WORKERS, 1, 64),
            decode_slots=_int_env(
                env, "STAGEPULSE_ANALYZER_DECODE_SLOTS", DEFAULT_DECODE_SLOTS, 1, 16
            ),
        )
