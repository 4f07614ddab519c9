"""The analysis of one batch of crops: fetch, validate, analyze, write, count, delete.

Order matters for safety: observations are written (conditionally, so replays add nothing) before a
crop is deleted and before the caller acknowledges the message; a crash at any point therefore
leads to a redelivery that completes the work instead of losing it.

The work is waiting on S3 and DynamoDB, so downloads and writes run on a bounded thread pool and a
crop is analyzed as soon as it is decoded (local model) while the others still download. Memory
is bounded whatever the batch: at most `decode_slots` crops are decoded at full size at once, and
each is shrunk to `analysis_side_px` right away. Any exception on one crop fails that crop alone.
"""

from __future__ import annotations

import io
import logging
import threading
import time
import warnings
from collections import Counter, defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field

from PIL import Image, UnidentifiedImageError

from awsclients import error_code
from edge_package.contracts import (
    CROP_PREFIX,
    EMOTIONS,
    META_COMPARISON_RUN,
    META_DETECTOR_SCORE,
    META_ORGANIZATION,
    UNKNOWN_EXPRESSION,
    ContractError,
    CropKey,
    build_comparison_item,
    build_observation_item,
    comparison_reading,
    parse_crop_key,
    put_observation,
)

from .backends import Face
from .comparison import (
    SecondLocalModel,
    camera_reading,
    edge_reading,
    faces_reading,
    sampled_mode,
    scores_item_bytes,
)
from .config import AnalyzerSettings
from .errors import AnalysisError, PermanentError, RetryableError, from_aws_error
from .events import CropRef, MessageProblem
from .metrics import MetricBatch

log = logging.getLogger("stagepulse.analysis")

# Outcome statuses. Only RETRY makes the message come back.
WRITTEN = "written"
NO_FACE = "no_face"
DUPLICATE = "duplicate"
REJECTED = "rejected"
MISSING = "missing"
IGNORED = "ignored"
RETRY = "retry"
COMPARED = "compared"  # an edge-mode comparison crop: its pair written, no observation

# GetObject on a key that is gone: 404 with s3:ListBucket, 403 AccessDenied without it (S3 will
# not say whether a key exists to a caller that may not list). Both mean: already analyzed.
GONE_CODES = {
    **dict.fromkeys(("NoSuchKey", "404", "NotFound"), "already_deleted"),
    **dict.fromkeys(("AccessDenied", "403"), "access_denied_as_gone"),
}


@dataclass
class CropOutcome:
    ref: CropRef
    status: str = ""
    reason: str = ""
    crop: CropKey | None = None
    faces_written: int = 0
    duplicates: int = 0
    top_emotions: list[str] = field(default_factory=list)
    scores: list[dict[str, float]] = field(default_factory=list)
    crop_bytes: int = 0
    paired: bool = False  # a comparison run's pair was written (or was already there)


@dataclass
class BatchReport:
    outcomes: list[CropOutcome] = field(default_factory=list)
    problems: list[MessageProblem] = field(default_factory=list)
    detectfaces_calls: int = 0

    def failed_message_ids(self) -> list[str]:
        ids = {o.ref.message_id for o in self.outcomes if o.status == RETRY and o.ref.message_id}
        return sorted(ids)

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.outcomes if outcome.status == status)

    @property
    def faces_written(self) -> int:
        return sum(outcome.faces_written for outcome in self.outcomes)

    def summary(self) -> dict:
        statuses = Counter(outcome.status for outcome in self.outcomes)
        reasons = Counter(o.reason for o in self.outcomes if o.reason)
        reasons.update(problem.reason for problem in self.problems)
        return {
            "crops": len(self.outcomes),
            "faces_written": self.faces_written,
            "duplicates": sum(outcome.duplicates for outcome in self.outcomes),
            "statuses": dict(statuses),
            "reasons": dict(reasons),
            "detectfaces_calls": self.detectfaces_calls,
        }


def _detector_confidence(metadata: dict) -> float:
    """The edge detector's score as 0..100 (the local backend does not detect faces itself)."""
    try:
        value = float(metadata.get(META_DETECTOR_SCORE, ""))
    except ValueError:
        return 0.0
    if value != value or value < 0:  # NaN or negative
        return 0.0
    return min(100.0, value * 100.0 if value <= 1.0 else value)


