"""Organizer pages in headless Chromium at 1440 and 390 px: the admin's lineup import preview,
the dashboard's festival selector, and the reports list refreshing by itself.
Screenshots go to $STAGEPULSE_SHOTS (for a person to look at) or the test's tmp folder."""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

import tests.browser  # noqa: F401 (skips this module where there is no Chromium)
from emotions.models import ReportStatus, SetReport
from festival.models import Festival
from stages.models import Set

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}
LINEUP = (
    "stage,artist,starts_at,ends_at,notes\n"
    "main,Nova Tide,2026-07-11 20:00,2026-07-11 21:30,\n"
    "main,Kiko Bass,2026-07-11 21:15,2026-07-11 22:30,overlaps on purpose\n"
    "moon,Lost,2026-07-11 20:00,2026-07-11 21:00,\n"
)


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STAGEPULSE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(params=list(WIDTHS))
def tab(request, chromium, live_server, two_worlds):
    ours, _ = two_worlds
    client = Client()
    client.force_login(ours.operator)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    width, height = WIDTHS[request.param]
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
    )
    yield context.new_page(), live_server.url, ours, request.param
    context.close()


def test_lineup_import_preview_then_apply(tab, shots, tmp_path):
    page, base, ours, size = tab
    page.goto(f"{base}/admin/festival/festival/{ours.festival.pk}/lineup/")
    bad = tmp_path / "bad.csv"
    bad.write_text(LINEUP)
    page.set_input_files("input[name=file]", str(bad))
    page.click("#preview")
    page.wait_for_selector("#preview-counts")
    errors = page.locator("#preview-errors").inner_text()
    assert "Unknown stage 'moon'" in errors and "Overlaps line 2" in errors
    assert page.locator("#apply").count() == 0
    page.screenshot(path=str(shots / f"lineup-preview-errors-{size}.png"), full_page=True)
    good = tmp_path / "good.csv"
    good.write_text("\n".join(LINEUP.splitlines()[:2]) + "\n")
    page.set_input_files("input[name=file]", str(good))
    page.click("#preview")
    page.wait_for_selector("#apply")
    assert page.locator("#count-created").inner_text() == "1"
    assert not Set.objects.filter(artist="Nova Tide").exists()
    page.screenshot(path=str(shots / f"lineup-preview-ok-{size}.png"), full_page=True)
    page.click("#apply")
    page.wait_for_selector("#result_list")
    assert "Lineup imported: 1 new" in page.content()
    assert "Sat 11 Jul 20:00 CEST" in page.locator("#result_list").inner_text()
    page.screenshot(path=str(shots / f"lineup-applied-{size}.png"), full_page=True)


def test_festival_selector_is_readable_and_reports_refresh(tab, shots, monkeypatch):
    from operations import dashboard

    monkeypatch.setattr(dashboard, "REPORTS_REFRESH_SECONDS", 1)
    page, base, ours, size = tab
    Festival.objects.create(
        organization=ours.organization,
        name="Winter Edition",
        slug="winter",
        timezone="Europe/Amsterdam",
        starts_on=ours.festival.starts_on,
        ends_on=ours.festival.ends_on,
    )
    page.goto(f"{base}/dashboard/{ours.festival.pk}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    colours = page.evaluate(
        """() => { const s = getComputedStyle(document.querySelector('header select'));
        return [s.color, s.backgroundColor]; }"""
    )
    assert colours[0] != colours[1] and colours[1] != "rgb(255, 255, 255)"
    assert "Ours Artist" not in page.locator("#reports").inner_text()
    SetReport.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        stage=ours.stage,
        set=ours.set,
        status=ReportStatus.READY,
        faces=40,
        vibe=64.0,
    )
    page.wait_for_function(
        "document.querySelector('#reports').innerText.includes('Ours Artist')", timeout=10000
    )
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.screenshot(path=str(shots / f"dashboard-refreshed-{size}.png"), full_page=True)


