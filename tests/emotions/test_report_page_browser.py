"""The report page and the dashboard's report controls in headless Chromium, at 1440 px and at
390 px: charts drawn, publish and rebuild work by clicking, nothing overflows a phone.
Screenshots go to $STAGEPULSE_SHOTS (for a person to look at) or the test's tmp folder."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

import tests.browser  # noqa: F401 (skips this module where there is no Chromium)
from emotions.models import SetReport
from emotions.reports import services
from emotions.services import store_items
from tests.emotions.report_helpers import face_items

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STAGEPULSE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def built_report(two_worlds, settings):
    settings.REPORT_GRACE_MINUTES = 10
    ours, _ = two_worlds
    start = ours.set.starts_at
    items = []  # stored as one batch through the real ingest (one call a minute cost ~0.4 s)
    for minute in range(5, 80):  # no data in the first five and the last ten minutes
        happy = 40 + (minute * 7) % 50
        items += face_items(ours.stage, "ours-cam-1", start + timedelta(minutes=minute),
                            6 + minute % 5, HAPPY=happy, CALM=100 - happy)  # fmt: skip
    store_items(ours.stage, items)
    services.sweep(now=ours.set.ends_at + timedelta(hours=1))
    return ours, SetReport.objects.get(set=ours.set)


@pytest.fixture(params=list(WIDTHS))
def page(request, chromium, live_server, built_report):
    ours, report = built_report
    client = Client()
    client.force_login(ours.operator)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    width, height = WIDTHS[request.param]
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
    )
    yield context.new_page(), live_server.url, ours, report, request.param
    context.close()


WIDEST = """[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right >
  window.innerWidth + 1).slice(0, 5).map(e => e.tagName + '.' + e.className + '#' + e.id)"""


def no_overflow(tab) -> bool:
    return tab.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def test_report_page_publish_and_rebuild_by_clicking(page, shots):
    tab, base, ours, report, size = page
    tab.goto(f"{base}/reports/{report.pk}/")
    assert "CEST" in tab.locator("#when").inner_text()
    # vibe v2 and its components, vibe v1, crowd size, expression shares
    assert tab.locator("img.chart").count() == 4
    for image in tab.locator("img.chart").all():
        assert image.evaluate("i => i.naturalWidth") > 300
    tab.screenshot(path=str(shots / f"report-{size}.png"), full_page=True)
    assert no_overflow(tab), tab.evaluate(WIDEST)
    tab.click("#publish")
    tab.wait_for_selector("#unpublish")
    assert "published to the fan API" in tab.locator("#messages").inner_text()
    assert "Public" in tab.locator("#controls").inner_text()
    tab.screenshot(path=str(shots / f"report-published-{size}.png"))
    tab.fill("input[name=reason]", "camera 2 uploaded late")
    tab.click("#rebuild")
    tab.wait_for_selector("#messages")
    assert "rebuild queued" in tab.locator("#messages").inner_text()
    report.refresh_from_db()
    assert report.published and report.rebuild_reason == "camera 2 uploaded late"


def test_dashboard_report_controls(page, shots):
    tab, base, ours, report, size = page
    tab.goto(f"{base}/dashboard/{ours.festival.pk}/")
    tab.wait_for_selector("body[data-loaded=true]", timeout=15000)
    row = tab.locator("#reports-panel tr.report").first
    assert "CEST" in row.inner_text()
    tab.screenshot(path=str(shots / f"dashboard-{size}.png"), full_page=True)
    assert no_overflow(tab), tab.evaluate(WIDEST)
    row.locator("button.publish").click()
    tab.wait_for_selector("#reports-panel button.unpublish")
    assert "published to the fan API" in tab.locator("#messages").inner_text()
    tab.wait_for_selector("body[data-loaded=true]", timeout=15000)
    assert no_overflow(tab)
    tab.screenshot(path=str(shots / f"dashboard-reports-{size}.png"), full_page=True)
    report.refresh_from_db()
    assert report.published


def test_share_link_for_the_artist_opens_without_login(page, shots):
    tab, base, ours, report, size = page
    tab.goto(f"{base}/reports/{report.pk}/")
    tab.click("#share-create")
    tab.wait_for_selector("#share-url")
    link = tab.locator("#share-url").input_value()
    assert "/shared/reports/" in link
    assert no_overflow(tab), tab.evaluate(WIDEST)
    tab.screenshot(path=str(shots / f"report-share-controls-{size}.png"))
    width, height = WIDTHS[size]
    artist = tab.context.browser.new_context(viewport={"width": width, "height": height})
    shared = artist.new_page()
    shared.goto(link)
    assert "Shared with you by Ours Fest" in shared.content()
    assert shared.locator("#controls").count() == 0
    assert shared.locator("img.chart").count() == 4
    assert no_overflow(shared), shared.evaluate(WIDEST)
    shared.screenshot(path=str(shots / f"report-shared-{size}.png"), full_page=True)
    tab.click("#share-revoke")
    tab.wait_for_selector("#share-create")
    assert shared.goto(link).status == 404
