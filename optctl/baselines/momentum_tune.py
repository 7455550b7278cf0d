"""Tune the momentum families of :mod:`optctl.model.families` under the exact model.

Each family has two tuning coordinates, both searched in ``log10``:

| family | coordinates | fixed |
|---|---|---|
| ``dana-decaying`` | ``γ₂``, ``γ₃`` | ``γ₁ = 1``, ``Δ = δ/(δ+t)``, ``δ = 4 + a/b``, ``κ = 1/b`` |
| ``dana-constant`` | ``γ₂``, ``γ₃`` | the same, ``γ₃`` constant |
| ``log-time`` | ``lr``, ``γ₃`` | ``γ₂ = 1``, ``δ = 8``, ``κ = 1`` (ADANA's defaults) |
| ``schedule-free`` | ``lr``, ``1 − β`` | ``c_{t+1} = 1/(t+1)`` |

The search is a zooming grid: ``5 × 5`` points ``0.4`` decades apart around the
start, then ``0.15`` and ``0.05`` decades apart around the best so far; a best point on
the edge of its grid re-centres the grid at the same spacing (at most
``max_recentre`` times per spacing) so the answer is an interior grid minimum, and
``on_edge`` reports when it is not. Every candidate of a grid is evaluated at once by
the exact recursion (:func:`optctl.model.families.family_loss`), so the final loss
reported is exact, not a model of it. Diverging candidates count as ``+inf``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from optctl.errors import SpecError
from optctl.model import families as F
from optctl.model.spectrum import Spectrum, spectrum
from optctl.spec import ProblemSpec

# Default starts (log10 of each coordinate), from the scalings of the papers:
# γ₂ ~ 1/2 min(1, m / tr K) and γ₃ ~ 0.1 min(1, m / tr K) (DANA-decaying) or
# 0.1 (m/N) min(1, m / tr K) (DANA-constant); lr ~ 1/2 for the others.
_STEPS = ((0.4, 5), (0.15, 5), (0.05, 3))
_COARSE = (0.5, 7)


@dataclass(frozen=True)
class FamilyTuning:
    """The tuned hyperparameters of one family at one horizon, with the exact ``L_T``."""

    family: str
    T: int
    coords: tuple[float, float]          # log10 of the two tuning coordinates
    params: dict[str, float]
    loss: float
    evaluations: int
    seconds: float
    on_edge: bool
    history: list[tuple[float, float, float]] = field(default_factory=list)


def coordinate_names(family: str) -> tuple[str, str]:
    """The two tuning coordinates of ``family`` (each searched in log10)."""
    names = {"dana-decaying": ("gamma2", "gamma3"), "dana-constant": ("gamma2", "gamma3"),
             "log-time": ("lr", "gamma3"), "schedule-free": ("lr", "one_minus_beta")}
    if family not in names:
        raise SpecError("family", family, f"choose one of {', '.join(F.FAMILIES)}")
    return names[family]


def default_start(spec: ProblemSpec, family: str) -> tuple[float, float]:
    """log10 start of the two coordinates, from the papers' scalings."""
    coordinate_names(family)
    trace = float(np.sum(spectrum(spec).lam))
    cap = min(1.0, spec.batch_size / trace)
    if family == "dana-decaying":
        return float(np.log10(0.5 * cap)), float(np.log10(0.1 * cap))
    if family == "dana-constant":
        return float(np.log10(0.5 * cap)), float(np.log10(0.1 * cap * spec.batch_size / spec.N))
    if family == "log-time":
        return float(np.log10(0.5 * cap)), 0.0
    return float(np.log10(0.5)), -1.0


def build(spec: ProblemSpec, family: str, T: int, x: np.ndarray) -> F.LinearOptimizer:
    """The optimizer of ``family`` at log10 coordinates ``x`` (shape ``(2,)`` or ``(K, 2)``)."""
    x = np.asarray(x, dtype=float)
    p, q = 10.0 ** x[..., 0], 10.0 ** x[..., 1]
    if family == "dana-decaying":
        return F.dana(spec, T, p, q, decaying=True)
    if family == "dana-constant":
        return F.dana(spec, T, p, q, decaying=False)
    if family == "log-time":
        return F.log_time(spec, T, p, q)
    if family == "schedule-free":
        return F.schedule_free(T, p, 1.0 - np.minimum(q, 1.0))  # 1 − β ≤ 1: β ≥ 0
    coordinate_names(family)  # raises for an unknown family
    raise AssertionError(family)


