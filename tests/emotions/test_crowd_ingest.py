"""Crowd signals (observation contract 2, `kind` "crowd") through the stream ingest: one item per
camera per 10-second window folded into a per-stage, per-minute crowd rollup, exactly once,
late and out-of-order windows into their own minute, malformed ones refused with a reason
without taking the page down; face items from face-free cameras refused."""

from datetime import datetime, timedelta

import pytest
from django.utils import timezone

from devices.models import Device
from emotions.models import CrowdMinute, CrowdSignal, IngestRejection, Observation
from emotions.services import crowd_minute_of

# ruff: noqa: F811 (the ingest tests' fixtures, `aws` and `now_worlds`, are reused by name)
from tests.emotions.test_ingest import (  # noqa: F401
    REGION,
    TABLE,
    aws,
    ingest,
    now_worlds,
    observations_table,
    put_face,
)

pytestmark = pytest.mark.django_db


def crowd_item(world, end: datetime, *, device=None, **fields) -> dict:
    """A crowd signal item as the spec (issue 17) writes it; `fields` override any attribute."""
    thing = device or world.device.thing_name
    end_ms = int(end.timestamp() * 1000)
    item = {
        "pk": f"{world.festival.slug}/{world.stage.slug}",
        "sk": f"{end_ms:013d}#{thing}#crowd",
        "kind": "crowd",
        "contract": 2,
        "festival": world.festival.slug,
        "stage": world.stage.slug,
        "device": thing,
        "organization": world.organization.slug,
        "captured_at_ms": end_ms,
        "window_s": 10,
        "motion_energy": 0.4,
        "motion_energy_max": 0.7,
        "sound_level_dbfs": -20.0,
        "sound_crowd_share": 0.3,
        "crowd_fill": 0.6,
        "faces_seen": 4,
        "face_free": False,
        "expires_at": int(end.timestamp()) + 7 * 86400,
    }
    item.update(fields)
    return {k: v for k, v in item.items() if v is not None}


def test_the_contract_builders_item_is_the_shape_these_tests_write(now_worlds):
    """The hand-written items below are the camera's: build_crowd_signal_item gives the same."""
    from edge_package.contracts import build_crowd_signal_item

    ours, _ = now_worlds
    end = aligned(timezone.now())
    built = build_crowd_signal_item(
        festival=ours.festival.slug, stage=ours.stage.slug, device=ours.device.thing_name,
        organization=ours.organization.slug, window_end_ms=int(end.timestamp() * 1000),
        motion_energy=0.4, motion_energy_max=0.7, crowd_fill=0.6, faces_seen=4,
        face_free=False, sound_level_dbfs=-20.0, sound_crowd_share=0.3,
    )  # fmt: skip
    mine = crowd_item(ours, end)
    assert set(built) == set(mine)
    assert {k: v for k, v in built.items() if k != "expires_at"} == {
        k: v for k, v in mine.items() if k != "expires_at"
    }


def put_crowd(world, end: datetime, **fields) -> dict:
    from edge_package.contracts import to_dynamodb

    item = crowd_item(world, end, **fields)
    observations_table().put_item(Item=to_dynamodb(item))
    return item


