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


def _search(b: int, predicate, evaluate) -> np.ndarray:
    """relplot's ``search_param`` (start 1, end 0, 10 steps) for ``b`` rows at once.

    ``predicate(rows, sigmas)`` returns relplot's ``sigma < smooth_ece(sigma)`` for each pair
    and the value where it was computed (NaN where bounds decided); ``evaluate(rows, sigmas)``
    returns ``smooth_ece``. The result is ``smooth_ece`` at the upper end of each final bracket.
    """
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

    def split_spread(self) -> tuple[np.ndarray, np.ndarray]:
        """Entries (rows, values) per item, each of shape (n, 4), of a (3E, n) matrix at the
        coarse grid size E.

        Rows ``[0, E)`` spread the residuals of items with ``r >= 0`` (wrong answers), rows
        ``[E, 2E)`` those with ``r < 0`` (right answers), rows ``[2E, 3E)`` ones, each item onto
        two grid points as in :func:`_grid_matrix`. Their sum is the residual grid and their
        difference the grid of ``|r|``, so a bootstrap gets both from 4 entries per item
        instead of 6. :meth:`columns` takes the product with the weights.
        """
        e = grid_size(1.0)
        bins = (self.f * (e - 1)).astype(int).clip(0, e - 2)
        frac = self.f * (e - 1) - bins
        base = np.where(self.r < 0, e, 0)
        rows = np.column_stack([base + bins, base + bins + 1, 2 * e + bins, 2 * e + bins + 1])
        vals = np.column_stack([(1 - frac) * self.r, frac * self.r, 1 - frac, frac])
        return rows, vals

    def columns(self, grids: np.ndarray, weights: np.ndarray) -> np.ndarray:
        """smECE for each column of ``grids``, the product of :meth:`split_spread` with weights.

        Parameters
        ----------
        grids : ndarray of shape (3E, n_cols)
            ``split_spread`` matrix @ ``weights``.
        weights : ndarray of shape (n_items, n_cols)
            The item weights themselves (bootstrap counts), for the finer grids that
            bandwidths below 0.01 need.

        Returns
        -------
        ndarray of shape (n_cols,)

        The same search as :meth:`rows`, batched: each bisection step decides the bounds of
        all columns with one matrix product per grid and transforms all open columns with one
        inverse DCT.
        """
        return _Columns(self, grids, weights).search()

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

        return _search(b, predicate, evaluate)


@functools.lru_cache(maxsize=64)
def _interpolated_basis(t_size: int, e: int, k: int) -> np.ndarray:
    """(T, k): the first k DCT-I synthesis vectors (scipy's ``idct`` type 1) interpolated at
    relplot's T evaluation points, so ``basis @ X[:k]`` is the smoothed grid's first k terms."""
    j = np.arange(e)[:, None]
    m = 2 * np.cos(np.pi * (j * np.arange(k)[None, :] % (2 * (e - 1))) / (e - 1))
    m[:, 0] = 1.0
    if k == e:
        m[:, -1] = np.where(np.arange(e) % 2, -1.0, 1.0)
    m /= 2 * (e - 1)
    t = np.linspace(0, 1, t_size)
    inds = (t * (e - 1)).astype(int).clip(0, e - 2)
    res = (t - inds * (1 / (e - 1))) / (1 / (e - 1))
    return m[inds] * (1 - res)[:, None] + m[inds + 1] * res[:, None]


_BAND = 32           # DCT terms per band of the tail bound


