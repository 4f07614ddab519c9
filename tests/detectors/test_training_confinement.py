"""A training job stays inside its organization (issue 11, item 6).

SageMaker reads the data and writes the output with the platform's role, which can reach every
tenant's objects; so the service (called by the API, the admin and the command alike) refuses
any location outside the organization's own prefixes, the face crops bucket, and any role or
container image not on the server's allowlists, before SageMaker is called.
"""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

import awsclients as aws
from detectors.models import JobStatus, TrainingJob
from detectors.services.training import import_training_output, start_training_job
from festival.models import Organization
from tests.detectors.conftest import IMAGE, ROLE_ARN

pytestmark = pytest.mark.django_db

OWN_DATA = "s3://stagepulse-artifacts/datasets/ours-org/wider-face/"
FOREIGN = [
    # another organization's prefixes, directly and by tricks
    "s3://stagepulse-artifacts/training/theirs-org/",
    "s3://stagepulse-artifacts/datasets/theirs-org/wider/",
    "s3://stagepulse-artifacts/datasets/ours-org/../theirs-org/",
    "s3://stagepulse-artifacts/datasets/ours-org/./../../training/theirs-org/",
    "s3://stagepulse-artifacts/datasets/ours-org/%2e%2e/theirs-org/",
    "s3://stagepulse-artifacts/datasets/ours-org//x/",
    "s3://stagepulse-artifacts/datasets/ours-org/..",
    "s3://stagepulse-artifacts/datasets/ours-org/wider/.",
    "s3://stagepulse-artifacts/datasets/ours-org\\..\\theirs-org/",
    # starts with our prefix's string, but is another organization's ("ours-org-2")
    "s3://stagepulse-artifacts/datasets/ours-org-2/wider/",
    # other buckets: any, one whose name starts with ours, the face crops
    "s3://ours-datasets/wider-face/",
    "s3://stagepulse-artifacts-eu/datasets/ours-org/",
    "s3://stagepulse-crops/faces/theirs-fest/",
    "s3://stagepulse-crops/faces/ours-fest/",
    # the whole artifacts bucket and other spellings
    "s3://stagepulse-artifacts/",
    "S3://stagepulse-artifacts/datasets/ours-org/",
    "https://stagepulse-artifacts.s3.amazonaws.com/datasets/ours-org/",
]


@pytest.fixture
def neighbour(ours):
    """An organization whose slug starts with ours'."""
    return Organization.objects.create(name="Ours Org 2", slug="ours-org-2")


def start(organization, **kwargs) -> TrainingJob:
    kwargs.setdefault("training_data_uri", OWN_DATA)
    return start_training_job(organization, model_name="crowd-net", follow=False, **kwargs)


def no_job_in_sagemaker() -> bool:
    return aws.cached_client("sagemaker").list_training_jobs()["TrainingJobSummaries"] == []


@pytest.mark.parametrize("uri", FOREIGN)
@pytest.mark.parametrize("field", ["training_data_uri", "output_uri"])
def test_a_location_outside_the_organizations_prefixes_is_refused(
    moto_aws, ours, neighbour, field, uri
):
    with pytest.raises(ValidationError) as refused:
        start(ours.organization, **{field: uri})
    assert field in refused.value.message_dict
    assert not TrainingJob.objects.exists() and no_job_in_sagemaker()


def test_face_crops_are_never_training_data_even_in_a_festivals_own_bucket(
    moto_aws, ours, settings
):
    """Even a server that listed a crops bucket among an organization's prefixes refuses it."""
    ours.festival.crops_bucket = "ours-crops"
    ours.festival.save()
    settings.SAGEMAKER_ORGANIZATION_PREFIXES = ["s3://ours-crops/", "s3://stagepulse-crops/"]
    for uri in ("s3://ours-crops/faces/ours-fest/", "s3://stagepulse-crops/faces/ours-fest/"):
        with pytest.raises(ValidationError, match="crowd analysis only"):
            start(ours.organization, training_data_uri=uri)
    assert no_job_in_sagemaker()


