"""Report charts and the numbers beside them on real-world data: one data minute, gaps at the
edges, short sets, a DST night, flat curves, sets that have not played, low coverage."""

from __future__ import annotations

import base64
import io
from datetime import date, timedelta

import numpy as np
import pytest
from PIL import Image

from emotions.models import ReportStatus, SetReport
from emotions.reports import charts
from emotions.reports.selectors import build_payload
from emotions.services import store_items
from tests.emotions.report_helpers import add_set, face_items
from tests.factories import utc

pytestmark = pytest.mark.django_db


@pytest.fixture
def figures(monkeypatch):
    """Every figure the charts render, kept for inspection (the PNG is still made)."""
    kept = []
    real = charts._png

    def keep(figure):
        kept.append(figure)
        return real(figure)

    monkeypatch.setattr(charts, "_png", keep)
    return kept


def x_axis(figure):
    # matplotlib loads when a chart is drawn, not when every xdist worker collects this module
    from matplotlib.dates import num2date

    axes = figure.axes[0]
    low, high = axes.get_xlim()
    labels = [t.get_text() for t in axes.get_xticklabels() if t.get_text()]
    return num2date(low), num2date(high), labels


def pixels_of(data_uri: str, hex_colour: str) -> int:
    png = base64.b64decode(data_uri.split(",", 1)[1])
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    target = np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(rgb - target).sum(axis=2) < 40).sum())


def payload_for(world, start, minutes, data_minutes, *, happy=(80,), now=None, artist="Act"):
    the_set = add_set(world.stage, artist, start, minutes)
    items = []  # one batch through the real ingest, as the stream delivers minutes
    for index, offset in enumerate(data_minutes):
        value = happy[index % len(happy)]
        items += face_items(world.stage, "ours-cam-1", start + timedelta(minutes=offset), 10,
                            HAPPY=value, CALM=100 - value)  # fmt: skip
    store_items(world.stage, items)
    return the_set, build_payload(the_set, now=now or start + timedelta(days=1))


def test_one_data_minute_gives_a_sane_axis_and_a_visible_share_chart(two_worlds, figures):
    ours, _ = two_worlds
    start = utc(2026, 7, 11, 18, 0)
    _, payload = payload_for(ours, start, 30, [10])
    rendered = charts.report_charts(payload, ours.festival.tz)
    for figure in figures:
        low, high, labels = x_axis(figure)
        assert (low, high) == (start, start + timedelta(minutes=30))  # the set, not years
        assert len(set(labels)) == len(labels) >= 3
        assert labels[0] == "20:00" and "20:30" in labels  # local time (Amsterdam)
    assert pixels_of(rendered["share"], charts.COLOURS["HAPPY"]) > 50


def test_missing_minutes_at_the_start_and_end_keep_the_whole_set_on_the_axis(two_worlds, figures):
    ours, _ = two_worlds
    start = utc(2026, 7, 11, 18, 0)
    _, payload = payload_for(ours, start, 60, range(20, 40))
    charts.report_charts(payload, ours.festival.tz)
    low, high, _ = x_axis(figures[0])
    assert (low, high) == (start, start + timedelta(minutes=60))


@pytest.mark.parametrize("minutes", [3, 5, 8, 12])
def test_short_sets_never_repeat_a_tick_label(two_worlds, figures, minutes):
    ours, _ = two_worlds
    _, payload = payload_for(ours, utc(2026, 7, 11, 18, 0), minutes, range(minutes))
    charts.report_charts(payload, ours.festival.tz)
    for figure in figures:
        _, _, labels = x_axis(figure)
        assert len(labels) >= 2 and len(set(labels)) == len(labels), labels


def test_a_set_across_the_clocks_going_back_shows_offsets_and_its_real_length(
    two_worlds, figures, client
):
    ours, _ = two_worlds
    # 01:30 CEST to 03:30 CET on 25 Oct 2026 in Amsterdam: three hours, not two (the festival's
    # dates move there: the ingest refuses captures outside them)
    ours.festival.starts_on, ours.festival.ends_on = date(2026, 10, 24), date(2026, 10, 25)
    ours.festival.save(update_fields=["starts_on", "ends_on"])
    start = utc(2026, 10, 24, 23, 30)
    the_set, payload = payload_for(ours, start, 180, range(0, 180, 7))
    assert payload["set"]["local_span"] == "Sun 25 Oct 01:30 CEST – 03:30 CET (3 h 00 min)"
    assert payload["set"]["duration_minutes"] == 180
    charts.report_charts(payload, ours.festival.tz)
    _, _, labels = x_axis(figures[0])
    assert len(set(labels)) == len(labels)
    assert "02:30 CEST" in labels and "02:30 CET" in labels
    report = SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=the_set,
        status=ReportStatus.READY,
        payload=payload,
    )
    client.force_login(ours.viewer)
    page = client.get(f"/reports/{report.pk}/").content.decode()
    assert "01:30 CEST – 03:30 CET (3 h 00 min)" in page


def test_peak_and_low_are_never_the_same_minute(two_worlds):
    ours, _ = two_worlds
    _, single = payload_for(ours, utc(2026, 7, 11, 18, 0), 30, [4], artist="One")
    assert single["peak"] is not None and single["low"] is None
    assert single["low_note"] == "No low: a single minute."
    _, flat = payload_for(ours, utc(2026, 7, 11, 20, 0), 10, range(10), artist="Flat")
    assert flat["low"] is None and "same vibe" in flat["low_note"]
    _, curve = payload_for(ours, utc(2026, 7, 11, 22, 0), 10, range(4), happy=(90, 30))
    assert curve["peak"]["minute"] != curve["low"]["minute"]


def test_the_report_page_says_no_low_for_a_single_minute(two_worlds, client):
    ours, _ = two_worlds
    the_set, payload = payload_for(ours, utc(2026, 7, 11, 18, 0), 30, [4])
    report = SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=the_set,
        status=ReportStatus.READY,
        payload=payload,
    )
    client.force_login(ours.viewer)
    page = client.get(f"/reports/{report.pk}/").content.decode()
    assert "No low: a single minute." in page and "Low at" not in page


def test_the_comparison_lists_only_sets_that_have_played(two_worlds):
    ours, _ = two_worlds
    start = utc(2026, 7, 10, 20, 0)
    add_set(ours.stage, "Still To Come", utc(2026, 7, 10, 23, 0), 60)
    _, payload = payload_for(ours, start, 30, range(30), now=start + timedelta(minutes=45))
    artists = [row["artist"] for row in payload["comparison"]["sets"]]
    assert "Still To Come" not in artists
    assert artists == ["Ours Artist", "Act"]  # the 18:00 UTC set had ended; this one too


def test_low_coverage_puts_a_caveat_next_to_the_vibe(two_worlds, client):
    ours, _ = two_worlds
    the_set, payload = payload_for(ours, utc(2026, 7, 11, 18, 0), 60, range(10))
    assert payload["overall"]["vibe"] is not None
    assert "only 10 of 60 minutes had data" in payload["coverage_caveat"]
    report = SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=the_set,
        status=ReportStatus.READY,
        payload=payload,
    )
    client.force_login(ours.viewer)
    page = client.get(f"/reports/{report.pk}/").content.decode()
    vibe_box = page.split('id="vibe"', 1)[1].split("</div>", 1)[0]
    assert "only 10 of 60 minutes had data" in vibe_box
    _, full = payload_for(ours, utc(2026, 7, 11, 20, 0), 10, range(10), artist="Full")
    assert full["coverage_caveat"] == ""
