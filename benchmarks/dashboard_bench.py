"""How responsive is the dashboard on a large run? Load + render time of every view, with AppTest.

    python benchmarks/dashboard_bench.py [--items 14042] [--models 8] [--repeat 2] [--json OUT]

Builds a SYNTHETIC run of the size of the full study (MMLU's 14,042 items × 8 models, plus a
small in-domain set; prompts included) in a temporary reports directory, then drives
``app/main.py`` through ``streamlit.testing.v1.AppTest`` and times:

- the first page load (cold: reading and validating ``predictions.parquet``, then Overview);
- each view the first time it is opened (its computations uncached), and again (cached);
- the interactions that recompute: bins/scheme, another model pair, a temperature.

AppTest runs the script in-process, so these are server-side times (script + caching +
serializing elements); the browser's drawing time comes on top. The size of the Plotly JSON
each view sends is reported as a proxy for that.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
APP = ROOT / "app" / "main.py"
VIEWS = ("Overview", "Reliability", "Compare", "Items", "Training", "Concentrated knowledge", "What-if")
MODELS = ("base", "teacher", "teacher+ts", "student-ce", "student-topk", "student-first", "student-rskd",
          "student-fullkd")


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def chart_bytes(at) -> int:
    return sum(len(c.proto.spec) for c in at.get("plotly_chart"))


def check(at, what: str):
    if at.exception:
        raise SystemExit(f"{what}: the app raised: {at.exception[0].value}")
    return at


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=14042, help="items in the large dataset (default: MMLU's 14,042)")
    parser.add_argument("--models", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="warm repetitions per view (median reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)

    from streamlit.testing.v1 import AppTest

    from first_eval.synthetic import make_synthetic_run

    models = MODELS[: args.models] if args.models <= len(MODELS) else [f"model-{i}" for i in range(args.models)]
    with tempfile.TemporaryDirectory() as tmp:
        reports = Path(tmp) / "reports"
        _, t_make = timed(lambda: make_synthetic_run(
            reports / "synthetic-large", models=models, datasets=[("mmlu", "far-ood")], n_items=args.items,
            seed=0, bootstrap=100))
        size = (reports / "synthetic-large" / "predictions.parquet").stat().st_size
        print(f"synthetic run: {args.items} items x {len(models)} models = {args.items * len(models):,} rows, "
              f"predictions.parquet {size / 1e6:.1f} MB, written in {t_make:.1f} s (not part of the dashboard)")

        os.environ["FIRST_REPORTS_DIR"] = str(reports)
        at = AppTest.from_file(str(APP), default_timeout=900)
        _, t_first = timed(lambda: check(at.run(), "first load"))
        rows = [{"step": "first page load (cold: read + validate + Overview)", "seconds": t_first,
                 "chart_kb": chart_bytes(at) / 1e3}]

        for view in VIEWS:
            radio = at.sidebar.radio(key="view")
            _, cold = timed(lambda: check(radio.set_value(view).run(), view))
            warm = []
            for _ in range(args.repeat):
                _, t = timed(lambda: check(at.run(), view))
                warm.append(t)
            rows.append({"step": f"{view}: open (cold) / rerun (cached)", "seconds": cold,
                         "warm_seconds": statistics.median(warm), "chart_kb": chart_bytes(at) / 1e3})

        interactions = (
            ("Reliability", "rel_bins → 20", lambda a: a.slider(key="rel_bins").set_value(20)),
            ("Reliability", "rel_scheme → equal-mass", lambda a: a.radio(key="rel_scheme").set_value("equal-mass")),
            ("Compare", "model B → another model (paired bootstrap, 1000 resamples)",
             lambda a: a.selectbox(key="cmp_b").set_value(models[-1])),
            ("Items", "show all items", lambda a: a.selectbox(key="it_show").set_value("all")),
            ("What-if", "temperature → 1.5", lambda a: a.select_slider(key="wi_t").set_value(1.5)),
            ("What-if", "temperature → 2.0", lambda a: a.select_slider(key="wi_t").set_value(2.0)),
        )
        for view, what, act in interactions:
            check(at.sidebar.radio(key="view").set_value(view).run(), view)
            _, t = timed(lambda: check(act(at).run(), what))
            rows.append({"step": f"{view}: {what}", "seconds": t, "chart_kb": chart_bytes(at) / 1e3})

    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")
    print(f"\n{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f} "
          f"(AppTest, server side; browser drawing comes on top)\n")
    width = max(len(r["step"]) for r in rows)
    print(f"{'step':<{width}}  {'seconds':>8}  {'cached':>7}  {'chart KB':>8}")
    for r in rows:
        warm = f"{r['warm_seconds']:7.2f}" if "warm_seconds" in r else " " * 7
        print(f"{r['step']:<{width}}  {r['seconds']:8.2f}  {warm}  {r['chart_kb']:8.0f}")
    if args.json:
        args.json.write_text(json.dumps({"items": args.items, "models": len(models), "load_average": load,
                                         "rows": rows}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
