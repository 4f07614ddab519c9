"""The stack's CloudFormation template: read (with the short forms !Ref, !Sub ...), its
parameters checked against the template's own constraints, and the names the service reads from
its environment."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from infra.errors import DeployError

INFRA_DIR = Path(__file__).resolve().parent
REPO_ROOT = INFRA_DIR.parent
TEMPLATE_PATH = INFRA_DIR / "stagepulse.yaml"
# Service environment variable -> template parameter (settings.py reads the same names).
ENV_TO_PARAMETER = {
    "CROPS_BUCKET": "CropsBucketName",
    "ARTIFACTS_BUCKET": "ArtifactsBucketName",
    "OBSERVATIONS_TABLE": "ObservationsTableName",
    "ANALYSIS_QUEUE_NAME": "AnalysisQueueName",
    "CLOUDWATCH_NAMESPACE": "MetricsNamespace",
}


class _CfnLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
    """PyYAML loader for CloudFormation short forms (!Ref, !Sub, !If ...). On libyaml's parser
    where PyYAML has it (the safe constructor either way, the same dict): the pure-Python one
    took 0.05 s of CPU per load of the stack's template (libyaml: 0.007 s), and every deploy
    loads it (tests/infra deploys 20 stacks)."""


def _cfn_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _cfn_tag)


def load_template(path: Path | str = TEMPLATE_PATH) -> dict:
    return yaml.load(Path(path).read_text(), Loader=_CfnLoader)  # noqa: S506 (safe subclass)


def parameters_from_env(environ: Mapping[str, str]) -> dict[str, str]:
    """Template parameters for the names the service reads from its environment."""
    return {param: environ[name] for name, param in ENV_TO_PARAMETER.items() if environ.get(name)}


def service_env(outputs: Mapping[str, str]) -> dict[str, str]:
    """What to put in the service's (and the worker's) environment for a deployed stack."""
    mapping = {
        "CROPS_BUCKET": "CropsBucketName",
        "ARTIFACTS_BUCKET": "ArtifactsBucketName",
        "OBSERVATIONS_TABLE": "ObservationsTableName",
        "ANALYSIS_QUEUE_NAME": "AnalysisQueueName",
        "CLOUDWATCH_NAMESPACE": "MetricsNamespace",
        "AWS_DEFAULT_REGION": "Region",
        "STAGEPULSE_ANALYZER_QUEUE_URL": "AnalysisQueueUrl",
        "STAGEPULSE_OBSERVATIONS_TABLE": "ObservationsTableName",
        "STAGEPULSE_METRICS_NAMESPACE": "MetricsNamespace",
        "TELEMETRY_IOT_RULE_SECRET_ARN": "TelemetryRuleSecretArn",
        "DEVICE_ROLE_BOUNDARY_ARN": "DeviceRoleBoundaryArn",
        "CROP_RETENTION_HOURS": "CropRetentionHours",
    }
    return {env: outputs[key] for env, key in mapping.items() if outputs.get(key)}


def resolve_parameters(
    template: dict, requested: Mapping[str, str], existing: Mapping[str, str] | None
) -> tuple[list[dict], dict[str, str]]:
    """CloudFormation Parameters (keeping previous values on update) and the effective values."""
    declared = template.get("Parameters", {})
    unknown = sorted(set(requested) - set(declared))
    if unknown:
        raise DeployError(
            f"unknown parameter(s) {', '.join(unknown)}; the template takes: {', '.join(declared)}"
        )
    api: list[dict] = []
    effective: dict[str, str] = {}
    for name, spec in declared.items():
        if name in requested:
            api.append({"ParameterKey": name, "ParameterValue": str(requested[name])})
            effective[name] = str(requested[name])
        elif existing is not None and name in existing:
            api.append({"ParameterKey": name, "UsePreviousValue": True})
            effective[name] = existing[name]
        else:
            effective[name] = str(spec.get("Default", ""))
    problems = [p for name in requested if (p := check_parameter(name, declared[name], requested))]
    if problems:
        raise DeployError("invalid parameter(s):\n  " + "\n  ".join(problems))
    return api, effective


def check_parameter(name: str, spec: Mapping, values: Mapping[str, str]) -> str:
    """The template's own constraints, checked before CloudFormation (moto does not check)."""
    value = str(values[name])
    allowed = spec.get("AllowedValues")
    if allowed and value not in [str(a) for a in allowed]:
        return f"{name}={value!r}: must be one of {', '.join(map(str, allowed))}"
    pattern = spec.get("AllowedPattern")
    if pattern and not re.fullmatch(pattern, value):
        return f"{name}={value!r}: must match {pattern} ({spec.get('Description', '').strip()})"
    if spec.get("Type") == "Number":
        try:
            number = float(value)
        except ValueError:
            return f"{name}={value!r}: must be a number"
        low, high = spec.get("MinValue"), spec.get("MaxValue")
        if (low is not None and number < low) or (high is not None and number > high):
            return f"{name}={value}: must be between {low} and {high}"
    return ""
