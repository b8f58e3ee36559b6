"""Benchmark: the metric suite and its bootstrap against netcal and resample-and-recompute loops.

    .venv/bin/python benchmarks/metrics_bench.py            # 14,042 and 1,000,000 items
    .venv/bin/python benchmarks/metrics_bench.py --quick    # 14,042 items only

Data: seeded synthetic 4-option forecasts (softmax of Gaussian logits, labels drawn from a
flattened copy p**0.6, so the forecasts are over-confident), 14,042 items (the MMLU size) and
1,000,000 items. Times are medians over repeats of wall-clock and of CPU time
(``time.process_time``: all threads of the process, so threads that share the work count
fully; this machine is shared, and CPU time is what the code itself spends). Our bootstrap is
timed as it runs by default (up to four threads) and on one thread. Rows marked
"extrapolated" ran fewer resamples: ours are timed at two resample counts and extended to 1000
(setup + 1000 x the cost per resample); the loops scale linearly. The load average is printed
before each size and at the end.

Baselines (the reference for the ratios, measured in the same run):
- naive loop: ``metric_suite(np.take(probs, idx, axis=0), np.take(labels, idx))`` for each
  resample in a Python loop, on the bootstrap's own resample indices.
- netcal ``ECE(bins=10).measure``: one ECE, no bootstrap.
- Kumar et al.'s ``uncertainty-calibration`` (``pip install uncertainty-calibration``, not a
  project dependency): ``get_calibration_error_uncertainties(mode="top-label")``, its bootstrap
  of one metric (100 resamples built in, plus 2 evaluations on the full data; at 1M items one
  resample through its own ``bootstrap_uncertainty``). Skipped when the package is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import first_eval.bootstrap as _bootstrap  # noqa: E402
from first_eval.bootstrap import bootstrap_ci, bootstrap_indices  # noqa: E402
from first_eval.calibration import METRIC_NAMES, metric_suite  # noqa: E402

WITHOUT_SMOOTH = [m for m in METRIC_NAMES if m != "smooth_ece"]


def synthetic(n: int, k: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, k)) * 1.5
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    truth = p**0.6 / (p**0.6).sum(axis=1, keepdims=True)   # the model is over-confident
    y = (rng.random(n)[:, None] > np.cumsum(truth, axis=1)).sum(axis=1).clip(0, k - 1)
    return p, y


def timed(fn, repeats: int):
    """Median (wall, cpu) seconds over ``repeats`` calls."""
    walls, cpus = [], []
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w)
        cpus.append(time.process_time() - c)
    return statistics.median(walls), statistics.median(cpus)


def kumar_bootstrap(p, y, resamples: int):
    """Kumar et al.'s own bootstrap of the top-label L2 calibration error, or None if absent.

    Its ``bootstrap_uncertainty`` evaluates the metric ``resamples + 2`` times (the estimate
    and the plug-in on the full data, then each resample).
    """
    try:
        import calibration as kumar
        from calibration import utils as kumar_utils
    except ImportError:
        return None
    if resamples == 100:
        return lambda: kumar.get_calibration_error_uncertainties(p, y, p=2, mode="top-label")
    data = list(zip(p, y))

    def functional(d):
        probs, labels = zip(*d)
        return kumar.get_calibration_error(probs, labels, 2, debias=False, mode="top-label")

    return lambda: kumar_utils.bootstrap_uncertainty(data, functional, num_samples=resamples)


def naive_loop(p, y, resamples: int):
    idx = bootstrap_indices(len(y), n_resamples=resamples, seed=0)
    return lambda: [metric_suite(np.take(p, i, axis=0), np.take(y, i)) for i in idx]


@contextlib.contextmanager
def one_thread():
    """Our bootstrap on one thread (it runs chunks of resamples on up to four by default)."""
    saved = _bootstrap._MAX_WORKERS
    _bootstrap._MAX_WORKERS = 1
    try:
        yield
    finally:
        _bootstrap._MAX_WORKERS = saved


def load_average() -> float:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")


def ours(p, y, resamples, metrics, repeats):
    """(wall, cpu, label suffix) of bootstrap_ci for 1000 resamples.

    ``resamples`` is 1000 (measured), or a pair (a, b): both measured once after a warm-up
    call, and 1000 resamples = setup + 1000 x the per-resample cost fitted from the two.
    """
    if resamples == 1000:
        w, c = timed(lambda: bootstrap_ci(p, y, n_resamples=1000, metrics=metrics), repeats)
        return w, c, ""
    a, b = resamples
    bootstrap_ci(p, y, n_resamples=a, metrics=metrics)   # warm up: caches, first-touch memory
    wa, ca = timed(lambda: bootstrap_ci(p, y, n_resamples=a, metrics=metrics), 1)
    wb, cb = timed(lambda: bootstrap_ci(p, y, n_resamples=b, metrics=metrics), 1)
    per_w, per_c = (wb - wa) / (b - a), (cb - ca) / (b - a)
    return (wa + (1000 - a) * per_w, ca + (1000 - a) * per_c,
            f" [fit: {a} in {wa:.1f} s, {b} in {wb:.1f} s]")


def run(n: int, *, resamples, loop_resamples: int, kumar_resamples: int, repeats: int):
    """Rows of (label, wall, cpu, kind) for one data size; kind marks rows with a ratio."""
    p, y = synthetic(n)
    from netcal.metrics import ECE  # imported here: netcal pulls in torch and pyro

    rows = []
    w, c = timed(lambda: metric_suite(p, y), repeats)
    rows.append(("metric_suite: all 15 metrics", w, c, None))
    w, c, tag = ours(p, y, resamples, None, repeats)
    rows.append((f"bootstrap_ci: 1000 resamples, all metrics{tag}", w, c, "ours"))
    with one_thread():
        w, c, tag = ours(p, y, resamples, None, repeats)
    rows.append((f"  the same on one thread{tag}", w, c, "ours, one thread"))
    w, c, tag = ours(p, y, resamples, WITHOUT_SMOOTH, repeats)
    rows.append((f"  the same without smooth_ece{tag}", w, c, None))
    w, c, tag = ours(p, y, resamples, ["smooth_ece"], repeats)
    rows.append((f"  smooth_ece alone{tag}", w, c, None))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        w, c = timed(lambda: ECE(bins=10).measure(p, y), repeats)
    rows.append(("netcal ECE(bins=10).measure: one ECE", w, c, None))
    rows.append(("netcal ECE x 1000 (an ECE-only bootstrap, extrapolated)", w * 1000, c * 1000, "base"))
    s = 1000 / loop_resamples
    w, c = timed(naive_loop(p, y, loop_resamples), 1)
    rows.append((f"naive loop: metric_suite on np.take per resample [{loop_resamples}, "
                 f"extrapolated x{s:g}]", w * s, c * s, "reference"))
    fn = kumar_bootstrap(p, y, kumar_resamples)
    if fn is None:
        rows.append(("Kumar et al. bootstrap: skipped (pip install uncertainty-calibration)",
                     float("nan"), float("nan"), None))
    else:
        s = 1002 / (kumar_resamples + 2)
        w, c = timed(fn, 1)
        rows.append((f"Kumar et al. top-label CE bootstrap [{kumar_resamples}, extrapolated x{s:.4g}]",
                     w * s, c * s, "base"))
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="14,042 items only")
    ap.add_argument("--repeats", type=int, default=5, help="repeats for the 14,042-item timings")
    args = ap.parse_args(argv)

    import scipy

    print(f"FIRST metrics benchmark: Python {platform.python_version()}, NumPy {np.__version__}, "
          f"SciPy {scipy.__version__}, {os.cpu_count()} CPUs, load average {load_average():.2f} at start")
    sizes = [(14_042, dict(resamples=1000, loop_resamples=100, kumar_resamples=100, repeats=args.repeats))]
    if not args.quick:
        sizes.append((1_000_000, dict(resamples=(2, 42), loop_resamples=3, kumar_resamples=1, repeats=1)))
    for n, kwargs in sizes:
        load = load_average()
        rows = run(n, **kwargs)
        ours = next(r for r in rows if r[3] == "ours")
        single = next(r for r in rows if r[3] == "ours, one thread")
        reference = next(r for r in rows if r[3] == "reference")
        print(f"\n{n:,} items x 4 options (seed 0), load average {load:.2f} before; median of "
              f"{kwargs['repeats']}; ratio = time / our bootstrap_ci (wall, and CPU on one thread)")
        width = max(len(r[0]) for r in rows)
        print(f"{'':{width}}  {'wall s':>9}  {'CPU s':>9}  {'wall ratio':>10}  {'CPU ratio':>9}")
        for label, wall, cpu, kind in rows:
            ratios = kind is not None and wall == wall
            w_ratio = f"{wall / ours[1]:9.1f}x" if ratios else ""
            c_ratio = f"{cpu / single[2]:8.1f}x" if ratios else ""
            print(f"{label:{width}}  {wall:9.3f}  {cpu:9.3f}  {w_ratio:>10}  {c_ratio:>9}")
        print(f"bootstrap of all {len(METRIC_NAMES)} metrics, 1000 resamples: {single[2]:.3f} s CPU on "
              f"one thread ({single[1]:.3f} s wall); {ours[1]:.3f} s wall / {ours[2]:.3f} s CPU by "
              f"default; the naive loop takes {reference[2] / single[2]:.0f}x the CPU time")
    print(f"\nload average {load_average():.2f} at end")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
