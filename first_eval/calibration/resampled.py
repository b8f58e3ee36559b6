"""Every suite metric for many resamples at once, from per-item resample counts.

A bootstrap resample of n items is a count vector: item i appears ``c_i`` times. Every metric of
:func:`first_eval.calibration.metric_suite` on the resampled items is a function of those counts.
Items are sorted once by confidence (ties wrong-before-right); a chunk of resamples is a count
matrix ``C`` of shape (n_items, n_resamples) in that order, built from small-integer counts
(one ``bincount`` per resample, one sorting gather), and every per-item statistic the metrics
need comes out of **one** sparse product ``S @ C``, whose row blocks are:

* **runs**: the sorted items cut into alternating runs of wrong and of right answers, as pairs
  (wrong run, right run), either possibly empty; a confidence shared by right and wrong items
  is a pair of its own (a tie block); with equal-width bins, runs are also cut at bin edges.
  Cumulative sums over the runs give accuracy, the top-label bin counts, AUROC, AURC (harmonic
  sums by table look-up) and accuracy at coverage;
* the top-label sums of confidence per bin, and the Brier and NLL totals;
* classwise ECE and the Brier decomposition: items grouped by their tuple of per-option bins
  and label (a group count gives every per-(option, bin) count and label count), and the sums
  of each option's probability per (option, bin);
* smooth ECE: the residual and density grids of relplot (:meth:`.smooth.SmoothECE.columns`);
* equal-mass bins: counts and confidence sums per block of sorted items; a chunk boundary
  inside a block is found in the counts themselves.

Each result equals the plain metric on ``np.take(..., idx)`` for the resample's index vector
(tested to 1e-12), because the plain metrics are invariant to item order.
"""

from __future__ import annotations

import threading

import numpy as np
import scipy.sparse

from first_eval.calibration import binning as _b
from first_eval.calibration import metrics as _m
from first_eval.calibration._checks import Forecasts
from first_eval.calibration.smooth import SmoothECE, grid_size
from first_eval.calibration.suite import COVERAGE, METRIC_NAMES

_BINNED = ("ece", "mce", "rms_ce", "debiased_ece")
_RANKED = ("auroc", "aurc", "acc_at_80")
_PER_OPTION = ("brier_reliability", "brier_resolution", "brier_uncertainty", "classwise_ece")
_BLOCK_ROWS = 64  # sorted items per block of the two-level prefix sums (equal-mass bins)


