"""The comparison run's page in headless Chromium, at 1440 px and 390 px: with Rekognition (every
chart drawn, the recommendation and its reasons) and as in the demo (no Rekognition: bandwidth
and latency only, and a plain statement that agreement needs Rekognition). Screenshots go to
$STAGEPULSE_SHOTS (for a person to look at) or the test's tmp folder."""

import os
import random
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

import tests.browser  # noqa: F401 (skips this module where there is no Chromium)
from emotions.comparison import services
from emotions.models import Observation
from tests.emotions.test_comparison_runs import pair_item, start, store

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

WIDTHS = {"desktop": (1440, 900), "phone": (390, 844)}


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("STAGEPULSE_SHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _run(world, *, rekognition: bool):
    today = timezone.now().date()
    world.festival.starts_on, world.festival.ends_on = today - timedelta(days=1), today
    world.festival.save()
    run = start(world, starts_at=timezone.now() - timedelta(hours=2))
    base = timezone.now().replace(second=0, microsecond=0) - timedelta(minutes=100)
    rng = random.Random(3)
    items = []
    for minute in range(0, 95, 3):
        happy = rng.uniform(15, 85)
        for face in range(4):
            when = base + timedelta(minutes=minute, seconds=face * 7)
            top = rng.choice(["HAPPY", "HAPPY", "HAPPY", "CALM", "SURPRISED"])
            local = top if rng.random() < 0.75 else rng.choice(["CALM", "SAD", "HAPPY"])
            items.append(
                pair_item(world, run, when, rek_top=top, local_top=local, happy=happy,
                          rekognition=rekognition, mode="edge" if face == 3 else "cloud",
                          rek_faces=0 if rng.random() < 0.05 else 1)
            )  # fmt: skip
            Observation.objects.create(
                organization=world.organization, festival=world.festival, stage=world.stage,
                device=world.device, dynamo_pk="p", dynamo_sk=f"s{minute}-{face}",
                captured_at=when, source="local", top_emotion="HAPPY",
            )  # fmt: skip
    store(*items)
    services.compute_result(run)
    return run


@pytest.fixture(params=list(WIDTHS))
def tab(request, chromium, live_server, two_worlds):
    ours, _ = two_worlds
    client = Client()
    client.force_login(ours.viewer)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    width, height = WIDTHS[request.param]
    context = chromium.new_context(viewport={"width": width, "height": height})
    context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": live_server.url}]
    )
    yield context.new_page(), live_server.url, ours, request.param
    context.close()


def no_overflow(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth - window.innerWidth") <= 0


def test_with_rekognition_every_chart_and_the_recommendation_are_shown(tab, shots):
    page, base, ours, size = tab
    run = _run(ours, rekognition=True)
    page.goto(f"{base}/comparisons/{run.pk}/")
    assert page.locator("#needs-rekognition").count() == 0
    assert page.locator("img.chart").count() == 5  # matrix, vibe, bytes, cost, latency
    for image in page.locator("img.chart").all():
        assert image.evaluate("i => i.naturalWidth") > 300
    verdict = page.locator("#recommendation").inner_text()
    assert "Recommendation for Ours Fest" in verdict and "agreed with Rekognition" in verdict
    assert page.locator("#agreement").inner_text().endswith("%")
    assert "$" in page.locator("#cost").inner_text()
    page.screenshot(path=str(shots / f"comparison-{size}.png"), full_page=True)
    assert no_overflow(page)


def test_without_rekognition_only_measured_traffic_is_shown(tab, shots):
    page, base, ours, size = tab
    run = _run(ours, rekognition=False)
    page.goto(f"{base}/comparisons/{run.pk}/")
    assert "Agreement needs Rekognition" in page.locator("#needs-rekognition").inner_text()
    assert page.locator("#agreement").inner_text() == "—"
    assert page.locator("#correlation").inner_text() == "—"
    assert page.locator("#cost").inner_text() == "—"
    assert page.locator("img.chart").count() == 2  # bytes per hour and latency, both measured
    assert "not measured" not in page.locator("#latency").inner_text()
    page.screenshot(path=str(shots / f"comparison-demo-{size}.png"), full_page=True)
    assert no_overflow(page)
