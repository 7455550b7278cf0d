"""The finite-horizon law of the optimal learning rate, and schedules generated from it.

Along an optimal schedule of the learning-rate problem (MODEL.md §4.1) in the small-η
continuous limit, wherever the rate is below its bound,

    η(t) = C / sqrt(K(F(t))),   K(F) = Σ_k λ_k² exp(−2 λ_k F),   F(t) = Σ_{s ≥ t} η_s,

with one constant ``C`` per problem (``F`` is the learning rate still to be spent). It
follows from the optimality conditions (docs/scaling.md, "The finite-horizon law"): the
problem is autonomous, so its Hamiltonian is constant along the optimum; at an interior
rate the Hamiltonian equals ``−η² (L + σ²) Σ_k λ_k p_k / m``, and the costate of the
final loss is ``p_k ≈ λ_k exp(−2 λ_k F)`` once the noise term's share of it is dropped.
With the loss small against the noise (``L ≪ σ²``) the law above remains.

:func:`law_schedule` turns the law into a schedule for any spec without IPOPT: the
constant ``C`` is the one that minimises the final loss of the continuous-time model,
and the rate is held at ``eta_max`` where the law asks for more. :func:`law_deviation`
measures how far a solved schedule lies from the law.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from optctl.model.blocks import NUMPY, propagate_block
from optctl.model.replay import replay
from optctl.model.spectrum import Spectrum, group_modes, spectrum
from optctl.search import golden
from optctl.solver.plan import make_plan
from optctl.solver.resources import LAW_GRID_POINTS
from optctl.solver.result import ScheduleResult
from optctl.spec import MAX_T, ControlSpec, ProblemSpec, SolverOptions
from optctl.versions import versions

GRID_POINTS = LAW_GRID_POINTS


@dataclass(frozen=True)
class LawSchedule:
    """A schedule from the law: ``eta`` per update, the law's constant ``C``, the rate
    spent in all ``F0 = Σ η``, and the final loss the continuous-time model predicts
    (``predicted_loss``; the exact per-step replay is the number to trust)."""

    eta: np.ndarray
    C: float
    F0: float
    predicted_loss: float


def kernel(sp: Spectrum, F: np.ndarray) -> np.ndarray:
    """``K(F) = Σ_k λ_k² exp(−2 λ_k F)`` (mode weights included) at each ``F``."""
    F = np.asarray(F, dtype=float)
    return np.exp(-2.0 * np.multiply.outer(F, sp.lam)) @ (sp.weight * sp.lam**2)


def law_rate(sp: Spectrum, F: np.ndarray, C: float, eta_max: float) -> np.ndarray:
    """The law's rate ``min(eta_max, C / sqrt(K(F)))`` at the remaining rates ``F``."""
    return np.minimum(eta_max, C / np.sqrt(kernel(sp, F)))


class _Plan:
    """The law on a grid of remaining rates ``φ``, for one spec."""

    def __init__(self, spec: ProblemSpec, T: float | None = None) -> None:
        # T: the horizon, the spec's unless given (the law itself has no limit on it)
        self.spec, self.sp = spec, spectrum(spec)
        self.T = float(spec.T if T is None else T)
        # the loss that picks C runs on grouped modes (a Gauss quadrature of the spectrum's
        # dense tail): the same sums to far below the precision C needs, a tenth of the cost
        self.gp = group_modes(self.sp, spec) if spec.N > 200 else self.sp
        lam = self.gp.lam
        top = self.T * spec.eta_max
        self.phi = np.concatenate([[0.0], np.geomspace(min(1e-3, top / 10) / lam.max(), top, GRID_POINTS)])
        self.sqrtK = np.sqrt(kernel(self.sp, self.phi))
        # a mode's decay from each interval's low end to the end of training
        self.after = np.exp(-2.0 * np.multiply.outer(self.phi[:-1], lam))

    def rates(self, C: float) -> np.ndarray:
        with np.errstate(divide="ignore"):  # K underflows to 0 far from the end: the rate is η_max there
            return np.minimum(self.spec.eta_max, C / self.sqrtK)

    def time_to_end(self, eta: np.ndarray) -> np.ndarray:
        """``T − t`` at each grid point: ``∫_0^φ dφ' / η(φ')`` (trapezoid in ``φ``)."""
        inv = 1.0 / eta
        return np.concatenate([[0.0], np.cumsum(np.diff(self.phi) * 0.5 * (inv[1:] + inv[:-1]))])

    def start(self, C: float) -> tuple[np.ndarray, np.ndarray, float]:
        eta = self.rates(C)
        tau = self.time_to_end(eta)
        return eta, tau, float(np.interp(self.T, tau, self.phi))

    def loss(self, C: float) -> float:
        """Final loss of the continuous-time model under the law with constant ``C``:
        bias ``Σ λ c₀ e^{−2λF₀}`` plus the noise each interval adds, forgotten by the rate
        spent after it, with the loss inside the forcing taken as its bias part."""
        sp, m = self.gp, self.spec.batch_size
        eta, _, F0 = self.start(C)
        lo, hi = self.phi[:-1], np.minimum(self.phi[1:], F0)
        live = hi > lo
        width = np.where(live, hi - lo, 0.0)
        decay = np.where(live[:, None], np.exp(-2.0 * np.multiply.outer(width, sp.lam)), 1.0)
        mid = 0.5 * (lo + hi)
        bias_at = np.exp(-2.0 * np.multiply.outer(np.maximum(F0 - mid, 0.0), sp.lam)) @ (sp.weight * sp.lam * sp.c0)
        eta_mid = 0.5 * (eta[:-1] + eta[1:])
        forcing = np.where(live, eta_mid / m * (bias_at + sp.sigma2), 0.0)
        # an interval at constant η adds (η/2m)(L + σ²)(1 − e^{−2λΔφ}) to a mode (exact for
        # the linear ODE), which the rate spent after it shrinks by e^{−2λφ}
        var = (forcing[:, None] * 0.5 * (1.0 - decay) * self.after).sum(axis=0)
        c_T = sp.c0 * np.exp(-2.0 * sp.lam * F0) + var
        return float(np.sum(sp.weight * sp.lam * c_T) + sp.tail)