@pytest.mark.parametrize(
    "data, output",
    [
        (OWN_DATA, ""),  # the default output: s3://<artifacts>/training/<org>/
        (
            "s3://stagepulse-artifacts/training/ours-org/data/",
            "s3://stagepulse-artifacts/training/ours-org/out",
        ),
        ("s3://stagepulse-artifacts/datasets/ours-org", ""),  # the prefix itself, slash added
    ],
)
def test_the_organizations_own_prefixes_are_accepted(moto_aws, ours, data, output):
    job = start(ours.organization, training_data_uri=data, output_uri=output)
    assert job.status == JobStatus.IN_PROGRESS
    info = aws.client("sagemaker").describe_training_job(TrainingJobName=job.job_name)
    channels = {c["DataSource"]["S3DataSource"]["S3Uri"] for c in info["InputDataConfig"]}
    assert all(uri.startswith(data.rstrip("/") + "/") for uri in channels)
    assert info["OutputDataConfig"]["S3OutputPath"].startswith(
        "s3://stagepulse-artifacts/training/ours-org/"
    )


@pytest.mark.parametrize(
    "image",
    [
        "123456789012.dkr.ecr.eu-west-1.amazonaws.com/miner:latest",
        IMAGE + "-evil",
        IMAGE.replace(":1", "-evil:1"),
        "docker.io/library/python:3.11",
    ],
)
def test_an_image_off_the_allowlist_is_refused(moto_aws, ours, image):
    with pytest.raises(ValidationError) as refused:
        start(ours.organization, image_uri=image)
    assert "not an allowed training image" in " ".join(refused.value.message_dict["image_uri"])
    assert no_job_in_sagemaker()


def test_a_listed_repository_allows_its_tags_and_digests_only(moto_aws, ours, settings):
    repository = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/crowd-train"
    settings.SAGEMAKER_ALLOWED_IMAGES = [repository]
    tagged = start(ours.organization, image_uri=f"{repository}:2026.07")
    pinned = start_training_job(
        ours.organization,
        model_name="crowd-net-pinned",
        training_data_uri=OWN_DATA,
        image_uri=f"{repository}@sha256:{'a' * 64}",
        follow=False,
    )
    assert tagged.status == pinned.status == JobStatus.IN_PROGRESS
    for image in (f"{repository}-x:1", f"{repository}:1/../evil", f"{repository}/sub:1"):
        with pytest.raises(ValidationError, match="not an allowed training image"):
            start(ours.organization, image_uri=image)


def test_a_role_other_than_the_servers_is_refused(moto_aws, ours, settings):
    with pytest.raises(ValidationError, match="not one the server allows"):
        start(ours.organization, role_arn="arn:aws:iam::123456789012:role/theirs-sagemaker")
    settings.SAGEMAKER_ALLOWED_ROLE_ARNS = ["arn:aws:iam::123456789012:role/ours-sagemaker"]
    job = start(ours.organization, role_arn="arn:aws:iam::123456789012:role/ours-sagemaker")
    assert job.role_arn != ROLE_ARN and job.status == JobStatus.IN_PROGRESS


def test_the_api_refuses_another_tenants_prefix_with_a_clear_400(moto_aws, api_client, ours):
    api_client.force_authenticate(ours.operator)
    body = {
        "model_name": "crowd-net",
        "training_data_uri": "s3://stagepulse-artifacts/datasets/theirs-org/",
        "output_uri": "s3://stagepulse-artifacts/training/theirs-org/",
        "image_uri": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/miner:latest",
    }
    response = api_client.post("/api/v1/training-jobs/", body, format="json")
    assert response.status_code == 400, response.json()
    assert set(response.json()["error"]["fields"]) >= {
        "training_data_uri",
        "output_uri",
        "image_uri",
    }
    assert not TrainingJob.objects.exists() and no_job_in_sagemaker()


def test_the_admin_refuses_another_tenants_prefix_as_a_form_error(moto_aws, client, ours):
    client.force_login(ours.operator)
    response = client.post(
        "/admin/detectors/trainingjob/add/",
        {
            "organization": ours.organization.pk,
            "model_name": "crowd-net",
            "training_data_uri": "s3://stagepulse-artifacts/datasets/ours-org/../theirs-org/",
            "output_uri": "s3://stagepulse-artifacts/training/theirs-org/",
            "instance_type": "ml.g4dn.xlarge",
            "instance_count": 1,
            "max_runtime_s": 3600,
            "hyperparameters": "{}",
        },
    )
    assert response.status_code == 200  # the form again, with its errors
    errors = response.context["adminform"].form.errors
    assert {"training_data_uri", "output_uri"} <= set(errors)
    assert not TrainingJob.objects.exists() and no_job_in_sagemaker()


def test_a_model_artifact_outside_the_jobs_output_is_not_imported(moto_aws, ours):
    job = start(ours.organization)
    job.model_artifact_uri = "s3://stagepulse-artifacts/training/theirs-org/job/output/model.tar.gz"
    with pytest.raises(ValidationError, match="not under the job's output location"):
        import_training_output(job)
