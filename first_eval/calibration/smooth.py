"""Smooth ECE (Błasiok & Nakkiran 2023), relplot's ``smECE``, for many weight vectors at once.

relplot's algorithm, step for step: residuals ``r = f - y`` and ones are spread onto a grid of
``E = max(2000, round(20/sigma)) // 2 + 1`` points by linear interpolation, convolved with a
Gaussian kernel sampled on ``linspace(0, 1, E)`` (truncated at +-0.5) after reflecting the grid at
0 and 1, interpolated at ``T = max(round(10/sigma), 200)`` points ``t``, and

    smooth_ece(sigma) = sum_t |S_r(t)| / sum_t (S_1(t) + 1e-4).

``smECE`` picks sigma by bisection on [0, 1] (10 steps, start 1, eps 0.001) for the fixed point
``sigma = smooth_ece(sigma)`` and returns ``smooth_ece`` at the upper end of the final bracket.

What differs from relplot is only how it is computed: the reflected convolution is diagonal in
the DCT-I basis for odd E (a zero-padded real FFT for even E, which only sigma < 0.01 gives),
``sum_t S_1(t)`` uses the adjoint of that linear operator (one vector per sigma), a row of item
weights (bootstrap counts) replaces duplicated items, and many weight rows run at once. Most
bisection steps are settled without any transform by exact bounds (:meth:`SmoothECE.rows`).
Values agree with relplot to ~1e-15.
"""

from __future__ import annotations

import functools

import numpy as np
import scipy.fft
import scipy.sparse

_MESH = 200          # relplot.config.smECE_mesh_pts
_DENSITY_EPS = 1e-4  # BaseKernelMixin.smooth(eps=...)
_SEARCH_EPS = 0.001  # smECE(eps=...)
_REFINE = 10         # search_param(refine=...)
_MARGIN = 1e-9       # relative margin for deciding the bisection by bounds


def grid_size(sigma: float) -> int:
    """Grid points E used by relplot's GaussianKernel.apply at bandwidth sigma."""
    return max(2000, round(20 / sigma)) // 2 + 1


def eval_size(sigma: float) -> int:
    """Evaluation points T used by relplot's smooth_ece at bandwidth sigma."""
    return max(round(10 / sigma), _MESH)


def _kernel(sigma: float, e: int) -> np.ndarray:
    t = np.linspace(0, 1, e)
    return np.exp(-(t - 0.5) * (t - 0.5) / (2 * sigma**2)) / (np.sqrt(2 * np.pi) * sigma)


def _fft_length(e: int) -> int:
    return scipy.fft.next_fast_len(3 * e - 2, real=True)


