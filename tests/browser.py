"""Headless Chromium for the page tests (dashboard, reports, organizer pages), set up once.

Importing this skips the importing test module, saying why, where no browser can be had
(.ci/run installs Debian's chromium). The flags keep Chromium off this machine's closed network.
"""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
if CHROMIUM is None:
    pytest.skip("no Chromium on this machine (apt-get install chromium)", allow_module_level=True)

# Chromium reads only the last --disable-features, and Playwright passes its own first: this
# one is Playwright 1.65's list (its chromiumSwitches) and the omnibox popup's two WebUIs, which
# headless Chromium 156 still builds for every window (every browser context): two renderers
# a context, ~0.8 s of CPU each, ~25 s of the suite's (counted with psutil, 2026-12-03).
PLAYWRIGHT_DISABLED_FEATURES = [
    "AvoidUnnecessaryBeforeUnloadCheckSync",
    "DestroyProfileOnBrowserClose",
    "HttpsUpgrades",
    "HttpsFirstBalancedModeAutoEnable",
    "LensOverlay",
    "MediaRouter",
    "PaintHolding",
    "ThirdPartyStoragePartitioning",
    "AvoidCorsURLLoaderRestartOnRedirect",
    "TcpPortRandomizationWin",
    "OptimizationHints",
    "NetworkTimeServiceQuerying",
    "AimEnabled",
    "PreconnectToSearch",
]
WINDOW_WEBUIS = ["WebUIOmniboxPopup", "WebUIOmniboxAimPopup"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-features=" + ",".join(PLAYWRIGHT_DISABLED_FEATURES + WINDOW_WEBUIS),
]


def launch_chromium(playwright):
    """The project's headless Chromium (Debian's, not a downloaded one)."""
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
