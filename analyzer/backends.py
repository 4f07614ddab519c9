"""The two analyzer backends behind one interface: Amazon Rekognition (mosaic-batched) and local.

`analyze(images)` takes decoded crops and returns, per crop and in order, either the list of faces
found (possibly empty: "no face") or an AnalysisError for that crop. A failure of one DetectFaces
call only affects the crops in its mosaic.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image

from awsclients import error_code
from edge_package.contracts import EMOTIONS

from .errors import AnalysisError, PermanentError, RetryableError, from_aws_error
from .mosaic import MAX_REQUEST_BYTES, Mosaic, MosaicLimits, build_mosaic, plan

log = logging.getLogger("stagepulse.analysis")

RETRYABLE_REKOGNITION_CODES = frozenset(
    {"ThrottlingException", "ProvisionedThroughputExceededException", "InternalServerError"}
)


@dataclass(frozen=True)
class Face:
    scores: dict[str, float]
    confidence: float  # 0..100


CropResult = list[Face] | AnalysisError


def scores_from_rekognition(emotions: list[dict]) -> dict[str, float]:
    """Rekognition's Emotions list as the eight-emotion map; UNKNOWN is dropped, never spread."""
    scores = dict.fromkeys(EMOTIONS, 0.0)
    for entry in emotions or []:
        name = str(entry.get("Type", "")).upper()
        if name in scores:
            scores[name] = float(min(100.0, max(0.0, float(entry.get("Confidence", 0.0)))))
    return scores


class RekognitionBackend:
    """DetectFaces on mosaics of crops; retries throttling with exponential backoff and jitter."""

    source = "rekognition"
    model = "rekognition-detectfaces"
    # EMOTIONS only: the product needs nothing else (no age, gender) about a face.
    attributes = ("EMOTIONS",)

    def __init__(
        self,
        client,
        *,
        limits: MosaicLimits | None = None,
        max_attempts: int = 5,
        base_delay_s: float = 0.25,
        max_delay_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self.client = client
        self.limits = limits or MosaicLimits()
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.sleep = sleep
        self.calls = 0
        self.throttled = 0
        self.unattributed_faces = 0

    def _detect(self, image_bytes: bytes) -> list[dict]:
        for attempt in range(1, self.max_attempts + 1):
            self.calls += 1
            try:
                response = self.client.detect_faces(
                    Image={"Bytes": image_bytes}, Attributes=list(self.attributes)
                )
                return response.get("FaceDetails", [])
            except Exception as exc:
                code = error_code(exc)
                if code == "InvalidImageFormatException":
                    raise PermanentError("invalid_image", code) from exc
                if code == "ImageTooLargeException":
                    raise PermanentError("image_too_large", code) from exc
                if code == "LimitExceededException":
                    raise RetryableError("rekognition_quota_exhausted", code) from exc
                if code not in RETRYABLE_REKOGNITION_CODES:
                    raise from_aws_error(exc, "rekognition") from exc
                self.throttled += 1
                if attempt == self.max_attempts:
                    raise RetryableError(
                        "rekognition_quota_exhausted",
                        f"{code} after {self.max_attempts} attempts",
                    ) from exc
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
                self.sleep(delay * random.uniform(0.5, 1.0))
        raise AssertionError("unreachable")

    def _analyze_mosaic(self, mosaic: Mosaic, images: dict[int, Image.Image], out: dict) -> None:
        if len(mosaic.jpeg) > MAX_REQUEST_BYTES and len(mosaic.tiles) > 1:
            self._split(mosaic, images, out)
            return
        try:
            details = self._detect(mosaic.jpeg)
        except PermanentError as exc:
            if len(mosaic.tiles) > 1:
                # One crop spoils the whole mosaic: halve it until the culprit stands alone.
                self._split(mosaic, images, out)
                return
            out[mosaic.tiles[0].item] = exc
            return
        except AnalysisError as exc:
            for tile in mosaic.tiles:
                out[tile.item] = exc
            return
        faces: dict[int, list[tuple[float, Face]]] = {tile.item: [] for tile in mosaic.tiles}
        for detail in details:
            tile = mosaic.tile_for_box(detail.get("BoundingBox", {}))
            if tile is None:
                self.unattributed_faces += 1
                continue
            box = detail.get("BoundingBox", {})
            area = float(box.get("Width", 0)) * float(box.get("Height", 0))
            face = Face(
                scores=scores_from_rekognition(detail.get("Emotions", [])),
                confidence=float(detail.get("Confidence", 0.0)),
            )
            faces[tile.item].append((area, face))
        for item, found in faces.items():
            # Largest face first: face_index 0 is the face the edge cropped for.
            out[item] = [face for _, face in sorted(found, key=lambda pair: -pair[0])]

    def _split(self, mosaic: Mosaic, images: dict[int, Image.Image], out: dict) -> None:
        half = len(mosaic.tiles) // 2
        for part in (mosaic.tiles[:half], mosaic.tiles[half:]):
            sub = build_mosaic([(t.item, images[t.item]) for t in part], self.limits)
            self._analyze_mosaic(sub, images, out)

    def analyze(self, images: list[Image.Image]) -> list[CropResult]:
        indexed = list(enumerate(images))
        by_item = dict(indexed)
        out: dict[int, CropResult] = {}
        for mosaic in plan(indexed, self.limits):
            self._analyze_mosaic(mosaic, by_item, out)
        return [out[i] for i in range(len(images))]


class LocalBackend:
    """The fer TFLite model on each crop: the crop already is a face, so no detection is done."""

    source = "local"

    def __init__(self, classifier):
        self.classifier = classifier
        self.model = classifier.model_name

    def analyze(self, images: list[Image.Image], confidences: list[float] | None = None):
        results: list[CropResult] = []
        for index, image in enumerate(images):
            rgb = np.asarray(image.convert("RGB"))
            try:
                scores = self.classifier.classify(np.ascontiguousarray(rgb[:, :, ::-1]))
            except ValueError as exc:
                results.append(PermanentError("invalid_image", str(exc)))
                continue
            confidence = confidences[index] if confidences else 0.0
            results.append([Face(scores=scores, confidence=confidence)])
        return results
