"""The page tests' headless Chromium (tests/browser.py): no per-window WebUI renderers, and still
every feature Playwright itself switches off (Chromium reads only the last --disable-features)."""

import re
from pathlib import Path

import pytest

from tests.browser import PLAYWRIGHT_DISABLED_FEATURES, WINDOW_WEBUIS


def playwrights_own_disabled_features() -> list[str]:
    import playwright

    bundle = Path(playwright.__file__).parent / "driver/package/lib/coreBundle.js"
    listing = re.search(r"disabledFeatures = \[(.*?)\]\.filter", bundle.read_text(), re.S)
    assert listing, f"Playwright's list of disabled features moved: read {bundle}"
    code = re.sub(r"//[^\n]*", "", listing.group(1))
    return [name for name in re.findall(r'"([^"]+)"', code) if not name.startswith("ms")]


def test_the_browser_keeps_every_feature_playwright_disables():
    missing = set(playwrights_own_disabled_features()) - set(PLAYWRIGHT_DISABLED_FEATURES)
    assert not missing, (
        f"Playwright now also disables {sorted(missing)}: add them to tests/browser.py"
    )


@pytest.mark.slow
def test_a_browser_context_opens_its_page_and_no_window_webui(chromium):
    contexts = [chromium.new_context() for _ in range(2)]
    for context in contexts:
        context.new_page().set_content("<p>a page</p>")
    targets = chromium.new_browser_cdp_session().send("Target.getTargets")["targetInfos"]
    for context in contexts:
        context.close()
    assert [t["type"] for t in targets].count("page") == 2
    assert not [t["url"] for t in targets if t["type"] == "browser_ui"], WINDOW_WEBUIS
