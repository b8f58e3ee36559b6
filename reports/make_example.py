"""Refresh ``reports/example/`` from a run directory of the default study.

    python reports/make_example.py reports/default-<timestamp> [--out reports/example]

Copies ``report.md``, ``metrics.json`` and ``run.json``, and draws the report's key figures as PNG
(``figures/``): the fine-tuning trajectory, the reliability diagram of each dataset, and FIRST
against its baselines. The figures are built by the same functions as ``index.html``
(:mod:`first_eval.plots`, through :func:`first_eval.report.html._figures`), each rendered as a page
in Debian's Chromium through Playwright (``app/screenshot.py``'s browser) and saved at 2x. Also
saves ``docs/report.png``, the first screen of the report in the browser. ``index.html`` (5 MB,
Plotly inlined) is not copied: ``first-eval report DIR`` rebuilds it from the run's files.

Needs the dev extra (playwright) and ``/usr/bin/chromium``, as ``make setup`` installs them.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "app"))

KEY_FIGURES = ("The mis-calibration trajectory", "Reliability — ", "FIRST against its baselines")


def _slug(title: str) -> str:
    text = title.replace("The mis-calibration trajectory", "trajectory").replace("Reliability — ", "reliability-")
    text = text.replace("FIRST against its baselines", "first-vs-baselines")
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("run", type=Path, help="A run directory of the default study.")
    ap.add_argument("--out", type=Path, default=ROOT / "reports" / "example")
    ap.add_argument("--screenshot", type=Path, default=ROOT / "docs" / "report.png",
                    help="Where to save the report's first screen (empty: do not).")
    args = ap.parse_args(argv)

    from plotly.offline import get_plotlyjs

    import screenshot
    from first_eval import rundir
    from first_eval.report.html import _figures

    run = rundir.load_run(args.run)
    main_figs, _, _ = _figures(run)
    keep = [(t, html) for t, html in main_figs if t.startswith(KEY_FIGURES)]
    out = args.out
    figs = out / "figures"
    if out.exists():
        shutil.rmtree(out)
    figs.mkdir(parents=True)
    for name in (rundir.REPORT_MD, rundir.METRICS_FILE, rundir.RUN_FILE):
        shutil.copyfile(args.run / name, out / name)
    plotly_js = get_plotlyjs()
    with tempfile.TemporaryDirectory() as tmp, screenshot.browser() as b:
        page = b.new_page(viewport={"width": 1100, "height": 700}, device_scale_factor=2)
        for title, fig_html in keep:
            html_path = Path(tmp) / f"{_slug(title)}.html"
            html_path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><script>{plotly_js}</script>"
                                 f"<style>body{{margin:0;background:#fff}}</style></head><body>{fig_html}</body></html>",
                                 encoding="utf-8")
            page.goto(html_path.as_uri())
            page.wait_for_selector(".main-svg", timeout=60_000)
            page.locator(".plotly-graph-div").first.screenshot(path=str(figs / f"{_slug(title)}.png"))
            print(f"wrote {figs / (_slug(title) + '.png')}")
        if str(args.screenshot):
            page.set_viewport_size({"width": 1280, "height": 900})
            page.goto((args.run / rundir.REPORT_HTML).resolve().as_uri())
            page.wait_for_selector(".main-svg", timeout=120_000)
            page.screenshot(path=str(args.screenshot))
            print(f"wrote {args.screenshot}")
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
