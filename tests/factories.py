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
