"""SageMaker training jobs: CreateTrainingJob confined to the organization's own S3 prefixes, a
task that follows the job, its model.tflite registered when it completes."""

from __future__ import annotations

import io
import re
import tarfile

from botocore.exceptions import BotoCoreError, ClientError
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

import awsclients as aws

# detectors.tasks imports this module and this module enqueues its task: each imports the other's
# module (not names from it) at module level, which Python resolves in either order.
from detectors import tasks
from detectors.models import FaceModel, JobStatus, Source, TrainingJob
from detectors.services.artifacts import NAME
from detectors.services.registry import register_model
from festival.models import Festival

# A training job reads and writes S3 with the platform's SageMaker role, which can reach every
# tenant's data: so its locations are confined to the organization's own prefixes, the face
# crops bucket is never one of them, and the role and the container image come from allowlists.
_S3_URI = re.compile(r"^s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/([A-Za-z0-9!_.*'()/-]*)$")


def check_s3_uri(value: str, field: str) -> str:
    """A plain s3://bucket/prefix/ (ending in '/'): no '.', '..' or empty segments, no escapes,
    so a prefix means what it reads as."""
    match = _S3_URI.match(value or "")
    key = match[2] if match else ""
    segments = key.removesuffix("/").split("/") if key else []  # every segment, the last too
    if not match or any(part in ("", ".", "..") for part in segments):
        raise ValidationError(
            {
                field: f"{value!r} is not a plain s3://bucket/prefix/ location (letters, digits "
                "and !_.*'()- in each segment; no '.', '..' or empty segments)."
            }
        )
    return value if value.endswith("/") else value + "/"


def organization_prefixes(organization) -> list[str]:
    """The S3 prefixes an organization's training jobs may read and write
    (SAGEMAKER_ORGANIZATION_PREFIXES, each ending in '/')."""
    prefixes = []
    for template in settings.SAGEMAKER_ORGANIZATION_PREFIXES:
        prefix = template.format(
            organization=organization.slug, artifacts_bucket=settings.ARTIFACTS_BUCKET
        )
        prefixes.append(prefix if prefix.endswith("/") else prefix + "/")
    return prefixes


def _crops_buckets() -> set[str]:
    custom = Festival.objects.exclude(crops_bucket="").values_list("crops_bucket", flat=True)
    return {settings.CROPS_BUCKET, *custom}


def check_training_location(organization, value: str, field: str) -> str:
    """`value`, normalized, when it lies inside one of the organization's own prefixes."""
    uri = check_s3_uri(value, field)
    bucket = uri[len("s3://") :].partition("/")[0]
    if bucket in _crops_buckets():
        raise ValidationError(
            {field: "Face crops are for crowd analysis only, never for training (docs/privacy.md)."}
        )
    prefixes = organization_prefixes(organization)
    if not any(uri.startswith(prefix) for prefix in prefixes):
        raise ValidationError(
            {field: f"{uri} is outside your organization's prefixes: {', '.join(prefixes)}."}
        )
    return uri


def image_allowed(image_uri: str) -> bool:
    """SAGEMAKER_TRAINING_IMAGE or an image on SAGEMAKER_ALLOWED_IMAGES: the same URI, or any
    tag or digest of a listed repository (an entry without ':' or '@' after its last '/')."""
    allowed = [settings.SAGEMAKER_TRAINING_IMAGE, *settings.SAGEMAKER_ALLOWED_IMAGES]
    for entry in filter(None, allowed):
        if image_uri == entry:
            return True
        if ":" not in entry.rpartition("/")[2] and "@" not in entry:
            rest = image_uri[len(entry) :] if image_uri.startswith(entry) else ""
            if re.match(r"^(:[\w][\w.-]{0,127}|@sha256:[0-9a-f]{64})$", rest):
                return True
    return False


