"""Baseline schedules tuned under the same model and bounds as the optimal control.

Bordelon & Mori (arXiv:2602.04774), section 4: the optimal schedule is compared with
the best constant ``η``, the best power law ``η_t = η_0 (t+1)^(−χ)`` and the tuned
standard schedules (linear decay, cosine, warmup-stable-decay). Each baseline is a
family of :mod:`optctl.baselines.families` with one or two free parameters, sampled at
``t = 0..T−1``, clipped to ``0 <= η_t <= η_max``, and tuned to minimise the final loss
``L_T`` of the per-step recursion (MODEL.md §2).

Tuning is a coarse grid followed by a local bounded refinement, both in the family's
tuning coordinates, where the loss is well scaled. One-parameter families use Brent's
method (:func:`optctl.search.brent`) on the bracket around the best grid point;
two-parameter families use Nelder-Mead with bounds (:func:`optctl.search.nelder_mead`;
neither imports scipy.optimize, about 0.4 CPU s). The grid contains ``η = η_max``
itself, so a rate stuck at the bound is found.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from optctl.baselines.families import (
    BASELINE_NAMES,
    U_FLOOR,
    Baseline,
    Family,
    Params,
    family,
    rates,
)
from optctl.errors import SpecError, SpecTypeError
from optctl.model.replay import final_loss
from optctl.search import brent, nelder_mead
from optctl.spec import ProblemSpec

Evaluator = Callable[[np.ndarray], float]

_BRENT_XATOL = 1e-4  # in decades of η: far below any change that matters
_BRENT_MAXITER = 40
_NM_MAXFEV = 100
_NM_XATOL = 1e-3
_NM_FRTOL = 1e-9  # Nelder-Mead's fatol, relative to the best grid loss
# Non-finite losses (a diverging run, if η_max allows one) become this, so that
# the optimisers compare numbers rather than NaNs.
_PENALTY = 1e100


class _Objective:
    """``x ↦ evaluate(η(x))`` with a cache, a call count and the best point seen."""

    def __init__(self, fam: Family, spec: ProblemSpec, evaluate: Evaluator) -> None:
        self.family, self.spec, self.evaluate = fam, spec, evaluate
        self.bounds = fam.bounds(spec.T)
        self.grid = fam.grid(spec.T)
        self.cache: dict[tuple[tuple[str, float], ...], float] = {}
        self.n_evals = 0
        self.best_x: np.ndarray | None = None
        self.best_f = np.inf

    def make(self, x: np.ndarray) -> tuple[Params, np.ndarray]:
        """The family's parameters at ``x`` and their clipped per-update rates."""
        T, eta_max = self.spec.T, self.spec.eta_max
        params = self.family.coords(x, T, eta_max)
        return params, rates(self.family.name, params, T, eta_max)

    def __call__(self, x: np.ndarray | float) -> float:
        lo, hi = np.array(self.bounds).T
        xx = np.clip(np.atleast_1d(np.asarray(x, dtype=float)), lo, hi)
        T, eta_max = self.spec.T, self.spec.eta_max
        params = self.family.coords(xx, T, eta_max)
        # The parameters fix the schedule (coordinates that round to the same step counts
        # give the same parameters), so they key the cache: the per-update rates are built
        # only for a schedule not scored yet.
        key = tuple(sorted(params.items()))
        if key not in self.cache:
            self.n_evals += 1
            f = float(self.evaluate(rates(self.family.name, params, T, eta_max)))
            self.cache[key] = f if np.isfinite(f) else _PENALTY
        f = self.cache[key]
        if f < self.best_f:
            self.best_f, self.best_x = f, xx.copy()
        return f


def _tune_1d(obj: _Objective) -> None:
    """Log grid (extended downward while the best point is its lowest), then Brent."""
    u = list(obj.grid[0])
    f = [obj(ui) for ui in u]
    step = u[1] - u[0]
    while int(np.argmin(f)) == 0 and u[0] > U_FLOOR:
        new = [x for x in np.arange(u[0] - 6 * step, u[0] - step / 2, step) if x >= U_FLOOR]
        if not new:
            break
        u, f = new + u, [obj(x) for x in new] + f
    i = int(np.argmin(f))
    lo, hi = u[max(i - 1, 0)], u[min(i + 1, len(u) - 1)]
    brent(obj, lo, hi, _BRENT_XATOL, _BRENT_MAXITER)  # the objective keeps the best point


