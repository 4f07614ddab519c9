"""SageMaker training jobs on moto (jobs complete at once there): created with the organization's
role, followed by the Celery task through success (the output model is registered) and failure
(the reason is kept)."""

from __future__ import annotations

import io
import tarfile

import pytest
from django.core.management import CommandError, call_command

import awsclients as aws
from detectors.models import FaceModel, JobStatus, Source, TrainingJob
from detectors.services.training import start_training_job
from detectors.tasks import follow_training_job
from tests.detectors.conftest import IMAGE, ROLE_ARN

pytestmark = pytest.mark.django_db
DATA = "s3://stagepulse-artifacts/datasets/ours-org/wider-face/"  # ours' own prefix


def start(organization, **kwargs) -> TrainingJob:
    return start_training_job(
        organization,
        model_name="crowd-net",
        training_data_uri=f"s3://stagepulse-artifacts/datasets/{organization.slug}/wider-face/",
        hyperparameters={"epochs": 30, "input_size": 192},
        follow=False,
        **kwargs,
    )


def put_output(job: TrainingJob, files: dict[str, bytes]) -> None:
    """What the training container leaves behind: model.tar.gz at the job's artifact location."""
    info = aws.client("sagemaker").describe_training_job(TrainingJobName=job.job_name)
    bucket, _, key = info["ModelArtifacts"]["S3ModelArtifacts"][5:].partition("/")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(data)
            archive.addfile(member, io.BytesIO(data))
    aws.client("s3").put_object(Bucket=bucket, Key=key, Body=buffer.getvalue())


def test_a_job_is_created_in_sagemaker_with_the_organizations_settings(moto_aws, ours, settings):
    job = start(ours.organization, instance_type="ml.p3.2xlarge")
    assert job.status == JobStatus.IN_PROGRESS and job.job_arn.endswith(job.job_name)
    info = aws.client("sagemaker").describe_training_job(TrainingJobName=job.job_name)
    assert info["RoleArn"] == ROLE_ARN
    assert info["AlgorithmSpecification"]["TrainingImage"] == IMAGE
    assert info["ResourceConfig"]["InstanceType"] == "ml.p3.2xlarge"
    assert info["HyperParameters"] == {"epochs": "30", "input_size": "192"}
    channels = {
        c["ChannelName"]: c["DataSource"]["S3DataSource"]["S3Uri"]
        for c in (info["InputDataConfig"])
    }
    assert channels == {"train": f"{DATA}train/", "validation": f"{DATA}validation/"}
    expected_output = f"s3://{settings.ARTIFACTS_BUCKET}/training/ours-org/"
    assert info["OutputDataConfig"]["S3OutputPath"] == expected_output


def test_the_follower_registers_the_trained_model(moto_aws, ours, short_range):
    job = start(ours.organization)
    put_output(job, {"model/model.tflite": short_range.data, "logs/train.txt": b"ok"})
    follow_training_job.apply(args=(job.id,))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED and job.finished_at is not None
    assert job.metrics == {"train:progress": 100.0}
    assert job.failure_reason == ""
    model = FaceModel.objects.get(training_job=job)
    assert model.source == Source.TRAINING and model.name == "crowd-net"
    assert model.sha256 == short_range.sha256 and model.layout == "short_range"
    follow_training_job.apply(args=(job.id,))  # a late redelivery registers nothing twice
    assert FaceModel.objects.filter(training_job=job).count() == 1


def test_a_failed_job_says_why(moto_aws, ours):
    from moto.sagemaker.models import sagemaker_backends

    job = start(ours.organization)
    fake = sagemaker_backends["123456789012"][aws.region()].training_jobs[job.job_name]
    fake.training_job_status = "Failed"
    fake.secondary_status = "Failed"
    fake.failure_reason = "AlgorithmError: train/labels.txt not found"
    follow_training_job.apply(args=(job.id,))
    job.refresh_from_db()
    assert job.status == JobStatus.FAILED and job.finished
    assert job.failure_reason == "AlgorithmError: train/labels.txt not found"
    assert not FaceModel.objects.exists()


def test_a_completed_job_without_a_usable_model_says_so(moto_aws, ours):
    job = start(ours.organization)
    put_output(job, {"model/weights.bin": b"no tflite here"})
    follow_training_job.apply(args=(job.id,))
    job.refresh_from_db()
    assert job.status == JobStatus.COMPLETED
    assert "not registered" in job.failure_reason and "exactly one .tflite" in job.failure_reason


def test_bad_requests_are_refused_before_sagemaker(moto_aws, ours, settings):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="not a plain s3://bucket/prefix/"):
        start_training_job(
            ours.organization, model_name="x", training_data_uri="/local/data", follow=False
        )
    settings.SAGEMAKER_ROLE_ARN = ""
    with pytest.raises(ValidationError, match="role ARN"):
        start(ours.organization)
    assert not TrainingJob.objects.exists()


def test_operators_start_jobs_through_the_api_viewers_read(
    moto_aws, api_client, client, ours, theirs
):
    api_client.force_authenticate(ours.viewer)
    body = {"model_name": "crowd-net", "training_data_uri": DATA, "hyperparameters": {"lr": 1}}
    assert api_client.post("/api/v1/training-jobs/", body, format="json").status_code == 403
    api_client.force_authenticate(ours.operator)
    response = api_client.post("/api/v1/training-jobs/", body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "InProgress"
    assert "TrainingJobs" in response.json()["logs_url"]
    their_job = start(theirs.organization)
    api_client.force_authenticate(ours.viewer)
    assert [j["id"] for j in api_client.get("/api/v1/training-jobs/").json()["results"]] == [
        response.json()["id"]
    ]
    assert api_client.get(f"/api/v1/training-jobs/{their_job.id}/").status_code == 404
    api_client.force_authenticate(ours.operator)
    assert api_client.post(f"/api/v1/training-jobs/{their_job.id}/refresh/").status_code == 404
    client.force_login(ours.operator)
    assert client.get(f"/admin/detectors/trainingjob/{their_job.id}/change/").status_code == 404
    mine = TrainingJob.objects.get(organization=ours.organization)
    page = client.get(f"/admin/detectors/trainingjob/{mine.id}/change/")
    assert page.status_code == 200 and "CloudWatch Logs" in page.content.decode()


def test_the_command_waits_and_reports_a_missing_output(moto_aws, ours, settings):
    settings.TRAINING_JOB_POLL_SECONDS = 0
    with pytest.raises(CommandError, match="not registered"):
        call_command(
            "train_face_detector",
            "--organization=ours-org",
            "--model-name=crowd-net",
            f"--data={DATA}",
            "--hyperparameter=epochs=3",
            "--wait",
            stdout=io.StringIO(),
        )
    job = TrainingJob.objects.get()
    assert job.hyperparameters == {"epochs": "3"} and job.status == JobStatus.COMPLETED
