"""Every suite metric for many resamples at once, from per-item resample counts.

A bootstrap resample of n items is a count vector: item i appears ``c_i`` times. Every metric of
:func:`first_eval.calibration.metric_suite` on the resampled items is a function of those counts,
and almost all of it is linear algebra on a (n_items, n_resamples) count matrix ``C`` whose rows
are the items sorted once by confidence (ties wrong-before-right):

* accuracy, Brier, NLL and the equal-width top-label bins: ``[1, conf, correct, brier, nll] @ C``
  over each bin's block of rows (bin membership does not change under resampling);
* equal-mass bins: cumulative counts locate each chunk boundary in each resample; a block of
  identical items that straddles a boundary is split between the chunks;
* AUROC, AURC, accuracy at coverage: counts summed over *segments* (maximal runs of right or of
  wrong items; a confidence value shared by right and wrong items is a tie block of two
  segments); then cumulative sums over segments, harmonic numbers for runs of equal confidence;
* classwise ECE and the Brier decomposition: per option, rows regrouped by that option's bin;
* smooth ECE: counts spread onto relplot's grid once; each bisection step is decided by exact
  linear bounds where they suffice and by a batched DCT for the rest
  (:class:`first_eval.calibration.smooth.SmoothECE`).

Each result equals the plain metric on ``np.take(..., idx)`` for the resample's index vector
(tested to 1e-12), because the plain metrics are invariant to item order.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from first_eval.calibration import binning as _b
from first_eval.calibration import metrics as _m
from first_eval.calibration._checks import Forecasts
from first_eval.calibration.smooth import SmoothECE
from first_eval.calibration.suite import COVERAGE, METRIC_NAMES

_BINNED = ("ece", "mce", "rms_ce", "debiased_ece")
_RANKED = ("auroc", "aurc", "acc_at_80")
_PER_OPTION = ("brier_reliability", "brier_resolution", "brier_uncertainty", "classwise_ece")
_BLOCK_ROWS = 64  # sorted items per block of the two-level prefix sums (equal-mass bins)


def _run_matrix(starts: np.ndarray, n: int) -> scipy.sparse.csr_matrix:
    """Sparse (len(starts), n) matrix summing the runs of rows [starts[i], starts[i+1])."""
    return scipy.sparse.csr_matrix((np.ones(n), np.arange(n), np.r_[starts, n]),
                                   shape=(starts.size, n))


class ResampledMetrics:
    """Precomputed layout of one set of forecasts; :meth:`evaluate` takes count matrices.

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
        self.n, self.n_bins, self.scheme = f.n, n_bins, scheme
        order = _b.confidence_order(f)
        self.order = order
        self.rank = np.empty(f.n, dtype=np.intp)
        self.rank[order] = np.arange(f.n)
        conf = f.confidence[order]
        correct = f.correct[order]
        self.conf, self.correct = conf, correct
        # rows of the per-item linear statistics
        self.items = np.stack([np.ones(f.n), conf, correct, _m._brier_items(f)[order],
                               _m._nll_items(f)[order]])
        if scheme == "width":
            idx = _b.width_bin_index(conf, n_bins)
            self.bin_bounds = np.searchsorted(idx, np.arange(n_bins + 1), side="left")
        else:
            sizes = _b.mass_chunk_sizes(f.n, n_bins)
            self.chunk_bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.float64)
            self.chunk_sizes = sizes.astype(np.float64)
            starts = np.arange(0, f.n, _BLOCK_ROWS)
            ones = _run_matrix(starts, f.n)
            self.block_matrix = scipy.sparse.vstack(
                [ones, ones.multiply(conf[None, :]).tocsr()], format="csr")
        self._plan_segments(conf, correct)
        if "smooth_ece" in self.metrics:
            self.smooth = SmoothECE(conf, conf - correct)
        if any(m in self.metrics for m in _PER_OPTION):
            self._plan_options(f, order)

    # ------------------------------------------------------------------ layout
    def _plan_segments(self, conf, correct):
        n = self.n
        new_conf = np.r_[True, conf[1:] != conf[:-1]]
        group = np.cumsum(new_conf) - 1
        g_start = np.flatnonzero(new_conf)
        g_right = np.add.reduceat(correct, g_start)
        g_size = np.diff(np.r_[g_start, n])
        mixed_group = (g_right > 0) & (g_right < g_size)
        mixed = mixed_group[group]
        cut = np.r_[True, (correct[1:] != correct[:-1])
                    | (new_conf[1:] & (mixed[1:] | mixed[:-1]))]
        self.seg_start = np.flatnonzero(cut)
        self.seg_matrix = _run_matrix(self.seg_start, n).tocsc()  # CSC: one pass over the counts
        seg_err = correct[self.seg_start] == 0
        self.seg_right = ~seg_err
        self.err_segs = np.flatnonzero(seg_err)
        self.cor_segs = np.flatnonzero(~seg_err)
        # number of wrong segments strictly before each segment (index S: all of them)
        self.err_before = np.searchsorted(self.err_segs, np.arange(self.seg_start.size + 1))
        seg_mixed = mixed[self.seg_start]
        self.mix_err = np.flatnonzero(seg_mixed & seg_err)
        self.mix_cor = self.mix_err + 1
        pure_err = seg_err & ~seg_mixed
        self.pure_err = np.flatnonzero(pure_err)
        # for a segment inside a tie block: index of the block's wrong segment, else -1
        self.block_of = np.full(self.seg_start.size, -1)
        self.block_of[self.mix_err] = self.mix_err
        self.block_of[self.mix_cor] = self.mix_err
        self.block_id = np.full(self.seg_start.size, -1)
        self.block_id[self.mix_err] = np.arange(self.mix_err.size)
        self.block_id[self.mix_cor] = np.arange(self.mix_err.size)
        h = np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, n + 1))])
        self.harmonic_n = h[n]
        self.sum_harmonic = np.concatenate([[0.0], np.cumsum(h[:-1])])  # SH[k] = sum_{q<k} H_q

    def _plan_options(self, f: Forecasts, order):
        """Per option: totals over all rows, and the rows outside its fullest bin, by bin.

        The fullest bin (usually p < 0.1) is the total minus the other bins, which keeps about
        half of the items out of the sparse per-(option, bin) matrix.
        """
        n_opt = f.probs.shape[1]
        probs = f.probs[order]
        labels = f.labels[order]
        real = (np.arange(n_opt)[None, :] < f.n_options[order][:, None]).astype(np.float64)
        onehot = (labels[:, None] == np.arange(n_opt)[None, :]) * real
        # totals per option: count (all n when no column is padding), sum of p, sum of y
        self.all_real = bool(real.all())
        rows = [(probs * real).T, onehot.T] if self.all_real else [real.T, (probs * real).T, onehot.T]
        self.option_totals = np.concatenate(rows)
        # one sparse (3 * K * M, n) matrix: per (stat, option, bin) the count, sum of p, sum of y
        # over the option's bin, except its fullest bin (filled in from the totals)
        m = self.n_bins
        self.fullest = np.zeros(n_opt, dtype=np.intp)
        keys, cols, vals = [], [], []
        for k in range(n_opt):
            rows = np.flatnonzero(real[:, k])
            bins = _b.width_bin_index(probs[rows, k], m)
            self.fullest[k] = int(np.bincount(bins, minlength=m).argmax())
            keep = bins != self.fullest[k]
            rows, bins = rows[keep], bins[keep]
            y = onehot[rows, k] > 0
            keys += [k * m + bins, (n_opt + k) * m + bins, (2 * n_opt + k) * m + bins[y]]
            cols += [rows, rows, rows[y]]
            vals += [np.ones(rows.size), probs[rows, k], np.ones(int(y.sum()))]
        self.option_matrix = scipy.sparse.csc_matrix(
            (np.concatenate(vals), (np.concatenate(keys), np.concatenate(cols))),
            shape=(3 * n_opt * m, f.n))
        self.n_opt = n_opt

    # ------------------------------------------------------------------ counts
    def counts(self, indices: np.ndarray) -> np.ndarray:
        """Count matrix of shape (n_items, n_resamples), rows in sorted order, from index rows.

        Parameters
        ----------
        indices : ndarray of shape (n_resamples, n_items)
            Each row lists the (original) item indices of one resample.
        """
        out = np.empty(indices.shape)
        for b, row in enumerate(indices):      # counts in the original item order, then one
            out[b] = np.bincount(row, minlength=self.n)  # gather that sorts and transposes
        return np.take(out.T, self.order, axis=0)

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, c: np.ndarray) -> dict[str, np.ndarray]:
        """Metrics for each column of ``c`` (shape (n_items, n_resamples), sorted rows).

        Returns a dict of metric -> ndarray of shape (n_resamples,).
        """
        want = set(self.metrics)
        n = self.n
        out: dict[str, np.ndarray] = {}
        binned = bool(want & set(_BINNED))
        seg = self._segments(c) if (want & set(_RANKED) or (binned and self.scheme == "mass")) else None
        if self.scheme == "width":
            per_bin = np.stack([_dot(self.items[:, a:z], c[a:z]) for a, z in
                                zip(self.bin_bounds[:-1], self.bin_bounds[1:])], axis=2)
            totals = per_bin[2:].sum(axis=2)                     # correct, brier, nll
            counts, s_conf, s_corr = per_bin[0], per_bin[1], per_bin[2]
        else:
            totals = _dot(self.items[2:], c)
            if binned:
                counts, s_conf, s_corr = self._mass_bins(c, seg)
        out["accuracy"] = totals[0] / n
        out["brier"] = totals[1] / n
        out["nll"] = totals[2] / n
        if binned:
            sums = (counts, s_conf, s_corr, n)
            out["ece"] = _b.ece_from_sums(*sums)
            out["mce"] = _b.mce_from_sums(*sums)
            out["rms_ce"] = _b.rms_from_sums(*sums)
            out["debiased_ece"] = _b.debiased_from_sums(*sums)
        if want & set(_RANKED):
            out.update(self._ranked(seg, totals[0]))
        if want & set(_PER_OPTION):
            out.update(self._per_option(c))
        if "smooth_ece" in want:
            out["smooth_ece"] = self.smooth.rows(c.T)
        return {k: out[k] for k in self.metrics}

    def _segments(self, c):
        """Per-segment counts ``m`` (B, S), and running totals that start at 0: ``cum[:, s]`` is
        the mass of segments before s (B, S + 1), ``cum_err[:, k]`` that of the first k wrong
        segments (B, n_wrong + 1). Resamples are on the first axis.
        """
        m = np.ascontiguousarray((self.seg_matrix @ c).T)
        b = m.shape[0]
        cum = np.zeros((b, m.shape[1] + 1))
        np.cumsum(m, axis=1, out=cum[:, 1:])
        cum_err = np.zeros((b, self.err_segs.size + 1))
        np.cumsum(m[:, self.err_segs], axis=1, out=cum_err[:, 1:])
        return m, cum, cum_err

    def _below(self, seg, x, tie_average: bool):
        """Right-answer mass among the lowest ``x`` resampled positions.

        ``x`` has shape (B, k). With ``tie_average`` a tie block (right and wrong items of equal
        confidence) is shared pro rata, as the plain metrics rank ties; without, its wrong items
        come first, as equal-mass binning orders them.
        """
        m, cum, cum_err = seg
        nseg = m.shape[1]
        rows = np.arange(m.shape[0])[:, None]
        full = _count_at_most(cum[:, 1:], x)                   # segments entirely below x
        boundary = np.minimum(full, nseg - 1)
        first_out = full                                       # first segment not counted whole
        if tie_average:
            blk = self.block_of[boundary]
            inside = (blk >= 0) & (full < nseg)
            first_out = np.where(inside, blk, full)
        mass = cum[rows, first_out]
        wrong = cum_err[rows, self.err_before[first_out]]
        rest = np.where(full < nseg, x - mass, 0.0)
        frac = self.seg_right[boundary].astype(np.float64)
        if tie_average and self.mix_err.size:
            bid = np.maximum(self.block_id[boundary], 0)
            blk_w = m[rows, self.mix_err[bid]]
            blk_r = m[rows, self.mix_cor[bid]]
            with np.errstate(invalid="ignore", divide="ignore"):
                share = np.where(blk_w + blk_r > 0, blk_r / (blk_w + blk_r), 0.0)
            frac = np.where(inside, share, frac)
        return mass - wrong + rest * frac

    def _mass_bins(self, c, seg):
        """Equal-mass chunks of each resample: (counts, sum_conf, sum_correct), each (B, M).

        A chunk boundary x (a position in the sorted resample) falls inside some item's block
        of copies; two-level prefix sums find it: counts per block of ``_BLOCK_ROWS`` sorted
        items, then the copies inside the one block that holds x.
        """
        n, b = self.n, c.shape[1]
        width = _BLOCK_ROWS
        blocks = np.ascontiguousarray((self.block_matrix @ c).T)  # (B, 2 * n_blocks): counts, conf
        nb = blocks.shape[1] // 2
        cum_n = np.cumsum(blocks[:, :nb], axis=1)
        cum_f = np.cumsum(blocks[:, nb:], axis=1)
        x = np.broadcast_to(self.chunk_bounds, (b, self.chunk_bounds.size))
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
        f_right = self._below(seg, x, False)
        counts = np.broadcast_to(self.chunk_sizes, (b, self.n_bins))
        return counts, np.diff(f_conf, axis=1), np.diff(f_right, axis=1)

    def _ranked(self, seg, n_right):
        m, cum, cum_err = seg
        n = self.n
        out = {}
        want = set(self.metrics)
        if "auroc" in want:
            before = cum_err[:, self.err_before[self.cor_segs]]
            num = np.einsum("bs,bs->b", m[:, self.cor_segs], before)
            num -= 0.5 * np.einsum("bs,bs->b", m[:, self.mix_cor], m[:, self.mix_err])
            n_wrong = n - n_right
            with np.errstate(invalid="ignore", divide="ignore"):
                out["auroc"] = np.where(n_right * n_wrong > 0, num / (n_right * n_wrong), np.nan)
        if "aurc" in want:
            sh = self.sum_harmonic
            e = self.pure_err
            total = (m[:, e].sum(axis=1) * self.harmonic_n
                     - sh[(n - cum[:, e]).astype(np.intp)].sum(axis=1)
                     + sh[(n - cum[:, e + 1]).astype(np.intp)].sum(axis=1))
            if self.mix_err.size:
                w, r = m[:, self.mix_err], m[:, self.mix_cor]
                size = w + r
                with np.errstate(invalid="ignore", divide="ignore"):
                    rate = np.where(size > 0, w / size, 0.0)
                block = (size * self.harmonic_n - sh[(n - cum[:, self.mix_err]).astype(np.intp)]
                         + sh[(n - cum[:, self.mix_cor + 1]).astype(np.intp)])
                total = total + (rate * block).sum(axis=1)
            out["aurc"] = total / n
        if "acc_at_80" in want:
            top = COVERAGE * n
            below = self._below(seg, np.full((m.shape[0], 1), n - top), True)[:, 0]
            out["acc_at_80"] = (n_right - below) / top
        return out

    def _per_option(self, c):
        n_opt, m = self.n_opt, self.n_bins
        totals = _dot(self.option_totals, c)
        if self.all_real:
            totals = np.concatenate([np.full((n_opt, c.shape[1]), float(self.n)), totals])
        totals = totals.reshape(3, n_opt, -1)                                    # (3, K, B)
        per_bin = (self.option_matrix @ c).reshape(3, n_opt, m, -1)              # (3, K, M, B)
        k = np.arange(n_opt)
        per_bin[:, k, self.fullest] = totals - per_bin.sum(axis=2)
        s = per_bin.transpose(0, 3, 1, 2)                        # (3, B, K, M)
        rel, res, unc = _b.brier_parts_from_sums(s[0], s[1], s[2], self.n)
        return {"brier_reliability": rel, "brier_resolution": res, "brier_uncertainty": unc,
                "classwise_ece": _b.classwise_ece_from_sums(s[0], s[1], s[2])}


def _dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(k, m) @ (m, B) for small k. BLAS is 2-4x faster than einsum here, but its threads
    only contend on such skinny products: :mod:`first_eval.bootstrap` runs this with one BLAS
    thread per worker."""
    return a @ b


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