def _tune_2d(obj: _Objective, starts: Sequence[np.ndarray]) -> None:
    """Product grid plus any given starting points, then bounded Nelder-Mead."""
    for x in np.stack(np.meshgrid(*obj.grid, indexing="ij"), axis=-1).reshape(-1, 2):
        obj(x)
    for x in starts:
        obj(x)
    assert obj.best_x is not None
    x0 = obj.best_x.copy()
    hi = np.array(obj.bounds)[:, 1]
    # Initial simplex: half a grid spacing along each axis, pointing into the box
    # (a vertex clipped onto x0 would lose a dimension).
    simplex = [x0]
    for k, axis in enumerate(obj.grid):
        h = 0.5 * float(axis[1] - axis[0])
        v = x0.copy()
        v[k] = x0[k] + h if x0[k] + h <= hi[k] else x0[k] - h
        simplex.append(v)
    nelder_mead(obj, simplex, obj.bounds, maxfev=_NM_MAXFEV, xatol=_NM_XATOL,
                fatol=_NM_FRTOL * abs(obj.best_f))


def tune_baselines(spec: ProblemSpec, names: Sequence[str] = BASELINE_NAMES,
                   evaluate: Evaluator | None = None, *,
                   on_tuned: Callable[[Baseline, float], None] | None = None) -> dict[str, Baseline]:
    """Tune the baseline schedules of Bordelon & Mori (arXiv:2602.04774), section 4.

    Minimises ``L_T(η)`` over each family, with every ``η_t`` clipped to
    ``[0, η_max]`` and ``T = spec.T`` updates:

    - ``"constant"``: ``η_t = η``, ``η ∈ (0, η_max]``;
    - ``"power_law"``: ``η_t = η_0 (t+1)^(−χ)``, ``η_0 ∈ (0, η_max]``, ``χ ∈ [0, 1.5]``;
    - ``"linear_decay"`` / ``"cosine"``: decay from the peak ``η̂ ∈ (0, η_max]`` to 0
      over the whole run (``decay_steps = T``, no warmup);
    - ``"wsd"``: plateau at ``η̂`` then linear decay to 0 over the last
      ``D = round(f T)`` updates, tuning ``η̂`` and the decay fraction ``f ∈ [1/T, 1]``.

    ``evaluate(η) -> L_T`` scores a per-update schedule during tuning; it defaults to
    the exact replay :func:`optctl.model.replay.final_loss` and may be a faster
    approximation for long horizons. The reported ``Baseline.final_loss`` is always
    the exact replay of the tuned ``eta``. Nested families are seeded with each
    other's optimum when both are requested (the power law with the best constant at
    ``χ = 0``, WSD with the best linear decay at ``f = 1``), so under the exact
    evaluator the larger family is never worse. Each family costs about 50-200 calls.
    ``on_tuned(baseline, seconds)`` is called as each family is done (progress lines).
    """
    if not isinstance(spec, ProblemSpec):
        raise SpecTypeError("spec", spec, "a ProblemSpec")
    if isinstance(names, str) or not all(isinstance(n, str) for n in names):
        raise SpecTypeError("names", names, "a sequence of baseline names, e.g. ('constant',)")
    for n in names:
        if n not in BASELINE_NAMES:
            raise SpecError("names", n,
                            f"unknown baseline; choose from {', '.join(BASELINE_NAMES)}")
    if evaluate is None:
        def evaluate(eta: np.ndarray) -> float:
            return final_loss(spec, eta)
    elif not callable(evaluate):
        raise SpecTypeError("evaluate", evaluate, "a callable eta_per_step -> final loss")

    best_x: dict[str, np.ndarray] = {}
    results: dict[str, Baseline] = {}
    for name in BASELINE_NAMES:  # fixed order, so seeds exist before they are used
        if name not in names:
            continue
        t0 = time.perf_counter()
        obj = _Objective(family(name), spec, evaluate)
        if len(obj.bounds) == 1:
            _tune_1d(obj)
        else:
            seed = obj.family.seed
            starts = ([np.array([best_x[seed[0]][0], seed[1]])]
                      if seed is not None and seed[0] in best_x else [])
            _tune_2d(obj, starts)
        assert obj.best_x is not None
        best_x[name] = obj.best_x
        params, eta = obj.make(obj.best_x)
        results[name] = Baseline(name=name, params=params, eta=eta,
                                 final_loss=final_loss(spec, eta), n_evals=obj.n_evals)
        if on_tuned is not None:
            on_tuned(results[name], time.perf_counter() - t0)
    return {n: results[n] for n in names}

