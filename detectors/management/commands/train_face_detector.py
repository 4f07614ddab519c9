"""manage.py train_face_detector: start a SageMaker training job for a face detection model."""

from __future__ import annotations

import io
import os
import tarfile
import time

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

import awsclients as aws
from detectors.services import training
from festival.models import Organization


class Command(BaseCommand):
    help = (
        "CreateTrainingJob in SageMaker (WIDER FACE-style data under --data: train/ and "
        "validation/ channels); the job is followed by a Celery task, or here with --wait. "
        "On completion the model.tflite in the job's model.tar.gz becomes a new FaceModel version."
    )

    def add_arguments(self, parser):
        parser.add_argument("--organization", required=True, help="organization slug")
        parser.add_argument("--model-name", required=True, help="registry name of the result")
        parser.add_argument("--data", required=True, help="s3://bucket/prefix/ of the dataset")
        parser.add_argument("--output", default="", help="s3://bucket/prefix/ for the output")
        parser.add_argument("--role-arn", default="", help="default: SAGEMAKER_ROLE_ARN")
        parser.add_argument("--image", default="", help="default: SAGEMAKER_TRAINING_IMAGE")
        parser.add_argument("--instance-type", default="ml.g4dn.xlarge")
        parser.add_argument("--instance-count", type=int, default=1)
        parser.add_argument("--max-runtime", type=int, default=24 * 3600, help="seconds")
        parser.add_argument("--hyperparameter", action="append", default=[], metavar="KEY=VALUE")
        parser.add_argument("--wait", action="store_true", help="follow the job here until done")
        parser.add_argument(
            "--moto-output",
            default="",
            metavar="MODEL.tflite",
            help="moto only (AWS_ENDPOINT_URL set): moto's jobs complete at once without running "
            "a container, so put this file where the container would have written model.tar.gz",
        )

    def handle(self, *args, **options):
        try:
            organization = Organization.objects.get(slug=options["organization"])
        except Organization.DoesNotExist as exc:
            raise CommandError(f"no organization {options['organization']!r}") from exc
        hyperparameters = {}
        for item in options["hyperparameter"]:
            key, sep, value = item.partition("=")
            if not sep:
                raise CommandError(f"--hyperparameter {item!r}: use KEY=VALUE")
            hyperparameters[key] = value
        if options["moto_output"] and not aws.endpoint_url():
            raise CommandError("--moto-output is for a moto endpoint only (AWS_ENDPOINT_URL)")
        try:
            job = training.start_training_job(
                organization,
                model_name=options["model_name"],
                training_data_uri=options["data"],
                output_uri=options["output"],
                role_arn=options["role_arn"],
                image_uri=options["image"],
                instance_type=options["instance_type"],
                instance_count=options["instance_count"],
                hyperparameters=hyperparameters,
                max_runtime_s=options["max_runtime"],
                follow=not options["wait"],
            )
        except ValidationError as exc:
            raise CommandError("; ".join(exc.messages)) from exc
        self.stdout.write(f"training job {job.job_name}: {job.status}")
        if job.failure_reason:
            raise CommandError(f"SageMaker refused the job: {job.failure_reason}")
        self.stdout.write(f"  logs: {job.logs_url}")
        if options["moto_output"]:
            self._moto_output(job, options["moto_output"])
        if not options["wait"]:
            self.stdout.write("  a Celery task follows it (TRAINING_JOB_POLL_SECONDS)")
            return
        while (wait := training.follow_training_job(job.id)) is not None:
            job.refresh_from_db()
            self.stdout.write(f"  {job.status} / {job.secondary_status}")
            time.sleep(wait)
        job.refresh_from_db()
        self.stdout.write(f"  {job.status}; metrics {job.metrics}")
        if job.failure_reason:
            raise CommandError(job.failure_reason)
        model = job.models.first()
        self.stdout.write(f"  registered {model} ({model.layout}, {model.input_size} px)")

    def _moto_output(self, job, path: str) -> None:
        info = aws.cached_client("sagemaker").describe_training_job(TrainingJobName=job.job_name)
        uri = info["ModelArtifacts"]["S3ModelArtifacts"]
        bucket, _, key = uri[len("s3://") :].partition("/")
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            archive.add(path, arcname=os.path.basename(path) or "model.tflite")
        aws.cached_client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())
        self.stdout.write(f"  (moto) {path} -> {uri}")
