"""Comparison runs on the service: started in the API or the admin (the cameras get the run),
pairs ingested from the observations table's stream (checked like observations: unknown camera,
another organization's run, duplicates), the stored result and the page."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from edge_package.contracts import (
    EMOTIONS,
    CropKey,
    build_comparison_item,
    comparison_reading,
)
from emotions import services as ingest
from emotions.closeout import purge_rows
from emotions.comparison import services
from emotions.comparison.rules import MIN_PAIRS
from emotions.models import ComparisonReading, ComparisonRun, IngestRejection, Observation
from emotions.services import Incoming

pytestmark = pytest.mark.django_db

_seq = iter(range(1, 10_000_000))


@pytest.fixture
def worlds(two_worlds):
    today = timezone.now().date()
    for world in two_worlds:
        world.festival.starts_on = today - timedelta(days=1)
        world.festival.ends_on = today + timedelta(days=1)
        world.festival.save()
    return two_worlds


def start(world, **kwargs):
    now = timezone.now()
    values = {"starts_at": now - timedelta(hours=1), "ends_at": now + timedelta(hours=1),
              "sample_rate": 0.5, "now": now - timedelta(hours=1)}  # fmt: skip
    values.update(kwargs)
    return services.start_comparison(world.festival, [world.device], **values)


def scores(top: str, lively: float | None = None) -> dict:
    values = dict.fromkeys(EMOTIONS, 1.0)
    values[top] = 80.0
    if lively is not None:
        values["HAPPY"] = lively
    return values


def pair_item(world, run, when: datetime, *, rek_top="HAPPY", local_top="HAPPY", mode="cloud",
              rekognition=True, rek_faces=1, device=None, run_key=None, happy=None):  # fmt: skip
    captured_ms = int(when.timestamp() * 1000)
    crop = CropKey(world.festival.slug, world.stage.slug, device or world.device.thing_name,
                   captured_ms, next(_seq))  # fmt: skip
    rek = (
        comparison_reading(available=True, faces=rek_faces, scores=scores(rek_top, happy),
                           confidence=99.0, done_ms=captured_ms + 2500, calls=1 / 64)
        if rekognition
        else comparison_reading(available=False, reason="no_rekognition")
    )  # fmt: skip
    local = comparison_reading(available=True, faces=1, scores=scores(local_top, happy),
                               done_ms=captured_ms + 200)  # fmt: skip
    return build_comparison_item(
        crop=crop, run=run_key or run.key, mode=mode, organization=world.organization.slug,
        rekognition=rek, local=local, crop_bytes=9000, edge_bytes=600,
        analyzed_at_ms=captured_ms + 2500,
    )  # fmt: skip


def store(*items, received_delay_ms=3000):
    entries = [Incoming(item=i, received_ms=i["captured_at_ms"] + received_delay_ms) for i in items]
    return ingest.store_incoming(entries)


# --- starting a run ------------------------------------------------------------------------------
def test_operator_starts_a_run_in_the_api_and_the_cameras_get_it(worlds, api_client):
    ours, _ = worlds
    api_client.force_authenticate(ours.operator)
    ends = timezone.now() + timedelta(hours=2)
    answer = api_client.post(
        "/api/v1/comparison-runs/",
        {"festival": ours.festival.pk, "devices": [ours.device.pk], "ends_at": ends.isoformat(),
         "sample_rate": 0.2, "name": "Friday night"},
        format="json",
    )  # fmt: skip
    assert answer.status_code == 201, answer.content
    run = ComparisonRun.objects.get(pk=answer.json()["id"])
    assert answer.json()["status"] == "running" and run.organization == ours.organization
    ours.device.refresh_from_db()
    config = ours.device.effective_config
    assert config["comparison_run"] == run.key and config["comparison_sample_rate"] == 0.2
    assert config["comparison_ends_ms"] == int(run.ends_at.timestamp() * 1000)


def test_a_viewer_cannot_start_a_run_and_another_organizations_camera_is_not_a_choice(
    worlds, api_client
):
    ours, theirs = worlds
    ends = (timezone.now() + timedelta(hours=2)).isoformat()
    api_client.force_authenticate(ours.viewer)
    body = {"festival": ours.festival.pk, "devices": [ours.device.pk], "ends_at": ends}
    assert api_client.post("/api/v1/comparison-runs/", body, format="json").status_code == 403
    api_client.force_authenticate(ours.operator)
    body["devices"] = [theirs.device.pk]
    answer = api_client.post("/api/v1/comparison-runs/", body, format="json")
    assert answer.status_code == 400 and "does not exist" in str(answer.json())
    assert not ComparisonRun.objects.exists()


def test_a_camera_takes_part_in_one_run_at_a_time_and_a_run_ends_in_the_future(worlds):
    ours, _ = worlds
    start(ours)
    with pytest.raises(Exception) as error:
        start(ours)
    assert "one run at a time" in str(error.value)
    with pytest.raises(Exception) as error:
        services.start_comparison(
            ours.festival, [ours.device], ends_at=timezone.now() - timedelta(minutes=1)
        )
    assert "in the future" in str(error.value)


def test_cancel_switches_the_run_off_on_the_cameras(worlds, api_client):
    ours, _ = worlds
    run = start(ours)
    api_client.force_authenticate(ours.operator)
    answer = api_client.post(f"/api/v1/comparison-runs/{run.pk}/cancel/")
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    ours.device.refresh_from_db()
    assert ours.device.effective_config["comparison_run"] == ""
    assert ours.device.effective_config["comparison_sample_rate"] == 0
    assert api_client.post(f"/api/v1/comparison-runs/{run.pk}/cancel/").status_code == 400


# --- pairs from the stream -----------------------------------------------------------------------
def test_pairs_are_stored_once_and_duplicates_are_counted(worlds):
    ours, _ = worlds
    run = start(ours)
    item = pair_item(ours, run, timezone.now() - timedelta(minutes=5))
    first = store(item)
    again = store(item, dict(item))  # a replayed stream record, twice in one page
    assert first.pairs_created == 1 and again.pairs_created == 0 and again.duplicates == 2
    reading = ComparisonReading.objects.get()
    assert reading.run == run and reading.device == ours.device and reading.mode == "cloud"
    assert reading.rekognition_top == "HAPPY" and reading.local_top == "HAPPY"
    assert (reading.crop_bytes, reading.edge_bytes) == (9000, 600)
    run.refresh_from_db()
    assert run.pairs == 1
    assert not Observation.objects.exists()  # a pair is not an observation


def test_an_unknown_camera_a_camera_outside_the_run_and_another_organizations_run_are_refused(
    worlds,
):
    from devices.models import Device

    ours, theirs = worlds
    run = start(ours)
    theirs_run = start(theirs)
    when = timezone.now() - timedelta(minutes=5)
    spare = Device.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        name="spare",
        thing_name="ours-cam-9",
    )
    result = store(
        pair_item(ours, run, when, device="ours-cam-unregistered"),
        pair_item(ours, run, when, device=spare.thing_name),  # a camera not in the run
        pair_item(ours, run, when, run_key=theirs_run.key),  # their run, our festival's key
        pair_item(ours, run, when, run_key="ffffffffffffffff"),
        pair_item(ours, run, run.ends_at + timedelta(minutes=1)),  # after the window
        pair_item(ours, run, when),  # the one good pair
    )
    assert result.pairs_created == 1
    assert result.rejected == {"unknown_device": 1, "not_in_run": 2, "unknown_run": 2}
    counted = {r.reason: r.count for r in IngestRejection.objects.filter(festival=ours.festival)}
    assert counted == result.rejected  # where our operators look
    run.refresh_from_db()
    assert run.refused == {"unknown_device": 1, "not_in_run": 2}
    assert not ComparisonReading.objects.filter(run=theirs_run).exists()


def test_a_malformed_pair_is_refused_and_takes_no_other_down(worlds):
    ours, _ = worlds
    run = start(ours)
    when = timezone.now() - timedelta(minutes=5)
    bad = pair_item(ours, run, when)
    bad["rekognition"]["scores"]["HAPPY"] = "lots"
    result = store(bad, pair_item(ours, run, when))
    assert result.pairs_created == 1 and result.rejected == {"malformed": 1}


# --- the result ----------------------------------------------------------------------------------
def test_a_run_over_a_window_with_no_data_has_an_honest_empty_result(worlds, client):
    ours, _ = worlds
    run = start(ours)
    result = services.compute_result(run)
    assert result["pairs"] == 0 and result["hours"] == []
    assert result["agreement"]["share"] is None and result["vibe"]["correlation"] is None
    assert result["latency"]["cloud"] == {"n": 0, "p50_s": None, "p95_s": None}
    assert result["recommendation"]["verdict"] == "undecided"
    client.force_login(ours.viewer)
    page = client.get(f"/comparisons/{run.pk}/")
    assert page.status_code == 200
    assert "Agreement needs Rekognition" in page.content.decode()


def test_agreeing_backends_recommend_edge_mode_with_the_figures(worlds):
    ours, _ = worlds
    run = start(ours)
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=40)
    rng = random.Random(7)
    items = []
    for minute in range(10):
        happy = rng.uniform(10, 90)  # the crowd's mood moves; both backends follow it
        for face in range(5):
            when = base + timedelta(minutes=minute, seconds=face * 5)
            local_top = "HAPPY" if face < 4 else "CALM"  # 80 % agreement
            items.append(pair_item(ours, run, when, local_top=local_top, happy=happy))
    store(*items)
    result = services.compute_result(run)
    assert result["pairs"] == 50 >= MIN_PAIRS
    assert result["agreement"]["share"] == 0.8
    labels, matrix = result["agreement"]["labels"], result["agreement"]["matrix"]
    assert matrix[labels.index("HAPPY")][labels.index("HAPPY")] == 40
    assert matrix[labels.index("HAPPY")][labels.index("CALM")] == 10
    assert result["vibe"]["compared_minutes"] == 10 and result["vibe"]["correlation"] > 0.9
    assert result["bytes_per_face"] == {"cloud": 9000, "edge": 600}
    assert result["latency"]["cloud"]["n"] == 50
    assert result["recommendation"]["verdict"] == "edge"
    assert any("fewer bytes" in reason for reason in result["recommendation"]["reasons"])


def test_rekognition_missing_faces_recommends_cloud(worlds):
    ours, _ = worlds
    run = start(ours)
    base = timezone.now() - timedelta(minutes=30)
    items = [
        pair_item(ours, run, base + timedelta(seconds=i * 10), rek_faces=0 if i % 3 == 0 else 1)
        for i in range(60)
    ]
    store(*items)
    result = services.compute_result(run)
    assert result["faces_seen"]["camera_only"] == 20
    assert result["recommendation"]["verdict"] == "cloud"
    assert "no face" in result["recommendation"]["headline"]


def test_without_rekognition_only_bandwidth_and_latency_are_shown(worlds, client):
    """The demo: every pair lacks Rekognition. No agreement figure, no cost, no made-up number."""
    ours, _ = worlds
    run = start(ours)
    base = timezone.now() - timedelta(minutes=20)
    items = [pair_item(ours, run, base + timedelta(seconds=i * 10), rekognition=False)
             for i in range(12)]  # fmt: skip
    items += [pair_item(ours, run, base + timedelta(seconds=i * 10 + 3), rekognition=False,
                        mode="edge") for i in range(12)]  # fmt: skip
    store(*items)
    result = services.compute_result(run)
    assert result["rekognition_available"] is False
    assert result["rekognition_missing_reasons"] == ["no_rekognition"]
    assert result["agreement"]["share"] is None and result["projected_cost_usd_per_hour"] is None
    assert result["latency"]["cloud"]["n"] == 12 and result["latency"]["edge"]["n"] == 12
    assert result["latency"]["edge"]["p50_s"] < result["latency"]["cloud"]["p50_s"]
    assert result["recommendation"]["verdict"] == "undecided"
    client.force_login(ours.viewer)
    html = client.get(f"/comparisons/{run.pk}/").content.decode()
    assert "Agreement needs Rekognition" in html and 'id="agreement">—<' in html


def test_bytes_and_rekognition_cost_per_hour_use_the_cameras_faces_and_the_price(worlds, settings):
    ours, _ = worlds
    settings.REKOGNITION_PRICE_USD_PER_IMAGE = 0.002
    # the last whole hour, inside the run (a run that began mid-hour put these faces in two hours)
    hour = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    run = start(ours, starts_at=hour - timedelta(minutes=1), now=hour - timedelta(minutes=1))
    for i in range(128):  # the faces these cameras sent that hour (every one, sampled or not)
        Observation.objects.create(
            organization=ours.organization, festival=ours.festival, stage=ours.stage,
            device=ours.device, dynamo_pk="p", dynamo_sk=f"s{i}",
            captured_at=hour + timedelta(seconds=5 + i), source="local", top_emotion="HAPPY",
        )  # fmt: skip
    store(*[pair_item(ours, run, hour + timedelta(seconds=5 + i)) for i in range(4)])
    result = services.compute_result(run)
    (row,) = [h for h in result["hours"] if h["faces"]]
    assert row["faces"] == 128
    assert row["cloud_bytes"] == 128 * 9000 and row["edge_bytes"] == 128 * 600
    assert row["cloud_rekognition_calls"] == 2.0  # 128 faces / 64 per mosaic call
    assert row["cloud_cost_usd"] == 0.004 and result["price_usd_per_image"] == 0.002


# --- tenancy -------------------------------------------------------------------------------------
def test_another_organizations_run_is_a_404_on_the_page_and_the_api(worlds, client, api_client):
    ours, theirs = worlds
    run = start(theirs)
    services.compute_result(run)
    client.force_login(ours.owner)
    assert client.get(f"/comparisons/{run.pk}/").status_code == 404
    assert client.get("/comparisons/987654/").status_code == 404
    api_client.force_authenticate(ours.owner)
    for suffix in ("", "result/"):
        assert api_client.get(f"/api/v1/comparison-runs/{run.pk}/{suffix}").status_code == 404
    assert api_client.get("/api/v1/comparison-runs/").json()["count"] == 0


def test_the_api_result_is_the_stored_result(worlds, api_client):
    ours, _ = worlds
    run = start(ours)
    store(pair_item(ours, run, timezone.now() - timedelta(minutes=3)))
    api_client.force_authenticate(ours.operator)
    computed = api_client.post(f"/api/v1/comparison-runs/{run.pk}/recompute/").json()
    assert computed["pairs"] == 1
    assert api_client.get(f"/api/v1/comparison-runs/{run.pk}/result/").json() == computed


def test_the_beat_refresh_switches_finished_runs_off(worlds):
    ours, _ = worlds
    run = start(ours)
    later = run.ends_at + timedelta(minutes=5)
    assert services.refresh_comparison_runs(now=later) == 1
    run.refresh_from_db()
    ours.device.refresh_from_db()
    assert run.settled_at == later and run.result["status"] == "finished"
    assert ours.device.effective_config["comparison_run"] == ""
    assert datetime.fromisoformat(run.result["computed_at"]) == later.astimezone(UTC)


# --- the admin -----------------------------------------------------------------------------------
def _admin_form(world, ends_at, devices):
    tz = world.festival.tz
    local = ends_at.astimezone(tz)
    start = timezone.now().astimezone(tz)
    return {
        "festival": world.festival.pk,
        "name": "From the admin",
        "devices": [d.pk for d in devices],
        "starts_at_0": start.strftime("%Y-%m-%d"),
        "starts_at_1": start.strftime("%H:%M:%S"),
        "ends_at_0": local.strftime("%Y-%m-%d"),
        "ends_at_1": local.strftime("%H:%M:%S"),
        "sample_rate": "0.2",
    }


def test_operator_starts_a_run_in_the_admin_through_the_same_service(worlds, client):
    ours, theirs = worlds
    client.force_login(ours.operator)
    url = "/admin/emotions/comparisonrun/add/"
    form = client.get(url).content.decode()
    assert ours.device.thing_name in form and theirs.device.thing_name not in form
    answer = client.post(url, _admin_form(ours, timezone.now() + timedelta(hours=3), [ours.device]))
    assert answer.status_code == 302, answer.content.decode()[:3000]
    run = ComparisonRun.objects.get()
    assert run.name == "From the admin" and run.created_by == ours.operator
    ours.device.refresh_from_db()
    assert ours.device.config["comparison_run"] == run.key  # pushed like the API's
    page = client.get(f"/admin/emotions/comparisonrun/{run.pk}/change/").content.decode()
    assert f"/comparisons/{run.pk}/" in page
    again = client.post(url, _admin_form(ours, timezone.now() + timedelta(hours=3), [ours.device]))
    assert again.status_code == 200 and "one run at a time" in again.content.decode()
    assert ComparisonRun.objects.count() == 1


def test_the_admin_cancel_action_switches_the_cameras_off(worlds, client):
    ours, _ = worlds
    run = start(ours)
    client.force_login(ours.operator)
    client.post(
        "/admin/emotions/comparisonrun/",
        {"action": "cancel_runs", "_selected_action": [run.pk]},
    )
    run.refresh_from_db()
    ours.device.refresh_from_db()
    assert run.cancelled_at is not None and ours.device.config["comparison_run"] == ""


def test_deleting_a_run_in_the_admin_switches_its_cameras_off_first(worlds, client):
    ours, _ = worlds
    run = start(ours)
    store(pair_item(ours, run, timezone.now() - timedelta(minutes=2)))
    client.force_login(ours.operator)
    answer = client.post(f"/admin/emotions/comparisonrun/{run.pk}/delete/", {"post": "yes"})
    assert answer.status_code == 302
    ours.device.refresh_from_db()
    assert not ComparisonRun.objects.exists() and not ComparisonReading.objects.exists()
    assert ours.device.config["comparison_run"] == ""


def test_closeout_purge_removes_the_pairs_with_the_scores(worlds):
    ours, theirs = worlds
    run, kept = start(ours), start(theirs)
    store(pair_item(ours, run, timezone.now() - timedelta(minutes=2)))
    store(pair_item(theirs, kept, timezone.now() - timedelta(minutes=2)))
    lines = purge_rows(ours.festival, dry_run=False)
    assert any("comparison reading" in line for line in lines), lines
    assert not ComparisonReading.objects.filter(festival=ours.festival).exists()
    assert ComparisonReading.objects.filter(festival=theirs.festival).count() == 1
