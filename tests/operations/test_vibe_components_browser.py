"""Each vibe component's curve, not only the blend, in headless Chromium: the dashboard, the DJ
booth screen and the printable set report of a face-free festival whose stages dance
differently. Screenshots go to $STAGEPULSE_SHOTS (for a person to look at) or tmp."""

import os
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

import tests.browser  # noqa: F401 (skips this module where there is no Chromium)
from emotions.models import CrowdMinute, SetReport
from operations.services import update_festival
from stages.models import Set, Stage

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STAGEPULSE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dance(stage, minutes: int, motion: float, sound: float, fill: float, swing: float = 0.1):
    """`minutes` of crowd signals up to now, the motion rising and falling by `swing`."""
    now = timezone.now().replace(second=0, microsecond=0)
    for back in range(minutes, 0, -1):
        m = min(1.0, max(0.0, motion + swing * (((minutes - back) % 10) / 10 - 0.5)))
        CrowdMinute.objects.create(
            organization=stage.organization, festival=stage.festival, stage=stage,
            minute=now - timedelta(minutes=back), signals=6, motion_sum=6 * m,
            motion_max=min(1.0, m * 1.4), sound_signals=6,
            sound_power_sum=6 * 10 ** ((sound + 4 * (m - motion)) / 10), fill_sum=6 * fill,
            devices=[f"{stage.slug}-cam"],
        )  # fmt: skip


@pytest.fixture
def face_free_festival(two_worlds, monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    ours, _ = two_worlds
    update_festival(ours.festival, face_free=True)
    tent = Stage.objects.create(
        organization=ours.organization, festival=ours.festival, name="The Tent", slug="tent",
        position=1,
    )  # fmt: skip
    chill = Stage.objects.create(
        organization=ours.organization, festival=ours.festival, name="Chill Garden",
        slug="chill", position=2,
    )  # fmt: skip
    dance(ours.stage, 40, motion=0.75, sound=-12, fill=0.8)
    dance(tent, 40, motion=0.45, sound=-16, fill=0.6)
    dance(chill, 40, motion=0.12, sound=-28, fill=0.35, swing=0.04)
    now = timezone.now()
    a_set = Set.objects.create(
        organization=ours.organization, stage=ours.stage, artist="Night Shift",
        starts_at=now - timedelta(minutes=30), ends_at=now + timedelta(minutes=30),
    )  # fmt: skip
    return ours, a_set


def login_cookie(user, live_server):
    client = Client()
    client.force_login(user)
    value = client.cookies[settings.SESSION_COOKIE_NAME].value
    return [{"name": settings.SESSION_COOKIE_NAME, "value": value, "url": live_server.url}]


def test_dashboard_shows_each_component_beside_the_blend(
    chromium, live_server, face_free_festival, shots
):
    ours, _ = face_free_festival
    for size, (width, height) in WIDTHS.items():
        context = chromium.new_context(viewport={"width": width, "height": height})
        context.add_cookies(login_cookie(ours.viewer, live_server))
        page = context.new_page()
        page.goto(f"{live_server.url}/dashboard/{ours.festival.pk}/")
        page.wait_for_selector("body[data-loaded=true]", timeout=15000)
        ranked = page.locator("#ranking tr.ranked")
        assert ranked.count() == 3  # face-free: every stage ranked on motion, sound, fill
        assert [ranked.nth(i).locator("td").nth(1).inner_text().split("\n")[0]
                for i in range(3)] == ["Ours Main", "The Tent", "Chill Garden"]  # fmt: skip
        first = ranked.nth(0)
        assert first.locator('[data-component="motion"]').inner_text().startswith("M ")
        assert first.locator('[data-component="expression"]').inner_text() == "E –"
        main_chart = page.locator('.timeline[data-stage="main"]')
        for name in ("motion", "sound", "fill"):
            d = main_chart.locator(f'path[data-component="{name}"]').get_attribute("d")
            assert d.count("L") >= 14, name  # a curve, not a dot
        assert main_chart.locator('path[data-component="expression"]').get_attribute("d") == ""
        # four thin lines are told apart by their dash pattern, not only by hue
        dashes = {
            name: main_chart.locator(f'path[data-component="{name}"]').get_attribute(
                "stroke-dasharray"
            )
            for name in ("expression", "motion", "sound", "fill")
        }
        assert len(set(dashes.values())) == 4, dashes
        # clicking a component in the legend fades the others; clicking it again restores
        motion_line = main_chart.locator('path[data-component="motion"]')
        sound_line = main_chart.locator('path[data-component="sound"]')
        opacity = "el => getComputedStyle(el).opacity"
        page.click('#component-legend button[data-component="motion"]')
        assert float(sound_line.evaluate(opacity)) < 0.5 <= float(motion_line.evaluate(opacity))
        if size == "desktop":
            page.screenshot(path=str(shots / "vibe-v2-dashboard-motion-focus.png"))
        page.click('#component-legend button[data-component="motion"]')
        assert float(sound_line.evaluate(opacity)) == 1.0
        assert page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0
        # face-free: crowd signals are the stage's data, so no "no analysed face" alarm
        assert "no analysed face" not in page.locator("#attention").inner_text()
        page.screenshot(path=str(shots / f"vibe-v2-dashboard-{size}.png"), full_page=True)
        context.close()


def test_booth_screen_draws_the_components_of_the_set(
    chromium, live_server, face_free_festival, shots
):
    from stages import services

    ours, _ = face_free_festival
    key = services.issue_screen_link(ours.stage)
    for size, (width, height) in WIDTHS.items():
        context = chromium.new_context(viewport={"width": width, "height": height})
        page = context.new_page()
        page.goto(f"{live_server.url}/screen/{key}/")
        page.wait_for_selector("body[data-loaded=true]", timeout=15000)
        assert page.locator("#vibe").inner_text().isdigit()
        components = page.locator("#components").inner_text()
        assert "motion" in components and "faces" not in components  # face-free
        motion = page.locator('#curve path[data-component="motion"]').get_attribute("d")
        assert motion.count("L") >= 20
        assert page.locator("#curve path.vibe-line").get_attribute("d").count("L") >= 20
        page.screenshot(path=str(shots / f"vibe-v2-booth-{size}.png"))
        context.close()


def test_set_report_page_has_the_components_chart(chromium, live_server, face_free_festival, shots):
    from emotions.reports.services import build_report

    ours, a_set = face_free_festival
    report = SetReport.objects.create(
        organization=ours.organization, festival=ours.festival, stage=ours.stage, set=a_set
    )
    assert build_report(report.pk)
    report.refresh_from_db()
    assert report.payload["vibe_v2"] is not None and report.payload["suppressed"]
    context = chromium.new_context(viewport={"width": 1200, "height": 900})
    context.add_cookies(login_cookie(ours.viewer, live_server))
    page = context.new_page()
    page.goto(f"{live_server.url}/reports/{report.pk}/")
    assert page.locator("#components-chart").count() == 1
    assert (
        page.locator('.component[data-component="expression"]')
        .inner_text()
        .endswith("off (face-free)")
    )
    assert "face-free" in page.locator("#suppressed").inner_text()
    page.screenshot(path=str(shots / "vibe-v2-report.png"), full_page=True)
    context.close()
