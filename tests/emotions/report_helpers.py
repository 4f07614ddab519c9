"""Builders for set-report tests: observations go in through the real ingest (store_items), so
rollups, set attachment and the report all see what production would."""

from __future__ import annotations

from datetime import datetime, timedelta

from devices.models import Device
from edge_package.contracts import CropKey, build_observation_item
from emotions.services import store_items
from stages.models import Set, Stage

_seq = iter(range(1, 10_000_000))


def faces(stage: Stage, device: str, minute: datetime, n: int, model="fer-tflite", **scores):
    """Store `n` faces captured within `minute` (one per second), each with `scores`."""
    return store_items(stage, face_items(stage, device, minute, n, model, **scores))


def face_items(stage: Stage, device: str, minute: datetime, n: int, model="fer-tflite", **scores):
    """The items `faces` stores, for a caller that stores many minutes as one batch (as the
    stream delivers them): one store_items call instead of one a minute."""
    items = []
    for i in range(n):
        captured = minute + timedelta(seconds=i % 60, milliseconds=i // 60)
        crop = CropKey(
            stage.festival.slug, stage.slug, device, int(captured.timestamp() * 1000), next(_seq)
        )
        items.append(
            build_observation_item(
                crop=crop,
                face_index=0,
                scores=scores,
                face_confidence=99.0,
                source="local",
                model=model,
                analyzed_at_ms=int(captured.timestamp() * 1000) + 500,
            )
        )
    return items


def add_set(stage: Stage, artist: str, starts_at: datetime, minutes: int) -> Set:
    return Set.objects.create(
        organization=stage.organization,
        stage=stage,
        artist=artist,
        starts_at=starts_at,
        ends_at=starts_at + timedelta(minutes=minutes),
    )


def add_stage(world, name: str, slug: str, typical_crowd: int = 0) -> Stage:
    return Stage.objects.create(
        organization=world.organization,
        festival=world.festival,
        name=name,
        slug=slug,
        typical_crowd=typical_crowd,
    )


def add_device(world, stage: Stage, thing: str, name: str) -> Device:
    return Device.objects.create(
        organization=world.organization,
        festival=world.festival,
        stage=stage,
        name=name,
        thing_name=thing,
    )
