"""Baseline schedules tuned under the same model and bounds as the optimal control.

Bordelon & Mori (arXiv:2602.04774), section 4: the optimal schedule is compared with
the best constant ``η``, the best power law ``η_t = η_0 (t+1)^(−χ)`` and the tuned
standard schedules (linear decay, cosine, warmup-stable-decay). Each baseline is a
schedule family from :mod:`optctl.schedules` with one or two free parameters, sampled
at ``t = 0..T−1``, clipped to ``0 <= η_t <= η_max``, and tuned to minimise the final
loss ``L_T`` of the per-step recursion (MODEL.md §2).

Tuning is a coarse grid followed by a local bounded refinement, both in coordinates
where the loss is well scaled: the rate on a log scale ``u = log10(η / η_max) <= 0``,
the WSD decay fraction on a log scale too (it shrinks with ``T`` in the hard phase).
One-parameter families use bounded Brent (``scipy.optimize.minimize_scalar``) on the
bracket around the best grid point; two-parameter families use Nelder-Mead with
bounds. The grid contains ``η = η_max`` itself, so a rate stuck at the bound is found.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize, minimize_scalar

from optctl import schedules
from optctl.errors import SpecError, SpecTypeError
from optctl.replay import final_loss
from optctl.spec import ProblemSpec

Evaluator = Callable[[np.ndarray], float]

BASELINE_NAMES: tuple[str, ...] = ("constant", "power_law", "linear_decay", "cosine", "wsd")

# Tuning coordinates and budgets. ``u = log10(η/η_max)``.
_U_FLOOR = -8.0  # the smallest rate ever tried is 1e-8 η_max
_U_GRID_1D = np.linspace(-4.0, 0.0, 25)  # 1/6 decade apart
_U_GRID_2D = np.linspace(-3.0, 0.0, 10)  # 1/3 decade apart
_CHI_MAX = 1.5
_CHI_GRID = np.linspace(0.0, _CHI_MAX, 7)
_WSD_FRACTIONS = 8  # log-spaced decay fractions from 1/T to 1
_BRENT_XATOL = 1e-4  # in decades of η: far below any change that matters
_BRENT_MAXITER = 40
_NM_MAXFEV = 100
_NM_XATOL = 1e-3
_NM_FRTOL = 1e-9  # Nelder-Mead's fatol, relative to the best grid loss
# Non-finite losses (a diverging run, if η_max allows one) become this, so that
# the optimisers compare numbers rather than NaNs.
_PENALTY = 1e100


@dataclass(frozen=True, eq=False, repr=False)
class Baseline:
    """A tuned baseline schedule.

    ``params`` are the tuned arguments of the schedule factory (step counts as floats),
    ``eta`` the per-update rates ``η_0..η_{T−1}`` after clipping to ``[0, η_max]``,
    ``final_loss`` the exact per-step replay ``L_T`` of ``eta`` (tail included, as
    :func:`optctl.replay.final_loss` reports it, whatever evaluator tuned it), and
    ``n_evals`` the number of distinct schedules the evaluator was asked to score.
    """

    name: str
    params: dict[str, float]
    eta: np.ndarray
    final_loss: float
    n_evals: int

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.6g}" for k, v in self.params.items())
        return (f"Baseline({self.name!r}, {params}, final_loss={self.final_loss:.6g}, "
                f"n_evals={self.n_evals}, eta=<{self.eta.size} steps>)")


@dataclass(frozen=True)
class _Family:
    """A baseline family in tuning coordinates ``x``."""

    make: Callable[[np.ndarray], tuple[dict[str, float], np.ndarray]]
    bounds: list[tuple[float, float]]
    grid: list[np.ndarray]


class _Objective:
    """``x ↦ evaluate(η(x))`` with a cache, a call count and the best point seen."""

    def __init__(self, family: _Family, evaluate: Evaluator) -> None:
        self.family = family
        self.evaluate = evaluate
        self.cache: dict[bytes, float] = {}
        self.n_evals = 0
        self.best_x: np.ndarray | None = None
        self.best_f = np.inf

    def __call__(self, x: np.ndarray | float) -> float:
        lo, hi = np.array(self.family.bounds).T
        xx = np.clip(np.atleast_1d(np.asarray(x, dtype=float)), lo, hi)
        _, eta = self.family.make(xx)
        key = eta.tobytes()
        if key not in self.cache:
            self.n_evals += 1
            f = float(self.evaluate(eta))
            self.cache[key] = f if np.isfinite(f) else _PENALTY
        f = self.cache[key]
        if f < self.best_f:
            self.best_f, self.best_x = f, xx.copy()
        return f


def _clipped(spec: ProblemSpec, schedule: schedules.Schedule) -> np.ndarray:
    return np.asarray(np.clip(schedules.sample(schedule, spec.T), 0.0, spec.eta_max))


def _families(spec: ProblemSpec) -> dict[str, _Family]:
    T, hi = spec.T, spec.eta_max
    v_floor = float(np.log10(1.0 / T))

    def rate(u: float) -> float:
        return float(hi * 10.0 ** min(float(u), 0.0))

    def make_constant(x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        eta = rate(x[0])
        return {"value": eta}, _clipped(spec, schedules.constant(eta))

    def make_power_law(x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        eta0, chi = rate(x[0]), float(x[1])
        return ({"init_value": eta0, "exponent": chi},
                _clipped(spec, schedules.power_law(eta0, chi)))

    def make_decay(factory: Callable[..., schedules.Schedule]) -> Callable[
            [np.ndarray], tuple[dict[str, float], np.ndarray]]:
        def make(x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
            peak = rate(x[0])
            return ({"peak_value": peak, "decay_steps": float(T)},
                    _clipped(spec, factory(peak, T)))
        return make

    def make_wsd(x: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
        peak = rate(x[0])
        d = int(np.clip(np.rint(T * 10.0 ** min(float(x[1]), 0.0)), 1, T))
        sched = schedules.warmup_stable_decay(peak, 0, T - d, d, 0.0, "linear")
        return ({"peak_value": peak, "decay_fraction": d / T, "decay_steps": float(d),
                 "stable_steps": float(T - d)}, _clipped(spec, sched))

    one_d = [(_U_FLOOR, 0.0)]
    return {
        "constant": _Family(make_constant, one_d, [_U_GRID_1D]),
        "power_law": _Family(make_power_law, [(_U_FLOOR, 0.0), (0.0, _CHI_MAX)],
                             [_U_GRID_2D, _CHI_GRID]),
        "linear_decay": _Family(make_decay(schedules.linear_decay), one_d, [_U_GRID_1D]),
        "cosine": _Family(make_decay(schedules.cosine), one_d, [_U_GRID_1D]),
        "wsd": _Family(make_wsd, [(_U_FLOOR, 0.0), (v_floor, 0.0)],
                       [_U_GRID_2D, np.linspace(v_floor, 0.0, _WSD_FRACTIONS)]),
    }


def _tune_1d(obj: _Objective) -> None:
    """Log grid (extended downward while the best point is its lowest), then Brent."""
    u = list(obj.family.grid[0])
    f = [obj(ui) for ui in u]
    step = u[1] - u[0]
    while int(np.argmin(f)) == 0 and u[0] > _U_FLOOR:
        new = [x for x in np.arange(u[0] - 6 * step, u[0] - step / 2, step) if x >= _U_FLOOR]
        if not new:
            break
        u, f = new + u, [obj(x) for x in new] + f
    i = int(np.argmin(f))
    lo, hi = u[max(i - 1, 0)], u[min(i + 1, len(u) - 1)]
    minimize_scalar(obj, bounds=(lo, hi), method="bounded",
                    options={"xatol": _BRENT_XATOL, "maxiter": _BRENT_MAXITER})


def _tune_2d(obj: _Objective, starts: Sequence[np.ndarray]) -> None:
    """Product grid plus any given starting points, then bounded Nelder-Mead."""
    fam = obj.family
    for x in np.stack(np.meshgrid(*fam.grid, indexing="ij"), axis=-1).reshape(-1, 2):
        obj(x)
    for x in starts:
        obj(x)
    assert obj.best_x is not None
    x0 = obj.best_x.copy()
    hi = np.array(fam.bounds)[:, 1]
    # Initial simplex: half a grid spacing along each axis, pointing into the box
    # (scipy would clip a vertex on the bound onto x0 and lose a dimension).
    simplex = [x0]
    for k, axis in enumerate(fam.grid):
        h = 0.5 * float(axis[1] - axis[0])
        v = x0.copy()
        v[k] = x0[k] + h if x0[k] + h <= hi[k] else x0[k] - h
        simplex.append(v)
    minimize(obj, x0, method="Nelder-Mead", bounds=fam.bounds,
             options={"initial_simplex": np.array(simplex), "maxfev": _NM_MAXFEV,
                      "xatol": _NM_XATOL, "fatol": _NM_FRTOL * abs(obj.best_f)})


def tune_baselines(spec: ProblemSpec, names: Sequence[str] = BASELINE_NAMES,
                   evaluate: Evaluator | None = None) -> dict[str, Baseline]:
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
    the exact replay :func:`optctl.replay.final_loss` and may be a faster
    approximation for long horizons. The reported ``Baseline.final_loss`` is always
    the exact replay of the tuned ``eta``. Nested families are seeded with each
    other's optimum when both are requested (the power law with the best constant at
    ``χ = 0``, WSD with the best linear decay at ``f = 1``), so under the exact
    evaluator the larger family is never worse. Each family costs about 50-200 calls.
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

    families = _families(spec)
    best_x: dict[str, np.ndarray] = {}
    results: dict[str, Baseline] = {}
    for name in BASELINE_NAMES:  # fixed order, so seeds exist before they are used
        if name not in names:
            continue
        fam = families[name]
        obj = _Objective(fam, evaluate)
        if len(fam.bounds) == 1:
            _tune_1d(obj)
        else:
            seed = {"power_law": ("constant", 0.0), "wsd": ("linear_decay", 0.0)}[name]
            starts = ([np.array([best_x[seed[0]][0], seed[1]])]
                      if seed[0] in best_x else [])
            _tune_2d(obj, starts)
        assert obj.best_x is not None
        best_x[name] = obj.best_x
        params, eta = fam.make(obj.best_x)
        results[name] = Baseline(name=name, params=params, eta=eta,
                                 final_loss=final_loss(spec, eta), n_evals=obj.n_evals)
    return {n: results[n] for n in names}

