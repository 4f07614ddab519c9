"""The dashboard in headless Chromium: the ranking renders with data, refreshes itself, and the
page fits a phone screen. Skips (saying why) only where no browser can be had."""

import io
from datetime import timedelta

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

import tests.browser  # noqa: F401 (skips this module where there is no Chromium)
from emotions.models import MinuteRollup
from stages.models import Stage

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def add_crowd(stage, faces, happy):
    now = timezone.now().replace(second=0, microsecond=0)
    for back in range(1, 4):
        MinuteRollup.objects.create(
            organization=stage.organization,
            festival=stage.festival,
            stage=stage,
            minute=now - timedelta(minutes=back),
            faces=faces,
            counts={"HAPPY" if happy >= 50 else "CALM": faces},
            sums={"HAPPY": happy * faces, "CALM": (100 - happy) * faces},
        )


@pytest.fixture
def browser_page(chromium, live_server, two_worlds, tmp_path):
    ours, _ = two_worlds
    tent = Stage.objects.create(
        organization=ours.organization, festival=ours.festival, name="The Tent", slug="tent"
    )
    add_crowd(ours.stage, faces=10, happy=90)
    add_crowd(tent, faces=10, happy=10)
    client = Client()
    client.force_login(ours.viewer)
    session_cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context = chromium.new_context(viewport={"width": 1280, "height": 800})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie, "url": live_server.url}]
    )
    yield context.new_page(), live_server.url, ours
    context.close()


def accent_pixels(png: bytes) -> int:
    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    return int(((r > 220) & (g > 70) & (g < 120) & (b > 110) & (b < 160)).sum())


def test_ranking_renders_with_data_and_screenshot_shows_it(browser_page, tmp_path):
    page, base, ours = browser_page
    page.goto(f"{base}/dashboard/{ours.festival.pk}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    ranked = page.locator("#ranking tr.ranked")
    assert ranked.count() == 2
    assert ranked.nth(0).inner_text().startswith("1\tOurs Main")
    assert "The Tent" in ranked.nth(1).inner_text()
    assert page.locator("#timelines .timeline").count() == 2
    assert "Ours cam" in page.locator("#devices").inner_text()
    shot = page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    assert accent_pixels(shot) > 200  # the vibe bars and curves are drawn


def test_fits_a_phone_screen(browser_page):
    page, base, ours = browser_page
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(f"{base}/dashboard/{ours.festival.pk}/")
    page.wait_for_selector("body[data-loaded=true]", timeout=15000)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0
    assert page.locator("#ranking tr.ranked").count() == 2


def test_a_browser_context_opens_its_page_and_no_window_webui(chromium):
    """The page tests' Chromium (tests/browser.py) builds no omnibox WebUI for each context."""
    contexts = [chromium.new_context() for _ in range(2)]
    for context in contexts:
        context.new_page().set_content("<p>a page</p>")
    targets = chromium.new_browser_cdp_session().send("Target.getTargets")["targetInfos"]
    for context in contexts:
        context.close()
    assert [t["type"] for t in targets].count("page") == 2
    assert not [t["url"] for t in targets if t["type"] == "browser_ui"], tests.browser.WINDOW_WEBUIS