class Analyzer:
    """Stateless between batches; clients are injected so tests and the worker share the code."""

    def __init__(
        self,
        *,
        settings: AnalyzerSettings,
        backend,
        s3,
        dynamodb,
        cloudwatch,
        clock: Callable[[], float] = time.time,
        executor: ThreadPoolExecutor | None = None,
        comparison_classifier=None,
    ):
        self.settings = settings
        self.backend = backend
        self.s3 = s3
        self.dynamodb = dynamodb
        self.cloudwatch = cloudwatch
        self.clock = clock
        # Built once (per Lambda container or worker); boto3 clients are thread-safe.
        self.executor = executor or ThreadPoolExecutor(
            max_workers=settings.io_workers, thread_name_prefix="analyzer-io"
        )
        self._decode_slots = threading.BoundedSemaphore(settings.decode_slots)
        self._backend_lock = threading.Lock()  # a TFLite interpreter is not thread-safe
        # The camera's model for cloud-mode comparison crops, when the backend is Rekognition.
        self.second_local = SecondLocalModel(comparison_classifier)

    # --- steps -----------------------------------------------------------------------------
    def _route(self, outcome: CropOutcome) -> bool:
        key = outcome.ref.key
        if not key.startswith(f"{CROP_PREFIX}/"):
            # Not a crop: not ours to analyze or delete (the notification filter should stop it).
            return self._finish(outcome, IGNORED, "outside_prefix")
        try:
            outcome.crop = parse_crop_key(outcome.ref.encoded_key, url_encoded=True)
        except ContractError as exc:
            log.warning("rejected crop %r: bad_key (%s)", key, exc)
            return self._finish(outcome, REJECTED, "bad_key")
        crop = outcome.crop
        if not self.settings.stage_allowed(crop.festival, crop.stage):
            return self._finish(outcome, REJECTED, "unknown_stage")
        if outcome.ref.size == 0:
            return self._finish(outcome, REJECTED, "empty_object")
        if outcome.ref.size is not None and outcome.ref.size > self.settings.max_crop_bytes:
            return self._finish(outcome, REJECTED, "image_too_large")
        return True

    def _fetch(self, outcome: CropOutcome) -> tuple[Image.Image, dict] | None:
        ref = outcome.ref
        try:
            response = self.s3.get_object(Bucket=ref.bucket, Key=ref.key)
        except Exception as exc:
            gone = GONE_CODES.get(error_code(exc))
            if gone:
                # Already analyzed and deleted: a duplicate delivery, not an error (counted).
                if gone != "already_deleted":
                    log.warning(
                        "crop %r answered 403 on GetObject: taken as gone (duplicate delivery); "
                        "if every crop does, the analyzer role cannot read the bucket",
                        ref.key,
                    )
                self._finish(outcome, MISSING, gone)
                return None
            return self._fail(outcome, from_aws_error(exc, "s3"))
        metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
        length = response.get("ContentLength")
        if length is not None and length > self.settings.max_crop_bytes:
            response["Body"].close()
            return self._fail(outcome, PermanentError("image_too_large", f"{length} bytes"))
        try:
            data = response["Body"].read()
        except Exception as exc:
            return self._fail(outcome, from_aws_error(exc, "s3"))
        if not data:
            return self._fail(outcome, PermanentError("empty_object"))
        outcome.crop_bytes = len(data)
        if len(data) > self.settings.max_crop_bytes:
            return self._fail(outcome, PermanentError("image_too_large", f"{len(data)} bytes"))
        try:
            return self._decode(data), metadata
        except AnalysisError as exc:
            return self._fail(outcome, exc)

    def _decode(self, data: bytes) -> Image.Image:
        """The crop as RGB, at most analysis_side_px a side; checked before any pixel is decoded."""
        limit = self.settings.max_crop_side_px
        side = self.settings.analysis_side_px
        try:
            with warnings.catch_warnings(), self._decode_slots:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                image = Image.open(io.BytesIO(data))
                if image.format != "JPEG":
                    raise PermanentError("not_jpeg", f"format {image.format}")
                if max(image.size) > limit:
                    raise PermanentError("image_too_large", f"{image.width}x{image.height} px")
                if min(image.size) < self.settings.min_crop_side_px:
                    raise PermanentError("image_too_small", f"{image.width}x{image.height} px")
                # JPEG DCT scaling: a big crop is decoded at 1/2..1/8 of its size directly.
                image.draft("RGB", (side, side))
                image.load()  # raises on truncated or corrupt data (Pillow is strict by default)
                if image.mode != "RGB":
                    image = image.convert("RGB")
                if max(image.size) > side:
                    image.thumbnail((side, side), Image.Resampling.BILINEAR)
                return image
        except AnalysisError:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise PermanentError("image_too_large", str(exc)) from exc
        except UnidentifiedImageError as exc:
            raise PermanentError("not_an_image", str(exc)) from exc
        except (OSError, SyntaxError, ValueError) as exc:
            raise PermanentError("corrupt_image", str(exc)) from exc

    def _write(self, outcome: CropOutcome, faces: list[Face], metadata: dict) -> None:
        analyzed_at_ms = int(self.clock() * 1000)
        for index, face in enumerate(faces):
            item = build_observation_item(
                crop=outcome.crop,
                face_index=index,
                scores=face.scores,
                face_confidence=face.confidence,
                source=self.backend.source,
                organization=metadata.get(META_ORGANIZATION, ""),
                model=self.backend.model,
                analyzed_at_ms=analyzed_at_ms,
                ttl_s=self.settings.observation_ttl_s,
            )
            try:
                written = put_observation(self.dynamodb, self.settings.table_name, item)
            except Exception as exc:
                self._fail(outcome, from_aws_error(exc, "dynamodb"))
                return
            if not written:
                outcome.duplicates += 1
                continue
            outcome.faces_written += 1
            outcome.top_emotions.append(item["top_emotion"])
            outcome.scores.append(item["emotions"])
        if outcome.faces_written:
            self._finish(outcome, WRITTEN)
        else:
            self._finish(outcome, DUPLICATE, "duplicate_delivery")

    def _now_ms(self) -> int:
        return int(self.clock() * 1000)

    def _write_pair(
        self,
        outcome: CropOutcome,
        faces: list[Face],
        metadata: dict,
        image: Image.Image,
        mode: str,
        calls_share: float,
    ) -> None:
        """A comparison run's crop: its observation as usual (cloud mode), then the pair of
        readings. A failure leaves the message for redelivery, whose replay writes nothing twice."""
        crop = outcome.crop
        organization = metadata.get(META_ORGANIZATION, "")
        rekognition_here = self.backend.source == "rekognition"
        done_ms = self._now_ms()
        if mode == "cloud":
            if faces:
                self._write(outcome, faces, metadata)
                if outcome.status == RETRY:
                    return
            else:
                self._finish(outcome, NO_FACE, "no_face")
            if rekognition_here:
                rekognition = faces_reading(
                    faces, done_ms=done_ms, calls=calls_share, model=self.backend.model
                )
            else:
                rekognition = comparison_reading(available=False, reason="no_rekognition")
            camera = camera_reading(metadata)  # the camera read it itself
            if camera is not None:
                local, edge_bytes = camera
            else:
                if rekognition_here:  # an older camera: the analyzer's copy of the model
                    local, local_face = self.second_local.read(
                        image, _detector_confidence(metadata), self._now_ms
                    )
                else:
                    local = faces_reading(
                        faces, done_ms=done_ms, calls=0.0, model=self.backend.model
                    )
                    local_face = faces[0] if faces else None
                edge_bytes = scores_item_bytes(crop, local_face, organization, local["model"])
        else:
            local, edge_bytes = edge_reading(metadata)
            if rekognition_here:
                rekognition = faces_reading(
                    faces, done_ms=done_ms, calls=calls_share, model=self.backend.model
                )
            else:
                rekognition = comparison_reading(available=False, reason="no_rekognition")
        item = build_comparison_item(
            crop=crop,
            run=metadata.get(META_COMPARISON_RUN, ""),
            mode=mode,
            organization=organization,
            rekognition=rekognition,
            local=local,
            crop_bytes=outcome.crop_bytes or outcome.ref.size or 0,
            edge_bytes=edge_bytes,
            analyzed_at_ms=done_ms,
            ttl_s=self.settings.observation_ttl_s,
        )
        try:
            put_observation(self.dynamodb, self.settings.table_name, item)  # a replay: False
        except Exception as exc:
            self._fail(outcome, from_aws_error(exc, "dynamodb"))
            return
        outcome.paired = True
        if mode == "edge":
            self._finish(outcome, COMPARED)

    def _finish(self, outcome: CropOutcome, status: str, reason: str = "") -> bool:
        outcome.status, outcome.reason = status, reason
        if status in (REJECTED, IGNORED):
            log.warning("crop %r %s: %s", outcome.ref.key, status, reason)
        return False

    def _fail(self, outcome: CropOutcome, exc: AnalysisError) -> None:
        if exc.retryable:
            outcome.status, outcome.reason = RETRY, exc.reason
            log.warning("crop %r will be retried: %s", outcome.ref.key, exc)
        else:
            outcome.status, outcome.reason = REJECTED, exc.reason
            log.warning("crop %r rejected: %s", outcome.ref.key, exc)
        return None

    def _delete_crops(self, outcomes: list[CropOutcome], metrics: MetricBatch) -> None:
        """Privacy: a crop is deleted once it is analyzed or known to be unusable."""
        if self.settings.retention_hours > 0:
            return  # kept for retention_hours; the bucket's lifecycle rule deletes it
        by_bucket: dict[str, list[str]] = defaultdict(list)
        for outcome in outcomes:
            if outcome.status in (WRITTEN, NO_FACE, DUPLICATE, REJECTED, COMPARED):
                by_bucket[outcome.ref.bucket].append(outcome.ref.key)
        for bucket, keys in by_bucket.items():
            for start in range(0, len(keys), 1000):
                chunk = keys[start : start + 1000]
                try:
                    response = self.s3.delete_objects(
                        Bucket=bucket,
                        Delete={"Objects": [{"Key": key} for key in chunk], "Quiet": True},
                    )
                    failed = response.get("Errors", [])
                except Exception as exc:
                    log.error("could not delete %d crops in %s: %r", len(chunk), bucket, exc)
                    failed = [{"Key": key} for key in chunk]
                for _ in failed:
                    metrics.error("crop_delete_failed")
                if failed:
                    log.error("%d crops left for the lifecycle rule in %s", len(failed), bucket)

    # --- the batch ---------------------------------------------------------------------------
    def _guarded(self, outcome: CropOutcome, step: Callable, *args):
        """Poison isolation: an unexpected exception fails this crop alone (logged, counted)."""
        try:
            return step(outcome, *args)
        except ContractError as exc:  # e.g. a NaN score: the same every time, so not retried
            return self._fail(outcome, PermanentError("contract_error", str(exc)))
        except Exception as exc:
            log.exception("crop %r failed in %s", outcome.ref.key, step.__name__)
            detail = f"{type(exc).__name__}: {exc}"
            return self._fail(outcome, RetryableError("internal_error", detail))

    def _analyze(self, ready: list[tuple[CropOutcome, Image.Image, dict]], writes: list) -> int:
        """Run the backend on decoded crops and queue their writes; returns DetectFaces calls."""
        images = [image for _, image, _ in ready]
        with self._backend_lock:
            calls_before = getattr(self.backend, "calls", 0)
            try:
                if self.backend.source == "local":
                    confidences = [_detector_confidence(meta) for _, _, meta in ready]
                    results = self.backend.analyze(images, confidences)
                else:
                    results = self.backend.analyze(images)
            except Exception as exc:
                log.exception("the %s backend failed on %d crops", self.backend.source, len(ready))
                error = RetryableError("internal_error", f"{type(exc).__name__}: {exc}")
                results = [error] * len(ready)
            calls = getattr(self.backend, "calls", 0) - calls_before
        calls_share = calls / len(ready) if ready else 0.0
        for (outcome, image, metadata), result in zip(ready, results, strict=True):
            if isinstance(result, AnalysisError):
                self._fail(outcome, result)
                continue
            try:
                mode = sampled_mode(metadata)
            except ContractError as exc:
                self._fail(outcome, PermanentError("contract_error", str(exc)))
                continue
            if mode:
                pair = (result, metadata, image, mode, calls_share)
                writes.append(self.executor.submit(self._guarded, outcome, self._write_pair, *pair))
            elif not result:
                self._finish(outcome, NO_FACE, "no_face")
            else:
                writes.append(
                    self.executor.submit(self._guarded, outcome, self._write, result, metadata)
                )
        return calls

    def process(
        self, refs: list[CropRef], problems: list[MessageProblem] | tuple = ()
    ) -> BatchReport:
        report = BatchReport(problems=list(problems))
        metrics = MetricBatch(self.settings.metrics_namespace)
        for problem in report.problems:
            log.warning(
                "message %s rejected: %s (%s)", problem.message_id, problem.reason, problem.detail
            )
        fetches: dict[Future, int] = {}
        for index, ref in enumerate(refs):
            outcome = CropOutcome(ref)
            report.outcomes.append(outcome)
            if self._guarded(outcome, self._route):
                fetches[self.executor.submit(self._guarded, outcome, self._fetch)] = index
        # The local model reads each crop as soon as it is decoded, while the rest download;
        # Rekognition waits for the whole batch so that its mosaics are full (one call per 64).
        streaming = self.backend.source == "local"
        writes: list[Future] = []
        ready: list[tuple[int, tuple]] = []
        for future in as_completed(fetches):
            fetched = future.result()
            if fetched is None:
                continue
            outcome = report.outcomes[fetches[future]]
            if streaming:
                report.detectfaces_calls += self._analyze([(outcome, *fetched)], writes)
            else:
                ready.append((fetches[future], (outcome, *fetched)))
        if ready:
            ready.sort(key=lambda pair: pair[0])  # the caller's order: mosaics are deterministic
            report.detectfaces_calls += self._analyze([item for _, item in ready], writes)
        del ready
        for future in writes:
            future.result()
        self._count(report, metrics)
        deleting = self.executor.submit(self._delete_crops, report.outcomes, metrics)
        deleting.result()
        metrics.flush(self.cloudwatch)
        log.info("analysis batch: %s", report.summary())
        return report

    def _count(self, report: BatchReport, metrics: MetricBatch) -> None:
        for problem in report.problems:
            metrics.rejected(problem.reason)
        if report.detectfaces_calls:
            metrics.add("DetectFacesCalls", report.detectfaces_calls, {"Source": "rekognition"})
        for outcome in report.outcomes:
            crop = outcome.crop
            if outcome.status in (REJECTED, IGNORED):
                metrics.rejected(outcome.reason)
            elif outcome.status == RETRY:
                metrics.error(outcome.reason)
            elif outcome.status == MISSING:
                metrics.add("DuplicateDeliveries", 1, {})
                if outcome.reason != "already_deleted":
                    metrics.add("CropsTakenAsGone", 1, {"Reason": outcome.reason})
            if crop is not None and outcome.paired:
                stage = {"Festival": crop.festival, "Stage": crop.stage}
                metrics.add("ComparisonPairs", 1, stage)
            if crop is None or outcome.status not in (WRITTEN, NO_FACE, DUPLICATE):
                continue
            stage = {"Festival": crop.festival, "Stage": crop.stage}
            metrics.add("CropsAnalyzed", 1, stage)
            if outcome.status == NO_FACE:
                metrics.add("CropsWithoutFace", 1, stage)
            if outcome.duplicates:
                metrics.add("DuplicateObservations", outcome.duplicates, stage)
            if outcome.faces_written:
                metrics.add("FacesAnalyzed", outcome.faces_written, stage)
            for name in outcome.top_emotions:
                metrics.add("TopEmotionFaces", 1, {**stage, "Emotion": name})
            for top, scores in zip(outcome.top_emotions, outcome.scores, strict=True):
                if top == UNKNOWN_EXPRESSION:
                    continue  # no reading: zeros would drag every score's average down
                for name in EMOTIONS:
                    metrics.sample("EmotionScore", scores[name], {**stage, "Emotion": name})
