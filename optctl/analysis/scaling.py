"""Scaling-law fits: power laws with local slopes, and compute-optimal frontiers.

The exponents they are compared with (Bordelon & Mori, arXiv:2602.04774, section 5;
MODEL.md §5) are in :mod:`optctl.theory`.

Exponents are asymptotic. Every fit here therefore also returns the *local slopes*
``−Δ log L / Δ log T`` between neighbouring horizons, so that pre-asymptotic drift is
visible next to the fitted number rather than averaged away.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from optctl.errors import SpecError


@dataclass(frozen=True)
class ExponentFit:
    """A power law ``y ≈ prefactor · x^(−exponent)`` fitted on the largest ``x``.

    ``x``/``y`` are all the data (sorted by ``x``); the least-squares fit of
    ``log y`` on ``log x`` uses the points with ``fit_range[0] <= x <= fit_range[1]``
    (the largest ``n_fit`` of them). ``stderr`` is the standard error of the slope
    (``nan`` with two points). ``local_x`` are the geometric midpoints of neighbouring
    ``x`` and ``local_slopes`` the exponents ``−Δ log y / Δ log x`` between them, over
    *all* the data. ``theory`` is the asymptotic value to compare with, if known.
    """

    x: np.ndarray
    y: np.ndarray
    exponent: float
    prefactor: float
    stderr: float
    fit_range: tuple[float, float]
    local_x: np.ndarray
    local_slopes: np.ndarray
    theory: float | None = None

    @property
    def deviation(self) -> float:
        """``exponent − theory`` (``nan`` without a theory value)."""
        return float("nan") if self.theory is None else self.exponent - self.theory

    @property
    def drift(self) -> float:
        """Change of the local slope from the first to the last interval (``nan`` if < 2)."""
        if self.local_slopes.size < 2:
            return float("nan")
        return float(self.local_slopes[-1] - self.local_slopes[0])

    def predict(self, x: np.ndarray | float) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=float) ** (-self.exponent)

    def to_dict(self) -> dict[str, object]:
        return {
            "exponent": self.exponent, "stderr": self.stderr, "prefactor": self.prefactor,
            "fit_range": list(self.fit_range), "theory": self.theory,
            "deviation": None if self.theory is None else self.deviation,
            "local_x": self.local_x.tolist(), "local_slopes": self.local_slopes.tolist(),
            "x": self.x.tolist(), "y": self.y.tolist(),
        }


def local_slopes(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Geometric midpoints and exponents ``−Δ log y / Δ log x`` of neighbouring points.

    ``x`` must be increasing and positive, ``y`` positive; the pairs are taken in the
    given order.
    """
    lx, ly = _logs(x, y)
    mid = np.exp(0.5 * (lx[1:] + lx[:-1]))
    return mid, -np.diff(ly) / np.diff(lx)


def fit_power_law(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, *,
                  n_fit: int | None = None, theory: float | None = None) -> ExponentFit:
    """Fit ``y ∝ x^(−exponent)`` by least squares in log-log on the ``n_fit`` largest ``x``.

    ``n_fit = None`` uses all points. Asymptotic exponents should be fitted on the
    largest horizons reached; the returned local slopes show how far the data are
    from a single power law.
    """
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    order = np.argsort(xs)
    xs, ys = xs[order], ys[order]
    lx, ly = _logs(xs, ys)
    n = xs.size if n_fit is None else int(n_fit)
    if n < 2 or n > xs.size:
        raise SpecError("n_fit", n_fit, f"must be between 2 and the number of points ({xs.size})")
    fx, fy = lx[-n:], ly[-n:]
    A = np.stack([np.ones(n), fx], axis=1)
    coef, *_ = np.linalg.lstsq(A, fy, rcond=None)
    stderr = float("nan")
    if n > 2:
        resid = fy - A @ coef
        s2 = float(resid @ resid) / (n - 2)
        stderr = math.sqrt(s2 / float(((fx - fx.mean()) ** 2).sum()))
    mid, slopes = local_slopes(xs, ys)
    return ExponentFit(x=xs, y=ys, exponent=float(-coef[1]), prefactor=float(np.exp(coef[0])),
                       stderr=stderr, fit_range=(float(xs[-n]), float(xs[-1])),
                       local_x=mid, local_slopes=slopes, theory=theory)


