"""Where a released face goes: S3 (cloud mode) or scores-only DynamoDB records (edge mode);
and where crowd signals go in both modes (DynamoDB, numbers only).

Both sinks share one behaviour: try to deliver; when the network or AWS fails, keep the item in the
bounded spool and back off; drain the spool oldest-first once deliveries succeed again. S3 objects
are private (no ACL argument at all) and encrypted at rest (SSE); in edge mode no image leaves.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass

from edge_package import __version__
from edge_package.contracts import (
    META_BOX,
    META_CAPTURED_AT_MS,
    META_COMPARISON_MODE,
    META_COMPARISON_RUN,
    META_DETECTOR_SCORE,
    META_EDGE_ANALYZED_AT_MS,
    META_EDGE_BYTES,
    META_EDGE_MODEL,
    META_EDGE_SCORES,
    META_EDGE_VERSION,
    META_ORGANIZATION,
    aws_error_code,
    build_crop_key,
    build_observation_item,
    encode_scores,
    parse_crop_key,
    put_observation,
)

# Errors that mean "this request is wrong and retrying will not help": the item is dropped.
_PERMANENT = {"InvalidBucketName", "ValidationException", "InvalidArgument", "EntityTooLarge"}
_PERMISSION = {"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "Forbidden"}


# One boto3 Session a region and set of credentials in the environment, reused: a new Session
# parses botocore's service models again (~0.1 s of CPU a client on a camera's small CPU, at
# every start and every sink made). The credentials it finds (keys, a Greengrass container
# endpoint, a profile) are part of the key, so a process whose environment changes gets a new one.
_CREDENTIAL_ENVIRONMENT = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_SHARED_CREDENTIALS_FILE",
    "AWS_CONFIG_FILE",
)
_sessions: dict[tuple, object] = {}
_sessions_lock = threading.Lock()  # a Session is not thread-safe; the clients it makes are


def aws_client(service: str, region: str = ""):
    """boto3 client honouring AWS_ENDPOINT_URL (a moto server) with short, bounded retries."""
    import boto3
    from botocore.config import Config

    config = Config(
        retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=3, read_timeout=10
    )
    region = region or os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION")
    key = (region or "eu-west-1", *(os.environ.get(name) for name in _CREDENTIAL_ENVIRONMENT))
    with _sessions_lock:
        session = _sessions.get(key)
        if session is None:
            session = _sessions[key] = boto3.session.Session(region_name=key[0])
        return session.client(
            service, endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None, config=config
        )


@dataclass
class Release:
    """One face the throttle released: the crop and the facts needed to route it."""

    image: object  # BGR crop (numpy), for edge-mode classification
    jpeg: bytes
    captured_at_ms: int
    seq: int
    score: float
    box: tuple[int, int, int, int]
    comparison: str = ""  # the comparison run this crop is sampled for ("" for none)


class DeliveryError(Exception):
    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


class SpoolingSink:
    """Deliver-or-spool with exponential backoff; subclasses implement _deliver(meta, payload).

    With background=True (what the entry points use) the capture thread only writes to the spool
    and an uploader thread does all network I/O, so a slow or black-holed network never stalls
    the camera. Without it, delivery happens inline (simple, and what the unit tests drive).
    """

    def __init__(
        self,
        spool,
        *,
        backoff_s: float = 2.0,
        max_backoff_s: float = 60.0,
        clock=None,
        background: bool = False,
    ):
        self.spool = spool
        self.background = background
        self._thread: threading.Thread | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._abandoned = False
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.clock = clock or time.monotonic
        self._failures = 0
        self._retry_at = 0.0
        self.uploads = 0
        self.bytes_sent = 0
        self.errors = 0
        self.dropped = 0  # permanent failures (not the spool's cap drops)
        self.last_error = ""

    @property
    def healthy(self) -> bool:
        return self._failures == 0

    def _fail(self, message: str) -> None:
        self.errors += 1
        self.last_error = message[:500]
        self._failures += 1
        delay = min(self.max_backoff_s, self.backoff_s * 2 ** (self._failures - 1))
        self._retry_at = self.clock() + delay

    def _attempt(self, meta: dict, payload: bytes) -> bool | None:
        """True delivered, False failed (keep it), None permanently refused (drop it)."""
        try:
            sent = self._deliver(meta, payload)
        except DeliveryError as exc:
            if exc.permanent:
                self.errors += 1
                self.dropped += 1
                self.last_error = str(exc)[:500]
                return None
            self._fail(str(exc))
            return False
        self._failures = 0
        self.uploads += 1
        self.bytes_sent += sent
        return True

    def submit(self, meta: dict, payload: bytes) -> None:
        """Send now if the link is believed up, otherwise spool straight away."""
        if self.background:
            self.spool.put(meta, payload)
            self._wake.set()
            return
        link_up = self.spool.depth == 0 and self.clock() >= self._retry_at
        if link_up and self._attempt(meta, payload) is not False:
            return
        self.spool.put(meta, payload)

    def abandon(self) -> None:
        """Send nothing more, not even entries already read from the spool (the camera switched
        to edge mode); an upload already on the wire cannot be called back."""
        self._abandoned = True
        self._wake.set()

    def pump(self, max_items: int = 8) -> int:
        """Drain up to max_items from the spool when the backoff allows; returns items sent."""
        if self._abandoned or self.spool.depth == 0 or self.clock() < self._retry_at:
            return 0
        sent = 0
        for entry in self.spool.peek(max_items):
            if self._abandoned:
                break
            outcome = self._attempt(entry.meta, entry.payload)
            if outcome is False:
                break
            self.spool.ack(entry)
            sent += outcome is True
        return sent

    def start(self) -> None:
        """Start the uploader thread (background mode only; idempotent)."""
        if not self.background or (self._thread and self._thread.is_alive()):
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._upload_loop, name="stagepulse-upload")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        """Drain what the link allows, then stop; the rest stays spooled for the next start."""
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)
        self._thread = None

    def _upload_loop(self) -> None:
        while True:
            done = self.uploads + self.dropped
            if self.spool.depth:
                try:
                    self.pump(max_items=16)
                except Exception as exc:  # never let the uploader die silently
                    self._fail(f"uploader: {exc}")
            progressed = self.uploads + self.dropped > done
            if self._stopping.is_set() and (not progressed or not self.spool.depth):
                return
            if not progressed:
                wait = self._retry_at - self.clock() if self.spool.depth else 1.0
                self._wake.wait(min(1.0, max(0.05, wait)))
                self._wake.clear()

    def _deliver(self, meta: dict, payload: bytes) -> int:
        raise NotImplementedError

    def stats(self) -> dict:
        return {
            "uploads": self.uploads,
            "bytes_sent": self.bytes_sent,
            "spool_depth": self.spool.depth,
            "spool_dropped": self.spool.dropped + self.dropped,
            "errors": self.errors,
        }


def scores_item(config, classifier, release: Release, key: str, analyzed_at_ms=None) -> dict:
    """The observation item edge mode writes for this face: the camera's model's reading."""
    return build_observation_item(
        crop=parse_crop_key(key),
        face_index=0,
        scores=classifier.classify(release.image),
        face_confidence=min(100.0, release.score * 100.0),  # 0..100, as the cloud writes
        source="edge",
        organization=config.organization,
        model=getattr(classifier, "model_name", ""),
        analyzed_at_ms=analyzed_at_ms or int(time.time() * 1000),
    )


def camera_reading_metadata(item: dict, item_bytes: int) -> dict:
    """The camera's own reading of a sampled crop, in the crop's S3 metadata (both modes)."""
    return {
        META_EDGE_SCORES: encode_scores(item["emotions"]),
        META_EDGE_MODEL: str(item.get("model", ""))[:100],
        META_EDGE_ANALYZED_AT_MS: str(item["analyzed_at_ms"]),
        META_EDGE_BYTES: str(item_bytes),
    }


class S3CropSink(SpoolingSink):
    """Cloud mode: PutObject of the JPEG crop under the contract key, private and SSE-encrypted.

    A crop sampled by a comparison run also carries the camera's own reading of it (its model's
    scores, as edge mode would send them), so that the analyzer needs no model of its own to
    pair it with Rekognition (a Lambda bundle has none). The model is loaded on the first
    sampled crop; a camera without it sends the crop without a reading (the analyzer then reads
    it with its own model if it has one, else the pair says `no_local_model`)."""

    def __init__(self, config, spool, *, client=None, classifier=None, **kwargs):
        super().__init__(spool, **kwargs)
        self.config = config
        self.client = client or aws_client("s3", config.region)
        self.classifier = classifier
        self.classifier_problem = ""

    def _camera_reading(self, release: Release, key: str) -> dict:
        if self.classifier is None and not self.classifier_problem:
            try:
                from edge_package.emotion_model import EmotionClassifier  # lazy: litert + fer

                self.classifier = EmotionClassifier()
            except Exception as exc:  # noqa: BLE001 - a camera without the model still uploads
                self.classifier_problem = f"{type(exc).__name__}: {exc}"[:400]
                self.last_error = f"comparison: no local model here ({self.classifier_problem})"
        if self.classifier is None:
            return {}
        try:
            item = scores_item(self.config, self.classifier, release, key)
        except ValueError as exc:  # a crop the model cannot read: the analyzer will say so
            self.last_error = f"comparison: the camera's model could not read a crop: {exc}"[:500]
            return {}
        return camera_reading_metadata(item, len(json.dumps(item).encode()))

    def prepare(self, release: Release) -> tuple[dict, bytes]:
        key = build_crop_key(
            self.config.festival,
            self.config.stage,
            self.config.device,
            release.captured_at_ms,
            release.seq,
        )
        meta = {
            "key": key,
            "captured_at_ms": release.captured_at_ms,
            "metadata": {
                META_CAPTURED_AT_MS: str(release.captured_at_ms),
                META_DETECTOR_SCORE: f"{release.score:.3f}",
                META_BOX: ",".join(str(int(v)) for v in release.box),
                META_EDGE_VERSION: __version__,
                META_ORGANIZATION: self.config.organization,
            },
        }
        if release.comparison:
            meta["metadata"][META_COMPARISON_RUN] = release.comparison
            meta["metadata"][META_COMPARISON_MODE] = "cloud"
            meta["metadata"].update(self._camera_reading(release, key))
        return meta, release.jpeg

    def send(self, release: Release) -> None:
        self.submit(*self.prepare(release))

    def _deliver(self, meta: dict, payload: bytes) -> int:
        return put_crop(self.client, self.config, meta, payload)


def put_crop(client, config, meta: dict, payload: bytes) -> int:
    """PutObject of one crop (private, SSE) under its contract key, for both sinks (cloud-mode
    crops, edge-mode comparison crops); failures as DeliveryError."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        client.put_object(
            Bucket=config.bucket,
            Key=meta["key"],
            Body=payload,
            ContentType="image/jpeg",
            ServerSideEncryption="AES256",
            Metadata=meta["metadata"],
        )
    except ClientError as exc:
        code = aws_error_code(exc)
        if code in _PERMISSION:
            raise DeliveryError(
                f"S3 AccessDenied: this device's credentials lack s3:PutObject on "
                f"arn:aws:s3:::{config.bucket}/faces/{config.festival}/"
                f"{config.stage}/* (crops are kept in the spool until it is granted)"
            ) from exc
        if code == "NoSuchBucket":
            raise DeliveryError(f"S3 bucket {config.bucket!r} does not exist") from exc
        if code in _PERMANENT:
            raise DeliveryError(f"S3 refused {meta['key']}: {code}", permanent=True) from exc
        raise DeliveryError(f"S3 PutObject failed: {code or exc}") from exc
    except BotoCoreError as exc:
        raise DeliveryError(f"S3 unreachable: {exc}") from exc
    return len(payload)