@functools.lru_cache(maxsize=1024)
def _sigma_parts(sigma: float, e: int):
    """Kernel transfer function, interpolation weights and the adjoint vector at bandwidth sigma.

    For odd ``e`` the kernel is centred on a grid point, so relplot's reflect-and-convolve is a
    circular convolution of the even extension and diagonal in the DCT-I basis; for even ``e``
    (only at sigma < 0.01) the general zero-padded FFT is used.
    """
    ker = _kernel(sigma, e)
    if e % 2:
        half = np.zeros(e)
        half[: (e + 1) // 2] = ker[(e - 1) // 2:]
        transfer = scipy.fft.dct(half, type=1)
    else:
        transfer = scipy.fft.rfft(ker, n=_fft_length(e))
    t = np.linspace(0, 1, eval_size(sigma))
    inds = (t * (e - 1)).astype(int).clip(0, e - 2)
    res = (t - inds * (1 / (e - 1))) / (1 / (e - 1))
    # sum_t S_1(t) = g . V_1 with g the adjoint of interpolate o slice o convolve o reflect,
    # applied to ones(T)
    u = np.bincount(inds, weights=1 - res, minlength=e) + np.bincount(inds + 1, weights=res, minlength=e)
    out_adj = np.zeros(2 * e - 1)
    out_adj[e // 2: e // 2 + e] = u
    ext_adj = np.convolve(out_adj, ker[::-1], mode="full")
    j = np.arange(e)
    g = ext_adj[e - 1 + j].copy()
    g[1:] += ext_adj[e - 1 - j[1:]]
    g[:-1] += ext_adj[3 * e - 3 - j[:-1]]
    return transfer, inds, res, g


def _grid_matrix(f: np.ndarray, values: np.ndarray, e: int) -> scipy.sparse.csr_matrix:
    """Sparse (e, n) matrix spreading ``values`` at ``f`` onto the grid (smooth_round_to_grid)."""
    n = f.shape[0]
    bins = (f * (e - 1)).astype(int).clip(0, e - 2)
    frac = f * (e - 1) - bins
    cols = np.repeat(np.arange(n), 2)
    rows = np.stack([bins, bins + 1], axis=1).ravel()
    data = np.stack([(1 - frac) * values, frac * values], axis=1).ravel()
    return scipy.sparse.csr_matrix((data, (rows, cols)), shape=(e, n))


class _Grid:
    """Grid values of residuals, |residuals| and ones for every weight row, at grid size E."""

    def __init__(self, spread: scipy.sparse.csr_matrix, weights_t: np.ndarray, e: int):
        self.e = e
        self.v = np.ascontiguousarray((spread @ weights_t).T)  # (rows, 3e): r, |r|, ones
        self.v_r = self.v[:, :e]
        self.v_1 = self.v[:, 2 * e:]
        if e % 2:
            self.coef = scipy.fft.dct(self.v_r, type=1, axis=1)
        else:
            ext = np.concatenate([self.v_r[:, e - 1:0:-1], self.v_r, self.v_r[:, e - 2::-1]], axis=1)
            self.coef = scipy.fft.rfft(ext, n=_fft_length(e), axis=1)

    def bounds(self, rows, sigma: float):
        """Lower and upper bounds of smooth_ece(sigma) for ``rows``, without the FFT.

        Only the requested rows are reduced (each bisection step asks for one sigma per row).
        """
        g = _sigma_parts(sigma, self.e)[3]
        v = self.v if rows.size == self.v.shape[0] else self.v[rows]
        sums = (v.reshape(-1, self.e) @ g).reshape(-1, 3)        # (k, 3): r, |r|, ones
        signed, absolute = sums[:, 0], sums[:, 1]
        denominator = sums[:, 2] + _DENSITY_EPS * eval_size(sigma)
        return np.abs(signed) / denominator, absolute / denominator

    def smooth_ece(self, rows, sigma: float) -> np.ndarray:
        """relplot's smooth_ece(f, y, sigma) for the weight rows ``rows`` (index array or slice)."""
        transfer, inds, res, g = _sigma_parts(sigma, self.e)
        e = self.e
        if e % 2:
            s = scipy.fft.idct(self.coef[rows] * transfer, type=1, axis=1)
        else:
            full = scipy.fft.irfft(self.coef[rows] * transfer, n=_fft_length(e), axis=1)
            s = full[:, e - 1 + e // 2: e - 1 + e // 2 + e]
        at_t = s[:, inds] * (1 - res) + s[:, inds + 1] * res
        numerator = np.abs(at_t).sum(axis=1)
        denominator = self.v_1[rows] @ g + _DENSITY_EPS * inds.shape[0]
        return numerator / denominator


class SmoothECE:
    """relplot's ``smECE`` of fixed (confidence, residual) pairs under many weight vectors.

    The sparse matrices that spread items onto the grid depend only on the confidences, so
    they are built once here and reused for every call of :meth:`rows`.

    Parameters
    ----------
    f : ndarray of shape (n_items,)
        Confidences in [0, 1].
    r : ndarray of shape (n_items,)
        Residuals ``f - y`` (y = 1 if correct else 0).
    """

    def __init__(self, f: np.ndarray, r: np.ndarray):
        self.f = np.asarray(f, dtype=np.float64)
        self.r = np.asarray(r, dtype=np.float64)
        self._spread: dict[int, scipy.sparse.csr_matrix] = {}

    def spread(self, e: int) -> scipy.sparse.csr_matrix:
        """(3e, n) sparse CSC matrix: grid spreading of r, |r| and ones."""
        if e not in self._spread:
            self._spread[e] = scipy.sparse.vstack(
                [_grid_matrix(self.f, v, e) for v in (self.r, np.abs(self.r), np.ones_like(self.r))],
                format="csc")  # CSC: one sequential pass over the weights per product
        return self._spread[e]

    def rows(self, weights: np.ndarray) -> np.ndarray:
        """smECE for each row of item weights.

        Parameters
        ----------
        weights : ndarray of shape (n_rows, n_items)
            Non-negative item weights; a row of ones is the plain metric, a row of bootstrap
            counts equals the metric on the resampled items. Pass the transpose of a
            C-ordered (n_items, n_rows) array to avoid a copy.

        Returns
        -------
        ndarray of shape (n_rows,)
        """
        weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
        b = weights.shape[0]
        weights_t = np.ascontiguousarray(weights.T)  # no copy for a transposed C-ordered matrix
        coarse = grid_size(1.0)
        grids: dict[int, _Grid] = {}

        def grid() -> _Grid:
            if coarse not in grids:
                grids[coarse] = _Grid(self.spread(coarse), weights_t, coarse)
            return grids[coarse]

        def evaluate(rows: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
            """smooth_ece for each (row, sigma) pair."""
            out = np.empty(rows.shape[0])
            for sigma in np.unique(sigmas):
                pick = sigmas == sigma
                sub = rows[pick]
                e = grid_size(float(sigma))
                if e == coarse:
                    out[pick] = grid().smooth_ece(slice(None) if sub.size == b else sub, float(sigma))
                else:  # small bandwidths need a finer grid: build it for these rows only
                    fine = _Grid(self.spread(e), np.ascontiguousarray(weights_t[:, sub]), e)
                    out[pick] = fine.smooth_ece(slice(None), float(sigma))
            return out

        def predicate(rows: np.ndarray, sigmas: np.ndarray):
            """relplot's ``sigma < smooth_ece(sigma)``, and the value where it was computed.

            Exact bounds decide most pairs without the FFT: |sum_t S_r(t)| <= sum_t |S_r(t)|
            <= sum_t S_|r|(t), both linear in the grid values (the smoother's weights are
            non-negative). Pairs the bounds leave open (1e-9 relative margin) get the FFT.
            """
            value = np.full(rows.shape[0], np.nan)
            open_ = np.ones(rows.shape[0], dtype=bool)
            result = np.zeros(rows.shape[0], dtype=bool)
            for sigma in np.unique(sigmas):
                if grid_size(float(sigma)) != coarse:
                    continue
                pick = np.flatnonzero(sigmas == sigma)
                low, high = grid().bounds(rows[pick], float(sigma))
                yes = low > sigma * (1 + _MARGIN)
                no = high < sigma * (1 - _MARGIN)
                result[pick[yes]] = True
                open_[pick[yes | no]] = False
            if open_.any():
                value[open_] = evaluate(rows[open_], sigmas[open_])
                result[open_] = sigmas[open_] < value[open_]
            return result, value

        all_rows = np.arange(b)
        start = np.ones(b)
        end = np.zeros(b)
        first, value = predicate(all_rows, start)   # search_param returns 1 at once if true
        searching = ~first
        for _ in range(_REFINE):
            rows = all_rows[searching]
            if rows.size == 0:
                break
            mid = (start[rows] + end[rows]) / 2
            cheap = mid < _SEARCH_EPS
            accept = cheap.copy()
            val = np.full(rows.shape[0], np.nan)
            if (~cheap).any():
                accept[~cheap], val[~cheap] = predicate(rows[~cheap], mid[~cheap])
            end[rows[accept]] = mid[accept]
            start[rows[~accept]] = mid[~accept]
            value[rows[~accept]] = val[~accept]
        unknown = np.flatnonzero(np.isnan(value))   # decided by bounds alone: value at the bracket
        if unknown.size:
            value[unknown] = evaluate(unknown, start[unknown])
        return value


def smooth_ece_rows(f: np.ndarray, r: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """relplot's ``smECE`` for each row of item weights: ``SmoothECE(f, r).rows(weights)``.

    Parameters
    ----------
    f : ndarray of shape (n_items,)
    r : ndarray of shape (n_items,)
    weights : ndarray of shape (n_rows, n_items)

    Returns
    -------
    ndarray of shape (n_rows,)

    Examples
    --------
    >>> f = np.array([0.9, 0.8, 0.6]); y = np.array([1.0, 0.0, 1.0])
    >>> round(float(smooth_ece_rows(f, f - y, np.ones((1, 3)))[0]), 4)
    0.1717
    """
    return SmoothECE(f, r).rows(weights)
