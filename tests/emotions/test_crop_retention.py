"""Crop retention is honoured to the hour: a crop kept for N hours is gone soon after N hours,
not after the lifecycle rule's 24-48 h. moto stamps LastModified with the real clock, so the
sweeps run at a `now` hours ahead of it."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone
from moto import mock_aws

import awsclients as aws
from edge_package.contracts import build_crop_key
from emotions import retention

pytestmark = pytest.mark.django_db


@pytest.fixture
def crops(settings, two_worlds):
    with mock_aws():
        s3 = aws.client("s3")
        s3.create_bucket(
            Bucket=settings.CROPS_BUCKET,
            CreateBucketConfiguration={"LocationConstraint": aws.region()},
        )
        ours, theirs = two_worlds[0].festival, two_worlds[1].festival
        captured = int(time.time() * 1000)
        keys = {
            "ours": build_crop_key(ours.slug, "main", "ours-cam-1", captured, 1),
            "old-stage": build_crop_key(ours.slug, "renamed-away", "ours-cam-1", captured, 2),
            "theirs": build_crop_key(theirs.slug, "main", "theirs-cam-1", captured, 1),
        }
        for key in keys.values():
            s3.put_object(Bucket=settings.CROPS_BUCKET, Key=key, Body=b"\xff\xd8jpeg")
        yield s3, ours, theirs, keys


def remaining(s3, bucket: str) -> set[str]:
    return {o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])}


def test_a_crop_kept_for_two_hours_is_deleted_after_two_hours(crops, settings):
    s3, ours, _, keys = crops
    settings.CROP_RETENTION_HOURS = 2
    ours.crop_retention_hours = 2
    ours.save()
    now = timezone.now()
    early = retention.sweep_festival_crops(ours, now=now + timedelta(hours=1, minutes=50))
    assert early.deleted == 0 and keys["ours"] in remaining(s3, settings.CROPS_BUCKET)
    late = retention.sweep_festival_crops(ours, now=now + timedelta(hours=2, minutes=10))
    assert late.deleted == 2  # the stage that no longer exists too
    left = remaining(s3, settings.CROPS_BUCKET)
    assert keys["ours"] not in left and keys["old-stage"] not in left
    assert keys["theirs"] in left  # another festival's crops are its own sweep's business


def test_the_stricter_of_festival_and_analyzer_retention_wins(two_worlds, settings):
    festival = two_worlds[0].festival
    settings.CROP_RETENTION_HOURS = 6
    festival.crop_retention_hours = 3
    assert retention.retention_for(festival) == timedelta(hours=3)
    festival.crop_retention_hours = 12
    assert retention.retention_for(festival) == timedelta(hours=6)
    festival.crop_retention_hours = 0  # delete after analysis: leftovers go within the floor
    assert retention.retention_for(festival) == retention.MIN_AGE == timedelta(hours=1)


def test_crops_the_analyzer_missed_are_gone_within_an_hour(crops, settings):
    s3, ours, theirs, keys = crops
    settings.CROP_RETENTION_HOURS = 0
    reports = retention.sweep_expired_crops(now=timezone.now() + timedelta(hours=1, minutes=5))
    assert {r.festival: r.deleted for r in reports} == {ours.slug: 2, theirs.slug: 1}
    assert remaining(s3, settings.CROPS_BUCKET) == set()


def test_the_sweep_runs_on_beat(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["sweep-expired-crops"]
    assert entry["task"] == "emotions.tasks.sweep_expired_crops"
    assert entry["schedule"] <= 15 * 60  # the bound in docs/privacy.md: retention + 15 min
