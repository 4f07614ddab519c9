"""Celery tasks for the device fleet: thin wrappers around devices.services.

The worker may be killed at any point (acks_late): a redelivered deploy task resumes at the step
stored on its Deployment row.
"""

from __future__ import annotations

from celery import shared_task

from devices import services


@shared_task(bind=True, name="devices.tasks.deploy_device", ignore_result=True)
def deploy_device(self, deployment_id: int) -> None:
    """Advance one deployment; while it waits on the device, come back after the poll interval.

    Run eagerly (CELERY_TASK_ALWAYS_EAGER) a countdown would not wait, so the follow-up is left to
    the resume_stalled_deployments beat task instead of recursing."""
    wait_s = services.run_deployment(deployment_id)
    if wait_s is not None and not self.request.is_eager:
        deploy_device.apply_async((deployment_id,), countdown=wait_s)


@shared_task(name="devices.tasks.sweep_device_health", ignore_result=True)
def sweep_device_health() -> dict:
    return services.sweep_device_health()


@shared_task(name="devices.tasks.publish_device_metrics", ignore_result=True)
def publish_device_metrics() -> int:
    return services.publish_device_metrics()


@shared_task(name="devices.tasks.resume_stalled_deployments", ignore_result=True)
def resume_stalled_deployments() -> list[int]:
    return services.resume_stalled_deployments()


@shared_task(name="devices.tasks.advance_rollouts", ignore_result=True)
def advance_rollouts() -> dict:
    return services.advance_rollouts()
