"""Anytime baselines: schedules that serve several horizons from one run, tuned.

Each is compared with the optimal branching plan (:mod:`optctl.solver.branching`) by
its regret ``L_{T_i}/L*_{T_i} − 1`` at every horizon ``T_i``:

- **WSD-S** (warmup-stable-decay with branches): one shared constant plateau ``η̂``;
  horizon ``T_i`` branches off at ``T_i − D_i`` and decays over ``D_i`` updates with a
  shape ``s_i`` (linear, cosine, square, square root). ``η̂`` is shared and tuned for
  the worst regret; ``D_i`` and ``s_i`` are tuned per branch for its own loss (with
  the plateau fixed, branches do not interact).
- **SGDR** (cosine with warm restarts, Loshchilov & Hutter, arXiv:1608.03983): cycle
  ``i`` runs from ``T_{i−1}`` to ``T_i`` as a half cosine from the peak ``η̂`` to zero,
  so a checkpoint at the end of each cycle serves ``T_i``; ``η̂`` is tuned for the
  worst regret.
- **Schedule-Free SGD** (Defazio et al., arXiv:2405.15682): anytime by design, one run
  with a constant rate whose averaged iterate is read at every ``T_i``; its rate and
  ``β`` are tuned once for the worst regret (:func:`tune_schedule_free`, under the exact
  recursion of :mod:`optctl.model.families`).

Losses come from an evaluator per horizon (``evaluate[i](η) ≈ L_{T_i}`` of a per-step
schedule of length ``T_i``, e.g. :func:`optctl.solver.evaluate.approximate_evaluator`);
the caller replays the tuned schedules exactly.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar

from optctl.model.families import family_loss, schedule_free
from optctl.spec import ProblemSpec

Evaluator = Callable[[np.ndarray], float]

# Decay shapes f(u), u = position in the decay (0 → 1), rate = η̂ f(u).
DECAY_SHAPES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": lambda u: 1.0 - u,
    "cosine": lambda u: 0.5 * (1.0 + np.cos(np.pi * u)),
    "square": lambda u: (1.0 - u) ** 2,
    "sqrt": lambda u: 1.0 - np.sqrt(u),
}
DECAY_FRACTIONS = (0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0)
PLATEAU_GRID = 13  # log-spaced plateaus from 1e-3 η_max to η_max


@dataclass(frozen=True)
class AnytimeBaseline:
    """A tuned anytime baseline: its name, parameters and per-horizon schedules."""

    name: str
    params: dict[str, object]
    schedules: tuple[np.ndarray, ...]
    tuned_losses: np.ndarray


def decay_branch(peak: float, steps: int, shape: str) -> np.ndarray:
    """``steps`` rates ``η̂ f((j + 1)/(steps + 1))``, ``j = 0..steps−1``: the decay ends
    one notch above zero, like a linear decay to zero whose last update still moves."""
    u = np.arange(1, steps + 1) / (steps + 1.0)
    return peak * DECAY_SHAPES[shape](u)


def wsd_s_schedule(peak: float, T: int, decay_steps: int, shape: str) -> np.ndarray:
    """The horizon-``T`` schedule of WSD-S: plateau ``η̂`` then a decay of ``decay_steps``."""
    d = int(min(max(decay_steps, 1), T))
    return np.concatenate([np.full(T - d, peak), decay_branch(peak, d, shape)])


def sgdr_schedule(peak: float, horizons: Sequence[int]) -> np.ndarray:
    """Cosine cycles ``[T_{i−1}, T_i)`` from ``η̂`` to zero (``T_0 = 0``), length ``T_n``."""
    parts, start = [], 0
    for T in horizons:
        n = int(T) - start
        u = np.arange(n) / n
        parts.append(peak * 0.5 * (1.0 + np.cos(np.pi * u)))
        start = int(T)
    return np.concatenate(parts)


def _branch_best(peak: float, T: int, evaluate: Evaluator) -> tuple[float, int, str]:
    best = (np.inf, 1, "linear")
    for frac in DECAY_FRACTIONS:
        d = max(1, int(round(frac * T)))
        for shape in DECAY_SHAPES:
            loss = evaluate(wsd_s_schedule(peak, T, d, shape))
            if np.isfinite(loss) and loss < best[0]:
                best = (float(loss), d, shape)
    return best


def tune_wsd_s(horizons: Sequence[int], optima: np.ndarray, evaluate: Sequence[Evaluator],
               eta_max: float) -> AnytimeBaseline:
    """WSD-S with the plateau tuned for the worst regret and each branch for its horizon."""

    def worst(log_peak: float) -> tuple[float, list[tuple[float, int, str]]]:
        peak = float(10.0 ** log_peak)
        per = [_branch_best(peak, T, ev) for T, ev in zip(horizons, evaluate, strict=True)]
        return float(max(p[0] / s - 1.0 for p, s in zip(per, optima, strict=True))), per

    grid = np.linspace(np.log10(eta_max) - 3.0, np.log10(eta_max), PLATEAU_GRID)
    vals = [worst(x)[0] for x in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = minimize_scalar(lambda x: worst(x)[0], bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-3, "maxiter": 20})
    x = float(res.x) if res.fun < vals[k] else float(grid[k])
    _, per = worst(x)
    peak = float(10.0 ** x)
    scheds = tuple(wsd_s_schedule(peak, T, d, s) for T, (_, d, s) in zip(horizons, per, strict=True))
    return AnytimeBaseline(name="wsd_s", params={"peak_value": peak, "decay_steps": [p[1] for p in per],
                                                 "shapes": [p[2] for p in per]},
                           schedules=scheds, tuned_losses=np.array([p[0] for p in per]))


def tune_sgdr(horizons: Sequence[int], optima: np.ndarray, evaluate: Sequence[Evaluator],
              eta_max: float) -> AnytimeBaseline:
    """SGDR with cycles ending at the horizons, its peak tuned for the worst regret."""

    def regrets(log_peak: float) -> np.ndarray:
        full = sgdr_schedule(float(10.0 ** log_peak), horizons)
        return np.array([ev(full[:T]) for T, ev in zip(horizons, evaluate, strict=True)]) / optima - 1.0

    grid = np.linspace(np.log10(eta_max) - 3.0, np.log10(eta_max), PLATEAU_GRID)
    vals = [float(np.max(regrets(x))) for x in grid]
    k = int(np.argmin(vals))
    lo, hi = grid[max(k - 1, 0)], grid[min(k + 1, grid.size - 1)]
    res = minimize_scalar(lambda x: float(np.max(regrets(x))), bounds=(lo, hi), method="bounded",
                          options={"xatol": 1e-3, "maxiter": 20})
    x = float(res.x) if res.fun < vals[k] else float(grid[k])
    peak = float(10.0 ** x)
    full = sgdr_schedule(peak, horizons)
    return AnytimeBaseline(name="sgdr", params={"peak_value": peak},
                           schedules=tuple(full[:T] for T in horizons),
                           tuned_losses=(regrets(x) + 1.0) * optima)


# Schedule-Free under the model: a log grid of constant rates (from 1e-3 η_max to η_max)
# times these interpolation weights β, all evaluated in one pass of the exact recursion.
SF_LR_GRID = 13
SF_BETAS = (0.5, 0.75, 0.9, 0.95, 0.98)


def tune_schedule_free(spec: ProblemSpec, horizons: Sequence[int], optima: np.ndarray,
                       eta_max: float) -> AnytimeBaseline:
    """Schedule-Free SGD (Defazio et al., *The Road Less Scheduled*, arXiv:2405.15682) as an
    anytime method: one run of ``T_n`` updates with a constant rate ``γ`` and interpolation
    ``β``, its averaged iterate ``x_t`` read at every ``T_i``
    (:func:`optctl.model.families.schedule_free`, the exact per-mode second-moment
    recursion). ``(γ, β)`` are tuned once for the whole horizon set, for the worst regret,
    over a grid of ``SF_LR_GRID`` rates log-spaced in ``[1e-3 η_max, η_max]`` (the bounds
    the other methods have) times ``SF_BETAS``, one compiled scan per ``β``.
    ``tuned_losses`` are the exact losses at the horizons; ``schedules`` are the constant
    rates ``γ`` (the rate is not the whole method: the loss is read at the average)."""
    hs = [int(T) for T in horizons]
    lrs = np.geomspace(1e-3 * eta_max, eta_max, SF_LR_GRID)
    grid = np.array([(g, b) for b in SF_BETAS for g in lrs])  # the order of the columns below
    # The run to T_i is the first T_i updates of the run to T_n (c_t does not depend on T).
    # One β at a time: a scan's coefficients take 8 (T_n rounded up) values per candidate.
    losses = np.concatenate([np.stack([family_loss(spec, schedule_free(T, lrs, np.full(lrs.size, beta)))
                                       for T in hs]) for beta in SF_BETAS], axis=1)
    regret = losses / np.asarray(optima, dtype=float)[:, None] - 1.0
    worst = np.where(np.isfinite(regret).all(axis=0), regret.max(axis=0), np.inf)
    k = int(np.argmin(worst))
    lr, beta = float(grid[k, 0]), float(grid[k, 1])
    return AnytimeBaseline(name="schedule_free", params={"lr": lr, "beta": beta, "lr_grid": lrs.tolist(),
                                                         "betas": list(SF_BETAS)},
                           schedules=tuple(np.full(T, lr) for T in hs), tuned_losses=losses[:, k])
