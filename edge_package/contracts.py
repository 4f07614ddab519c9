"""The wire contracts shared by the edge, the analyzer and the service.

Kept Django-free and dependency-free because it runs on cameras; the server imports it from here so
that the three sides can never drift apart. Bump CONTRACT_VERSION on any incompatible change.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from urllib.parse import unquote_plus

# 1: face observation items (no `kind`). 2: every item carries `kind` ("face" or "crowd") and
# cameras also write one crowd signal item per window (build_crowd_signal_item). An item without
# `kind` is a contract-1 face, so readers of contract 2 read old items unchanged.
CONTRACT_VERSION = 2

# --- Emotion taxonomy (Rekognition's eight) ---------------------------------------------------
EMOTIONS: tuple[str, ...] = (
    "HAPPY",
    "SAD",
    "ANGRY",
    "CONFUSED",
    "DISGUSTED",
    "SURPRISED",
    "CALM",
    "FEAR",
)
# A face whose expression could not be read (Rekognition returned only UNKNOWN, or no emotions):
# counted as an analysed face but left out of expression shares and energy (docs/analysis.md).
# Never one of EMOTIONS, so no score map ever names it; only an item's top_emotion can.
UNKNOWN_EXPRESSION = "UNKNOWN"
TOP_EMOTIONS: tuple[str, ...] = (*EMOTIONS, UNKNOWN_EXPRESSION)
# Positive, high-energy expressions that make a crowd "lively" (used by the vibe score).
LIVELY_EMOTIONS: frozenset[str] = frozenset({"HAPPY", "SURPRISED"})

ANALYZER_SOURCES: tuple[str, ...] = ("rekognition", "local", "edge")


class ContractError(ValueError):
    """Raised when data does not follow a StagePulse contract; the message says what is wrong."""


def normalise_scores(scores: dict) -> dict[str, float]:
    """The eight-emotion score map as floats in 0..100; strings and unknown keys are refused."""
    clean: dict[str, float] = {}
    for name, value in scores.items():
        key = str(name).upper()
        if key not in EMOTIONS:
            raise ContractError(f"unknown emotion {name!r}; expected one of {', '.join(EMOTIONS)}")
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ContractError(f"score for {key} must be a number, got {type(value).__name__}")
        number = float(value)
        if math.isnan(number) or not 0.0 <= number <= 100.0:
            raise ContractError(f"score for {key} must be within 0..100, got {number}")
        clean[key] = number
    for key in EMOTIONS:
        clean.setdefault(key, 0.0)
    return clean


def top_emotion(scores: dict[str, float]) -> str:
    """The highest-scoring emotion; ties resolve in taxonomy order so results are stable.

    UNKNOWN_EXPRESSION when no emotion scores above zero: a tie of zeros is no reading, and must
    not resolve to the first emotion (HAPPY)."""
    best = max(EMOTIONS, key=lambda name: (scores.get(name, 0.0), -EMOTIONS.index(name)))
    return best if scores.get(best, 0.0) > 0.0 else UNKNOWN_EXPRESSION


def is_expression_known(top: str) -> bool:
    """Whether an observation's top_emotion counts in expression shares and energy."""
    return top in EMOTIONS


# --- Device identity (AWS IoT thing name) -------------------------------------------------------
# The thing name is also the device segment of crop keys and of the device's IoT/IAM resource
# names, so the server (Device.thing_name) and the camera (config "device") check this one rule:
# AWS IoT allows 1-128 of [a-zA-Z0-9:_-]; the camera adds no ':' and a letter or digit first (a
# safe S3 key segment and file name). Not only digits either: the infra stack's device role
# matches faces/*/*/<thing>/*, and IAM's * spans '/', so "2026" would match any camera's date
# folders (docs/infra.md).
THING_NAME_PATTERN = r"^(?![0-9]+\Z)[A-Za-z0-9][A-Za-z0-9_-]{0,127}\Z"
THING_NAME_RE = re.compile(THING_NAME_PATTERN)
THING_NAME_RULE = (
    "1-128 letters, digits, '_' or '-', starting with a letter or digit and not only digits "
    "(an AWS IoT thing name that is also a crop key segment)"
)


def is_valid_thing_name(name: object) -> bool:
    return isinstance(name, str) and THING_NAME_RE.match(name) is not None


# --- S3 crop key -------------------------------------------------------------------------------
CROP_PREFIX = "faces"
# faces/<festival>/<stage>/<device>/<yyyy>/<mm>/<dd>/<hh>/<capture-ms>-<seq>.jpg
_CROP_KEY_RE = re.compile(
    r"^faces/(?P<festival>[^/]+)/(?P<stage>[^/]+)/(?P<device>[^/]+)/"
    r"(?P<yyyy>\d{4})/(?P<mm>\d{2})/(?P<dd>\d{2})/(?P<hh>\d{2})/"
    r"(?P<capture_ms>\d{10,16})-(?P<seq>\d+)\.jpg$"
)
# Object metadata keys (S3 lower-cases them; values are strings).
META_CAPTURED_AT_MS = "captured-at-ms"
META_DETECTOR_SCORE = "detector-score"
META_BOX = "box"  # "x,y,w,h" in frame pixels
META_EDGE_VERSION = "edge-version"
META_ORGANIZATION = "organization"


