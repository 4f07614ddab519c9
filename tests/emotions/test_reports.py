"""Set reports: numbers on constructed observations (hand-computed), suppression, the sweeper's
grace period and claims, late-data rebuilds, and the announcement."""

from __future__ import annotations

import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.core import mail
from django.db import connection

from emotions.models import ReportStatus, SetReport
from emotions.reports import services
from tests.emotions.report_helpers import add_device, add_set, add_stage, faces
from tests.factories import utc

pytestmark = pytest.mark.django_db

SET_START = utc(2026, 7, 10, 20, 0)  # 22:00 in Amsterdam
SET_END = SET_START + timedelta(minutes=4)


@pytest.fixture
def scene(two_worlds, settings):
    """Tent stage (norm 10 faces/min) with a 4-minute set, two cameras (one silent), and a
    rival set on each stage the same day."""
    settings.REPORT_GRACE_MINUTES = 10
    ours, _ = two_worlds
    ours.festival.ops_emails = "crew@example.org, boss@example.org"
    ours.festival.save()
    tent = add_stage(ours, "Tent", "tent", typical_crowd=10)
    add_device(ours, tent, "tent-cam", "Tent cam")
    add_device(ours, tent, "tent-cam-2", "Tent cam 2")
    the_set = add_set(tent, "Hand Computed", SET_START, 4)
    faces(tent, "tent-cam", SET_START, 10, HAPPY=80, CALM=20)  # vibe 100(.7*.8+.3*1) = 86.0
    faces(tent, "tent-cam", SET_START + timedelta(minutes=1), 5, HAPPY=20, CALM=80)  # 29.0
    faces(tent, "tent-cam", SET_START + timedelta(minutes=2), 3, HAPPY=100)  # 3 < 5: hidden
    # minute 3: no data
    later = add_set(tent, "Later Act", utc(2026, 7, 10, 21, 0), 2)
    faces(tent, "tent-cam", later.starts_at, 10, HAPPY=50, CALM=50)  # 65.0
    faces(tent, "tent-cam", later.starts_at + timedelta(minutes=1), 10, HAPPY=50, CALM=50)
    main_set = add_set(ours.stage, "Main Closer", utc(2026, 7, 10, 19, 40), 10)
    faces(ours.stage, "ours-cam-1", main_set.starts_at, 6, HAPPY=100)  # norm 6 -> 100.0
    return ours, tent, the_set


def mails_about(artist):
    return [m for m in mail.outbox if artist in m.subject]


def sweep_after(end, minutes=11):
    return services.sweep(now=end + timedelta(minutes=minutes))


def test_report_numbers_match_hand_computation(scene):
    ours, tent, the_set = scene
    sweep_after(utc(2026, 7, 10, 21, 2))
    report = SetReport.objects.get(set=the_set)
    assert report.status == ReportStatus.READY
    p = report.payload
    # Overall numbers count the published minutes only (the 3-face minute adds nothing):
    # 15 faces; HAPPY sums 800+100 = 900 -> energy 900/1500; crowd 15/2 min/10 = 0.75
    # vibe = 100 (0.7 * 0.6 + 0.3 * 0.75) = 64.5
    assert p["overall"]["faces"] == 15 and report.faces == 15
    assert p["overall"]["vibe"] == 64.5 and report.vibe == 64.5
    assert p["overall"]["expression_share"]["HAPPY"] == 66.7  # 10 of 15 faces
    assert p["overall"]["expression_share"]["CALM"] == 33.3
    assert p["overall"]["mean_scores"]["HAPPY"] == 60.0
    assert p["covered_faces"] == 18  # every face, for the late-data check
    assert report.top_expression == "HAPPY"
    assert [m["faces"] for m in p["minutes"]] == [10, 5, None, None]
    assert [m["vibe"] for m in p["minutes"]] == [86.0, 29.0, None, None]
    assert p["minutes"][2]["suppressed"] and p["minutes"][2]["expression_share"] is None
    assert p["minutes"][1]["expression_share"]["CALM"] == 100.0
    assert (p["peak"]["local_time"], p["peak"]["vibe"]) == ("22:00", 86.0)
    assert (p["low"]["local_time"], p["low"]["vibe"]) == ("22:01", 29.0)
    assert p["low"]["top_expression"] == "CALM"
    assert report.peak_at == SET_START and report.low_at == SET_START + timedelta(minutes=1)
    coverage = p["coverage"]
    assert (coverage["set_minutes"], coverage["minutes_with_data"]) == (4, 3)
    assert coverage["minutes_reportable"] == 2 and coverage["coverage_percent"] == 75.0
    assert coverage["devices_silent"] == ["Tent cam 2"]
    assert {d["name"]: d["faces"] for d in coverage["devices"]} == {
        "Tent cam": 18,
        "Tent cam 2": 0,
    }
    # Comparison: Main Closer 100.0, Later Act 65.0, this set 64.5; the world's 18:00 set has
    # no data (suppressed, unranked).
    comparison = p["comparison"]
    assert (comparison["rank_festival_day"], comparison["festival_sets_ranked"]) == (3, 3)
    assert (comparison["rank_stage_day"], comparison["stage_sets_ranked"]) == (2, 2)
    vibes = {c["artist"]: c["vibe"] for c in comparison["sets"]}
    assert vibes == {
        "Ours Artist": None,
        "Main Closer": 100.0,
        "Hand Computed": 64.5,
        "Later Act": 65.0,
    }
    assert "apparent expression" in p["model_statement"].lower()
    assert "fer-tflite" in p["model_statement"]
    assert p["models"] == [{"source": "local", "model": "fer-tflite", "faces": 18}]


