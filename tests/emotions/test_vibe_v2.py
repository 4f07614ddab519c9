"""Vibe, second version: components normalised per stage against their own history, festival
weights that renormalise when a component has no data, face-free festivals ranked on motion,
sound and fill, and the public rule for crowd numbers."""

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError

from emotions import vibe as v2
from emotions.models import CrowdMinute, MinuteRollup
from emotions.selectors import compute_live_ranking, stage_timeline
from operations.services import update_festival
from stages.models import Stage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 7, 10, 18, 30, tzinfo=UTC)


def add_crowd(stage, start, minutes, *, motion, fill=0.5, sound=None, cameras=("cam-a",)):
    for i in range(minutes):
        CrowdMinute.objects.create(
            organization=stage.organization,
            festival=stage.festival,
            stage=stage,
            minute=start + timedelta(minutes=i),
            signals=6 * len(cameras),
            motion_sum=motion * 6 * len(cameras),
            motion_max=min(1.0, motion * 1.5),
            sound_signals=0 if sound is None else 6 * len(cameras),
            sound_power_sum=0 if sound is None else 10 ** (sound / 10) * 6 * len(cameras),
            fill_sum=fill * 6 * len(cameras),
            devices=list(cameras),
        )


def add_faces(stage, start, minutes, faces, happy):
    for i in range(minutes):
        MinuteRollup.objects.create(
            organization=stage.organization,
            festival=stage.festival,
            stage=stage,
            minute=start + timedelta(minutes=i),
            faces=faces,
            counts={"HAPPY" if happy >= 50 else "CALM": faces},
            sums={"HAPPY": happy * faces, "CALM": (100 - happy) * faces},
        )


@pytest.fixture
def festival_with_stages(two_worlds):
    ours, _ = two_worlds
    festival = ours.festival
    tent = Stage.objects.create(
        organization=ours.organization, festival=festival, name="Tent", slug="tent"
    )
    chill = Stage.objects.create(
        organization=ours.organization, festival=festival, name="Chill", slug="chill"
    )
    return festival, ours.stage, tent, chill


def rows_by_slug(ranking):
    return {r["stage"]["slug"]: r for r in ranking["stages"]}


def test_a_face_free_festival_ranks_the_crowd_that_dances_harder_first(festival_with_stages):
    festival, main, tent, chill = festival_with_stages
    update_festival(festival, face_free=True)
    window = NOW - timedelta(minutes=5)
    add_crowd(main, window, 6, motion=0.8, fill=0.7, sound=-12)
    add_crowd(tent, window, 6, motion=0.5, fill=0.6, sound=-15)
    add_crowd(chill, window, 6, motion=0.1, fill=0.4, sound=-25)
    add_faces(chill, window, 6, faces=20, happy=99)  # faces from before the switch: ignored
    ranking = compute_live_ranking(festival, at=NOW)
    assert [r["stage"]["slug"] for r in ranking["stages"]] == ["main", "tent", "chill"]
    rows = rows_by_slug(ranking)
    assert all(r["components"]["expression"] is None for r in rows.values())
    assert rows["main"]["components"]["motion"]["raw"] == pytest.approx(0.8)
    assert rows["main"]["vibe_v2"] > rows["tent"]["vibe_v2"] > rows["chill"]["vibe_v2"]
    assert rows["main"]["no_number_reason"] is None and rows["main"]["cameras"] == 1
    assert ranking["face_free"] is True


def test_a_component_without_data_drops_out_and_the_weights_renormalise(festival_with_stages):
    festival, main, _, _ = festival_with_stages
    update_festival(
        festival, vibe_weights={"expression": 0.0, "motion": 0.6, "sound": 0.2, "fill": 0.2}
    )
    add_crowd(main, NOW - timedelta(minutes=5), 6, motion=0.6, fill=0.3)  # no microphone
    row = rows_by_slug(compute_live_ranking(festival, at=NOW))["main"]
    parts = row["components"]
    assert parts["sound"] is None and parts["expression"] is None
    assert parts["motion"]["weight"] == pytest.approx(0.75)  # 0.6 / (0.6 + 0.2)
    assert parts["fill"]["weight"] == pytest.approx(0.25)
    # cold start (no history at all): each score is the value itself on 0..100
    assert parts["motion"]["score"] == pytest.approx(60.0)
    assert row["vibe_v2"] == pytest.approx(0.75 * 60 + 0.25 * 30, abs=0.1)


def test_each_stage_is_judged_against_its_own_history(festival_with_stages):
    """After three hours, a chill stage at its own best outranks a dance tent at its usual."""
    festival, main, tent, chill = festival_with_stages
    history = NOW - timedelta(hours=3)
    add_crowd(tent, history, 175, motion=0.7)  # the tent always dances
    add_crowd(chill, history, 175, motion=0.1)  # the chill stage barely moves
    window = NOW - timedelta(minutes=5)
    add_crowd(tent, window, 6, motion=0.7)  # its usual
    add_crowd(chill, window, 6, motion=0.35)  # far above its usual, far below the tent
    rows = rows_by_slug(compute_live_ranking(festival, at=NOW))
    assert rows["chill"]["rank"] == 1 and rows["tent"]["rank"] == 2
    # at its own median it scores 0.5, weighed 175 / (175 + 60); the festival's pool (median
    # 0.4, MAD 0.3) the rest: a robust z of 0.3 / (1.4826 x 0.3) through the logistic
    w_own = 175 / 235
    pooled = 1 / (1 + math.exp(-1.702 * 0.3 / (1.4826 * 0.3)))
    expected = 100 * (w_own * 0.5 + (1 - w_own) * pooled)
    assert rows["tent"]["components"]["motion"]["score"] == pytest.approx(expected, abs=0.1)
    # without its own history (a new stage), absolute movement decides
    fresh = compute_live_ranking(festival, at=history + timedelta(minutes=5))
    assert fresh["stages"][0]["stage"]["slug"] == "tent"