class ObservationSink(SpoolingSink):
    """Edge mode: classify the crop here and write only the scores (one DynamoDB item per face)."""

    def __init__(self, config, spool, *, classifier=None, client=None, s3_client=None, **kwargs):
        super().__init__(spool, **kwargs)
        self.config = config
        if classifier is None:
            from edge_package.emotion_model import EmotionClassifier  # lazy: litert + fer model

            classifier = EmotionClassifier()
        self.classifier = classifier
        self.client = client or aws_client("dynamodb", config.region)
        self._s3 = s3_client  # built on the first comparison crop (most runs never need it)
        self.comparison_crops = 0

    def prepare(self, release: Release, analyzed_at_ms: int | None = None) -> tuple[dict, bytes]:
        key = build_crop_key(
            self.config.festival,
            self.config.stage,
            self.config.device,
            release.captured_at_ms,
            release.seq,
        )
        item = scores_item(self.config, self.classifier, release, key, analyzed_at_ms)
        meta = {"captured_at_ms": release.captured_at_ms, "kind": "observation"}
        return meta, json.dumps(item).encode()

    def prepare_comparison(self, release: Release, item_meta: dict, item: bytes):
        """A comparison run sampled this crop: the crop itself, carrying the camera's own reading
        in its metadata, so that the analyzer reads the same crop with Rekognition. It travels
        through the same spool (and is deleted by the analyzer after analysis)."""
        observation = json.loads(item)
        meta = {
            "kind": "comparison_crop",
            "key": build_crop_key(
                self.config.festival,
                self.config.stage,
                self.config.device,
                release.captured_at_ms,
                release.seq,
            ),
            "captured_at_ms": release.captured_at_ms,
            "metadata": {
                META_CAPTURED_AT_MS: str(release.captured_at_ms),
                META_DETECTOR_SCORE: f"{release.score:.3f}",
                META_EDGE_VERSION: __version__,
                META_ORGANIZATION: self.config.organization,
                META_COMPARISON_RUN: release.comparison,
                META_COMPARISON_MODE: "edge",
                **camera_reading_metadata(observation, len(item)),
            },
        }
        return meta, release.jpeg

    def send(self, release: Release) -> None:
        meta, item = self.prepare(release)
        self.submit(meta, item)
        if release.comparison and self.config.bucket:
            self.comparison_crops += 1
            self.submit(*self.prepare_comparison(release, meta, item))

    def _deliver(self, meta: dict, payload: bytes) -> int:
        if meta.get("kind") == "comparison_crop":
            if self._s3 is None:
                self._s3 = aws_client("s3", self.config.region)
            return put_crop(self._s3, self.config, meta, payload)
        return put_item_once(self.client, self.config.observations_table, payload)