@dataclass(frozen=True)
class CropKey:
    festival: str
    stage: str
    device: str
    captured_at_ms: int
    seq: int

    @property
    def captured_at(self) -> datetime:
        return datetime.fromtimestamp(self.captured_at_ms / 1000, tz=timezone.utc)

    @property
    def stage_partition(self) -> str:
        return observation_partition(self.festival, self.stage)


def _check_segment(name: str, value: str) -> None:
    if not value or "/" in value or value in {".", ".."}:
        raise ContractError(f"{name} {value!r} cannot be used in a crop key")


def build_crop_key(festival: str, stage: str, device: str, captured_at_ms: int, seq: int) -> str:
    for name, value in (("festival", festival), ("stage", stage), ("device", device)):
        _check_segment(name, value)
    when = datetime.fromtimestamp(captured_at_ms / 1000, tz=timezone.utc)
    return (
        f"{CROP_PREFIX}/{festival}/{stage}/{device}/"
        f"{when:%Y/%m/%d/%H}/{int(captured_at_ms)}-{int(seq)}.jpg"
    )


def parse_crop_key(key: str, *, url_encoded: bool = False) -> CropKey:
    """Route a crop from its key alone. S3 event keys are URL-encoded: pass url_encoded=True."""
    if url_encoded:
        key = unquote_plus(key)
    match = _CROP_KEY_RE.match(key)
    if not match:
        raise ContractError(
            f"key {key!r} is outside the crop layout "
            "faces/<festival>/<stage>/<device>/<yyyy>/<mm>/<dd>/<hh>/<capture-ms>-<seq>.jpg"
        )
    parts = match.groupdict()
    crop = CropKey(
        festival=parts["festival"],
        stage=parts["stage"],
        device=parts["device"],
        captured_at_ms=int(parts["capture_ms"]),
        seq=int(parts["seq"]),
    )
    hour_path = f"{parts['yyyy']}/{parts['mm']}/{parts['dd']}/{parts['hh']}"
    try:
        captured = f"{crop.captured_at:%Y/%m/%d/%H}"
    except (OverflowError, OSError, ValueError):
        # Digits, but no datetime can hold them (e.g. 9999999999999999 ms is year ~318,857).
        raise ContractError(
            f"key {key!r}: capture time {crop.captured_at_ms} ms is out of range"
        ) from None
    if captured != hour_path:
        raise ContractError(f"key {key!r}: hour folder {hour_path} does not match the capture time")
    return crop


# --- DynamoDB observation item -------------------------------------------------------------------
OBSERVATION_PK = "pk"  # "<festival>/<stage>"
OBSERVATION_SK = "sk"  # "<capture-ms, 13 digits>#<device>#<seq>#<face index>"
OBSERVATION_TTL_ATTRIBUTE = "expires_at"
# What an observations-table item is. Contract 1 items have no `kind` and are faces.
OBSERVATION_KIND = "kind"
KIND_FACE = "face"
KIND_CROWD = "crowd"
OBSERVATION_KINDS = (KIND_FACE, KIND_CROWD)
DEFAULT_OBSERVATION_TTL_S = 7 * 24 * 3600


def observation_table_definition(table_name: str) -> dict:
    """`create_table` arguments for the observations table: string keys pk/sk, on demand, with a
    NEW_IMAGE stream (the service ingests by reading it). infra/stagepulse.yaml declares the same
    table (plus TTL on OBSERVATION_TTL_ATTRIBUTE)."""
    return {
        "TableName": table_name,
        "BillingMode": "PAY_PER_REQUEST",
        "KeySchema": [
            {"AttributeName": OBSERVATION_PK, "KeyType": "HASH"},
            {"AttributeName": OBSERVATION_SK, "KeyType": "RANGE"},
        ],
        "AttributeDefinitions": [
            {"AttributeName": OBSERVATION_PK, "AttributeType": "S"},
            {"AttributeName": OBSERVATION_SK, "AttributeType": "S"},
        ],
        "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"},
    }


def observation_partition(festival: str, stage: str) -> str:
    return f"{festival}/{stage}"


def observation_sort_key(captured_at_ms: int, device: str, seq: int, face_index: int) -> str:
    """Sortable by capture time; the suffix makes the key unique and deterministic per face, so a
    replayed event maps to the same item and the conditional put writes nothing new."""
    return f"{int(captured_at_ms):013d}#{device}#{int(seq)}#{int(face_index)}"


