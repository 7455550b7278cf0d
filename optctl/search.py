"""Derivative-free minimisers of a few variables, without scipy.optimize.

Importing ``scipy.optimize`` costs about 0.4 CPU seconds (it loads scipy.linalg, sparse
and the linear-programming solvers), as much as the whole IPOPT run of a ``T = 1000``
solve; the baseline tuner and the finite-horizon law need only these textbook methods:

- :func:`golden`: golden-section search on an interval (one new evaluation per step);
- :func:`brent`: Brent's method on an interval (R. P. Brent, *Algorithms for Minimization
  without Derivatives*, 1973, ch. 5): golden-section steps, parabolic steps through the
  three best points when they fall well inside the bracket;
- :func:`nelder_mead`: the Nelder–Mead simplex (J. A. Nelder and R. Mead, Comput. J. 7,
  1965) with the standard coefficients (reflection 1, expansion 2, contraction and shrink
  1/2) and every trial point clipped into a box.

Each returns the best point it evaluated; ``f`` may return ``inf`` (never NaN).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

_GOLD = (3.0 - math.sqrt(5.0)) / 2.0  # the golden section's smaller part, 0.382


def golden(f: Callable[[float], float], lo: float, hi: float, xatol: float) -> float:
    """The minimiser of ``f`` on ``[lo, hi]`` to within ``xatol`` (``f`` unimodal there)."""
    g = 1.0 - _GOLD
    a, b = lo, hi
    c, d = b - g * (b - a), a + g * (b - a)
    fc, fd = f(c), f(d)
    while b - a > xatol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - g * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + g * (b - a)
            fd = f(d)
    return c if fc <= fd else d


def brent(f: Callable[[float], float], lo: float, hi: float, xatol: float,
          maxiter: int = 500) -> tuple[float, float]:
    """``(x, f(x))``: a minimiser of ``f`` on ``[lo, hi]`` by Brent's method, stopped when
    the bracket around ``x`` is within about ``2 xatol`` or after ``maxiter`` evaluations."""
    a, b = lo, hi
    x = w = v = a + _GOLD * (b - a)
    fx = fw = fv = f(x)
    step = last = 0.0  # this step and the one before it
    for _ in range(maxiter):
        mid = 0.5 * (a + b)
        tol = 1.5e-8 * abs(x) + xatol / 3.0
        if abs(x - mid) <= 2.0 * tol - 0.5 * (b - a):
            break
        parabolic = False
        if abs(last) > tol:
            # the minimum of the parabola through (x, fx), (w, fw), (v, fv): x + p/q
            r = (x - w) * (fx - fv)
            q = (x - v) * (fx - fw)
            p = (x - v) * q - (x - w) * r
            q = 2.0 * (q - r)
            if q > 0.0:
                p = -p
            q = abs(q)
            before, last = last, step
            # taken when it moves less than half the step before last and stays in the bracket
            if abs(p) < abs(0.5 * q * before) and q * (a - x) < p < q * (b - x):
                step = p / q
                if (x + step) - a < 2.0 * tol or b - (x + step) < 2.0 * tol:
                    step = tol if x < mid else -tol
                parabolic = True
        if not parabolic:
            last = (b - x) if x < mid else (a - x)
            step = _GOLD * last
        u = x + (step if abs(step) >= tol else math.copysign(tol, step))
        fu = f(u)
        if fu <= fx:
            if u < x:
                b = x
            else:
                a = x
            v, fv, w, fw, x, fx = w, fw, x, fx, u, fu
        else:
            if u < x:
                a = u
            else:
                b = u
            if fu <= fw or w == x:
                v, fv, w, fw = w, fw, u, fu
            elif fu <= fv or v in (x, w):
                v, fv = u, fu
    return x, fx


def nelder_mead(f: Callable[[np.ndarray], float], simplex: Sequence[np.ndarray],
                bounds: Sequence[tuple[float, float]], *, maxfev: int, xatol: float,
                fatol: float) -> tuple[np.ndarray, float]:
    """``(x, f(x))``: the best vertex of a Nelder–Mead run from ``simplex`` (``n + 1``
    points in ``n`` dimensions), trial points clipped to ``bounds``. Stops when every vertex
    is within ``xatol`` (each coordinate) and ``fatol`` (value) of the best one, or after
    ``maxfev`` evaluations."""
    lo, hi = np.array(bounds, dtype=float).T

    def clip(x: np.ndarray) -> np.ndarray:
        return np.clip(x, lo, hi)

    pts = np.array([clip(np.asarray(p, dtype=float)) for p in simplex])
    vals = np.array([f(p) for p in pts])
    nfev = len(pts)
    while nfev < maxfev:
        order = np.argsort(vals, kind="stable")
        pts, vals = pts[order], vals[order]
        if (np.max(np.abs(pts[1:] - pts[0])) <= xatol
                and np.max(np.abs(vals[1:] - vals[0])) <= fatol):
            break
        centre = pts[:-1].mean(axis=0)
        worst = pts[-1]
        xr = clip(centre + (centre - worst))
        fr = f(xr)
        nfev += 1
        if fr < vals[0]:
            xe = clip(centre + 2.0 * (centre - worst))
            fe = f(xe)
            nfev += 1
            pts[-1], vals[-1] = (xe, fe) if fe < fr else (xr, fr)
            continue
        if fr < vals[-2]:
            pts[-1], vals[-1] = xr, fr
            continue
        # a contraction: outside (towards the reflected point) or inside (towards the worst)
        outside = fr < vals[-1]
        xc = clip(centre + 0.5 * ((xr if outside else worst) - centre))
        fc = f(xc)
        nfev += 1
        # kept when no worse than the reflected point (outside), or better than the worst
        # vertex (inside: on a tie the simplex shrinks, else a flat function never stops)
        if (fc <= fr) if outside else (fc < vals[-1]):
            pts[-1], vals[-1] = xc, fc
            continue
        for i in range(1, len(pts)):  # shrink towards the best vertex
            pts[i] = clip(pts[0] + 0.5 * (pts[i] - pts[0]))
            vals[i] = f(pts[i])
        nfev += len(pts) - 1
    best = int(np.argmin(vals))
    return pts[best], float(vals[best])