def test_expression_keeps_the_small_bucket_rule_while_motion_shows(festival_with_stages):
    festival, main, _, _ = festival_with_stages
    festival.min_faces_public = 5
    festival.save()
    window = NOW - timedelta(minutes=5)
    add_faces(main, window, 6, faces=3, happy=90)  # 3 faces a minute: suppressed
    add_crowd(main, window, 6, motion=0.5)
    row = rows_by_slug(compute_live_ranking(festival, at=NOW))["main"]
    assert row["suppressed"] and row["faces"] is None and row["vibe"] is None
    assert row["components"]["expression"] is None
    assert row["components"]["motion"] is not None and row["vibe_v2"] is not None
    assert row["rank"] == 1


def test_a_minute_without_a_camera_has_no_crowd_numbers(festival_with_stages):
    festival, main, _, _ = festival_with_stages
    CrowdMinute.objects.create(
        organization=main.organization, festival=festival, stage=main,
        minute=NOW - timedelta(minutes=2), signals=0, devices=[],
    )  # fmt: skip
    add_crowd(main, NOW - timedelta(minutes=1), 1, motion=0.4)
    points = {p["minute"]: p for p in stage_timeline(festival, main, at=NOW, minutes=5)}
    assert points[NOW - timedelta(minutes=2)]["components"]["motion"] is None
    assert points[NOW - timedelta(minutes=2)]["vibe_v2"] is None
    assert points[NOW - timedelta(minutes=1)]["components"]["motion"] is not None


def test_weights_are_validated_by_the_one_service():
    with pytest.raises(ValidationError) as error:
        from festival.models import Festival

        update_festival(Festival(vibe_weights={"motion": 2, "smell": 1}))
    messages = " ".join(error.value.message_dict["vibe_weights"])
    assert "smell: unknown component" in messages and "motion: must be between 0 and 1" in messages
    with pytest.raises(ValidationError):
        update_festival(Festival(vibe_weights={"motion": 0, "expression": 0}))


def test_the_api_edits_weights_and_face_free_and_refuses_bad_weights(api_client, two_worlds):
    ours, _ = two_worlds
    api_client.force_authenticate(ours.operator)
    url = f"/api/v1/festivals/{ours.festival.pk}/"
    bad = api_client.patch(url, {"vibe_weights": {"motion": -1}}, format="json")
    assert bad.status_code == 400 and "vibe_weights" in bad.json()["error"]["fields"]
    good = api_client.patch(
        url, {"vibe_weights": {"motion": 1, "fill": 0.5}, "face_free": True}, format="json"
    )
    assert good.status_code == 200, good.json()
    ours.festival.refresh_from_db()
    assert ours.festival.face_free and ours.festival.vibe_weights == {"motion": 1, "fill": 0.5}


def test_switching_face_free_pushes_every_camera_its_config(
    two_worlds, monkeypatch, django_capture_on_commit_callbacks
):
    from operations import services

    ours, _ = two_worlds
    pushed = []
    monkeypatch.setattr(services, "push_festival_cameras", pushed.append)
    with django_capture_on_commit_callbacks(execute=True):
        update_festival(ours.festival, face_free=True)
    assert pushed == [ours.festival.pk]
    ours.device.refresh_from_db()
    assert ours.device.effective_config["face_free"] is True  # festival OR device
    with django_capture_on_commit_callbacks(execute=True):
        update_festival(ours.festival, name="Renamed")  # nothing that cameras hear of
    assert pushed == [ours.festival.pk]


def test_a_camera_can_be_face_free_in_a_festival_that_is_not():
    from devices.models import Device
    from festival.models import Festival

    device = Device(config={"face_free": True})
    device.festival = Festival(face_free=False)
    assert device.effective_config["face_free"] is True
    device.config = {}
    assert device.effective_config["face_free"] is False


def test_robust_score_is_half_at_the_median_and_a_constant_history_keeps_a_scale():
    spread = v2.Spread.of([0.2, 0.4, 0.4, 0.6, 5.0], "motion")  # one wild minute
    assert spread.median == 0.4 and spread.scale == pytest.approx(1.4826 * 0.2)
    assert spread.score(0.4) == pytest.approx(0.5)
    flat = v2.Spread.of([0.3] * 50, "motion")
    assert flat.scale == v2.SCALE_FLOOR["motion"]
    assert 0.5 < flat.score(0.32) < flat.score(0.4) < 1.0  # continuous, no jump at a tie


def test_blend_is_none_without_components():
    vibe, parts = v2.blend(
        {"expression": None, "motion": None, "sound": None, "fill": None},
        v2.EMPTY_REFERENCE,
        {"expression": 1, "motion": 1, "sound": 1, "fill": 1},
    )
    assert vibe is None and all(p is None for p in parts.values())