def _logs(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray
          ) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(x, dtype=float)
    ys = np.asarray(y, dtype=float)
    if xs.shape != ys.shape or xs.ndim != 1 or xs.size < 2:
        raise SpecError("x, y", (xs.shape, ys.shape), "need two 1-d arrays of equal length >= 2")
    if np.any(xs <= 0) or np.any(ys <= 0) or not np.all(np.isfinite(xs)) or not np.all(np.isfinite(ys)):
        raise SpecError("x, y", "non-positive or non-finite values",
                        "power-law fits need positive, finite data")
    return np.log(xs), np.log(ys)


# --- compute-optimal frontier -----------------------------------------------------------


@dataclass(frozen=True)
class Frontier:
    """The compute-optimal frontier ``L*(C) = min_N L(N, C/N)`` and its power-law fit.

    ``compute`` is a log-spaced grid of ``C = N T``; ``loss`` the frontier on it and
    ``best_N`` the model size that attains it. Each model size's ``L(T)`` is
    interpolated log-log in ``C`` within its own horizon range; frontier points whose
    best ``N`` is the smallest or largest size swept (the minimum may lie outside the
    sweep) are flagged in ``interior`` = False and left out of ``fit``.
    """

    compute: np.ndarray
    loss: np.ndarray
    best_N: np.ndarray
    interior: np.ndarray
    fit: ExponentFit | None


def compute_frontier(N: Sequence[int] | np.ndarray, T: Sequence[int] | np.ndarray,
                     loss: Sequence[float] | np.ndarray, *, n_grid: int = 40,
                     theory: float | None = None) -> Frontier:
    """Lower envelope over ``N`` of the loss against compute ``C = N T``.

    ``N``, ``T`` and ``loss`` are parallel arrays (one entry per solved ``(N, T)``).
    """
    Ns = np.asarray(N, dtype=float)
    Ts = np.asarray(T, dtype=float)
    Ls = np.asarray(loss, dtype=float)
    if not (Ns.shape == Ts.shape == Ls.shape) or Ns.ndim != 1:
        raise SpecError("N, T, loss", (Ns.shape, Ts.shape, Ls.shape), "need parallel 1-d arrays")
    sizes = np.unique(Ns)
    if sizes.size < 2:
        raise SpecError("N", sizes.tolist(), "a compute frontier needs at least two model sizes")
    C = Ns * Ts
    grid = np.geomspace(C.min(), C.max(), n_grid)
    curves = np.full((sizes.size, grid.size), np.nan)
    for i, n in enumerate(sizes):
        sel = Ns == n
        order = np.argsort(C[sel])
        c_n, l_n = np.log(C[sel][order]), np.log(Ls[sel][order])
        if c_n.size < 2:
            continue
        inside = (np.log(grid) >= c_n[0] - 1e-12) & (np.log(grid) <= c_n[-1] + 1e-12)
        curves[i, inside] = np.interp(np.log(grid[inside]), c_n, l_n)
    have = np.any(np.isfinite(curves), axis=0)
    grid, curves = grid[have], curves[:, have]
    best = np.nanargmin(curves, axis=0)
    frontier = np.exp(curves[best, np.arange(grid.size)])
    best_N = sizes[best]
    interior = (best > 0) & (best < sizes.size - 1)
    fit = None
    if int(interior.sum()) >= 2:
        fit = fit_power_law(grid[interior], frontier[interior], theory=theory)
    return Frontier(compute=grid, loss=frontier, best_N=best_N, interior=interior, fit=fit)


def decade_slopes(C: np.ndarray, L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least-squares slopes ``−d log L / d log C`` over consecutive whole decades of ``C``
    (at least three points each), at the decades' geometric midpoints."""
    lc, ll = np.log10(np.asarray(C, float)), np.log10(np.asarray(L, float))
    xs: list[float] = []
    ss: list[float] = []
    if lc.size == 0:
        return np.asarray(xs), np.asarray(ss)
    for d in range(int(np.floor(lc.min())), int(np.ceil(lc.max()))):
        sel = (lc >= d) & (lc <= d + 1)
        if sel.sum() >= 3 and np.ptp(lc[sel]) > 0.5:
            xs.append(10.0 ** (d + 0.5))
            ss.append(-float(np.polyfit(lc[sel], ll[sel], 1)[0]))
    return np.asarray(xs), np.asarray(ss)