def training_job_problems(
    organization,
    *,
    training_data_uri: str,
    output_uri: str = "",
    role_arn: str = "",
    image_uri: str = "",
) -> tuple[dict, dict[str, list[str]]]:
    """The checks of a new training job, for the service, the admin form and the API alike.
    Returns (the resolved locations, role and image; problems per field)."""
    problems: dict[str, list[str]] = {}
    resolved = {
        "training_data_uri": training_data_uri,
        "output_uri": output_uri
        or f"s3://{settings.ARTIFACTS_BUCKET}/training/{organization.slug}/",
        "role_arn": role_arn or settings.SAGEMAKER_ROLE_ARN,
        "image_uri": image_uri or settings.SAGEMAKER_TRAINING_IMAGE,
    }
    for field in ("training_data_uri", "output_uri"):
        try:
            resolved[field] = check_training_location(organization, resolved[field], field)
        except ValidationError as exc:
            problems[field] = exc.messages
    role_arn = resolved["role_arn"]
    if not role_arn.startswith("arn:"):
        problems["role_arn"] = ["An IAM role ARN SageMaker can assume is required."]
    elif role_arn not in {settings.SAGEMAKER_ROLE_ARN, *settings.SAGEMAKER_ALLOWED_ROLE_ARNS}:
        problems["role_arn"] = ["This role is not one the server allows (SAGEMAKER_ROLE_ARN)."]
    image = resolved["image_uri"]
    if not image:
        problems["image_uri"] = ["A training container image (ECR URI) is required."]
    elif not image_allowed(image):
        problems["image_uri"] = [
            f"{image} is not an allowed training image (SAGEMAKER_ALLOWED_IMAGES)."
        ]
    return resolved, problems


def _job_name(organization, model_name: str) -> str:
    stamp = timezone.now().strftime("%Y%m%d-%H%M%S")
    base = re.sub(r"[^a-zA-Z0-9-]+", "-", f"{organization.slug[:20]}-{model_name[:24]}")
    return f"{base.strip('-')}-{stamp}"[:63]


def start_training_job(
    organization,
    *,
    model_name: str,
    training_data_uri: str,
    output_uri: str = "",
    role_arn: str = "",
    image_uri: str = "",
    instance_type: str = "ml.g4dn.xlarge",
    instance_count: int = 1,
    hyperparameters: dict | None = None,
    max_runtime_s: int = 24 * 3600,
    user=None,
    follow: bool = True,
) -> TrainingJob:
    """CreateTrainingJob with the organization's role; the job is then followed by a task.

    Channels: `train` = <training_data_uri>train/, `validation` = <training_data_uri>validation/
    (WIDER FACE-style layout, README). The container writes model.tflite to /opt/ml/model."""
    if not NAME.match(model_name or ""):
        raise ValidationError({"model_name": "Use lowercase letters, digits, '.', '_' or '-'."})
    resolved, problems = training_job_problems(
        organization,
        training_data_uri=training_data_uri,
        output_uri=output_uri,
        role_arn=role_arn,
        image_uri=image_uri,
    )
    if problems:
        raise ValidationError(problems)
    data, output = resolved["training_data_uri"], resolved["output_uri"]
    role_arn, image_uri = resolved["role_arn"], resolved["image_uri"]
    hyperparameters = {str(k): str(v) for k, v in (hyperparameters or {}).items()}
    job = TrainingJob.objects.create(
        organization=organization,
        job_name=_job_name(organization, model_name),
        model_name=model_name,
        role_arn=role_arn,
        image_uri=image_uri,
        instance_type=instance_type,
        instance_count=instance_count,
        max_runtime_s=max_runtime_s,
        hyperparameters=hyperparameters,
        training_data_uri=data,
        output_uri=output,
        created_by=user,
    )

    def channel(name: str) -> dict:
        return {
            "ChannelName": name,
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "S3Prefix",
                    "S3Uri": f"{data}{name}/",
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
            "InputMode": "File",
        }

    try:
        response = aws.cached_client("sagemaker").create_training_job(
            TrainingJobName=job.job_name,
            RoleArn=role_arn,
            AlgorithmSpecification={"TrainingImage": image_uri, "TrainingInputMode": "File"},
            HyperParameters=hyperparameters,
            InputDataConfig=[channel("train"), channel("validation")],
            OutputDataConfig={"S3OutputPath": output},
            ResourceConfig={
                "InstanceType": instance_type,
                "InstanceCount": instance_count,
                "VolumeSizeInGB": job.volume_gb,
            },
            StoppingCondition={"MaxRuntimeInSeconds": max_runtime_s},
            Tags=[{"Key": "stagepulse:organization", "Value": organization.slug}],
        )
    except (ClientError, BotoCoreError) as exc:
        job.status, job.failure_reason, job.finished_at = JobStatus.FAILED, str(exc), timezone.now()
        job.save(update_fields=["status", "failure_reason", "finished_at"])
        return job
    job.job_arn, job.status = response["TrainingJobArn"], JobStatus.IN_PROGRESS
    job.save(update_fields=["job_arn", "status"])
    if follow:
        transaction.on_commit(lambda: tasks.follow_training_job.delay(job.id))
    return job


