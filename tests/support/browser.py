"""What the browser tests share: Debian's Chromium, its flags, the clip they upload, and the phone-width check.

The served app and the browser themselves are session fixtures in conftest.py (one start-up per test process)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("SYNCLORA_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--autoplay-policy=no-user-gesture-required",
]
CLIP = ROOT / "examples" / "grace-red-nose.mp4"
TIMEOUT_MS = 90_000
PHONE = {"width": 390, "height": 844}


def fits_phone(page, step: str) -> None:
    """Nothing on the page is wider than the phone's screen (so nothing scrolls sideways), and a screenshot."""
    page.wait_for_timeout(400)
    width = page.evaluate("() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)")
    if width > PHONE["width"]:
        wide = page.evaluate(
            """(w) => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > w + 0.5
                && ![...e.children].some(c => c.getBoundingClientRect().right > w + 0.5)).slice(0, 5)
                .map(e => `${e.tagName}#${e.id}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`)""",
            PHONE["width"])
        pytest.fail(f"step '{step}': the page is {width} px wide on a {PHONE['width']} px phone; widest: {wide}")
    page.screenshot(path=str(ARTIFACTS / f"phone-{step}.png"), full_page=True)
