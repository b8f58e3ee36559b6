"""Start the dashboard in a real browser, check it rendered, and save a screenshot.

    python app/screenshot.py --reports DIR --out docs/dashboard.png [--view Overview]

Starts ``streamlit run app/main.py`` on a free localhost port, opens it in Debian's Chromium
through Playwright, waits for the Plotly charts to draw and for Streamlit to finish running,
then saves a PNG. It fails (exit 1) if the page shows an exception box. The browser test
(``tests/app/test_browser.py``) uses the same functions, so the README screenshot and the test
come from one piece of code.

Needs ``/usr/bin/chromium`` (``make setup`` installs it) and the ``playwright`` package.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parent / "main.py"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
CHART = '[data-testid="stPlotlyChart"] .main-svg'  # a drawn Plotly chart
CHART_BOX = '[data-testid="stPlotlyChart"]'
TABLE = '[data-testid="stDataFrame"]'
RUNNING = '[data-testid="stStatusWidget"]'
EXCEPTION = '[data-testid="stException"]'


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def serve(reports: str | os.PathLike, *, port: int | None = None, timeout: float = 60.0,
          log: str | os.PathLike | None = None) -> Iterator[str]:
    """Run the dashboard on ``127.0.0.1:port`` for the duration of the block; yield its URL."""
    port = port or free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(APP),
           "--server.port", str(port), "--server.address", "127.0.0.1", "--server.headless", "true",
           "--server.fileWatcherType", "none", "--browser.gatherUsageStats", "false",
           "--client.toolbarMode", "viewer",
           "--", "--reports", str(reports)]
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=APP.parent.parent)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with status {proc.returncode} before serving"
                                   + (f" (log: {log})" if log else ""))
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if log:
            out.close()


@dataclass
class PageCheck:
    """What the browser saw."""

    text: str  # the page's visible text
    chart_text: list[str]  # every text element inside the Plotly charts (legends, titles, axes)
    exceptions: int
    charts: int
    screenshot: Path | None
    seconds: float
    pwned: object = None  # window.__pwned: set only if dataset text ran as code
    console_errors: list[str] = field(default_factory=list)


@contextlib.contextmanager
def browser() -> Iterator[object]:
    """Headless Debian Chromium through Playwright, with the flags that work offline in containers."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield b
        finally:
            b.close()


def capture(url: str, out: str | os.PathLike | None, *, view: str | None = None, ready: str = CHART,
            timeout: float = 90.0, width: int = 1400, height: int = 900, using=None,
            interact: Callable[[Any], None] | None = None) -> PageCheck:
    """Open ``url`` (optionally ``?view=VIEW``), wait for ``ready`` (default: a drawn Plotly chart)
    and then for Streamlit's running indicator to go, save a screenshot to ``out`` and return what
    the page showed. Views without charts (Items) pass ``ready=TABLE``. ``using``: a browser from
    :func:`browser` to reuse (default: launch one for this page). ``interact(page)``: run after the
    page is idle, before the screenshot (it should wait for what it changes)."""
    from urllib.parse import quote

    if using is None:
        with browser() as b:
            return capture(url, out, view=view, ready=ready, timeout=timeout, width=width, height=height, using=b,
                           interact=interact)
    target = f"{url}/?view={quote(view)}" if view else url
    t0 = time.monotonic()
    page = using.new_page(viewport={"width": width, "height": height}, device_scale_factor=1)
    try:
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.goto(target, wait_until="domcontentloaded", timeout=timeout * 1000)
        page.wait_for_selector(ready, timeout=timeout * 1000)
        page.wait_for_selector(RUNNING, state="detached", timeout=timeout * 1000)
        if interact is not None:
            interact(page)
            page.wait_for_selector(RUNNING, state="detached", timeout=timeout * 1000)
        page.wait_for_timeout(500)  # let the last charts finish their transition
        shot = None
        if out:
            shot = Path(out)
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=False)
        return PageCheck(text=page.inner_text("body"),
                         chart_text=page.locator(f"{CHART_BOX} text").all_text_contents(),
                         exceptions=page.locator(EXCEPTION).count(), charts=page.locator(CHART_BOX).count(),
                         screenshot=shot, seconds=time.monotonic() - t0,
                         pwned=page.evaluate("window.__pwned ?? null"), console_errors=errors)
    finally:
        page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reports", default="reports",
                        help="reports directory: a folder of runs or one run directory (default: reports/)")
    parser.add_argument("--out", default="docs/dashboard.png", help="PNG to write")
    parser.add_argument("--view", default=None, help="view to open (default: Overview)")
    parser.add_argument("--ready", default=None, help="CSS selector to wait for (default: a drawn Plotly "
                        "chart; a table for the Items view)")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"error: {CHROMIUM} is missing; `make setup` installs Debian's chromium", file=sys.stderr)
        return 2
    with serve(args.reports, timeout=args.timeout) as url:
        ready = args.ready or (TABLE if args.view == "Items" else CHART)
        check = capture(url, args.out, view=args.view, ready=ready, timeout=args.timeout, width=args.width,
                        height=args.height)
    print(json.dumps({"screenshot": str(check.screenshot), "charts": check.charts, "exceptions": check.exceptions,
                      "seconds": round(check.seconds, 1)}))
    return 1 if check.exceptions else 0


if __name__ == "__main__":
    sys.exit(main())
