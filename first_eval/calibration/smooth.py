"""Smooth ECE (Błasiok & Nakkiran 2023), relplot's ``smECE``, for many weight vectors at once.

relplot's algorithm, step for step: residuals ``r = f - y`` and ones are spread onto a grid of
``E = max(2000, round(20/sigma)) // 2 + 1`` points by linear interpolation, convolved with a
Gaussian kernel sampled on ``linspace(0, 1, E)`` (truncated at +-0.5) after reflecting the grid at
0 and 1, interpolated at ``T = max(round(10/sigma), 200)`` points ``t``, and

    smooth_ece(sigma) = sum_t |S_r(t)| / sum_t (S_1(t) + 1e-4).

``smECE`` picks sigma by bisection on [0, 1] (10 steps, start 1, eps 0.001) for the fixed point
``sigma = smooth_ece(sigma)`` and returns ``smooth_ece`` at the upper end of the final bracket.

What differs from relplot is only how it is computed: the convolution is one batched real FFT
(linear convolution via zero padding, exactly the same operator as ``np.convolve(..., "valid")``),
``sum_t S_1(t)`` uses the adjoint of that linear operator (one vector per sigma), and a row of
item weights (bootstrap counts) replaces duplicated items. Values agree with relplot to ~1e-12.
"""

from __future__ import annotations

import numpy as np
import scipy.fft
import scipy.sparse

_MESH = 200          # relplot.config.smECE_mesh_pts
_DENSITY_EPS = 1e-4  # BaseKernelMixin.smooth(eps=...)
_SEARCH_EPS = 0.001  # smECE(eps=...)
_REFINE = 10         # search_param(refine=...)


def grid_size(sigma: float) -> int:
    """Grid points E used by relplot's GaussianKernel.apply at bandwidth sigma."""
    return max(2000, round(20 / sigma)) // 2 + 1


def eval_size(sigma: float) -> int:
    """Evaluation points T used by relplot's smooth_ece at bandwidth sigma."""
    return max(round(10 / sigma), _MESH)


def _kernel(sigma: float, e: int) -> np.ndarray:
    t = np.linspace(0, 1, e)
    return np.exp(-(t - 0.5) * (t - 0.5) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)


def _interp_weights(t_size: int, e: int):
    t = np.linspace(0, 1, t_size)
    inds = (t * (e - 1)).astype(int).clip(0, e - 2)
    residual = (t - inds * (1 / (e - 1))) / (1 / (e - 1))
    return inds, residual


def _grid_matrix(f: np.ndarray, values: np.ndarray, e: int) -> scipy.sparse.csr_matrix:
    """Sparse (n, e) matrix spreading ``values`` at ``f`` onto the grid (smooth_round_to_grid)."""
    n = f.shape[0]
    bins = (f * (e - 1)).astype(int).clip(0, e - 2)
    frac = f * (e - 1) - bins
    rows = np.repeat(np.arange(n), 2)
    cols = np.stack([bins, bins + 1], axis=1).ravel()
    data = np.stack([(1 - frac) * values, frac * values], axis=1).ravel()
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(n, e))


