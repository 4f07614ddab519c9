"""No combination of public answers reveals a suppressed minute (issue 11, item 2).

An attacker reads everything the fan API offers about one stage (the live ranking at many
moments, so sliding and complementary windows, with their trends; the per-minute timeline; the
published report of the set and the report list) and tries to recover the one suppressed minute
(3 faces: 2 SAD, 1 ANGRY) by differencing. Two proofs:

- the direct attacks of the issue (a live window or a report total minus its visible minutes)
  leave nothing;
- every public answer is byte-for-byte the same whatever that minute held (3 sad-ish faces, 4
  happy ones, or nothing): no function of the answers, however combined, can tell them apart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.core.cache import cache

from edge_package.contracts import EMOTIONS
from emotions.live_cache import forget_memoized_live_entries
from emotions.models import MinuteRollup, ReportStatus, SetReport
from emotions.reports import services
from stages.models import Set, Stage

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 7, 10, 18, 30, tzinfo=UTC)
SET_START = NOW - timedelta(minutes=8)
SET_END = NOW + timedelta(minutes=2)
SECRET = NOW - timedelta(minutes=3)  # the one suppressed minute
SECRETS = {
    "sad": (3, {"SAD": 2, "ANGRY": 1}),
    "happy": (4, {"HAPPY": 4}),
    "nothing": (0, {}),
}
MOMENTS = [NOW - timedelta(minutes=2) + timedelta(seconds=30 * i) for i in range(25)]


def put_minute(stage: Stage, minute: datetime, faces: int, counts: dict) -> None:
    """One minute's rollup; each face scores 100 on its top expression."""
    MinuteRollup.objects.update_or_create(
        stage=stage,
        minute=minute,
        defaults={
            "organization": stage.organization,
            "festival": stage.festival,
            "faces": faces,
            "counts": counts,
            "sums": {name: 100.0 * n for name, n in counts.items()},
        },
    )


def set_secret(stage: Stage, name: str) -> None:
    faces, counts = SECRETS[name]
    if faces:
        put_minute(stage, SECRET, faces, counts)
    else:
        MinuteRollup.objects.filter(stage=stage, minute=SECRET).delete()


@pytest.fixture
def scene(two_worlds):
    """Eight visible minutes of 6-12 faces (no typical crowd: the norm is learned) around one
    suppressed minute, inside a set whose report is published."""
    ours, _ = two_worlds
    stage = Stage.objects.create(
        organization=ours.organization, festival=ours.festival, name="Dune", slug="dune"
    )
    minute = SET_START
    for i in range(12):
        if minute != SECRET:
            happy = 6 + i % 4
            put_minute(stage, minute, happy + 2, {"HAPPY": happy, "CALM": 2})
        minute += timedelta(minutes=1)
    set_secret(stage, "sad")
    the_set = Set.objects.create(
        organization=ours.organization,
        stage=stage,
        artist="Dune Act",
        starts_at=SET_START,
        ends_at=SET_END,
    )
    report = SetReport.objects.create(
        organization=ours.organization, festival=ours.festival, stage=stage, set=the_set
    )
    build_report(report)
    return ours.festival, stage, report


def build_report(report: SetReport) -> None:
    SetReport.objects.filter(pk=report.pk).update(status=ReportStatus.PENDING, published=False)
    assert services.build_report(report.pk, now=SET_END + timedelta(hours=1))
    SetReport.objects.filter(pk=report.pk).update(published=True)


def get(api_client, url: str, at: datetime):
    cache.clear()  # the live ranking is cached: each moment is computed afresh
    forget_memoized_live_entries()
    with mock.patch("django.utils.timezone.now", return_value=at):
        response = api_client.get(url)
    assert response.status_code == 200, url
    return response.json()


