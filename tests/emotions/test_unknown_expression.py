"""A face whose expression could not be read counts as a face, never as HAPPY, and stays out of
expression shares and energy, from the analyzer's item to /live (issue 12)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from devices.models import Device
from edge_package.contracts import UNKNOWN_EXPRESSION, CropKey, build_observation_item
from emotions.models import MinuteRollup, Observation
from emotions.selectors import compute_live_ranking
from emotions.services import store_items

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 7, 10, 18, 30, tzinfo=UTC)


def item(stage, seq: int, scores: dict) -> dict:
    """An analyzer item from the stage's own registered camera (the ingest checks the device)."""
    crop = CropKey(
        festival=stage.festival.slug,
        stage=stage.slug,
        device=Device.objects.get(stage=stage).thing_name,
        captured_at_ms=int((NOW - timedelta(minutes=2)).timestamp() * 1000) + seq,
        seq=seq,
    )
    return build_observation_item(
        crop=crop,
        face_index=0,
        scores=scores,
        face_confidence=99.0,
        source="rekognition",
        analyzed_at_ms=int(NOW.timestamp() * 1000),
    )


def test_unknown_faces_count_in_faces_but_not_in_shares_or_energy(two_worlds):
    ours, _ = two_worlds
    stage, festival = ours.stage, ours.festival
    stage.typical_crowd = 1000  # keep the crowd term tiny, so the vibe is the energy
    stage.save()
    read = [item(stage, i, {"HAPPY": 80.0, "CALM": 20.0}) for i in range(5)]
    unread = [item(stage, 10 + i, {}) for i in range(4)]  # Rekognition gave only UNKNOWN
    assert {i["top_emotion"] for i in unread} == {UNKNOWN_EXPRESSION}
    result = store_items(stage, read + unread)
    assert result.created == 9 and result.skipped_invalid == 0
    assert Observation.objects.filter(top_emotion=UNKNOWN_EXPRESSION).count() == 4
    (rollup,) = MinuteRollup.objects.filter(stage=stage)
    assert rollup.faces == 9 and rollup.counts == {"HAPPY": 5, UNKNOWN_EXPRESSION: 4}

    row = next(
        r for r in compute_live_ranking(festival, at=NOW)["stages"] if r["stage"]["slug"] == "main"
    )
    assert row["faces"] == 9  # every analysed face is a face
    share = row["expression_share"]
    assert share["HAPPY"] == 100.0 and sum(share.values()) == pytest.approx(100.0)
    assert UNKNOWN_EXPRESSION not in share
    crowd = 0.3 * min(1.0, (9 / 5) / 1000)  # faces per minute of the 5-minute window
    # energy over the 5 read faces (HAPPY 80 each), not diluted by the 4 unread ones
    assert row["vibe"] == round(100 * (0.7 * 0.8 + crowd), 1)


def test_few_read_faces_among_many_unknown_ones_are_suppressed(two_worlds):
    """Shares over 2 read faces would reveal those two people's expressions, however many
    unread faces stand around them: the privacy threshold counts read faces."""
    ours, _ = two_worlds
    assert ours.festival.min_faces_public == 5
    happy = [item(ours.stage, i, {"HAPPY": 90.0}) for i in range(2)]
    store_items(ours.stage, happy + [item(ours.stage, 10 + i, {}) for i in range(6)])
    row = next(
        r
        for r in compute_live_ranking(ours.festival, at=NOW)["stages"]
        if r["stage"]["slug"] == "main"
    )
    assert row["suppressed"] is True
    assert row["vibe"] is None and row["expression_share"] is None and row["faces"] is None