def params_of(family: str, x: tuple[float, float]) -> dict[str, float]:
    """The named hyperparameters at log10 coordinates ``x``."""
    a, b = coordinate_names(family)
    out = {a: float(10.0 ** x[0]), b: float(10.0 ** x[1])}
    if family == "schedule-free":
        out["beta"] = 1.0 - min(out.pop("one_minus_beta"), 1.0)
    return out


def _grid(center: np.ndarray, step: float, n: int) -> np.ndarray:
    off = (np.arange(n) - (n - 1) / 2) * step
    gx, gy = np.meshgrid(center[0] + off, center[1] + off, indexing="ij")
    return np.stack([gx.ravel(), gy.ravel()], axis=1)


def tune_family(spec: ProblemSpec, family: str, T: int, *,
                start: tuple[float, float] | None = None, coarse: bool | None = None,
                max_recentre: int = 3, sp: Spectrum | None = None,
                progress: Callable[[str], None] | None = None,
                eta_max: float | None = None) -> FamilyTuning:
    """Minimise the exact ``L_T`` of ``family`` over its two coordinates (zooming grid).

    ``start`` (log10 coordinates; default :func:`default_start`) is the centre of the
    first grid; ``coarse`` (default: when no start is given) begins with a ``7 × 7``
    grid ``0.5`` decades apart. ``progress`` receives one line per grid. ``eta_max``
    rules out every candidate whose effective step
    (:func:`~optctl.model.families.effective_step`) exceeds it at any update, so the
    family is tuned at the step bound of the optimal SGD it is compared with.
    """
    if eta_max is not None and not (np.isfinite(eta_max) and eta_max > 0):
        raise SpecError("eta_max", eta_max, "pass a finite bound > 0 on the effective step, or None")
    coordinate_names(family)
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise SpecError("T", T, "pass a positive integer number of updates")
    sp = spectrum(spec) if sp is None else sp
    coarse = start is None if coarse is None else coarse
    center = np.asarray(default_start(spec, family) if start is None else start, dtype=float)
    best_x, best_loss, evals, on_edge = center.copy(), np.inf, 0, False
    history: list[tuple[float, float, float]] = []
    t0 = time.perf_counter()
    schedule = ([_COARSE] if coarse else []) + list(_STEPS)
    for step, n in schedule:
        for _ in range(max_recentre + 1):
            pts = _grid(best_x if np.isfinite(best_loss) else center, step, n)
            opt = build(spec, family, T, pts)
            losses = np.asarray(F.family_loss(spec, opt, sp=sp), dtype=float)
            losses = np.where(np.isfinite(losses), losses, np.inf)
            if eta_max is not None:
                steps = np.broadcast_to(F.effective_step(opt), (T, len(pts)))
                losses = np.where(steps.max(axis=0) <= eta_max * (1 + 1e-12), losses, np.inf)
            evals += len(pts)
            history += [(float(a), float(b), float(v)) for (a, b), v in zip(pts, losses, strict=True)]
            i = int(np.argmin(losses))
            if losses[i] < best_loss:
                best_x, best_loss = pts[i].copy(), float(losses[i])
            ii, jj = divmod(i, n)
            on_edge = ii in (0, n - 1) or jj in (0, n - 1)
            if progress is not None:
                progress(f"{family} T={T}: grid step {step} -> L_T = {best_loss:.6g} at "
                         f"{params_of(family, (best_x[0], best_x[1]))}"
                         f"{' (edge, re-centred)' if on_edge else ''}")
            if not on_edge:
                break
    return FamilyTuning(family=family, T=int(T), coords=(float(best_x[0]), float(best_x[1])),
                        params=params_of(family, (best_x[0], best_x[1])), loss=best_loss,
                        evaluations=evals, seconds=time.perf_counter() - t0, on_edge=on_edge,
                        history=history)
