"""Builders for a tenant's world: an organization with people in every role, a festival, a
stage, a set and a camera. Tests compose two of them to probe the tenancy boundary."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.contrib.auth import get_user_model

from devices.models import Device
from festival.models import Festival, Membership, Organization, Role
from stages.models import Set, Stage

PASSWORD = "a-long-test-password"


@dataclass
class World:
    organization: Organization
    owner: object
    operator: object
    viewer: object
    festival: Festival
    stage: Stage
    set: Set
    device: Device
    membership: Membership


def make_user(username: str, *, staff: bool = True):
    return get_user_model().objects.create_user(
        username=username, email=f"{username}@example.org", password=PASSWORD, is_staff=staff
    )


def make_world(prefix: str, *, public: bool = True, tz: str = "Europe/Amsterdam") -> World:
    organization = Organization.objects.create(name=f"{prefix.title()} Org", slug=f"{prefix}-org")
    users = {}
    membership = None
    for role in (Role.OWNER, Role.OPERATOR, Role.VIEWER):
        users[role] = make_user(f"{prefix}-{role}")
        membership = Membership.objects.create(
            user=users[role], organization=organization, role=role
        )
    festival = Festival.objects.create(
        organization=organization,
        name=f"{prefix.title()} Fest",
        slug=f"{prefix}-fest",
        timezone=tz,
        starts_on=date(2026, 7, 10),
        ends_on=date(2026, 7, 12),
        public=public,
    )
    stage = Stage.objects.create(
        organization=organization, festival=festival, name=f"{prefix.title()} Main", slug="main"
    )
    a_set = Set.objects.create(
        organization=organization,
        stage=stage,
        artist=f"{prefix.title()} Artist",
        starts_at=datetime(2026, 7, 10, 18, 0, tzinfo=UTC),
        ends_at=datetime(2026, 7, 10, 19, 30, tzinfo=UTC),
    )
    device = Device.objects.create(
        organization=organization,
        festival=festival,
        stage=stage,
        name=f"{prefix.title()} cam",
        thing_name=f"{prefix}-cam-1",
    )
    return World(
        organization=organization,
        owner=users[Role.OWNER],
        operator=users[Role.OPERATOR],
        viewer=users[Role.VIEWER],
        festival=festival,
        stage=stage,
        set=a_set,
        device=device,
        membership=membership,
    )


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def later(value: datetime, minutes: int) -> datetime:
    return value + timedelta(minutes=minutes)


def add_recent_rollup(stage, *, faces: int, happy: float, calm: float = 0.0, minutes_ago: int = 1):
    """A minute of crowd data on `stage`, `minutes_ago` before now (every face scoring alike)."""
    from django.utils import timezone

    from emotions.models import MinuteRollup

    top = "HAPPY" if happy >= calm else "CALM"
    return MinuteRollup.objects.create(
        organization=stage.organization,
        festival=stage.festival,
        stage=stage,
        minute=timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=minutes_ago),
        faces=faces,
        counts={top: faces},
        sums={"HAPPY": happy * faces, "CALM": calm * faces},
    )


def add_tenant_rows(world: World) -> World:
    """One row of every other tenant-owned model the organizer API serves, named after the world
    (so a page that shows another world's name has leaked it). The cross-tenant route tests need
    a row of each model a route lists; a new route's model gets one here."""
    from detectors.models import FaceModel, LabelledClip, ModelRollout, TrainingJob
    from devices.models import Deployment, EdgeRelease, Rollout
    from emotions.models import ComparisonRun, IngestRejection, SetReport
    from festival.models import Invitation

    prefix = world.organization.slug.removesuffix("-org")
    org = world.organization
    release, _ = EdgeRelease.objects.get_or_create(
        version="1.0.0",
        defaults={"sha256": "0" * 64, "bucket": "b", "key": "edge/1.0.0.zip", "size_bytes": 1},
    )
    world.deployment = Deployment.objects.create(
        organization=org, device=world.device, release=release, platform="greengrass", state="poll"
    )
    world.rollout = Rollout.objects.create(
        organization=org, festival=world.festival, release=release, reason=f"{prefix} rollout"
    )
    world.rollout.canaries.set([world.device])
    world.report = SetReport.objects.create(
        organization=org, festival=world.festival, stage=world.stage, set=world.set
    )
    world.training_job = TrainingJob.objects.create(
        organization=org,
        job_name=f"{prefix}-training-job",
        model_name=f"{prefix}-trained-model",
        role_arn="arn:aws:iam::123456789012:role/sm",
        image_uri="123456789012.dkr.ecr.eu-west-1.amazonaws.com/train:1",
        training_data_uri=f"s3://{prefix}-bucket/data/",
        output_uri=f"s3://{prefix}-bucket/out/",
    )
    world.face_model = FaceModel.objects.create(
        organization=org,
        name=f"{prefix}-face-model",
        version=1,
        source="upload",
        input_size=128,
        sha256="1" * 64,
        size_bytes=1,
        bucket=f"{prefix}-bucket",
        key=f"{prefix}/model.tflite",
    )
    world.rollout = ModelRollout.objects.create(
        organization=org, face_model=world.face_model, device=world.device
    )
    world.comparison_run = ComparisonRun.objects.create(
        organization=org,
        festival=world.festival,
        key=f"{prefix}run0001",
        name=f"{prefix} comparison run",
        starts_at=datetime.now(UTC) - timedelta(hours=1),
        ends_at=datetime.now(UTC) + timedelta(hours=1),
    )
    world.comparison_run.devices.set([world.device])
    world.ingest_rejection = IngestRejection.objects.create(
        key=f"{prefix}/wrong_device",
        organization=org,
        festival=world.festival,
        stage=world.stage,
        reason="wrong_device",
        count=1,
        last_key=f"{prefix}-fest/main/{prefix}-cam",
    )
    world.invitation = Invitation.objects.create(
        organization=org,
        invitee=f"{prefix}-newcomer@example.org",
        invited_by=world.owner,
        expires_at=datetime.now(UTC) + timedelta(days=7),
    )
    world.labelled_clip = LabelledClip.objects.create(
        organization=org,
        name=f"{prefix}-labelled-clip",
        bucket=f"{prefix}-bucket",
        key=f"{prefix}/clip.avi",
        sha256="2" * 64,
        size_bytes=1,
        width=64,
        height=64,
        frame_count=1,
        fps=15.0,
        labelled_frames=1,
        faces=1,
        annotations={"fps": 15, "frames": {}},
    )
    return world


def names_of(world: World) -> list[str]:
    """Strings that identify a world's rows on any page (names, slugs, thing names, users)."""
    names = [
        world.organization.name,
        world.organization.slug,
        world.festival.name,
        world.festival.slug,
        world.stage.name,
        world.set.artist,
        world.device.name,
        world.device.thing_name,
        world.owner.username,
        world.operator.username,
        world.viewer.username,
    ]
    for attribute in ("face_model", "labelled_clip"):
        if hasattr(world, attribute):
            names.append(getattr(world, attribute).name)
    if hasattr(world, "training_job"):
        names.append(world.training_job.job_name)
    if hasattr(world, "invitation"):
        names.append(world.invitation.invitee)
    return names