def test_a_set_with_too_few_faces_gets_a_report_that_says_so(scene):
    ours, tent, _ = scene
    quiet = add_set(tent, "Quiet One", utc(2026, 7, 10, 23, 0), 30)
    faces(tent, "tent-cam", quiet.starts_at, 2, HAPPY=90)
    faces(tent, "tent-cam", quiet.starts_at + timedelta(minutes=9), 2, HAPPY=90)
    sweep_after(quiet.ends_at)
    report = SetReport.objects.get(set=quiet)
    assert report.status == ReportStatus.READY and report.suppressed
    assert report.faces is None and report.vibe is None and report.peak_vibe is None
    assert report.payload["overall"] is None and report.payload["peak"] is None
    assert all(m["faces"] is None for m in report.payload["minutes"])
    assert "Fewer than 5 faces" in report.payload["suppressed_message"]
    assert "Fewer than 5 faces" in mails_about("Quiet One")[0].body


def test_sweeper_waits_for_the_grace_period(scene):
    _, _, the_set = scene
    result = services.sweep(now=SET_END + timedelta(minutes=9))
    assert not SetReport.objects.filter(set=the_set).exists()
    assert the_set.pk not in SetReport.objects.filter(pk__in=result.built).values_list(
        "set_id", flat=True
    )
    services.sweep(now=SET_END + timedelta(minutes=10))
    assert SetReport.objects.get(set=the_set).status == ReportStatus.READY


def test_two_claims_on_one_report_only_one_wins(scene):
    _, _, the_set = scene
    services.ensure_pending_reports(now=SET_END + timedelta(hours=1))
    report = SetReport.objects.get(set=the_set)
    first = services.claim(report.pk)
    second = services.claim(report.pk)
    assert first and second is None
    # A second sweeper finds it claimed and leaves it alone.
    result = services.sweep(now=SET_END + timedelta(hours=1))
    assert report.pk not in result.built
    assert SetReport.objects.get(pk=report.pk).status == ReportStatus.BUILDING
    # The claim's owner stores its build; a stale claim can be taken over later.
    assert services.build_claimed(report.pk, first)
    assert SetReport.objects.get(pk=report.pk).builds == 1


def test_a_dead_builders_claim_is_taken_over_after_it_goes_stale(scene):
    _, _, the_set = scene
    services.ensure_pending_reports(now=SET_END + timedelta(hours=1))
    report = SetReport.objects.get(set=the_set)
    assert services.claim(report.pk, now=SET_END + timedelta(hours=1))
    assert services.claim(report.pk, now=SET_END + timedelta(hours=1, minutes=5)) is None
    assert services.claim(report.pk, now=SET_END + timedelta(hours=1, minutes=16))


@pytest.mark.django_db(transaction=True)
def test_two_sweepers_at_once_build_each_report_once(two_worlds, settings):
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("needs a database shared between threads")
    settings.REPORT_GRACE_MINUTES = 10
    ours, _ = two_worlds
    ours.festival.ops_emails = "crew@example.org"
    ours.festival.save()
    faces(ours.stage, "ours-cam-1", ours.set.starts_at, 8, HAPPY=70, CALM=30)
    barrier = threading.Barrier(2)
    results = []

    def run():
        from django.db import connection as thread_connection

        try:
            barrier.wait()
            results.append(services.sweep(now=ours.set.ends_at + timedelta(hours=1)))
        finally:
            thread_connection.close()

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    report = SetReport.objects.get(set=ours.set)
    assert report.status == ReportStatus.READY and report.builds == 1
    # Both worlds' sets ended: every report was built by exactly one of the two sweepers.
    built = [pk for result in results for pk in result.built]
    assert sorted(built) == sorted(SetReport.objects.values_list("pk", flat=True))
    assert set(SetReport.objects.values_list("builds", flat=True)) == {1}
    assert len(mail.outbox) == 1  # the only set with an e-mail recipient


