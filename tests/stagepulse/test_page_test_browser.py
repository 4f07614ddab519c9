"""The page tests' headless Chromium (tests/browser.py) still switches off every feature Playwright
itself does (Chromium reads only the last --disable-features). That it builds no per-window WebUI
is checked in a browser module (tests/operations/test_dashboard_browser.py), in its Chromium."""

import re
from pathlib import Path

from tests.browser import PLAYWRIGHT_DISABLED_FEATURES


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