class _Grid:
    """Grid values of residuals and ones for every weight row, at one grid size E."""

    def __init__(self, f, r, weights, e):
        self.e = e
        self.length = scipy.fft.next_fast_len(3 * e - 2, real=True)
        gr = _grid_matrix(f, r, e)
        g1 = _grid_matrix(f, np.ones_like(r), e)
        # (B, n) @ (n, e) with a sparse right factor: computed as (G.T @ W.T).T
        self.v_r = np.asarray((gr.T @ weights.T).T)
        self.v_1 = np.asarray((g1.T @ weights.T).T)
        ext = np.concatenate([self.v_r[:, e - 1:0:-1], self.v_r, self.v_r[:, e - 2::-1]], axis=1)
        self.spec_r = scipy.fft.rfft(ext, n=self.length, axis=1)
        self._kernels: dict[float, tuple] = {}

    def _sigma_parts(self, sigma):
        if sigma not in self._kernels:
            e = self.e
            ker = _kernel(sigma, e)
            spec = scipy.fft.rfft(ker, n=self.length)
            inds, res = _interp_weights(eval_size(sigma), e)
            # adjoint of interpolate o slice o convolve-valid o reflect, applied to ones(T)
            u = np.zeros(e)
            np.add.at(u, inds, 1 - res)
            np.add.at(u, inds + 1, res)
            out_adj = np.zeros(2 * e - 1)
            out_adj[e // 2: e // 2 + e] = u
            ext_adj = np.convolve(out_adj, ker[::-1], mode="full")
            j = np.arange(e)
            g = ext_adj[e - 1 + j].copy()
            g[1:] += ext_adj[e - 1 - j[1:]]
            g[:-1] += ext_adj[3 * e - 3 - j[:-1]]
            self._kernels[sigma] = (spec, inds, res, g)
        return self._kernels[sigma]

    def smooth_ece(self, rows: np.ndarray, sigma: float) -> np.ndarray:
        """relplot's smooth_ece(f, y, sigma) for the weight rows ``rows``."""
        spec, inds, res, g = self._sigma_parts(sigma)
        e = self.e
        full = scipy.fft.irfft(self.spec_r[rows] * spec, n=self.length, axis=1)
        s = full[:, e - 1 + e // 2: e - 1 + e // 2 + e]
        at_t = s[:, inds] * (1 - res) + s[:, inds + 1] * res
        numerator = np.abs(at_t).sum(axis=1)
        denominator = self.v_1[rows] @ g + _DENSITY_EPS * inds.shape[0]
        return numerator / denominator


def smooth_ece_rows(f: np.ndarray, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """relplot's ``smECE`` for each row of item weights.

    Parameters
    ----------
    f : ndarray of shape (n_items,)
        Confidences in [0, 1].
    r : ndarray of shape (n_items,)
        Residuals ``f - y`` (y = 1 if correct else 0).
    weights : ndarray of shape (n_rows, n_items)
        Non-negative item weights; a row of ones is the plain metric, a row of bootstrap counts
        equals the metric on the resampled items.

    Returns
    -------
    ndarray of shape (n_rows,)
    """
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    b = weights.shape[0]
    grids: dict[int, _Grid] = {}
    sub_grids: dict[tuple, _Grid] = {}

    def evaluate(rows: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
        out = np.empty(rows.shape[0])
        for sigma in np.unique(sigmas):
            pick = sigmas == sigma
            e = grid_size(float(sigma))
            if e == grid_size(1.0):
                if e not in grids:
                    grids[e] = _Grid(f, r, weights, e)
                out[pick] = grids[e].smooth_ece(rows[pick], float(sigma))
            else:  # small bandwidths need a finer grid: build it for these rows only
                sub = rows[pick]
                key = (e, sub.tobytes())
                if key not in sub_grids:
                    sub_grids[key] = _Grid(f, r, weights[sub], e)
                out[pick] = sub_grids[key].smooth_ece(np.arange(sub.shape[0]), float(sigma))
        return out

    all_rows = np.arange(b)
    start = np.ones(b)
    end = np.zeros(b)
    value = evaluate(all_rows, start)
    searching = ~(value > 1.0)          # search_param returns 1 at once if 1 < smooth_ece(1)
    for _ in range(_REFINE):
        rows = all_rows[searching]
        if rows.size == 0:
            break
        mid = (start[rows] + end[rows]) / 2
        cheap = mid < _SEARCH_EPS
        val = np.full(rows.shape[0], np.nan)
        if (~cheap).any():
            val[~cheap] = evaluate(rows[~cheap], mid[~cheap])
        accept = cheap | (mid < val)
        end[rows[accept]] = mid[accept]
        start[rows[~accept]] = mid[~accept]
        value[rows[~accept]] = val[~accept]
    return value