def public_answers(api_client, festival, stage, report) -> list:
    """Everything public about the stage, at every moment, without the answers' own clocks."""
    base = f"/api/v1/public/festivals/{festival.slug}"
    answers = []
    for at in MOMENTS:
        live = get(api_client, f"{base}/live/", at)
        live.pop("generated_at")
        answers.append(live)
        answers.append(get(api_client, f"{base}/stages/{stage.slug}/timeline/", at))
    answers.append(get(api_client, f"{base}/reports/", NOW))
    detail = get(api_client, f"{base}/reports/{report.pk}/", NOW)
    detail.pop("built_at")
    answers.append(detail)
    return answers


def counts_of(faces: int | None, share: dict | None) -> dict:
    """What an attacker reads from a number: faces per expression (share x faces)."""
    if not faces:
        return {name: 0 for name in EMOTIONS}
    return {name: round(share[name] * faces / 100) for name in EMOTIONS}


def minus(a: dict, b: dict) -> dict:
    return {name: a[name] - b[name] for name in EMOTIONS}


def plus(a: dict, b: dict) -> dict:
    return {name: a[name] + b[name] for name in EMOTIONS}


ZERO = {name: 0 for name in EMOTIONS}


def dune_row(live: dict) -> dict:
    return next(r for r in live["stages"] if r["stage"]["slug"] == "dune")


def test_a_live_window_minus_its_visible_minutes_reveals_nothing(api_client, scene):
    festival, stage, _ = scene
    base = f"/api/v1/public/festivals/{festival.slug}"
    residuals = []
    for at in MOMENTS:
        row = dune_row(get(api_client, f"{base}/live/", at))
        start = (at - timedelta(minutes=5)).replace(second=0)
        visible = ZERO
        visible_faces = 0
        for point in get(api_client, f"{base}/stages/{stage.slug}/timeline/", at):
            minute = datetime.fromisoformat(point["minute"].replace("Z", "+00:00"))
            if start <= minute <= at and not point["suppressed"]:
                visible = plus(visible, counts_of(point["faces"], point["expression_share"]))
                visible_faces += point["faces"]
        window = counts_of(row["faces"], row["expression_share"])
        residuals.append(((row["faces"] or 0) - visible_faces, minus(window, visible)))
    assert all(residual == (0, ZERO) for residual in residuals), residuals


def test_a_published_reports_total_minus_its_visible_minutes_reveals_nothing(api_client, scene):
    festival, _, report = scene
    detail = get(api_client, f"/api/v1/public/festivals/{festival.slug}/reports/{report.pk}/", NOW)
    [summary] = get(api_client, f"/api/v1/public/festivals/{festival.slug}/reports/", NOW)
    visible = [m for m in detail["minutes"] if not m["suppressed"]]
    assert len(visible) == 9 and len(detail["minutes"]) == 10  # one minute is hidden
    overall = detail["overall"]
    residual_faces = overall["faces"] - sum(m["faces"] for m in visible)
    residual = counts_of(overall["faces"], overall["expression_share"])
    for point in visible:
        residual = minus(residual, counts_of(point["faces"], point["expression_share"]))
    assert (residual_faces, residual) == (0, ZERO)
    assert summary["faces"] == overall["faces"]


@pytest.mark.parametrize("other", ["happy", "nothing"])
def test_every_public_answer_is_the_same_whatever_the_suppressed_minute_held(
    api_client, scene, other
):
    festival, stage, report = scene
    with_sad_faces = public_answers(api_client, festival, stage, report)
    set_secret(stage, other)
    build_report(report)
    assert public_answers(api_client, festival, stage, report) == with_sad_faces


def test_a_stage_whose_every_minute_is_small_shows_no_number_at_all(api_client, scene):
    """Five minutes of 3 faces make 15, but publishing them would let consecutive windows
    (which differ by one minute in, one out) give each small minute away."""
    festival, stage, _ = scene
    MinuteRollup.objects.filter(stage=stage).update(faces=3, counts={"HAPPY": 3})
    row = dune_row(get(api_client, f"/api/v1/public/festivals/{festival.slug}/live/", NOW))
    assert row["suppressed"] and row["faces"] is None and row["vibe"] is None