def follow_training_job(job_id: int) -> float | None:
    """One DescribeTrainingJob: status, metrics, failure reason; on completion the output model
    is registered. Returns seconds until the next look, or None when the job has ended."""
    job = TrainingJob.objects.select_related("organization").get(pk=job_id)
    if job.finished:
        return None
    try:
        info = aws.cached_client("sagemaker").describe_training_job(TrainingJobName=job.job_name)
    except (ClientError, BotoCoreError) as exc:
        job.polls += 1
        job.failure_reason = f"describe_training_job failed (will retry): {exc}"[:2000]
        job.save(update_fields=["polls", "failure_reason"])
        return settings.TRAINING_JOB_POLL_SECONDS
    job.polls += 1
    job.status = info["TrainingJobStatus"]
    job.secondary_status = info.get("SecondaryStatus", "")
    job.failure_reason = info.get("FailureReason", "")
    job.metrics = {m["MetricName"]: m["Value"] for m in info.get("FinalMetricDataList", [])}
    job.model_artifact_uri = info.get("ModelArtifacts", {}).get("S3ModelArtifacts", "")
    if job.finished:
        job.finished_at = timezone.now()
    job.save()
    if job.status == JobStatus.COMPLETED:
        try:
            import_training_output(job)
        except ValidationError as exc:
            job.failure_reason = "The job completed but its model was not registered: " + (
                " ".join(exc.messages)
            )
            job.save(update_fields=["failure_reason"])
    return None if job.finished else settings.TRAINING_JOB_POLL_SECONDS


def import_training_output(job: TrainingJob) -> FaceModel:
    """model.tar.gz from the job's output -> the one .tflite inside -> a new registry version."""
    existing = job.models.first()
    if existing:
        return existing
    match = re.match(r"^s3://([^/]+)/(.+)$", job.model_artifact_uri)
    if not match:
        raise ValidationError(f"No model artifact location ({job.model_artifact_uri!r}).")
    if not job.model_artifact_uri.startswith(job.output_uri) or "/../" in job.model_artifact_uri:
        raise ValidationError(
            f"{job.model_artifact_uri} is not under the job's output location {job.output_uri}."
        )
    try:
        body = aws.cached_client("s3").get_object(Bucket=match[1], Key=match[2])["Body"].read()
    except ClientError as exc:
        raise ValidationError(f"{job.model_artifact_uri} cannot be read: {exc}") from exc
    try:
        with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
            members = [m for m in archive.getmembers() if m.isfile() and m.name.endswith(".tflite")]
            if len(members) != 1:
                raise ValidationError(
                    f"{job.model_artifact_uri} must hold exactly one .tflite file, "
                    f"found {len(members)}."
                )
            data = archive.extractfile(members[0]).read()
    except tarfile.TarError as exc:
        raise ValidationError(f"{job.model_artifact_uri} is not a tar.gz archive: {exc}") from exc
    return register_model(
        job.organization,
        name=job.model_name,
        data=data,
        source=Source.TRAINING,
        training_job=job,
        notes=f"SageMaker training job {job.job_name}",
        user=job.created_by,
    )
