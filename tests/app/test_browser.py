"""The dashboard in a real browser: Debian Chromium + Playwright against `streamlit run` on a tiny run.

Uses the same code as ``app/screenshot.py`` (the README screenshot). Set
``FIRST_DASHBOARD_SCREENSHOT=PATH`` to keep the PNG (default: a temporary file).
Skipped only when ``/usr/bin/chromium`` is absent; ``make setup`` (and so CI) installs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import MODELS

CHROMIUM = "/usr/bin/chromium"
SCREENSHOT_ENV = "FIRST_DASHBOARD_SCREENSHOT"

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason=f"{CHROMIUM} is missing: Debian chromium is installed by `make setup`")


def _find_hostile_item(page) -> None:
    """In the Items view: show all items, filter on the hostile text, wait for its prompt to show."""
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Show").click()
    page.get_by_role("option", name="all", exact=True).click()
    page.wait_for_selector('[data-testid="stStatusWidget"]', state="detached", timeout=60_000)
    box = page.get_by_label("Text contains", exact=True)
    box.fill("pwned")
    box.press("Enter")
    page.locator('[data-testid="stCode"]').filter(has_text="pwned").first.wait_for(timeout=60_000)


def test_dashboard_renders_in_chromium(reports, tmp_path):
    import screenshot

    out = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "dashboard.png")
    with screenshot.serve(reports, log=tmp_path / "streamlit.log", timeout=120) as url, screenshot.browser() as b:
        overview = screenshot.capture(url, out, using=b, timeout=120)
        items = screenshot.capture(url, None, view="Items", ready=screenshot.TABLE, using=b, timeout=120,
                                   interact=_find_hostile_item)

    assert overview.exceptions == 0, overview.text[:2000]
    assert overview.charts == 2
    for model in MODELS:
        assert model in overview.text  # the sidebar and the table
        assert model in overview.chart_text  # the chart legends
    assert "ECE" in overview.text and "ECE" in overview.chart_text  # metric picker, axis title
    assert "SYNTHETIC" in overview.text
    png = out.read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and 10_000 < len(png) < 1_000_000

    # Dataset text with HTML in it is shown as text and never runs.
    assert items.exceptions == 0, items.text[:2000]
    assert "<script>window.__pwned = 1</script>" in items.text
    assert items.pwned is None