class ResampledMetrics:
    """Precomputed layout of one set of forecasts; :meth:`__call__` takes resample counts.

    Parameters
    ----------
    forecasts : Forecasts
        Validated forecasts (see :func:`first_eval.calibration._checks.check_forecasts`).
    n_bins : int
    scheme : {"width", "mass"}
    metrics : sequence of str, optional
        Subset of :data:`METRIC_NAMES` to compute (default: all).
    """

    def __init__(self, forecasts: Forecasts, *, n_bins: int, scheme: str, metrics=None):
        f = forecasts
        self.metrics = tuple(METRIC_NAMES if metrics is None else metrics)
        want = set(self.metrics)
        self.n, self.n_bins, self.scheme = f.n, n_bins, scheme
        order = _b.confidence_order(f)
        self.order = order
        conf = f.confidence[order]
        correct = f.correct[order]
        self.conf = conf
        self._entries: list[tuple[np.ndarray, np.ndarray]] = []
        self._rows = 0
        self.blocks: dict[str, slice] = {}
        self.binned = bool(want & set(_BINNED))
        bins = _b.width_bin_index(conf, n_bins) if scheme == "width" else None
        self._plan_runs(conf, correct, bins if self.binned else None)
        if self.binned and scheme == "width":
            self._add("conf", n_bins, bins, conf)
        if self.binned and scheme == "mass":
            self._plan_mass(conf)
        for name, items in (("brier", _m._brier_items), ("nll", _m._nll_items)):
            if name in want:
                self._add(name, 1, np.zeros(f.n, dtype=np.intp), items(f)[order])
        if "smooth_ece" in want:
            self.smooth = SmoothECE(conf, conf - correct)
            self._add("smooth", 3 * grid_size(1.0), *self.smooth.split_spread())
        if want & set(_PER_OPTION):
            self._plan_options(f, order)
        # CSC with the same number of entries for every item, laid out directly: rows are
        # sorted within each item (blocks in order), one sequential pass over the counts
        rows = np.concatenate([r for r, _ in self._entries], axis=1)
        vals = np.concatenate([v for _, v in self._entries], axis=1)
        indptr = np.arange(f.n + 1, dtype=np.int64) * rows.shape[1]
        index = np.int32 if self._rows < 2**31 and rows.size < 2**31 else np.int64
        self.matrix = scipy.sparse.csc_matrix(
            (vals.ravel(), rows.ravel().astype(index), indptr.astype(index)), shape=(self._rows, f.n))
        del self._entries

    def _add(self, name: str, n_rows: int, rows, vals) -> None:
        """Append a block of ``n_rows`` rows: item i has entries ``vals[i]`` in rows ``rows[i]``.

        ``rows`` and ``vals`` have shape (n_items,) or (n_items, k), rows increasing along k.
        """
        rows = np.asarray(rows).reshape(self.n, -1)
        vals = np.asarray(vals, dtype=np.float64)
        vals = np.broadcast_to(vals if vals.ndim == 0 else vals.reshape(self.n, -1), rows.shape)
        self._entries.append((rows + self._rows, vals))
        self.blocks[name] = slice(self._rows, self._rows + n_rows)
        self._rows += n_rows

    # ------------------------------------------------------------------ layout
    def _plan_runs(self, conf, correct, bins):
        """Pairs (wrong run, right run) over the sorted items, for the "runs" block.

        A run is cut where correctness changes, around every tie block and (given ``bins``)
        at bin edges. A wrong run always opens a pair; a right run joins the pair of the
        wrong run just before it, else opens a pair with an empty wrong run.

        Pair j = q * s + i (s about sqrt(pairs), padded with empty pairs to s * t) has its
        wrong run in row ``i * t + q`` and its right run in row ``s * t + i * t + q``: prefix
        sums over pairs are then s additions of contiguous (t, B) slabs plus one carry, not
        numpy's row-by-row ``cumsum`` along axis 0 (which does not vectorize).
        """
        n = self.n
        new_conf = np.r_[True, conf[1:] != conf[:-1]]
        group = np.cumsum(new_conf) - 1
        g_start = np.flatnonzero(new_conf)
        g_right = np.add.reduceat(correct, g_start)
        g_size = np.diff(np.r_[g_start, n])
        mixed = ((g_right > 0) & (g_right < g_size))[group]
        cut = np.r_[True, (correct[1:] != correct[:-1]) | (new_conf[1:] & (mixed[1:] | mixed[:-1]))]
        if bins is not None:
            cut[1:] |= bins[1:] != bins[:-1]
        start = np.flatnonzero(cut)
        right = correct[start] > 0
        opens = ~right | np.r_[True, right[:-1]]        # right after right (or first): new pair
        pair = np.cumsum(opens) - 1
        n_pairs = int(pair[-1]) + 1
        s = max(1, int(np.ceil(np.sqrt(n_pairs))))
        t = -(-n_pairs // s)
        padded = s * t
        self.slabs = (s, t)
        j = np.arange(padded)
        self.pair_row = (j % s) * t + j // s           # row of pair j within each half
        run_row = self.pair_row[pair] + np.where(right, padded, 0)
        sizes = np.diff(np.r_[start, n])
        self._add("runs", 2 * padded, np.repeat(run_row, sizes), 1.0)
        self.n_pairs = padded
        self.last_row = int(self.pair_row[padded - 1])
        tie = np.zeros(padded, dtype=bool)
        tie[pair[~right & mixed[start]]] = True
        self.tie_rows = self.pair_row[np.flatnonzero(tie)]
        self.pair_tie = tie
        # items in pairs <= j in the full sample: where a position can fall in a resample
        per_pair = np.bincount(pair, weights=sizes, minlength=padded)
        self.full_through = np.cumsum(per_pair)
        if bins is not None:
            # each pair's bin for its wrong and its right run (an empty run takes its partner's)
            bin_w = np.full(padded, -1)
            bin_r = np.full(padded, -1)
            bin_w[pair[~right]] = bins[start[~right]]
            bin_r[pair[right]] = bins[start[right]]
            bin_w = np.where(bin_w < 0, bin_r, bin_w)
            bin_r = np.where(bin_r < 0, bin_w, bin_r)
            bin_w[bin_w < 0] = self.n_bins           # padding pairs come last
            bin_r[bin_r < 0] = self.n_bins
            edges = np.arange(self.n_bins + 1)
            self.bin_pairs_w = np.searchsorted(bin_w, edges, side="left")
            self.bin_pairs_r = np.searchsorted(bin_r, edges, side="left")
        h = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])
        self.harmonic_n = h[n]
        # SH[k] = sum_{q<k} H_q, indexed by n - k: the look-up takes a position from the bottom
        self.sum_harmonic_rev = np.concatenate([[0.0], np.cumsum(h[:-1])])[::-1].copy()

    def _plan_mass(self, conf):
        self.chunk_bounds = np.concatenate([[0], np.cumsum(_b.mass_chunk_sizes(self.n, self.n_bins))])
        self.chunk_sizes = np.diff(self.chunk_bounds).astype(np.float64)
        block = np.arange(self.n) // _BLOCK_ROWS
        nb = int(block[-1]) + 1
        self._add("mass_blocks", 2 * nb, np.column_stack([block, nb + block]),
                  np.column_stack([np.ones(self.n), conf]))

    def _plan_options(self, f: Forecasts, order):
        """Groups of items with the same per-option bins and label; sums of p per (option, bin).

        The per-(option, bin) counts and label counts are sums of group counts, so they cost
        one matrix entry per item instead of one per item and option.
        """
        n_opt, m = f.probs.shape[1], self.n_bins
        probs = f.probs[order]
        labels = f.labels[order]
        real = np.arange(n_opt)[None, :] < f.n_options[order][:, None]
        bins = np.where(real, _b.width_bin_index(probs, m), -1)
        # one integer per (bins..., label); np.unique(axis=0) on the columns is much slower
        if n_opt * np.log2(m + 1) + np.log2(n_opt) + 1 < 62:
            code = labels.astype(np.int64)
            for k in range(n_opt):
                code = code * (m + 1) + (bins[:, k] + 1)
            if code.max() < 4 * f.n + 1024:     # codes few enough to count
                present = np.bincount(code) > 0
                group = (np.cumsum(present) - 1)[code]
            else:
                _, group = np.unique(code, return_inverse=True)
        else:   # too many options for one int64 code
            _, group = np.unique(np.column_stack([bins, labels]), axis=0, return_inverse=True)
        group = group.ravel()
        g = int(group.max()) + 1
        first = np.empty(g, dtype=np.intp)
        first[group] = np.arange(f.n)                      # some item of each group
        keys = np.column_stack([bins, labels])[first]
        self._add("groups", g, group, 1.0)
        # sums of p per (option, bin); a padded option adds an explicit 0
        self._add("sum_p", n_opt * m, np.arange(n_opt) * m + np.maximum(bins, 0),
                  np.where(real, probs, 0.0))
        # (2 K M, G): per (option, bin) the group counts, then the label counts
        gk, kk = np.nonzero(keys[:, :n_opt] >= 0)
        label = keys[:, n_opt]
        rows = np.r_[kk * m + keys[gk, kk], n_opt * m + label * m + keys[np.arange(g), label]]
        cols = np.r_[gk, np.arange(g)]
        self.group_matrix = scipy.sparse.csr_matrix((np.ones(cols.size), (rows, cols)),
                                                    shape=(2 * n_opt * m, g))
        self.n_opt = n_opt

    # ------------------------------------------------------------------ counts
    def __call__(self, counts: np.ndarray, scratch: "Scratch | None" = None
                 ) -> tuple[dict[str, np.ndarray], bool]:
        """Metrics of resamples given by their item counts, and whether the counts are whole.

        Parameters
        ----------
        counts : ndarray of shape (n_resamples, n_items), uint8 or float
            Row b counts how often each (original) item is in resample b (see
            :func:`item_counts`).
        scratch : Scratch, optional
            Work arrays to reuse from one call to the next (default: fresh ones).

        Returns
        -------
        (dict of metric -> ndarray of shape (n_resamples,), bool)
            The bool is False when some column does not total n items, i.e. a uint8 count
            wrapped (an item drawn more than 255 times): count again in float.
        """
        scratch = Scratch() if scratch is None else scratch
        b, n = counts.shape
        ordered = scratch.get("sorted", (n, b), counts.dtype)
        np.take(counts.T, self.order, axis=0, out=ordered, mode="clip")  # sorts, transposes
        if ordered.dtype != np.float64:
            wide = scratch.get("wide", (n, b))
            np.copyto(wide, ordered)
            ordered = wide
        out, totals = self._evaluate(ordered, scratch)
        return out, bool((totals == n).all())

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, c: np.ndarray, scratch: "Scratch"):
        """Metrics for each column of ``c`` (n_items, n_resamples; sorted rows), and the
        column totals of ``c``."""
        y = self.matrix @ c
        want = set(self.metrics)
        n = self.n
        out: dict[str, np.ndarray] = {}
        runs = self._runs(y, scratch)
        wrong_c, right_c = runs.cum
        n_right = right_c[self.last_row]
        out["accuracy"] = n_right / n
        for name in ("brier", "nll"):
            if name in want:
                out[name] = y[self.blocks[name]][0] / n
        if self.binned:
            if self.scheme == "width":
                w = runs.before(0, self.bin_pairs_w)
                r = runs.before(1, self.bin_pairs_r)
                counts = np.diff(w + r, axis=0).T
                s_corr = np.diff(r, axis=0).T
                s_conf = y[self.blocks["conf"]].T
            else:
                counts, s_conf, s_corr = self._mass_bins(c, y, runs)
            sums = (counts, s_conf, s_corr, n)
            out["ece"] = _b.ece_from_sums(*sums)
            out["mce"] = _b.mce_from_sums(*sums)
            out["rms_ce"] = _b.rms_from_sums(*sums)
            out["debiased_ece"] = _b.debiased_from_sums(*sums)
        if want & set(_RANKED):
            out.update(self._ranked(runs, n_right, scratch))
        if want & set(_PER_OPTION):
            out.update(self._per_option(y))
        if "smooth_ece" in want:
            out["smooth_ece"] = self.smooth.columns(y[self.blocks["smooth"]], c)
        return {k: out[k] for k in self.metrics}, wrong_c[self.last_row] + n_right

    def _runs(self, y, scratch: "Scratch") -> "_Runs":
        s, t = self.slabs
        counts = y[self.blocks["runs"]].reshape(2, s, t, -1)
        cum = scratch.get("runs", counts.shape)
        cum[:, 0] = counts[:, 0]
        for i in range(1, s):                      # within each block of s pairs ...
            np.add(cum[:, i - 1], counts[:, i], out=cum[:, i])
        carry = np.cumsum(cum[:, s - 1], axis=1)   # ... then the totals of earlier blocks
        cum[:, :, 1:] += carry[:, None, :-1]
        b = counts.shape[-1]
        return _Runs(counts.reshape(2, s * t, b), cum.reshape(2, s * t, b), self.pair_row)

    def _below(self, runs: "_Runs", x: float, tie_average: bool) -> np.ndarray:
        """Right-answer mass among the lowest ``x`` resampled positions, shape (B,).

        With ``tie_average`` a tie block (right and wrong items of equal confidence) is shared
        pro rata, as the plain metrics rank ties; without, its wrong items come first, as
        equal-mass binning orders them.
        """
        j = np.minimum(self._pairs_through(runs, x), self.n_pairs - 1)   # pair holding x
        cols = np.arange(runs.cum.shape[2])
        row = self.pair_row[j]
        wrong, right = runs.counts[0][row, cols], runs.counts[1][row, cols]
        right_before = runs.cum[1][row, cols] - right
        hi = runs.cum[0][row, cols] + right_before         # end of the pair's wrong run
        below = right_before + np.maximum(x - hi, 0.0)
        if tie_average:
            tie = self.pair_tie[j]
            if tie.any():
                lo, size = hi[tie] - wrong[tie], wrong[tie] + right[tie]
                below[tie] = right_before[tie] + (x - lo) * right[tie] / size
        return below

    def _pairs_through(self, runs: "_Runs", x: float) -> np.ndarray:
        """For each column, how many pairs end at or below position ``x`` (B,).

        Resampled pair ends stay within a few sqrt(n) of the full sample's, so only a window
        of pairs around x is compared (all of them if a column leaves it).
        """
        slack = 8.0 * np.sqrt(self.n) + 16.0
        lo = int(np.searchsorted(self.full_through, x - slack, side="right"))
        hi = int(np.searchsorted(self.full_through, x + slack, side="left")) + 1
        hi = min(hi, self.n_pairs)

        def through(j):
            rows = self.pair_row[j]
            return runs.cum[0][rows] + runs.cum[1][rows]

        if (lo == 0 or (through(lo - 1) <= x).all()) and (hi == self.n_pairs or (through(hi) > x).all()):
            return lo + np.count_nonzero(through(np.arange(lo, hi)) <= x, axis=0)
        return np.count_nonzero(through(np.arange(self.n_pairs)) <= x, axis=0)

    def _mass_bins(self, c, y, runs):
        """Equal-mass chunks of each resample: (counts, sum_conf, sum_correct), each (B, M).

        A chunk boundary x (a position in the sorted resample) falls inside some item's block
        of copies; two-level prefix sums find it: counts per block of ``_BLOCK_ROWS`` sorted
        items, then the copies inside the one block that holds x.
        """
        n, b = self.n, c.shape[1]
        width = _BLOCK_ROWS
        blocks = np.ascontiguousarray(y[self.blocks["mass_blocks"]].T)  # (B, 2 nb): counts, conf
        nb = blocks.shape[1] // 2
        cum_n = np.cumsum(blocks[:, :nb], axis=1)
        cum_f = np.cumsum(blocks[:, nb:], axis=1)
        x = np.broadcast_to(self.chunk_bounds.astype(np.float64), (b, self.chunk_bounds.size))
        rows = np.arange(b)[:, None]
        beta = np.minimum(_count_at_most(cum_n, x), nb - 1)      # block holding position x
        base_n = np.where(beta > 0, cum_n[rows, np.maximum(beta - 1, 0)], 0.0)
        base_f = np.where(beta > 0, cum_f[rows, np.maximum(beta - 1, 0)], 0.0)
        item = np.minimum(beta[..., None] * width + np.arange(width), n - 1)  # (B, M+1, width)
        inside = (beta[..., None] * width + np.arange(width)) < n
        copies = np.where(inside, c[item, rows[..., None]], 0.0)
        run = np.cumsum(copies, axis=2)
        take = np.clip((x - base_n)[..., None] - (run - copies), 0.0, copies)
        f_conf = base_f + (take * self.conf[item]).sum(axis=2)
        f_right = np.stack([self._below(runs, float(q), False) for q in self.chunk_bounds], axis=1)
        counts = np.broadcast_to(self.chunk_sizes, (b, self.n_bins))
        return counts, np.diff(f_conf, axis=1), np.diff(f_right, axis=1)

    def _ranked(self, runs: "_Runs", n_right, scratch: "Scratch"):
        n = self.n
        out = {}
        want = set(self.metrics)
        (wrong, right), (wrong_c, right_c) = runs.counts, runs.cum
        t = self.tie_rows
        if "auroc" in want:
            # a right run is above the wrong mass through its pair (a tie block's half)
            num = np.einsum("jb,jb->b", right, wrong_c)
            if t.size:
                num -= 0.5 * np.einsum("jb,jb->b", right[t], wrong[t])
            n_wrong = n - n_right
            with np.errstate(invalid="ignore", divide="ignore"):
                out["auroc"] = np.where(n_right * n_wrong > 0, num / (n_right * n_wrong), np.nan)
        if "aurc" in want:
            # a wrong run at ascending positions (lo, hi] adds (hi - lo) H_n - SH[n - lo] + SH[n - hi]
            shape = wrong.shape
            hi = np.subtract(right_c, right, out=scratch.get("aurc_hi", shape))
            hi += wrong_c                                      # end of each wrong run
            at = scratch.get("aurc_at", shape, np.intp)
            sh = self.sum_harmonic_rev
            np.copyto(at, hi, casting="unsafe")
            step = np.take(sh, at, out=scratch.get("aurc_step", shape), mode="clip")
            lo = np.subtract(hi, wrong, out=hi)                # its start
            np.copyto(at, lo, casting="unsafe")
            step -= np.take(sh, at, out=scratch.get("aurc_lo", shape), mode="clip")
            total = (n - n_right) * self.harmonic_n + step.sum(axis=0)
            if t.size:   # a tie block's positions carry its error rate
                w, r = wrong[t], right[t]
                size = w + r
                with np.errstate(invalid="ignore", divide="ignore"):
                    rate = np.where(size > 0, w / size, 0.0)
                through = wrong_c[t] + right_c[t]
                block = (size * self.harmonic_n - sh[lo[t].astype(np.intp)]
                         + sh[through.astype(np.intp)])
                total = total + (rate * block - w * self.harmonic_n - step[t]).sum(axis=0)
            out["aurc"] = total / n
        if "acc_at_80" in want:
            top = COVERAGE * n
            out["acc_at_80"] = (n_right - self._below(runs, n - top, True)) / top
        return out

    def _per_option(self, y):
        n_opt, m = self.n_opt, self.n_bins
        b = y.shape[1]
        grouped = (self.group_matrix @ y[self.blocks["groups"]]).reshape(2, n_opt, m, b)
        s_p = y[self.blocks["sum_p"]].reshape(n_opt, m, b)
        counts, s_y = (a.transpose(2, 0, 1) for a in grouped)     # (B, K, M)
        s_p = s_p.transpose(2, 0, 1)
        rel, res, unc = _b.brier_parts_from_sums(counts, s_p, s_y, self.n)
        return {"brier_reliability": rel, "brier_resolution": res, "brier_uncertainty": unc,
                "classwise_ece": _b.classwise_ece_from_sums(counts, s_p, s_y)}