def test_attention_banner_and_a_desktop_layout_that_uses_the_width(tab, shots):
    from datetime import timedelta

    from django.utils import timezone

    from devices.models import DeviceStatus
    from stages.models import Stage
    from tests.factories import add_recent_rollup

    page, base, ours, size = tab
    now = timezone.now()
    forest = Stage.objects.create(
        organization=ours.organization,
        festival=ours.festival,
        name="The Enchanted Forest Stage",
        slug="forest",
        position=1,
    )
    for minutes_ago in (1, 2, 3):
        add_recent_rollup(forest, faces=12, happy=80.0, minutes_ago=minutes_ago)
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Night Shift",
        starts_at=now - timedelta(minutes=30),
        ends_at=now + timedelta(minutes=30),
    )
    ours.device.status = DeviceStatus.OFFLINE
    ours.device.last_seen_at = now - timedelta(minutes=14)
    ours.device.save()
    page.goto(f"{base}/dashboard/{ours.festival.pk}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    banner = page.locator("#attention")
    assert banner.is_visible()
    text = banner.inner_text()
    assert "Ours cam at Ours Main is offline" in text and "while Night Shift plays" in text
    name_cell = page.locator("#ranking tr.ranked td").nth(1)
    assert "The Enchanted Forest Stage" in name_cell.inner_text()
    if size == "desktop":
        assert name_cell.bounding_box()["height"] < 50  # one line, not three or four
        panel = page.locator("#ranking-panel").bounding_box()
        assert panel["width"] > 450
    assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
    page.screenshot(path=str(shots / f"dashboard-attention-{size}.png"), full_page=True)


def test_timelines_have_a_time_axis_set_boundaries_and_values_on_hover(tab, shots):
    from datetime import timedelta

    from django.utils import timezone

    from tests.factories import add_recent_rollup

    page, base, ours, size = tab
    now = timezone.now().replace(second=0, microsecond=0)
    for minutes_ago in range(1, 31):
        add_recent_rollup(ours.stage, faces=6 + minutes_ago % 7, happy=30.0 + 2 * minutes_ago,
                          calm=50.0, minutes_ago=minutes_ago)  # fmt: skip
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Early Bird",
        starts_at=now - timedelta(minutes=90),
        ends_at=now - timedelta(minutes=12),
    )
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Night Shift",
        starts_at=now - timedelta(minutes=12),
        ends_at=now + timedelta(minutes=30),
    )
    page.goto(f"{base}/dashboard/{ours.festival.pk}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    timeline = page.locator('.timeline[data-stage="main"]')
    axis = timeline.locator(".axis span").all_inner_texts()
    # the axis ends a minute past the page's own now; the minute may turn during the load
    loaded = timezone.now().replace(second=0, microsecond=0)
    ends = {
        f"{(t + timedelta(minutes=1)).astimezone(ours.festival.tz):%H:%M}" for t in (now, loaded)
    }
    assert len(axis) == 3 and axis[-1] in ends, (axis, ends)
    assert timeline.locator("line.set-boundary").count() == 1
    assert "Night Shift" in timeline.inner_text() and "Early Bird" in timeline.inner_text()
    if size == "desktop":  # the trend column is hidden on a phone
        assert "15 min ▼" in page.locator("#ranking").inner_text()
    tips = timeline.locator("rect.hover title").all_text_contents()
    assert any("vibe" in tip and "faces" in tip for tip in tips)
    page.screenshot(path=str(shots / f"dashboard-timelines-{size}.png"), full_page=True)


def test_booth_screen_without_login(chromium, live_server, two_worlds, shots):
    """No cookie at all: the link alone opens the screen, big enough to read from two metres."""
    from datetime import timedelta

    from django.utils import timezone

    from stages import services
    from tests.factories import add_recent_rollup

    ours, _ = two_worlds
    now = timezone.now()
    Set.objects.create(
        organization=ours.organization,
        stage=ours.stage,
        artist="Night Shift",
        starts_at=now - timedelta(minutes=25),
        ends_at=now + timedelta(minutes=35),
    )
    for minutes_ago in range(1, 25):
        add_recent_rollup(ours.stage, faces=12, happy=40.0 + minutes_ago * 1.5,
                          calm=30.0, minutes_ago=minutes_ago)  # fmt: skip
    key = services.issue_screen_link(ours.stage)
    for size, (width, height) in WIDTHS.items():
        context = chromium.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"{live_server.url}/screen/{key}/")
        page.wait_for_selector("body[data-loaded=true]", timeout=15000)
        assert page.locator("#artist").inner_text() == "Night Shift"
        vibe = page.locator("#vibe")
        assert vibe.inner_text().isdigit()
        assert float(vibe.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")) >= 90
        assert page.locator("#curve path.vibe-line").get_attribute("d").count("L") >= 20
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        page.screenshot(path=str(shots / f"booth-{size}.png"))
        context.close()