def _best(spec: ProblemSpec, C: float | None, T: float | None = None) -> tuple[_Plan, float]:
    plan = _Plan(spec, T)
    if C is None:
        top = float(np.log(spec.eta_max * plan.sqrtK.max()))  # above this the rate is eta_max throughout
        # C falls about like 1/T: past the horizons a spec takes the search reaches further down
        low = top - 16.0 - 1.5 * max(0.0, float(np.log(plan.T / MAX_T)))
        C = float(np.exp(golden(lambda x: plan.loss(float(np.exp(x))), low, top + 0.1, 1e-4)))
    return plan, C


def law_loss(spec: ProblemSpec, K: int = 100) -> tuple[float, float]:
    """``(L_T, C)``: the final loss (tail included) of the law's schedule with its best
    constant ``C``, without writing the schedule per update, so any horizon and any ``N``
    cost about the same (tens of milliseconds).

    The schedule is taken at the midpoints of the integration sub-blocks of a refined grid
    of ``K`` blocks (``log η`` interpolated in the time to the end, as
    :func:`law_schedule` does per update) and propagated with the block propagator on
    grouped modes (MODEL.md §2), like :func:`optctl.solver.evaluate.approximate_evaluator`.
    An approximation of the exact replay of :func:`law_schedule`'s rates, checked against
    it in ``tests/test_law.py``.
    """
    plan, C = _best(spec, None)
    eta_grid, tau, _ = plan.start(C)
    pl = make_plan(spec, SolverOptions(grid="refined", K=K, propagator="block", modes="auto"))
    edges = np.concatenate([[0.0], np.cumsum(pl.lengths)])
    to_end = spec.T - 0.5 * (edges[:-1] + edges[1:])
    eta = np.exp(np.interp(to_end, tau, np.log(eta_grid)))
    sp = pl.spectrum
    lw = sp.weight * sp.lam
    c, loss = sp.c0, float(lw @ sp.c0)
    for n, e in zip(pl.lengths, eta, strict=True):
        c, loss = propagate_block(c, float(e), spec.batch_size, float(n), sp.lam, lw, sp.sigma2, NUMPY)
    return float(loss) + sp.tail, C


def law_schedule(spec: ProblemSpec, C: float | None = None) -> LawSchedule:
    """The law's schedule for ``spec`` (learning rate only, the spec's batch size):
    ``C`` given, or chosen to minimise the continuous-time model's final loss."""
    plan, C = _best(spec, C)
    eta_grid, tau, F0 = plan.start(C)
    eta = _per_update(spec.T, tau, np.log(eta_grid))
    eta.setflags(write=False)
    return LawSchedule(eta=eta, C=C, F0=F0, predicted_loss=plan.loss(C))


def law_window(spec: ProblemSpec, C: float | None = None) -> tuple[float, float]:
    """``(T − t_s, C)``: the updates the law's schedule spends below ``eta_max`` (its
    decay window; ``T`` when it never reaches the bound), without writing the schedule,
    so any horizon costs the same."""
    plan, C = _best(spec, C)
    eta_grid, tau, _ = plan.start(C)
    at = np.nonzero(eta_grid >= spec.eta_max)[0]
    if at.size == 0 or tau[at[0]] >= spec.T:
        return float(spec.T), C
    if at[0] == 0:
        return 0.0, C
    i = at[0] - 1  # log η is linear in τ inside the interval where it reaches the bound
    g = np.log(eta_grid)
    return float(tau[i] + (np.log(spec.eta_max) - g[i]) * (tau[i + 1] - tau[i]) / (g[i + 1] - g[i])), C