class _Runs:
    """Run counts and their prefix sums over pairs, for wrong (0) and right (1) runs.

    ``counts`` and ``cum`` have shape (2, pairs, B) with pairs in the block layout of
    :meth:`ResampledMetrics._plan_runs` (``pair_row[j]`` is the row of pair j).
    """

    def __init__(self, counts, cum, pair_row):
        self.counts, self.cum, self.pair_row = counts, cum, pair_row

    def before(self, half: int, pairs: np.ndarray) -> np.ndarray:
        """Mass of the ``half`` runs of pairs before each of ``pairs``: shape (len(pairs), B)."""
        rows = self.pair_row[np.maximum(pairs - 1, 0)]
        return np.where((pairs > 0)[:, None], self.cum[half][rows], 0.0)


def item_counts(indices: np.ndarray, n: int, out: np.ndarray) -> np.ndarray:
    """Per-row item counts of index rows into ``out`` (n_rows, n), wrapping above its dtype."""
    for k, row in enumerate(indices):
        out[k] = np.bincount(row, minlength=n)
    return out


class Scratch(threading.local):
    """Work arrays reused from one chunk of resamples to the next, one set per thread.

    Fresh multi-megabyte temporaries cost page faults whenever the allocator has handed the
    memory back to the system; the resampled metrics spent about a fifth of their time on
    that without these. An array handed out is overwritten by the next request of the same
    name in the same thread, so nothing returned to callers may be one of them. Make one per
    bootstrap: the arrays are freed with it.
    """

    def get(self, name: str, shape: tuple, dtype=np.float64) -> np.ndarray:
        size = int(np.prod(shape))
        dtype = np.dtype(dtype)
        buf = self.__dict__.get((name, dtype))
        if buf is None or buf.size < size:
            buf = np.empty(size, dtype)
            self.__dict__[(name, dtype)] = buf
        return buf[:size].reshape(shape)


def _count_at_most(cum: np.ndarray, x: np.ndarray) -> np.ndarray:
    """For each row b of ``cum`` and each ``x[b, j]``: how many entries of ``cum[b]`` are <= x.

    Rows of ``cum`` (B, k) are non-decreasing with values in [0, n]; shifting row b by
    b * (n + 1) makes the flattened rows one sorted array, so one ``searchsorted`` call answers
    every (row, target) pair.
    """
    b, k = cum.shape
    span = float(cum[:, -1].max()) + 1.0 if k else 1.0
    shift = (np.arange(b) * span)[:, None]
    pos = np.searchsorted((cum + shift).ravel(), x + shift, side="right")
    return pos - (np.arange(b) * k)[:, None]
