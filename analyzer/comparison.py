"""Comparison runs in the analyzer: a sampled crop is read by both backends and the pair is written
as one item (contracts.build_comparison_item) next to the observations.

A crop's metadata says it is sampled (`comparison-run`) and in which mode its camera was:

- cloud: the analyzer's own backend reads it as usual (its observation is written as for any
  crop); the camera's side of the pair is the camera's own reading, sent in the crop's metadata
  as in edge mode (a Lambda bundle has no model: the model's wheels are too big for it); a crop
  from an older camera without one is read here with the model when this analyzer has it;
- edge: the camera already sent its own scores (they are in the metadata); the analyzer's backend
  reads the crop (Rekognition in production) and no observation is written, only the pair.

The analyzer cannot call a backend it does not have: with the local backend (the demo) there is
no Rekognition, and the pair says so (`available: false`, reason `no_rekognition`) instead of
inventing a reading. Django-free, like the rest of the analyzer.
"""

from __future__ import annotations

import json
import logging
import threading

import numpy as np
from PIL import Image

from edge_package.contracts import (
    META_COMPARISON_MODE,
    META_COMPARISON_RUN,
    META_EDGE_ANALYZED_AT_MS,
    META_EDGE_BYTES,
    META_EDGE_MODEL,
    META_EDGE_SCORES,
    ContractError,
    CropKey,
    build_observation_item,
    comparison_reading,
    decode_scores,
)

from .backends import Face

log = logging.getLogger("stagepulse.analysis")


def sampled_mode(metadata: dict) -> str:
    """ "cloud" or "edge" for a crop sampled by a comparison run, "" otherwise."""
    if not metadata.get(META_COMPARISON_RUN):
        return ""
    mode = metadata.get(META_COMPARISON_MODE, "")
    if mode not in ("cloud", "edge"):
        raise ContractError(f"comparison-mode must be cloud or edge, got {mode!r}")
    return mode


def edge_reading(metadata: dict) -> tuple[dict, int]:
    """The camera's own reading of an edge-mode sampled crop, and the bytes it sent for it."""
    scores = decode_scores(metadata.get(META_EDGE_SCORES, ""))
    try:
        done_ms = int(metadata.get(META_EDGE_ANALYZED_AT_MS, ""))
        edge_bytes = int(metadata.get(META_EDGE_BYTES, ""))
    except ValueError:
        raise ContractError("edge-analyzed-at-ms and edge-bytes must be whole numbers") from None
    reading = comparison_reading(
        available=True,
        faces=1,
        scores=scores,
        done_ms=done_ms,
        model=metadata.get(META_EDGE_MODEL, ""),
    )
    return reading, edge_bytes


def camera_reading(metadata: dict) -> tuple[dict, int] | None:
    """The camera's own reading of a cloud-mode sampled crop, when the camera sent one (cameras
    read sampled crops with their model in both modes; an older release does not), else None. A
    reading that breaks the contract is left out (logged), never half-used: the analyzer then
    reads the crop itself if it has the model, or says it has none."""
    if not metadata.get(META_EDGE_SCORES):
        return None
    try:
        return edge_reading(metadata)
    except ContractError as exc:
        log.warning("comparison: the camera's reading of a cloud-mode crop is unusable: %s", exc)
        return None


def faces_reading(faces: list[Face], *, done_ms: int, calls: float, model: str) -> dict:
    """A backend's faces in one crop as a reading: the largest face (index 0) is the pair's."""
    first = faces[0] if faces else None
    return comparison_reading(
        available=True,
        faces=len(faces),
        scores=first.scores if first else None,
        confidence=first.confidence if first else 0.0,
        done_ms=done_ms,
        calls=calls,
        model=model,
    )


def scores_item_bytes(crop: CropKey, face: Face | None, organization: str, model: str) -> int:
    """The bytes a camera in edge mode sends for this face: its observation item as the edge
    sink serialises it (sinks.ObservationSink), built here from the local reading."""
    item = build_observation_item(
        crop=crop,
        face_index=0,
        scores=face.scores if face else {},
        face_confidence=face.confidence if face else 0.0,
        source="edge",
        organization=organization,
        model=model,
        analyzed_at_ms=crop.captured_at_ms,
    )
    return len(json.dumps(item).encode())


class SecondLocalModel:
    """The camera's model run in the analyzer on cloud-mode sampled crops (when the analyzer's
    own backend is Rekognition). Loaded on the first sampled crop; a bundle without the model
    gives readings marked unavailable (`no_local_model`), never a failed crop."""

    def __init__(self, classifier=None):
        self._classifier = classifier
        self._problem = ""
        self._lock = threading.Lock()  # a TFLite interpreter is not thread-safe

    def read(self, image: Image.Image, confidence: float, done_ms) -> tuple[dict, Face | None]:
        with self._lock:
            if self._classifier is None and not self._problem:
                try:
                    from edge_package.emotion_model import EmotionClassifier

                    self._classifier = EmotionClassifier()
                except Exception as exc:  # noqa: BLE001 - a Lambda bundle without litert/fer
                    self._problem = f"{type(exc).__name__}: {exc}"
                    log.warning("comparison: no local model in this analyzer (%s)", exc)
            if self._classifier is None:
                return comparison_reading(available=False, reason="no_local_model"), None
            rgb = np.asarray(image.convert("RGB"))
            try:
                scores = self._classifier.classify(np.ascontiguousarray(rgb[:, :, ::-1]))
            except ValueError as exc:
                log.warning("comparison: the local model could not read a crop: %s", exc)
                return comparison_reading(available=False, reason="local_unreadable"), None
            model = getattr(self._classifier, "model_name", "")
        face = Face(scores=scores, confidence=confidence)
        return faces_reading([face], done_ms=done_ms(), calls=0.0, model=model), face