def law_decay_exponent(spec: ProblemSpec, T: float | None = None, window: tuple[float, float] = (0.2, 0.5),
                       points: int = 25) -> float:
    """The local decay exponent ``δ`` of the law's rate, ``η ∝ (1 − u)^δ`` with ``u = t/T``:
    the least-squares slope of ``log η`` against ``log(1 − u)`` at ``points`` geometric
    points of ``1 − u`` in ``window``, at horizon ``T`` (the spec's unless given; any
    horizon, as the schedule is not written per update). The paper's ``2b − 1`` is its
    limit when the rate still to be spent is large across the window (docs/scaling.md)."""
    plan, C = _best(spec, None, T)
    eta_grid, tau, _ = plan.start(C)
    left = plan.T * np.geomspace(window[0], window[1], points)  # updates to the end
    log_eta = np.interp(left, tau, np.log(eta_grid))
    return float(np.polyfit(np.log(left / plan.T), log_eta, 1)[0])


def decay_window(eta: np.ndarray, eta_max: float, level: float = 0.99) -> int:
    """Updates from the first one after the last rate at ``level × eta_max`` or above
    to the end: a solved schedule's decay window (``T`` if it never gets there)."""
    at = np.nonzero(np.asarray(eta) >= level * eta_max)[0]
    return int(len(eta) - (at[-1] + 1)) if at.size else len(eta)


def _per_update(T: int, tau: np.ndarray, log_eta: np.ndarray) -> np.ndarray:
    """The rate of each update: the law's at the rate still to be spent half way through
    it, ``T − t − ½`` updates before the end. ``log η`` is linear in ``φ`` and ``φ`` in the
    time to the end inside each interval of the grid, so one linear interpolation in
    ``τ`` does both; the grid's intervals are found once for the sorted times (``repeat``),
    not by a search per update, which keeps ``T = 10^6`` in milliseconds."""
    r = np.arange(T, dtype=float) + 0.5  # time to the end, for t = T − 1 down to 0
    counts = np.diff(np.searchsorted(r, tau))  # updates inside each interval of the grid
    counts[-1] += T - counts.sum()  # beyond the grid (rounding): its last interval
    slope = np.diff(log_eta) / np.diff(tau)
    log = np.repeat(slope, counts)
    log *= r
    log += np.repeat(log_eta[:-1] - slope * tau[:-1], counts)
    np.minimum(log, log_eta.max(), out=log)
    return np.exp(log, out=log)[::-1].copy()


def law_deviation(spec: ProblemSpec, eta: np.ndarray, grid: np.ndarray, eta_blocks: np.ndarray,
                  window: tuple[float, float] = (0.01, 0.9), below: float = 0.999) -> tuple[float, np.ndarray]:
    """How far a block schedule lies from the law: at each block's midpoint ``t`` with
    ``1 − t/T`` in ``window`` and the rate below ``below × eta_max``, the ratio
    ``η / K(F)^{−1/2}``, divided by the constant that makes the largest deviation
    smallest. Returns the largest ``|ratio − 1|`` and the ratios' ``1 − t/T``."""
    sp = spectrum(spec)
    T = spec.T
    F = np.concatenate([np.cumsum(np.asarray(eta, dtype=float)[::-1])[::-1], [0.0]])
    mid = (np.asarray(grid[:-1]) + np.asarray(grid[1:])) // 2
    u = 1.0 - mid / T
    keep = (u >= window[0]) & (u <= window[1]) & (np.asarray(eta_blocks) < below * spec.eta_max)
    if not keep.any():
        return float("nan"), u[keep]
    ratio = np.asarray(eta_blocks)[keep] * np.sqrt(kernel(sp, F[mid[keep]]))
    ratio = ratio / np.sqrt(ratio.min() * ratio.max())
    return float(np.abs(ratio - 1.0).max()), u[keep]


def law_result(spec: ProblemSpec, options: SolverOptions | None = None) -> ScheduleResult:
    """The law's schedule as a solve result (learning rate only, no IPOPT): a per-step
    grid, the exact replay, ``status = "Law"``; ``objective`` is the continuous-time model's
    prediction, so ``replay_gap`` says how close that estimate was. Everything that takes
    a :class:`ScheduleResult` (run folders, tables, baselines, figures) takes it."""
    t0 = time.perf_counter()
    law = law_schedule(spec)
    build = time.perf_counter() - t0
    t1 = time.perf_counter()
    rep = replay(spec, law.eta)
    replay_time = time.perf_counter() - t1
    final = float(rep.final)
    return ScheduleResult(
        spec=spec, options=SolverOptions() if options is None else options, controls=ControlSpec(),
        grid=np.arange(spec.T + 1), eta_blocks=law.eta, eta=law.eta,
        batch_size=np.full(spec.T, float(spec.batch_size)), loss=rep.loss, bias=rep.bias,
        variance=rep.variance, final_loss=final, objective=law.predicted_loss,
        replay_gap=(law.predicted_loss - final) / final, exact=False, success=True, status="Law",
        message="the finite-horizon law's schedule (docs/scaling.md), not a numerical optimum",
        iterations=0, wall_time=time.perf_counter() - t0, build_time=build, solve_time=0.0,
        replay_time=replay_time, transcription={"method": "law", "C": law.C, "F0": law.F0},
        versions=versions())