def test_late_data_after_the_report_triggers_one_rebuild(scene):
    _, tent, the_set = scene
    sweep_after(utc(2026, 7, 10, 21, 2))
    assert len(mails_about("Hand Computed")) == 1
    report = SetReport.objects.get(set=the_set)
    assert report.faces == 15 and report.builds == 1
    # Five faces for minute 3 arrive an hour late: the ingest queues the rebuild at once (the
    # sweeper's own late-data check finds nothing left to do).
    faces(tent, "tent-cam", SET_START + timedelta(minutes=3), 5, HAPPY=60, CALM=40)
    assert services.detect_late_data(now=SET_END + timedelta(hours=1)) == 0
    report.refresh_from_db()
    assert report.status == ReportStatus.PENDING
    assert report.rebuild_reason == "late data: 5 faces arrived after the build"
    services.sweep(now=SET_END + timedelta(hours=1))
    report.refresh_from_db()
    assert report.status == ReportStatus.READY and report.builds == 2
    assert report.faces == 20 and report.payload["minutes"][3]["faces"] == 5
    assert report.rebuild_reason == ""
    assert services.detect_late_data(now=SET_END + timedelta(hours=1)) == 0
    assert len(mails_about("Hand Computed")) == 1  # announced once, on the first build


def test_edited_set_times_trigger_a_rebuild(scene):
    _, _, the_set = scene
    sweep_after(utc(2026, 7, 10, 21, 2))
    the_set.ends_at = SET_START + timedelta(minutes=2)
    the_set.save()
    assert services.detect_late_data(now=SET_END + timedelta(hours=1)) == 1
    services.sweep(now=SET_END + timedelta(hours=1))
    report = SetReport.objects.get(set=the_set)
    assert report.payload["coverage"]["set_minutes"] == 2 and report.faces == 15


def test_a_rebuild_request_supersedes_a_build_in_progress(scene):
    _, _, the_set = scene
    services.ensure_pending_reports(now=SET_END + timedelta(hours=1))
    report = SetReport.objects.get(set=the_set)
    token = services.claim(report.pk)
    assert services.request_rebuild(report, "late data")
    assert services.build_claimed(report.pk, token) is False
    report.refresh_from_db()
    assert report.status == ReportStatus.PENDING and report.payload == {}
    assert not services.request_rebuild(report, "again")  # already queued
    with pytest.raises(services.ReportError, match="why"):
        services.request_rebuild(report, "  ")


def test_a_failing_build_is_marked_failed_with_the_error(scene, monkeypatch):
    _, _, the_set = scene

    def broken(_set, now=None):
        raise ValueError("rollups unreadable")

    monkeypatch.setattr(services, "build_payload", broken)
    sweep_after(SET_END)
    report = SetReport.objects.get(set=the_set)
    assert report.status == ReportStatus.FAILED
    assert report.error == "ValueError: rollups unreadable"
    assert not mails_about("Hand Computed")


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802 - http.server API
        length = int(self.headers["Content-Length"])
        _Hook.received.append(json.loads(self.rfile.read(length)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_announcement_by_email_and_webhook(scene):
    ours, _, the_set = scene
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Hook.received = []
    try:
        ours.festival.ops_webhook_url = f"http://127.0.0.1:{server.server_port}/hook"
        ours.festival.save()
        services.sweep(now=SET_END + timedelta(minutes=10))
    finally:
        server.shutdown()
        server.server_close()
    report = SetReport.objects.get(set=the_set)
    assert report.announced_at is not None
    [message] = mails_about("Hand Computed")
    assert message.to == ["crew@example.org", "boss@example.org"]
    assert "Hand Computed" in message.subject
    assert "Faces analysed: 15; vibe 64.5" in message.body
    assert f"/reports/{report.pk}/" in message.body
    assert "Apparent expression read by" in message.body
    [hook] = [h for h in _Hook.received if h["artist"] == "Hand Computed"]
    assert hook["event"] == "set_report.ready"
    assert (hook["report_id"], hook["faces"], hook["vibe"]) == (report.pk, 15, 64.5)


def test_a_failing_webhook_is_logged_and_the_report_stands(scene, caplog):
    ours, _, the_set = scene
    ours.festival.ops_webhook_url = "http://127.0.0.1:9/nothing-listens-here"
    ours.festival.save()
    services.sweep(now=SET_END + timedelta(minutes=10))
    report = SetReport.objects.get(set=the_set)
    assert report.status == ReportStatus.READY and report.announced_at is not None
    assert len(mails_about("Hand Computed")) == 1
    assert "webhook http://127.0.0.1:9/nothing-listens-here failed" in caplog.text
