"""The device configuration: identity and routing, plus the contract's edge tunables.

One flat JSON object, from a file (standalone), the Greengrass v2 component configuration, or the
STAGEPULSE_CONFIG environment variable (DeepLens lambda). The tunables (thresholds, fps cap, masks,
mode, paused...) are validated by contracts.validate_edge_config so the server and the device agree
on them; this module adds the identity part and turns every problem into one readable message.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field

from edge_package.contracts import (
    COMPARISON_KEYS,
    EDGE_CONFIG_DEFAULTS,
    FACE_MODEL_KEYS,
    THING_NAME_RULE,
    comparison_sampled,
    effective_edge_config,
    is_valid_thing_name,
    validate_edge_config,
)

# Festival and stage slugs; the device name follows contracts.THING_NAME_PATTERN.
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")

# Identity / routing settings: name -> (type, default; None means required).
IDENTITY_FIELDS: dict[str, tuple[type, object]] = {
    "device": (str, None),
    "festival": (str, None),
    "stage": (str, None),
    "organization": (str, ""),
    "bucket": (str, ""),  # required in cloud mode
    "observations_table": (str, ""),  # required in edge mode
    "region": (str, ""),
    "service_url": (str, ""),  # standalone telemetry POST target
    "device_token": (str, ""),
    "telemetry_interval_s": (float, 60.0),
    "spool_dir": (str, ""),
    "spool_max_mb": (float, 200.0),
    "detector": (str, "blazeface"),
}


class ConfigError(ValueError):
    """The configuration is unusable; str() lists every problem, one per line."""

    def __init__(self, problems: list[str], source: str = "configuration"):
        self.problems = problems
        super().__init__(f"{source} is invalid:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class DeviceConfig:
    device: str
    festival: str
    stage: str
    organization: str = ""
    bucket: str = ""
    observations_table: str = ""
    region: str = ""
    service_url: str = ""
    device_token: str = ""
    telemetry_interval_s: float = 60.0
    spool_dir: str = ""
    spool_max_mb: float = 200.0
    detector: str = "blazeface"
    edge: dict = field(default_factory=lambda: dict(EDGE_CONFIG_DEFAULTS))

    def __getattr__(self, name):
        # cfg.fps_cap, cfg.masks ...: the tunables read like attributes.
        edge = self.__dict__.get("edge", {})
        if name in edge:
            return edge[name]
        raise AttributeError(name)

    @property
    def mode(self) -> str:
        return self.edge["mode"]

    def comparison_for(self, captured_at_ms: int, seq: int) -> str:
        """The comparison run this crop is sampled for, or "" (contracts.comparison_sampled)."""
        return comparison_sampled(self.edge, self.device, captured_at_ms, seq)

    @property
    def face_model(self) -> tuple[str, str]:
        """(url, sha256) of a rolled-out face model; ("", "") means the bundled one."""
        return (self.edge.get("face_model_url", ""), self.edge.get("face_model_sha256", ""))

    def with_tunables(self, **changes) -> DeviceConfig:
        """A copy with new tunables (e.g. a pause pushed from the service), validated first."""
        merged = {**self.edge, **changes}
        problems = validate_edge_config(merged)
        if merged.get("mode") == "edge" and not self.observations_table:
            problems.append(
                "mode: edge mode needs observations_table in the camera's configuration "
                "(install a fresh registration bundle)"
            )
        if problems:
            raise ConfigError(problems, "tunable update")
        values = {k: getattr(self, k) for k in IDENTITY_FIELDS}
        return DeviceConfig(**values, edge=effective_edge_config(merged))


def parse_config(raw: dict, source: str = "configuration") -> DeviceConfig:
    """Validate a config object; raise ConfigError naming every bad or missing setting."""
    if not isinstance(raw, dict):
        raise ConfigError(["must be a JSON object"], source)
    problems: list[str] = []
    identity: dict = {}
    tunables: dict = {}
    for key, value in raw.items():
        if key in IDENTITY_FIELDS:
            identity[key] = value
        elif key in EDGE_CONFIG_DEFAULTS or key in FACE_MODEL_KEYS or key in COMPARISON_KEYS:
            tunables[key] = value
        else:
            known = sorted(
                set(IDENTITY_FIELDS)
                | set(EDGE_CONFIG_DEFAULTS)
                | set(FACE_MODEL_KEYS)
                | set(COMPARISON_KEYS)
            )
            problems.append(f"{key}: unknown setting (known: {', '.join(known)})")
    values: dict = {}
    for key, (kind, default) in IDENTITY_FIELDS.items():
        if key not in identity:
            if default is None:
                problems.append(f"{key}: missing (required)")
            continue
        value = identity[key]
        if kind is float:
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                problems.append(f"{key}: must be a positive number, got {value!r}")
                continue
            value = float(value)
        elif not isinstance(value, str):
            problems.append(f"{key}: must be a string, got {value!r}")
            continue
        values[key] = value
    if "device" in values and not is_valid_thing_name(values["device"]):
        # The server checks Device.thing_name with the same contracts rule.
        problems.append(f"device: {values['device']!r} must be {THING_NAME_RULE}")
    for key in ("festival", "stage"):
        if key in values and not _SEGMENT.match(values[key]):
            problems.append(
                f"{key}: {values[key]!r} must be 1-128 letters, digits, '.', '_' or '-' "
                "(it becomes part of the S3 key)"
            )
    if values.get("detector", "blazeface") not in ("blazeface", "haar"):
        problems.append(f"detector: must be 'blazeface' or 'haar', got {values['detector']!r}")
    problems += validate_edge_config(tunables)
    mode = tunables.get("mode", EDGE_CONFIG_DEFAULTS["mode"])
    if mode == "cloud" and not values.get("bucket"):
        problems.append("bucket: required in cloud mode (the S3 bucket that receives face crops)")
    if mode == "edge" and not values.get("observations_table"):
        problems.append("observations_table: required in edge mode (the DynamoDB table)")
    url = values.get("service_url", "")
    if url and not url.startswith(("http://", "https://")):
        problems.append(f"service_url: must start with http:// or https://, got {url!r}")
    if problems:
        raise ConfigError(problems, source)
    return DeviceConfig(**values, edge=effective_edge_config(tunables))


def state_dir(*parts: str) -> str:
    """Where the camera keeps its spool and model cache when nothing says otherwise:
    ~/.stagepulse, or ./.stagepulse when the user has no usable home. A system user such as
    Greengrass's ggc_user has none, and the component then runs in its own work folder."""
    home = os.path.expanduser("~")
    if home != "~" and os.path.isdir(home) and os.access(home, os.W_OK):
        return os.path.join(home, ".stagepulse", *parts)
    return os.path.join(os.path.abspath(".stagepulse"), *parts)


def load_config(path: str) -> DeviceConfig:
    """Read and validate a JSON config file."""
    try:
        with open(path, encoding="utf-8") as handle:
            raw = json.load(handle)
    except FileNotFoundError as exc:
        raise ConfigError([f"file not found: {path}"], "configuration") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError([f"not valid JSON: {exc}"], f"configuration {path}") from exc
    return parse_config(raw, f"configuration {path}")


def config_from_env(environ=os.environ) -> DeviceConfig:
    """STAGEPULSE_CONFIG holds inline JSON or a path to a JSON file (DeepLens lambda settings)."""
    value = environ.get("STAGEPULSE_CONFIG", "").strip()
    if not value:
        raise ConfigError(["STAGEPULSE_CONFIG is not set (inline JSON or a file path)"])
    if value.startswith("{"):
        try:
            raw = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ConfigError([f"not valid JSON: {exc}"], "STAGEPULSE_CONFIG") from exc
        return parse_config(raw, "STAGEPULSE_CONFIG")
    return load_config(value)