def aligned(moment: datetime) -> datetime:
    """The end of the 10-second window holding `moment`."""
    return moment.replace(second=(moment.second // 10) * 10, microsecond=0) + timedelta(seconds=10)


def test_crowd_windows_fold_into_their_stage_minute(aws, now_worlds):
    ours, _ = now_worlds
    minute = (timezone.now() - timedelta(minutes=3)).replace(second=0, microsecond=0)
    for i, motion in enumerate([0.2, 0.4, 0.6]):  # windows ending :10, :20, :30
        put_crowd(ours, minute + timedelta(seconds=10 * (i + 1)), motion_energy=motion,
                  motion_energy_max=0.9, crowd_fill=0.5, sound_level_dbfs=-20.0)  # fmt: skip
    # the window ending on the next minute's first instant belongs to this minute
    put_crowd(ours, minute + timedelta(minutes=1), motion_energy=0.8, motion_energy_max=0.8,
              sound_level_dbfs=-10.0, crowd_fill=0.7)  # fmt: skip
    result = ingest(aws)
    assert result.crowd_created == 4 and result.created == 0 and not result.rejected
    bucket = CrowdMinute.objects.get(stage=ours.stage, minute=minute)
    assert bucket.signals == 4 and bucket.cameras == 1
    assert bucket.motion == pytest.approx(0.5) and bucket.motion_max == pytest.approx(0.9)
    assert bucket.fill == pytest.approx(0.55)
    # levels average as power: three at -20 dBFS and one at -10 dBFS make
    # 10 log10((3 x 0.01 + 0.1) / 4) = -14.9, not -17.5
    assert bucket.sound_dbfs == pytest.approx(-14.88, abs=0.01)
    assert not CrowdMinute.objects.filter(minute=minute + timedelta(minutes=1)).exists()
    signal = CrowdSignal.objects.get(dynamo_sk__endswith="#crowd", motion_energy=0.2)
    assert signal.device == ours.device and signal.set == ours.set


def test_a_replayed_crowd_window_adds_nothing(aws, now_worlds):
    from emotions.models import StreamCheckpoint

    ours, _ = now_worlds
    end = aligned(timezone.now() - timedelta(seconds=30))
    put_crowd(ours, end)
    put_crowd(ours, end)  # the camera wrote it twice (a retry): same key, one item
    ingest(aws)
    StreamCheckpoint.objects.all().delete()  # lost checkpoint: the stream is read again
    again = ingest(aws)
    assert again.crowd_created == 0 and again.duplicates >= 1
    assert CrowdSignal.objects.count() == 1
    assert CrowdMinute.objects.get(stage=ours.stage).signals == 1


def test_late_and_out_of_order_windows_land_in_their_own_minute(aws, now_worlds):
    """A camera's spool draining after an outage: older windows arrive after newer ones."""
    ours, _ = now_worlds
    now = timezone.now()
    recent = aligned(now - timedelta(seconds=20))
    put_crowd(ours, recent, motion_energy=0.9, motion_energy_max=0.9)
    ingest(aws)
    late = aligned(now - timedelta(minutes=40))
    put_crowd(ours, late + timedelta(seconds=10), motion_energy=0.1, motion_energy_max=0.2)
    put_crowd(ours, late, motion_energy=0.3, motion_energy_max=0.3)  # out of order too
    result = ingest(aws)
    assert result.crowd_created == 2
    late_minute = CrowdMinute.objects.get(stage=ours.stage, minute=crowd_minute_of(late))
    assert late_minute.signals >= 1
    total = sum(CrowdMinute.objects.filter(stage=ours.stage).values_list("signals", flat=True))
    assert total == 3
    assert CrowdMinute.objects.get(minute=crowd_minute_of(recent)).motion == pytest.approx(0.9)


def test_two_cameras_on_a_stage_count_as_two(aws, now_worlds):
    ours, _ = now_worlds
    second = Device.objects.create(
        organization=ours.organization, festival=ours.festival, stage=ours.stage,
        name="Main right", thing_name="ours-cam-2",
    )  # fmt: skip
    end = aligned(timezone.now() - timedelta(seconds=40))
    put_crowd(ours, end, motion_energy=0.2, motion_energy_max=0.2)
    put_crowd(ours, end, device=second.thing_name, motion_energy=0.6, motion_energy_max=0.6)
    ingest(aws)
    bucket = CrowdMinute.objects.get(stage=ours.stage)
    assert bucket.cameras == 2 and bucket.motion == pytest.approx(0.4)
    assert sorted(bucket.devices) == sorted([ours.device.thing_name, second.thing_name])


@pytest.mark.parametrize(
    "fields, detail",
    [
        ({"motion_energy": 1.5}, "motion_energy must be within 0..1"),
        ({"motion_energy": "lots"}, "motion_energy must be a number"),
        ({"motion_energy": None}, "lacks motion_energy"),
        ({"motion_energy_max": 0.1, "motion_energy": 0.5}, "below the mean"),
        ({"sound_level_dbfs": 3.0}, "sound_level_dbfs must be within -120..0"),
        ({"crowd_fill": -0.1}, "crowd_fill must be within 0..1"),
        ({"faces_seen": 2.5}, "faces_seen must be a whole number"),
        ({"face_free": "yes"}, "face_free must be true or false"),
        ({"face_free": True, "faces_seen": 3}, "in face-free mode (must be 0)"),
        ({"window_s": 0}, "window_s must be within"),
        ({"contract": 1}, "contract must be within 2"),
        ({"kind": "smell"}, "kind 'smell' is not one of"),
        ({"colour": "red"}, "unknown crowd signal attributes: colour"),
    ],
)
def test_a_malformed_crowd_window_is_refused_with_its_reason_and_others_still_land(
    aws, now_worlds, fields, detail
):
    ours, _ = now_worlds
    now = timezone.now()
    put_crowd(ours, aligned(now - timedelta(seconds=50)))
    put_crowd(ours, aligned(now - timedelta(seconds=30)), **fields)
    put_face(ours, now - timedelta(seconds=5))
    result = ingest(aws)
    assert result.rejected == {"malformed": 1}
    assert result.crowd_created == 1 and result.created == 1
    refusal = IngestRejection.objects.get(reason="malformed", stage=ours.stage)
    assert detail in refusal.last_detail and refusal.last_key.endswith("#crowd")


def test_a_crowd_key_that_does_not_match_its_attributes_is_refused(aws, now_worlds):
    ours, _ = now_worlds
    end = aligned(timezone.now() - timedelta(seconds=30))
    item = crowd_item(ours, end)
    put_crowd(ours, end, sk=item["sk"].replace("#crowd", "#7#0"))  # a face's key shape
    put_crowd(ours, end + timedelta(seconds=10), captured_at_ms=item["captured_at_ms"] - 5)
    result = ingest(aws)
    assert result.rejected == {"malformed": 2} and result.crowd_created == 0


def test_crowd_windows_of_a_camera_of_another_organization_are_refused(aws, now_worlds):
    ours, theirs = now_worlds
    end = aligned(timezone.now() - timedelta(seconds=30))
    put_crowd(ours, end, device=theirs.device.thing_name)
    result = ingest(aws)
    assert result.rejected == {"wrong_device": 1} and not CrowdMinute.objects.exists()


def test_a_crowd_window_advances_the_stage_freshness(aws, now_worlds):
    from emotions.models import IngestWatermark

    ours, _ = now_worlds
    end = aligned(timezone.now() - timedelta(seconds=25))
    put_crowd(ours, end)
    ingest(aws)
    watermark = IngestWatermark.objects.get(stage=ours.stage)
    assert watermark.captured_until_ms == int(end.timestamp() * 1000)


def test_face_items_from_a_face_free_camera_or_festival_are_refused(aws, now_worlds):
    """Defence in depth: a face-free camera sends no crop, so a face from it means a camera
    running old software or a wrong config; its numbers never reach the rollups."""
    ours, _ = now_worlds
    ours.device.config = {**ours.device.config, "face_free": True}
    Device.objects.filter(pk=ours.device.pk).update(config=ours.device.config)
    put_face(ours, timezone.now() - timedelta(seconds=3))
    put_crowd(ours, aligned(timezone.now() - timedelta(seconds=30)), face_free=True, faces_seen=0)
    result = ingest(aws)
    assert result.rejected == {"face_free": 1} and result.crowd_created == 1
    assert not Observation.objects.exists()
    Device.objects.filter(pk=ours.device.pk).update(config={})
    ours.festival.face_free = True
    ours.festival.save()
    put_face(ours, timezone.now() - timedelta(seconds=2))
    assert ingest(aws).rejected == {"face_free": 1}
    assert "festival is face-free" in IngestRejection.objects.get(reason="face_free").last_detail
