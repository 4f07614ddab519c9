"""Celery tasks for face detectors: thin wrappers around detectors.services."""

from __future__ import annotations

from celery import shared_task

from detectors.services import training


@shared_task(name="detectors.tasks.follow_training_job", ignore_result=True)
def follow_training_job(job_id: int) -> None:
    """Look at a SageMaker training job; until it ends, come back after the poll interval."""
    wait_s = training.follow_training_job(job_id)
    if wait_s is not None:
        follow_training_job.apply_async((job_id,), countdown=wait_s)