def sort_key_floor(captured_at_ms: int) -> str:
    """The smallest sort key at or after a capture time (for 'since watermark' queries)."""
    return f"{max(0, int(captured_at_ms)):013d}"


# Every attribute an observation item has (build_observation_item); a camera role may write only
# these (IAM dynamodb:Attributes), so a device cannot smuggle other data into the table.
OBSERVATION_ATTRIBUTES = (
    OBSERVATION_PK, OBSERVATION_SK, OBSERVATION_KIND, "contract", "festival", "stage", "device",
    "organization", "captured_at_ms", "analyzed_at_ms", "source", "model", "emotions",
    "top_emotion", "face_confidence", OBSERVATION_TTL_ATTRIBUTE,
)  # fmt: skip


def observation_kind(item: dict) -> str:
    """KIND_FACE or KIND_CROWD for an item read from the table; ContractError for anything else."""
    kind = item.get(OBSERVATION_KIND, KIND_FACE)
    if kind not in OBSERVATION_KINDS:
        raise ContractError(f"kind {kind!r} is not one of {', '.join(OBSERVATION_KINDS)}")
    return kind


def build_observation_item(
    *,
    crop: CropKey,
    face_index: int,
    scores: dict,
    face_confidence: float,
    source: str,
    organization: str = "",
    model: str = "",
    analyzed_at_ms: int,
    ttl_s: int = DEFAULT_OBSERVATION_TTL_S,
) -> dict:
    """One face's observation as plain Python values (floats); see to_dynamodb for the wire form.
    `face_confidence` is the face detector's confidence on a 0..100 scale (Rekognition's)."""
    if source not in ANALYZER_SOURCES:
        raise ContractError(f"unknown analyzer source {source!r}")
    clean = normalise_scores(scores)
    return {
        OBSERVATION_PK: crop.stage_partition,
        OBSERVATION_SK: observation_sort_key(
            crop.captured_at_ms, crop.device, crop.seq, face_index
        ),
        OBSERVATION_KIND: KIND_FACE,
        "contract": CONTRACT_VERSION,
        "festival": crop.festival,
        "stage": crop.stage,
        "device": crop.device,
        "organization": organization,
        "captured_at_ms": int(crop.captured_at_ms),
        "analyzed_at_ms": int(analyzed_at_ms),
        "source": source,
        "model": model,
        "emotions": clean,
        "top_emotion": top_emotion(clean),
        "face_confidence": round(float(face_confidence), 3),
        OBSERVATION_TTL_ATTRIBUTE: int(analyzed_at_ms // 1000) + int(ttl_s),
    }


# --- DynamoDB crowd signal item (contract 2) ----------------------------------------------------
# One per camera per window: how much the crowd in the camera's crowd area moved, how loud it was
# and how full the area is. Numbers only; no image, no audio, no identity. Lives in the
# observations table beside the faces: same partition, and a sort key that sorts with them by
# time, is unique per device and window, and is the same on a replay (the conditional put then
# writes nothing new).
CROWD_SIGNAL_WINDOW_S = 10
CROWD_SIGNAL_SUFFIX = "crowd"
SOUND_DBFS_MIN = -120.0  # digital silence is clamped here (log of zero)
SOUND_DBFS_MAX = 0.0
FACES_SEEN_MAX = 100_000  # per window; no camera sees this many
WINDOW_S_RANGE = (1, 3600)

# The fields: motion_energy (0..1, the mean of the window's per-second values) and
# motion_energy_max (its largest second), from optical flow in the crowd area (edge_package.motion);
# crowd_fill (0..1, share of the crowd area's cells where someone is; a proxy, see docs/edge.md);
# faces_seen (the largest number of unmasked faces detected in one frame of the window; 0 in
# face-free mode); face_free; optional sound_level_dbfs (-120..0, the window's equivalent level
# from the camera's microphone, relative to its full scale) and sound_crowd_share (0..1, only from
# a device that measures it honestly; today's cameras never send it); window_s; captured_at_ms =
# the window's end.
# Every attribute a crowd signal item can have; with OBSERVATION_ATTRIBUTES the camera role's
# dynamodb:Attributes allow-list (DEVICE_WRITABLE_ATTRIBUTES).
CROWD_SIGNAL_ATTRIBUTES = (
    OBSERVATION_PK, OBSERVATION_SK, OBSERVATION_KIND, "contract", "festival", "stage", "device",
    "organization", "captured_at_ms", "window_s", "motion_energy", "motion_energy_max",
    "sound_level_dbfs", "sound_crowd_share", "crowd_fill", "faces_seen", "face_free",
    OBSERVATION_TTL_ATTRIBUTE,
)  # fmt: skip
CROWD_SIGNAL_OPTIONAL = ("sound_level_dbfs", "sound_crowd_share")
# What a camera may write into the observations table (IAM dynamodb:Attributes, both kinds).
DEVICE_WRITABLE_ATTRIBUTES = tuple(dict.fromkeys(OBSERVATION_ATTRIBUTES + CROWD_SIGNAL_ATTRIBUTES))

_CROWD_SK_RE = re.compile(r"^(?P<end>\d{13})#(?P<device>[^#]+)#" + CROWD_SIGNAL_SUFFIX + r"\Z")


def crowd_window_end_ms(at_ms: int, window_s: int = CROWD_SIGNAL_WINDOW_S) -> int:
    """The end of the window holding `at_ms`: windows are aligned to the epoch, so every camera
    and every replay of the same second lands in the same window (and the same sort key)."""
    size = int(window_s) * 1000
    return (int(at_ms) // size + 1) * size


def crowd_signal_sort_key(window_end_ms: int, device: str) -> str:
    """ "<window-end-ms, 13 digits>#<device>#crowd": never a face key (those end in digits)."""
    if not device or "#" in device:
        raise ContractError(f"device {device!r} cannot be used in a crowd signal key")
    return f"{int(window_end_ms):013d}#{device}#{CROWD_SIGNAL_SUFFIX}"


def _number(item: dict, name: str, low: float, high: float) -> float:
    value = item.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        raise ContractError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or not low <= number <= high:
        raise ContractError(f"{name} must be within {low:g}..{high:g}, got {number}")
    return number


def _whole(item: dict, name: str, low: int, high: int) -> int:
    value = _number(item, name, low, high)
    if value != int(value):
        raise ContractError(f"{name} must be a whole number, got {value}")
    return int(value)


def validate_crowd_signal_item(item: dict) -> dict:
    """A crowd signal item (as built, or read back with from_dynamodb) checked and cleaned: floats
    for the measures, ints for counts and times. Raises ContractError saying what is wrong; the
    server's ingest calls this on every crowd item it reads, the camera before it writes one."""
    if not isinstance(item, dict):
        raise ContractError("a crowd signal item must be a mapping")
    unknown = sorted(set(item) - set(CROWD_SIGNAL_ATTRIBUTES))
    if unknown:
        raise ContractError(f"unknown crowd signal attributes: {', '.join(unknown)}")
    missing = [
        name
        for name in CROWD_SIGNAL_ATTRIBUTES
        if name not in item and name not in CROWD_SIGNAL_OPTIONAL
    ]
    if missing:
        raise ContractError(f"crowd signal item lacks {', '.join(missing)}")
    if item[OBSERVATION_KIND] != KIND_CROWD:
        raise ContractError(f"kind must be {KIND_CROWD!r}, got {item[OBSERVATION_KIND]!r}")
    contract = _whole(item, "contract", 2, 1000)
    for name in ("festival", "stage", "device", "organization"):
        if not isinstance(item[name], str):
            raise ContractError(f"{name} must be a string, got {item[name]!r}")
    for name in ("festival", "stage", "device"):
        _check_segment(name, item[name])
    if item[OBSERVATION_PK] != observation_partition(item["festival"], item["stage"]):
        expected = observation_partition(item["festival"], item["stage"])
        raise ContractError(f"pk {item[OBSERVATION_PK]!r} is not {expected!r}")
    captured = _whole(item, "captured_at_ms", 0, SENT_AT_MS_MAX)
    match = _CROWD_SK_RE.match(str(item[OBSERVATION_SK]))
    if not match or int(match["end"]) != captured or match["device"] != item["device"]:
        expected = crowd_signal_sort_key(captured, item["device"])
        raise ContractError(f"sk {item[OBSERVATION_SK]!r} is not {expected!r}")
    window_s = _whole(item, "window_s", *WINDOW_S_RANGE)
    energy = _number(item, "motion_energy", 0.0, 1.0)
    energy_max = _number(item, "motion_energy_max", 0.0, 1.0)
    if energy_max + 1e-3 < energy:  # 1e-3: both are rounded on the wire
        raise ContractError(f"motion_energy_max {energy_max} is below the mean {energy}")
    fill = _number(item, "crowd_fill", 0.0, 1.0)
    faces = _whole(item, "faces_seen", 0, FACES_SEEN_MAX)
    face_free = item["face_free"]
    if not isinstance(face_free, bool):
        raise ContractError(f"face_free must be true or false, got {face_free!r}")
    if face_free and faces:
        raise ContractError(f"faces_seen is {faces} in face-free mode (must be 0)")
    clean = {
        OBSERVATION_PK: item[OBSERVATION_PK],
        OBSERVATION_SK: item[OBSERVATION_SK],
        OBSERVATION_KIND: KIND_CROWD,
        "contract": contract,
        "festival": item["festival"],
        "stage": item["stage"],
        "device": item["device"],
        "organization": item["organization"],
        "captured_at_ms": captured,
        "window_s": window_s,
        "motion_energy": energy,
        "motion_energy_max": energy_max,
        "crowd_fill": fill,
        "faces_seen": faces,
        "face_free": face_free,
        OBSERVATION_TTL_ATTRIBUTE: _whole(item, OBSERVATION_TTL_ATTRIBUTE, 0, SENT_AT_MS_MAX),
    }
    if item.get("sound_level_dbfs") is not None:
        clean["sound_level_dbfs"] = _number(
            item, "sound_level_dbfs", SOUND_DBFS_MIN, SOUND_DBFS_MAX
        )
    if item.get("sound_crowd_share") is not None:
        clean["sound_crowd_share"] = _number(item, "sound_crowd_share", 0.0, 1.0)
    return clean


def build_crowd_signal_item(
    *,
    festival: str,
    stage: str,
    device: str,
    window_end_ms: int,
    motion_energy: float,
    motion_energy_max: float,
    crowd_fill: float,
    faces_seen: int,
    face_free: bool,
    organization: str = "",
    window_s: int = CROWD_SIGNAL_WINDOW_S,
    sound_level_dbfs: float | None = None,
    sound_crowd_share: float | None = None,
    ttl_s: int = DEFAULT_OBSERVATION_TTL_S,
) -> dict:
    """One camera's crowd signal for the window ending at `window_end_ms`, as plain values (see
    to_dynamodb for the wire form). Optional sound fields are left out, not stored as null, when
    the camera has no microphone. Raises ContractError on a bad number (NaN, out of range)."""
    item = {
        OBSERVATION_PK: observation_partition(festival, stage),
        OBSERVATION_SK: crowd_signal_sort_key(window_end_ms, device),
        OBSERVATION_KIND: KIND_CROWD,
        "contract": CONTRACT_VERSION,
        "festival": festival,
        "stage": stage,
        "device": device,
        "organization": organization,
        "captured_at_ms": int(window_end_ms),
        "window_s": window_s,
        "motion_energy": motion_energy,
        "motion_energy_max": motion_energy_max,
        "crowd_fill": crowd_fill,
        "faces_seen": faces_seen,
        "face_free": face_free,
        OBSERVATION_TTL_ATTRIBUTE: int(window_end_ms) // 1000 + int(ttl_s),
    }
    if sound_level_dbfs is not None:
        item["sound_level_dbfs"] = sound_level_dbfs
    if sound_crowd_share is not None:
        item["sound_crowd_share"] = sound_crowd_share
    clean = validate_crowd_signal_item(item)
    for name in ("motion_energy", "motion_energy_max", "crowd_fill", "sound_crowd_share"):
        if name in clean:
            clean[name] = round(clean[name], 4)
    if "sound_level_dbfs" in clean:
        clean["sound_level_dbfs"] = round(clean["sound_level_dbfs"], 2)
    return clean


def to_dynamodb(value):
    """Floats become Decimal (boto3's resource layer refuses floats); numbers stay numbers."""
    if isinstance(value, float):
        return Decimal(str(round(value, 4)))
    if isinstance(value, dict):
        return {k: to_dynamodb(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_dynamodb(v) for v in value]
    return value


def from_dynamodb(value):
    """Decimal back to int/float, for code that reads items with the resource layer."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: from_dynamodb(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamodb(v) for v in value]
    return value


# --- Comparison runs: cloud or edge on the same crops (docs/comparison.md) ---------------------
# Optional edge settings, absent by default (like FACE_MODEL_KEYS): while a run is on, the camera
# marks a sample of its crops. In cloud mode a marked crop is uploaded as usual with the run in its
# metadata (the analyzer then reads it with both backends); in edge mode the camera still sends
# its scores and also uploads the marked crop, with its own scores in the metadata, so that the
# analyzer reads the same crop with Rekognition. Only crops or scores leave the camera.
COMPARISON_KEYS = (
    "comparison_run",
    "comparison_sample_rate",
    "comparison_starts_ms",
    "comparison_ends_ms",
)
COMPARISON_RUN_RE = re.compile(r"^[a-z0-9]{6,32}\Z")
META_COMPARISON_RUN = "comparison-run"
META_COMPARISON_MODE = "comparison-mode"  # the camera's mode when it sent the crop
META_EDGE_SCORES = "edge-scores"  # edge mode: the camera's eight scores, in EMOTIONS order
META_EDGE_MODEL = "edge-model"
META_EDGE_ANALYZED_AT_MS = "edge-analyzed-at-ms"
META_EDGE_BYTES = "edge-bytes"  # bytes of the scores item the camera sent for this face
# Paired readings go to the observations table under their own partition, so that no query of a
# stage's observations ever meets them; the ingest routes them by this prefix.
COMPARISON_PK_PREFIX = "cmp#"
COMPARISON_BACKENDS = ("rekognition", "local")


def comparison_errors(config: dict) -> list[str]:
    """Problems with the comparison settings of an edge configuration (empty: fine or absent)."""
    errors: list[str] = []
    run = config.get("comparison_run", "")
    if not isinstance(run, str) or (run and not COMPARISON_RUN_RE.match(run)):
        errors.append(f"comparison_run: must be 6-32 lowercase letters or digits, got {run!r}")
    rate = config.get("comparison_sample_rate", 0)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        errors.append(f"comparison_sample_rate: must be a number within 0..1, got {rate!r}")
    for key in ("comparison_starts_ms", "comparison_ends_ms"):
        value = config.get(key, 0)
        if (
            isinstance(value, bool)
            or not isinstance(value, int)
            or not 0 <= value <= SENT_AT_MS_MAX
        ):
            errors.append(f"{key}: must be a time in ms since 1970, got {value!r}")
    return errors


def comparison_sampled(config: dict, device: str, captured_at_ms: int, seq: int) -> str:
    """The run a crop is sampled for ("" for none): inside the run's window, and chosen by a hash
    of the crop's identity so that the sample is reproducible and spread evenly at the rate."""
    run = config.get("comparison_run") or ""
    rate = float(config.get("comparison_sample_rate") or 0)
    if not run or rate <= 0:
        return ""
    starts = int(config.get("comparison_starts_ms") or 0)
    ends = int(config.get("comparison_ends_ms") or 0)
    if captured_at_ms < starts or (ends and captured_at_ms >= ends):
        return ""
    digest = hashlib.sha256(f"{run}/{device}/{int(captured_at_ms)}/{int(seq)}".encode()).digest()
    return run if int.from_bytes(digest[:8], "big") < rate * 2**64 else ""


def encode_scores(scores: dict) -> str:
    """Eight scores as "12.5,0,..." in EMOTIONS order (S3 metadata values are short strings)."""
    clean = normalise_scores(scores)
    return ",".join(f"{clean[name]:.2f}".rstrip("0").rstrip(".") for name in EMOTIONS)


def decode_scores(raw: str) -> dict[str, float]:
    parts = str(raw or "").split(",")
    if len(parts) != len(EMOTIONS):
        raise ContractError(f"expected {len(EMOTIONS)} comma-separated scores, got {raw!r}")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise ContractError(f"scores {raw!r} are not numbers") from None
    return normalise_scores(dict(zip(EMOTIONS, values)))  # lengths checked above (Python 3.8)


def comparison_reading(
    *,
    available: bool,
    reason: str = "",
    faces: int = 0,
    scores: dict | None = None,
    confidence: float = 0.0,
    done_ms: int = 0,
    calls: float = 0.0,
    model: str = "",
) -> dict:
    """One backend's reading of a sampled crop. `faces`: faces that backend saw in the crop
    (Rekognition detects; the camera's model reads the face its detector found, so 1). `calls`:
    this crop's share of DetectFaces calls (a mosaic's calls over its crops)."""
    clean = normalise_scores(scores or {}) if available and faces else dict.fromkeys(EMOTIONS, 0.0)
    return {
        "available": bool(available),
        "reason": str(reason)[:40],
        "faces": int(faces),
        "top": top_emotion(clean) if available and faces else "",
        "scores": clean,
        "confidence": round(float(confidence), 3),
        "done_ms": int(done_ms),
        "calls": round(float(calls), 4),
        "model": str(model)[:100],
    }


def build_comparison_item(
    *,
    crop: CropKey,
    run: str,
    mode: str,
    organization: str,
    rekognition: dict,
    local: dict,
    crop_bytes: int,
    edge_bytes: int,
    analyzed_at_ms: int,
    ttl_s: int = DEFAULT_OBSERVATION_TTL_S,
) -> dict:
    """The paired reading of one sampled crop (face index 0: the face the camera cropped for)."""
    if not COMPARISON_RUN_RE.match(str(run)):
        raise ContractError(f"comparison run {run!r} is not a run id")
    if mode not in ("cloud", "edge"):
        raise ContractError(f"mode must be cloud or edge, got {mode!r}")
    return {
        OBSERVATION_PK: COMPARISON_PK_PREFIX + crop.stage_partition,
        OBSERVATION_SK: observation_sort_key(crop.captured_at_ms, crop.device, crop.seq, 0),
        "contract": CONTRACT_VERSION,
        "kind": "comparison",
        "run": run,
        "mode": mode,
        "festival": crop.festival,
        "stage": crop.stage,
        "device": crop.device,
        "organization": organization,
        "captured_at_ms": int(crop.captured_at_ms),
        "analyzed_at_ms": int(analyzed_at_ms),
        "rekognition": rekognition,
        "local": local,
        "crop_bytes": int(crop_bytes),
        "edge_bytes": int(edge_bytes),
        OBSERVATION_TTL_ATTRIBUTE: int(analyzed_at_ms // 1000) + int(ttl_s),
    }


# --- The observation write ------------------------------------------------------------------------
def aws_error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else). The camera's copy of
    awsclients.error_code: the camera ships edge_package alone, without the server's modules."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str((response.get("Error") or {}).get("Code") or "")


def put_observation(client, table: str, item: dict) -> bool:
    """The one idempotent write of an observation item (the analyzer's and the camera's edge
    mode): a PutItem conditional on the item's deterministic key being new, so a replay after a
    lost reply or a redelivered message writes nothing. True when written, False when the item
    was there already; any other failure is raised for the caller to classify."""
    from boto3.dynamodb.types import TypeSerializer  # boto3: only where something is written

    serializer = TypeSerializer()
    wire = {k: serializer.serialize(v) for k, v in to_dynamodb(item).items()}
    try:
        client.put_item(TableName=table, Item=wire, ConditionExpression="attribute_not_exists(pk)")
    except Exception as exc:
        if aws_error_code(exc) == "ConditionalCheckFailedException":
            return False
        raise
    return True


# --- Telemetry payload ---------------------------------------------------------------------------
# Every number has an upper bound: the server turns them into floats (CloudWatch) and datetimes
# (clock skew), and one camera's 401-digit counter once stopped the metrics of every tenant.
COUNTER_MAX = 2**53 - 1  # exact as a double (CloudWatch, JavaScript); no camera counts this far
SENT_AT_MS_MAX = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z, the last instant datetime holds


# Version 2 adds the optional camera input health fields (input_*): a camera on v2 needs a
# service that knows them (the schema refuses unknown fields), so update the service first.
# Version 3 adds the optional crowd signal's latest values (motion_energy, sound_level_dbfs,
# crowd_fill) and face_free; as with v2, update the service before the cameras.
TELEMETRY_CONTRACT_VERSION = 3
INPUT_SECONDS_MAX = 10 * 365 * 86400  # a duration no camera reaches (ten years)


def _seconds() -> dict:
    return {"type": "number", "minimum": 0, "maximum": INPUT_SECONDS_MAX}


def _counter() -> dict:
    return {"type": "integer", "minimum": 0, "maximum": COUNTER_MAX}  # a fresh dict each (YAML)


TELEMETRY_SCHEMA: dict = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "StagePulse device telemetry",
    "type": "object",
    "required": ["device_id", "software_version", "sent_at_ms", "analysis_mode"],
    "additionalProperties": False,
    "properties": {
        "contract": {"type": "integer", "minimum": 1, "maximum": 1000},
        "device_id": {"type": "string", "minLength": 1, "maxLength": 128},
        "software_version": {"type": "string", "minLength": 1, "maxLength": 64},
        "sent_at_ms": {"type": "integer", "minimum": 0, "maximum": SENT_AT_MS_MAX},
        "analysis_mode": {"enum": ["cloud", "edge"]},
        "paused": {"type": "boolean"},
        "fps": {"type": "number", "minimum": 0, "maximum": 1000},
        "frames": _counter(),
        "faces_detected": _counter(),
        "uploads": _counter(),
        "bytes_sent": _counter(),
        "spool_depth": _counter(),
        "spool_dropped": _counter(),
        "errors": _counter(),
        "last_error": {"type": "string", "maxLength": 500},
        # Camera input health (v2), measured on a downscaled grey frame (edge_package.input_health)
        "input_luma": {"type": "number", "minimum": 0, "maximum": 255},  # mean luminance
        "input_motion": {"type": "number", "minimum": 0, "maximum": 255},  # mean |frame diff|
        "input_black_s": _seconds(),  # how long the picture has been black, up to now
        "input_frozen_s": _seconds(),  # how long the picture has not changed, up to now
        # Crowd signal (v3): the latest per-second values (edge_package.motion, .audio)
        "motion_energy": {"type": "number", "minimum": 0, "maximum": 1},
        "sound_level_dbfs": {
            "type": "number",
            "minimum": SOUND_DBFS_MIN,
            "maximum": SOUND_DBFS_MAX,
        },
        "crowd_fill": {"type": "number", "minimum": 0, "maximum": 1},
        "face_free": {"type": "boolean"},  # the camera runs no face detector at all
    },
}


# --- Edge configuration (the tunables an organizer sets per device) ------------------------------
EDGE_CONFIG_DEFAULTS: dict = {
    "fps_cap": 15.0,
    "detection_threshold": 0.45,  # chosen on held-out synthetic crowds (docs/edge.md)
    "crop_margin": 0.25,
    # Crops of smaller faces are not sent (they are still detected and tracked): 40 px is
    # Rekognition's documented minimum face size in a 1920x1080 image, and the local model reads a
    # 64x64 grey face, so a 40 px face is upscaled 1.6x (docs/edge.md, "Which faces are sent").
    "min_face_px": 40,
    "jpeg_quality": 85,
    "throttle_interval_s": 10.0,
    "upload_budget_per_min": 120,
    "masks": [],
    "paused": False,
    "mode": "cloud",
    # Face-free mode: no face is detected, cropped or uploaded (the detector does not even run);
    # the camera still sends crowd signals (motion, sound, crowd fill) and telemetry.
    "face_free": False,
}

# A rolled-out face detection model (detectors app -> device): where the edge fetches it and the
# SHA-256 it must have. Optional, absent by default (= the bundled model), so kept out of
# EDGE_CONFIG_DEFAULTS (and the Device field help text); "" clears them. The edge falls back to
# the bundled model when it cannot load the file.
FACE_MODEL_KEYS = ("face_model_url", "face_model_sha256")
FACE_MODEL_URL_SCHEMES = ("s3://", "https://", "http://", "file://")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


def _face_model_errors(config: dict) -> list[str]:
    errors = []
    url = config.get("face_model_url", "")
    digest = config.get("face_model_sha256", "")
    if not isinstance(url, str):
        errors.append(f"face_model_url: must be a string, got {url!r}")
    elif url and not (url.startswith(FACE_MODEL_URL_SCHEMES) or url.startswith("/")):
        errors.append(
            f"face_model_url: {url!r} must start with {', '.join(FACE_MODEL_URL_SCHEMES)} or '/'"
        )
    if not isinstance(digest, str) or (digest and not _SHA256.match(digest)):
        errors.append(f"face_model_sha256: must be 64 lowercase hex digits, got {digest!r}")
    elif bool(url) != bool(digest):
        errors.append("face_model_url and face_model_sha256 go together (set both or neither)")
    return errors


_NUMERIC_RANGES: dict[str, tuple[float, float, type]] = {
    "fps_cap": (0.1, 60.0, float),
    "detection_threshold": (0.05, 0.99, float),
    "crop_margin": (0.0, 1.0, float),
    "min_face_px": (16, 1024, int),
    "jpeg_quality": (30, 100, int),
    "throttle_interval_s": (0.5, 3600.0, float),
    "upload_budget_per_min": (1, 10000, int),
}


def validate_edge_config(config: dict) -> list[str]:
    """Every problem in a device's edge configuration, as messages a crew member can act on.

    Masks are polygons in normalised frame coordinates (0..1), at least three points each.
    """
    if not isinstance(config, dict):
        return ["edge configuration must be a JSON object"]
    errors: list[str] = []
    known = set(EDGE_CONFIG_DEFAULTS) | set(FACE_MODEL_KEYS) | set(COMPARISON_KEYS)
    for key in sorted(set(config) - known):
        errors.append(f"{key}: unknown setting (known: {', '.join(sorted(known))})")
    for key, (low, high, kind) in _NUMERIC_RANGES.items():
        if key not in config:
            continue
        value = config[key]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            errors.append(f"{key}: must be a number, got {value!r}")
        elif kind is int and int(value) != value:
            errors.append(f"{key}: must be a whole number, got {value!r}")
        elif not low <= value <= high:
            errors.append(f"{key}: must be between {low:g} and {high:g}, got {value:g}")
    for flag in ("paused", "face_free"):
        if flag in config and not isinstance(config[flag], bool):
            errors.append(f"{flag}: must be true or false, got {config[flag]!r}")
    if "mode" in config and config["mode"] not in ("cloud", "edge"):
        errors.append(f"mode: must be 'cloud' or 'edge', got {config['mode']!r}")
    errors += _face_model_errors(config)
    errors += comparison_errors(config)
    masks = config.get("masks", [])
    if not isinstance(masks, list):
        errors.append("masks: must be a list of polygons")
        masks = []
    for index, polygon in enumerate(masks):
        where = f"masks[{index}]"
        if not isinstance(polygon, list) or len(polygon) < 3:
            errors.append(f"{where}: a polygon needs at least 3 points [x, y]")
            continue
        for point in polygon:
            if (
                not isinstance(point, (list, tuple))
                or len(point) != 2
                or any(isinstance(c, bool) or not isinstance(c, (int, float)) for c in point)
            ):
                errors.append(f"{where}: point {point!r} must be [x, y] numbers")
                break
            if not all(0.0 <= c <= 1.0 for c in point):
                errors.append(f"{where}: point {list(point)} is outside the frame (use 0..1)")
                break
    return errors


def effective_edge_config(config: dict | None) -> dict:
    """Defaults overlaid with a device's own settings (assumes validate_edge_config passed)."""
    merged = dict(EDGE_CONFIG_DEFAULTS)
    merged.update(config or {})
    return merged
