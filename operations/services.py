"""Writes that span apps: a festival's update (its cameras hear of a new analysis mode) and the
idempotent demo seed (organizations, festivals, stages, lineup, cameras)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from devices.models import Device, Platform
from devices.services import push_festival_cameras
from emotions.comparison.services import end_runs_for_mode_change
from festival.models import (
    Festival,
    Membership,
    Organization,
    Role,
    check_festival_dates,
    vibe_weight_errors,
)
from stages.models import Set, Stage
from stages.services import demo_lineup_rows, import_lineup

DEMO_PASSWORD = "stagepulse-demo"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    organization: str
    role: str


DEMO_ORGS = [
    {
        "slug": "northwind",
        "name": "Northwind Events",
        "users": [("alice", Role.OWNER), ("oscar", Role.OPERATOR), ("vera", Role.VIEWER)],
        "festival": {
            "slug": "pulse-2026",
            "name": "Pulse Festival",
            "timezone": "Europe/Amsterdam",
            "public": True,
            "stages": [
                ("main", "Main Stage", 40),
                ("forest", "Forest Stage", 25),
                ("tent", "The Tent", 15),
                ("harbour", "Harbour Stage", 8),
            ],
        },
    },
    {
        "slug": "southbank",
        "name": "Southbank Live",
        "users": [("bob", Role.OWNER)],
        "festival": {
            "slug": "riverside-2026",
            "name": "Riverside Sessions",
            "timezone": "Europe/London",
            "public": False,
            "stages": [("river", "River Stage", 20), ("garden", "Garden Stage", 10)],
        },
    },
]


def ensure_member(organization: Organization, username: str, role: str, password_hash):
    """The user (made with `password_hash()` as its stored password if new) and its membership."""
    user_model = get_user_model()
    user, created = user_model.objects.get_or_create(
        username=username,
        defaults={"email": f"{username}@{organization.slug}.example", "is_staff": True},
    )
    if created:
        user.password = password_hash()
        user.save()
    Membership.objects.get_or_create(user=user, organization=organization, defaults={"role": role})
    return user


def _hashed_once(password: str):
    """The demo's one shared password, hashed on first use and then reused: each hash is a
    million PBKDF2 rounds (~1 s of CPU), and the demo made seven of the same password at every
    first start. The password is printed in the demo's banner, so a salt per user hides nothing."""
    encoded: list[str] = []

    def password_hash() -> str:
        if not encoded:
            encoded.append(make_password(password))
        return encoded[0]

    return password_hash


@transaction.atomic
def seed_demo(today: date | None = None, password: str = DEMO_PASSWORD) -> list[DemoLogin]:
    """Two organizations, each with a festival, stages, a two-day lineup and cameras.

    Idempotent: existing rows are kept as they are, so a second run changes nothing.
    """
    logins: list[DemoLogin] = []
    password_hash = _hashed_once(password)
    for spec in DEMO_ORGS:
        organization, _ = Organization.objects.get_or_create(
            slug=spec["slug"], defaults={"name": spec["name"]}
        )
        for username, role in spec["users"]:
            ensure_member(organization, username, role, password_hash)
            logins.append(DemoLogin(username, organization.name, role))
        fest = spec["festival"]
        festival, created = Festival.objects.get_or_create(
            slug=fest["slug"],
            defaults={
                "organization": organization,
                "name": fest["name"],
                "timezone": fest["timezone"],
                "starts_on": today or timezone.localdate(),
                "ends_on": (today or timezone.localdate()) + timedelta(days=1),
                "public": fest["public"],
            },
        )
        for position, (slug, name, crowd) in enumerate(fest["stages"]):
            stage, _ = Stage.objects.get_or_create(
                festival=festival,
                slug=slug,
                defaults={
                    "organization": organization,
                    "name": name,
                    "position": position,
                    "typical_crowd": crowd,
                },
            )
            Device.objects.get_or_create(
                thing_name=f"{festival.slug}-{slug}-cam1",
                defaults={
                    "organization": organization,
                    "festival": festival,
                    "stage": stage,
                    "name": f"{name} camera",
                    "platform": Platform.STANDALONE,
                },
            )
        if not Set.objects.filter(stage__festival=festival).exists():
            rows = demo_lineup_rows(festival, festival.starts_on, days=2)
            header = "stage,artist,starts_at,ends_at,notes\n"
            body = "".join(
                f"{r['stage']},{r['artist']},{r['starts_at']},{r['ends_at']},\n" for r in rows
            )
            result = import_lineup(festival, header + body)
            if not result.ok:
                raise RuntimeError(f"demo lineup did not import: {result.errors[:3]}")
    user_model = get_user_model()
    if not user_model.objects.filter(username="admin").exists():
        admin = user_model.objects.create_superuser("admin", "admin@stagepulse.example", None)
        admin.password = password_hash()
        admin.save(update_fields=["password"])
    logins.append(DemoLogin("admin", "(superuser: every organization)", "superuser"))
    return logins


# --- Festivals ------------------------------------------------------------------------------------
def update_festival(festival: Festival, **changes) -> Festival:
    """The one way the API and the admin change a festival: `changes` applied, validated and
    saved. When the analysis mode or the face-free mode really changed (compared with the row
    as loaded, Festival.from_db: no query), the festival's comparison runs that are on or to
    come end, with the reason on each (emotions.comparison.services.end_runs_for_mode_change),
    and its registered cameras get their new config pushed to their shadows, after commit
    (devices.services.push_festival_cameras). Any other save of a festival does nothing more.
    Vibe weights are checked here for both callers (festival.models.vibe_weight_errors)."""
    for name, value in changes.items():
        setattr(festival, name, value)
    check_festival_dates(festival.starts_on, festival.ends_on)
    weight_errors = vibe_weight_errors(festival.vibe_weights)
    if weight_errors:
        raise ValidationError({"vibe_weights": weight_errors})
    before = (
        getattr(festival, "saved_analysis_mode", None),
        getattr(festival, "saved_face_free", None),
    )
    if None in before and festival.pk:  # not loaded from the database, or a field deferred
        before = (
            Festival.objects.filter(pk=festival.pk)
            .values_list("analysis_mode", "face_free")
            .first()
        ) or (None, None)
    festival.save()
    festival.saved_analysis_mode = festival.analysis_mode
    festival.saved_face_free = festival.face_free
    if before[0] is not None and before != (festival.analysis_mode, festival.face_free):
        # Its comparison runs end, with the reason (emotions.comparison.services).
        end_runs_for_mode_change(festival, was=before)
        festival_id = festival.pk
        transaction.on_commit(lambda: push_festival_cameras(festival_id))
    return festival