def put_item_once(client, table: str, payload: bytes) -> int:
    """contracts.put_observation of one JSON item (a face or a crowd signal), its failures as
    DeliveryError (permanent for a refused item); a replay writes nothing and is no error."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        if not put_observation(client, table, json.loads(payload)):
            return 0  # already written (a replay after a lost reply): nothing new to do
    except ClientError as exc:
        code = aws_error_code(exc)
        if code in _PERMISSION:
            raise DeliveryError(
                "DynamoDB AccessDenied: this device's credentials lack dynamodb:PutItem on "
                f"table {table!r}"
            ) from exc
        if code == "ResourceNotFoundException":
            raise DeliveryError(f"DynamoDB table {table!r} does not exist") from exc
        if code in _PERMANENT:
            raise DeliveryError(f"DynamoDB refused the item: {exc}", permanent=True) from exc
        raise DeliveryError(f"DynamoDB PutItem failed: {code or exc}") from exc
    except BotoCoreError as exc:
        raise DeliveryError(f"DynamoDB unreachable: {exc}") from exc
    return len(payload)


class CrowdSignalSink(SpoolingSink):
    """Both modes: one crowd signal item per window (numbers only) into the observations table,
    with the same conditional put, spool and backoff as the faces."""

    def __init__(self, config, spool, *, client=None, **kwargs):
        super().__init__(spool, **kwargs)
        self.config = config
        self.client = client or aws_client("dynamodb", config.region)

    def send(self, item: dict) -> None:
        meta = {"captured_at_ms": item["captured_at_ms"], "kind": "crowd"}
        self.submit(meta, json.dumps(item).encode())

    def _deliver(self, meta: dict, payload: bytes) -> int:
        return put_item_once(self.client, self.config.observations_table, payload)
