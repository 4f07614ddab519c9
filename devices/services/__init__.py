"""Device services (writes): registration, tokens, releases, deployments, telemetry, health."""

from devices.services.deployments import (
    resume_stalled_deployments,
    run_deployment,
    start_deployment,
    stop_deployment,
)
from devices.services.health import (
    check_stage_change,
    publish_device_metrics,
    push_config_to_shadow,
    push_festival_cameras,
    set_paused,
    sweep_device_health,
    update_device,
)
from devices.services.registration import (
    AwsUnreachable,
    CredentialsBundle,
    delete_device,
    deregister_device,
    device_config,
    register_device,
)
from devices.services.releases import build_edge_release
from devices.services.rollouts import advance_rollout, advance_rollouts, start_rollout
from devices.services.telemetry import (
    ConfirmationRejected,
    TelemetryRejected,
    confirm_rule_destination,
    is_destination_confirmation,
    record_telemetry,
)
from devices.services.tokens import device_for_token, issue_device_token

__all__ = [
    "AwsUnreachable",
    "ConfirmationRejected",
    "CredentialsBundle",
    "TelemetryRejected",
    "advance_rollout",
    "advance_rollouts",
    "build_edge_release",
    "check_stage_change",
    "confirm_rule_destination",
    "delete_device",
    "deregister_device",
    "device_config",
    "device_for_token",
    "is_destination_confirmation",
    "issue_device_token",
    "publish_device_metrics",
    "push_config_to_shadow",
    "push_festival_cameras",
    "record_telemetry",
    "register_device",
    "resume_stalled_deployments",
    "run_deployment",
    "set_paused",
    "start_deployment",
    "start_rollout",
    "stop_deployment",
    "sweep_device_health",
    "update_device",
]