@functools.lru_cache(maxsize=1024)
def _head_parts(sigma: float, e: int):
    """Split of the smoothing at ``sigma`` into the first k0 DCT terms and a bounded tail.

    Returns ``(k0, transfer[:k0], edge, band)``. With B the DCT-I synthesis vectors
    interpolated at the T points (entries at most 1 / (E - 1) in size), ``sum_t |S_r(t)|`` is
    within ``edge . |coef[k0:k]| + band . band_sums`` of ``sum_t |(B[:, :k0] @ (transfer *
    coef)[:k0])_t|``: k = k0 + ``edge.size`` is a multiple of :data:`_BAND` (or E), ``edge``
    is ``|transfer[k0:k]| * T / (E - 1)``, and ``band`` the largest ``|transfer|`` of each
    later band of :data:`_BAND` terms times T / (E - 1), against the per-column sums of
    ``|coef|`` over those bands. k0 covers the Gaussian's fall-off (about 3 / sigma terms);
    what is left is the ripple of the kernel's truncation at +-0.5, small except at large
    sigma, where the bisection has a wide margin.
    """
    transfer, inds, _, _ = _sigma_parts(sigma, e)
    k0 = int(min(e, max(8, np.ceil(3.0 / sigma))))
    k = min(e, -(-k0 // _BAND) * _BAND)
    scale = inds.shape[0] / (e - 1)
    edge = np.abs(transfer[k0:k]) * scale
    tail = np.abs(transfer[k:])
    n_bands = -(-tail.size // _BAND)
    band = np.zeros(n_bands)
    if tail.size:
        np.maximum.at(band, np.arange(tail.size) // _BAND, tail)
    return k0, transfer[:k0].copy(), edge, band * scale


class _Columns:
    """The search of :meth:`SmoothECE.columns`: grids with one column per weight vector.

    Each bisection step is decided by the cheapest test that settles it: the linear bounds
    (one matrix product for all columns and distinct sigmas), then the first DCT terms with
    a bound on the rest (about 3 / sigma terms instead of E), and only then the full inverse
    DCT. The value returned for each column is always the full one.
    """

    def __init__(self, smooth: SmoothECE, grids: np.ndarray, weights: np.ndarray):
        e = grid_size(1.0)
        self.smooth, self.weights, self.e = smooth, weights, e
        self.b = grids.shape[1]
        self.grids = grids.reshape(3, e, self.b)       # residuals of wrong, of right; ones
        self.v_r = self.grids[0] + self.grids[1]
        self._coef = None
        self._bands = None

    def coef(self) -> np.ndarray:
        """(E, B): DCT-I of each column's residual grid."""
        if self._coef is None:
            self._coef = scipy.fft.dct(self.v_r, type=1, axis=0)
        return self._coef

    def bands(self) -> tuple[np.ndarray, np.ndarray]:
        """(|coef|, sums of |coef| over each band of :data:`_BAND` terms): (E, B), (bands, B)."""
        if self._bands is None:
            a = np.abs(self.coef())
            full = self.e // _BAND * _BAND
            sums = a[:full].reshape(-1, _BAND, self.b).sum(axis=1)
            if full < self.e:
                sums = np.vstack([sums, a[full:].sum(axis=0)])
            self._bands = a, sums
        return self._bands

    def sums(self, cols: np.ndarray, uniq: np.ndarray, which: np.ndarray, grids=slice(None)):
        """(k, 3): adjoint sums g_sigma . grid of (wrong, right, ones) for each (col, sigma).

        ``uniq[which]`` are the sigmas: one product for all columns and distinct sigmas.
        """
        g = np.stack([_sigma_parts(float(x), self.e)[3] for x in uniq])   # (u, E)
        return np.matmul(g, self.grids[grids])[:, which, cols].T

    def predicate(self, cols: np.ndarray, sigmas: np.ndarray):
        e = self.e
        value = np.full(cols.shape[0], np.nan)
        result = np.zeros(cols.shape[0], dtype=bool)
        den = np.full(cols.shape[0], np.nan)
        uniq, which = np.unique(sigmas, return_inverse=True)
        coarse = np.array([grid_size(float(x)) == e for x in uniq], dtype=bool)[which]
        open_ = ~coarse
        pick = np.flatnonzero(coarse)
        if pick.size:
            w = which[pick]
            s = sigmas[pick]
            wrong, right, ones = self.sums(cols[pick], uniq, w).T
            den[pick] = ones + _DENSITY_EPS * np.array([eval_size(float(x)) for x in uniq])[w]
            low = np.abs(wrong + right) / den[pick]
            high = (wrong - right) / den[pick]
            yes = low > s * (1 + _MARGIN)
            no = high < s * (1 - _MARGIN)
            rest = np.flatnonzero(~(yes | no))
            if rest.size:           # the first DCT terms and a bound on the others
                low, high = self.head_bounds(cols[pick[rest]], uniq, w[rest])
                low, high = low / den[pick[rest]], high / den[pick[rest]]
                yes[rest] = low > s[rest] * (1 + _MARGIN)
                no[rest] = high < s[rest] * (1 - _MARGIN)
            result[pick[yes]] = True
            open_[pick[~(yes | no)]] = True
        if open_.any():
            value[open_] = self.evaluate(cols[open_], sigmas[open_], den[open_])
            result[open_] = sigmas[open_] < value[open_]
        return result, value

    def head_bounds(self, cols: np.ndarray, uniq: np.ndarray, which: np.ndarray):
        """Bounds of the numerator ``sum_t |S_r(t)|`` from the first DCT terms, per (col, sigma)."""
        e = self.e
        head = np.empty(cols.shape[0])
        tails = np.empty(cols.shape[0])
        coef = self.coef()
        coef_abs, band_sums = self.bands()
        for i in np.unique(which):
            pick = np.flatnonzero(which == i)
            sigma = float(uniq[i])
            k0, transfer, edge, band = _head_parts(sigma, e)
            basis = _interpolated_basis(eval_size(sigma), e, k0)
            c = cols[pick]
            head[pick] = np.abs(basis @ (coef[:k0, c] * transfer[:, None])).sum(axis=0)
            k = k0 + edge.size
            tails[pick] = edge @ coef_abs[k0:k, c] + band @ band_sums[-band.size:, c] if band.size \
                else edge @ coef_abs[k0:k, c]
        slack = 1e-12 * (head + tails)      # round-off of both sides
        return head - tails - slack, head + tails + slack

    def evaluate(self, cols: np.ndarray, sigmas: np.ndarray, den=None) -> np.ndarray:
        """smooth_ece for each (col, sigma); ``den`` where the bounds already computed it."""
        e = self.e
        out = np.empty(cols.shape[0])
        uniq, which = np.unique(sigmas, return_inverse=True)
        sizes = np.array([grid_size(float(x)) for x in uniq])
        t_u = np.array([eval_size(float(x)) for x in uniq])
        coarse = np.flatnonzero(sizes[which] == e)
        if coarse.size:
            c, w = cols[coarse], which[coarse]
            d = None if den is None else den[coarse]
            if d is None or np.isnan(d).any():
                d = self.sums(c, uniq, w, slice(2, 3))[:, 0] + _DENSITY_EPS * t_u[w]
            transfer = np.stack([_sigma_parts(float(x), e)[0] for x in uniq], axis=1)  # (E, u)
            every = c.shape[0] == self.b and (c == np.arange(self.b)).all()
            coef = self.coef() if every else self.coef()[:, c]
            smoothed = scipy.fft.idct(coef * transfer[:, w], type=1, axis=0)
            numerator = np.empty(c.shape[0])
            t_size = t_u[w]
            for t in np.unique(t_size):       # one interpolation per evaluation-grid size
                pick = np.flatnonzero(t_size == t)
                _, inds, res, _ = _sigma_parts(float(uniq[w[pick[0]]]), e)
                block = smoothed if pick.size == c.shape[0] else smoothed[:, pick]
                at_t = block[inds] * (1 - res)[:, None] + block[inds + 1] * res[:, None]
                numerator[pick] = np.abs(at_t).sum(axis=0)
            out[coarse] = numerator / d
        for i in np.flatnonzero(sizes != e):   # bandwidths below 0.01: finer grids
            pick = np.flatnonzero(which == i)
            sub = np.ascontiguousarray(self.weights[:, cols[pick]])
            out[pick] = _Grid(self.smooth.spread(int(sizes[i])), sub, int(sizes[i])).smooth_ece(
                slice(None), float(uniq[i]))
        return out

    def search(self) -> np.ndarray:
        return _search(self.b, self.predicate, self.evaluate)


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
