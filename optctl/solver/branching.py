"""Anytime schedules: one shared trunk and a short branch per horizon, solved exactly.

Practitioners who do not know the horizon in advance, or who want good checkpoints at
several budgets from one run, keep one shared "stable" phase and take short decay
branches from its checkpoints (WSD-S). :func:`solve_branching` computes the best such
plan under the model of MODEL.md §2: horizons ``T_1 < … < T_n``, one trunk ``η(t)`` and,
for each ``T_i``, a branch that leaves the trunk at ``t_i`` and runs to ``T_i``. The
objective is the worst regret against each horizon's own optimum,

    min max_i L_{T_i}(trunk[0:t_i] + branch_i) / L*_{T_i} − 1,

solved as a sequence of re-weighted weighted sums of the regrets, certified by weak
duality (:class:`Certificate`: the worst regret minus the weighted sum's minimum at the
final weights); or the weighted sum itself. ``L*_{T_i}`` is each horizon's lower bound on
the plan's grids (:func:`lower_bounds`), never above its own optimum, so regrets are
``>= 0`` up to the replay gap; the grids are cut from every horizon's own grid, so they
follow ``solver.K`` (:mod:`optctl.solver.plan`). The problem is one NLP of the control set
:class:`~optctl.solver.controls.Branching` on a :class:`~optctl.solver.plan.BranchPlan`,
built by the common transcription and solved by the common IPOPT driver. The leave
points are given, or chosen by scanning a few common decay fractions ``1 − t_i/T_i`` on
coarse grids (each scan point one solve, warm-started from the one before), the best
then solved on the solver's grids. Every horizon's schedule ``trunk[0:t_i] + branch_i`` is
replayed step by step (:func:`optctl.model.replay.replay`); those are the losses
reported. Bordelon & Mori, arXiv:2602.04774 (the model); WSD-S is the decay-branch
practice this optimises.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import casadi as ca
import numpy as np

from optctl.errors import SpecError
from optctl.model.replay import replay
from optctl.model.spectrum import spectrum
from optctl.solver.controls import Branching, Model
from optctl.solver.ipopt import compile_problem, curvature_scale, fresh_scale, message, run_rounds
from optctl.solver.piecewise import block_means, expand
from optctl.solver.plan import BranchPlan, lower_bound_plan, make_branch_plan
from optctl.solver.solve import solve
from optctl.solver.transcribe import model_parameters
from optctl.spec import ProblemSpec, SolverOptions
from optctl.table import BranchingTable
from optctl.validate import check_horizons
from optctl.versions import versions

# Decay fractions 1 − t_i/T_i scanned when the leave points are not given (the same
# fraction for every horizon; the best one is then refined per horizon). The scan runs on
# coarse grids (solver.K scaled by SCAN_K_SHARE, at least SCAN_MIN_K blocks); the best
# fraction is then solved on the solver's K, warm-started from its coarse plan.
LEAVE_FRACTIONS = (0.05, 0.1, 0.2, 0.4, 0.7)
SCAN_K_SHARE = 0.4
SCAN_MIN_K = 24
# The worst-regret solve as re-weighted weighted-sum solves (:func:`_minimax`), within
# MINIMAX_ROUNDS re-weighted solves; a weight moves by a factor WEIGHT_STEP at most per
# step and stays above WEIGHT_MIN. Certified by weak duality (:class:`Certificate`): the
# gap (worst regret − the weighted sum's minimum at the final weights) at most
# max(MINIMAX_TOL · worst regret, MINIMAX_ABS). Both are below what the transcription
# resolves: its replay gap, 3e-5 to 6.5e-5 of the loss, moves every regret by as much, so a
# gap of 1e-4 (0.01 percentage points of regret) is as close as the regrets are known.
MINIMAX_TOL = 2e-3
MINIMAX_ABS = 1e-4
# The certificate needs the weighted-sum (dual) problem at the final weights solved by IPOPT
# (SOLVED: to its tolerance, or to its acceptable level when solver.ipopt enables one). Its
# solve stops early, unsolved (DUAL_STALLED: not certified), when a round of round_iter
# iterations lowers it by less than DUAL_STALL of the tolerance.
DUAL_STALL = 1e-2
SOLVED = ("Solve_Succeeded", "Solved_To_Acceptable_Level")
CERTIFIED = SOLVED
DUAL_STALLED = "Dual_Stalled"
# Each re-weighted solve is given at most REWEIGHT_ROUNDS rounds of round_iter iterations
# (the weights move again anyway; the certificate's solve has the full max_iter).
REWEIGHT_ROUNDS = 2
# A re-weighted solve whose gap is larger than the last accepted one's is not accepted; the
# step from the accepted weights is halved instead, at most MINIMAX_BACKTRACK times in a row
# (then the re-weighting stops). The coarse scan ranks leave points after SCAN_ROUNDS
# re-weightings (its candidates are compared, not certified).
MINIMAX_BACKTRACK = 2
SCAN_ROUNDS = 3
GAP_NOT_CLOSED = "Minimax_Gap_Not_Closed"
NOT_CERTIFIED = "Not_Certified"  # a coarse scan point: ranked by its worst regret, not certified
MINIMAX_ROUNDS = 12
WEIGHT_STEP = 4.0
WEIGHT_MIN = 1e-4
OBJECTIVES = ("worst", "weighted")


def check_leave(leave: object, horizons: tuple[int, ...], field_name: str = "leave") -> tuple[int, ...]:
    """Leave points ``0 <= t_i < T_i`` (integers, one per horizon)."""
    if not isinstance(leave, (list, tuple)) or len(leave) != len(horizons):
        raise SpecError(field_name, leave, f"give one leave point per horizon ({len(horizons)})")
    out = []
    for i, (t, T) in enumerate(zip(leave, horizons, strict=True)):
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < T:
            raise SpecError(f"{field_name}[{i}]", t, f"a leave point is an integer 0 <= t < T = {T}")
        out.append(int(t))
    return tuple(out)


@dataclass(frozen=True)
class BranchingResult:
    """An anytime plan: the trunk, a branch per horizon, and how well each horizon does.

    ``trunk`` is the per-update rate on ``[0, max t_i]``, ``branches[i]`` the rates of
    updates ``t_i .. T_i − 1`` (``leave[i] = t_i``). ``losses[i]`` is the replayed
    ``L_{T_i}`` of ``trunk[0:t_i] + branches[i]``, ``optima[i]`` the horizon's own optimum
    ``L*_{T_i}``: its lower bound on the plan's grids (:func:`lower_bounds`, replayed),
    ``own_optima`` the horizon's optimum on the solver's own grid (replayed; ``optima`` is
    never above it), ``regret = losses/optima − 1``, ``nlp_losses`` what the
    transcription predicted and ``replay_gap = (nlp − replayed)/replayed`` per branch.
    For ``"worst"``, ``multipliers`` are the weights of the last weighted-sum solve and
    ``gap`` the weak-duality certificate (:class:`Certificate`): the transcribed worst
    regret minus the weighted sum's minimum at ``multipliers`` (solved by IPOPT); ``success``
    needs it within the tolerance. ``options`` are the solver options (their ``K`` sets the
    grids, :func:`~optctl.solver.plan.branch_blocks`).
    ``objective`` is ``"worst"`` or ``"weighted"``; ``scan`` the leave points tried and
    their worst regret (replayed) and wall seconds (each one solve: compile, weighted
    sum, re-weighted solves, replays). Times are wall seconds: ``optima_time`` for the
    per-horizon optima, ``wall_time`` for the branching solves (the scan included);
    ``cpu_time`` is the process's CPU seconds (every thread) for the branching solves, and
    ``stages`` the wall and CPU seconds of each stage (lower bounds, weighted sum,
    re-weighting, certificate, replay) summed over every solve.
    """

    spec: ProblemSpec
    horizons: tuple[int, ...]
    leave: tuple[int, ...]
    trunk: np.ndarray
    branches: tuple[np.ndarray, ...]
    losses: np.ndarray
    optima: np.ndarray
    nlp_losses: np.ndarray
    replay_gap: np.ndarray
    objective: str
    success: bool
    status: str
    message: str
    iterations: int
    wall_time: float
    optima_time: float
    optimal_schedules: tuple[np.ndarray, ...] = ()
    multipliers: np.ndarray = field(default_factory=lambda: np.zeros(0))
    gap: float = float("nan")
    scan: tuple[tuple[tuple[int, ...], float, float, int], ...] = ()
    transcription: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    own_optima: np.ndarray = field(default_factory=lambda: np.zeros(0))
    certificate: Certificate | None = None
    options: SolverOptions | None = None
    stages: dict[str, list[float]] = field(default_factory=dict)
    cpu_time: float = float("nan")
    lower_bound_status: tuple[tuple[str, bool], ...] = ()

    @property
    def unconverged_bounds(self) -> list[tuple[int, str]]:
        """``(T_i, IPOPT status)`` of every lower bound ``L*_{T_i}`` whose solve did not
        converge: it may be above the true optimum, so regrets against it (which can then
        be below zero) are not to be trusted."""
        return [(T, st) for T, (st, ok) in zip(self.horizons, self.lower_bound_status, strict=True) if not ok]

    @property
    def regret(self) -> np.ndarray:
        return self.losses / self.optima - 1.0

    @property
    def worst_regret(self) -> float:
        return float(np.max(self.regret))

    @property
    def mean_regret(self) -> float:
        return float(np.mean(self.regret))

    def schedule(self, i: int) -> np.ndarray:
        """The per-update rate of horizon ``i``: ``trunk[0:t_i]`` then branch ``i``."""
        return np.concatenate([self.trunk[: self.leave[i]], self.branches[i]])

    def to_table(self) -> BranchingTable:
        """The branching table (trunk, branches, leave points) that training code drives;
        its ``source`` records whether the plan was certified: ``success``, ``status`` and
        the minimax ``gap`` (``None`` without a certificate, ``objective="weighted"``)."""
        return BranchingTable(trunk=self.trunk, branches=self.branches, leave=self.leave,
                              horizons=self.horizons, spec=self.spec.to_dict(),
                              source={"kind": "branching", "objective": self.objective,
                                      "losses": self.losses.tolist(), "regret": self.regret.tolist(),
                                      "success": bool(self.success), "status": self.status,
                                      "gap": float(self.gap) if np.isfinite(self.gap) else None})

    def summary(self) -> dict[str, Any]:
        """The scalars, for a run folder's ``summary.json``."""
        return {
            "kind": "branching", "spec": self.spec.to_dict(), "horizons": list(self.horizons),
            "leave": list(self.leave), "objective": self.objective,
            "losses": self.losses.tolist(), "optima": self.optima.tolist(),
            "own_optima": self.own_optima.tolist(),
            "lower_bounds": [{"T": T, "status": st, "converged": ok}
                             for T, (st, ok) in zip(self.horizons, self.lower_bound_status, strict=True)],
            "regret": self.regret.tolist(), "worst_regret": self.worst_regret,
            "mean_regret": self.mean_regret, "nlp_losses": self.nlp_losses.tolist(),
            "replay_gap": self.replay_gap.tolist(),
            "solver": {"success": self.success, "status": self.status, "message": self.message,
                       "iterations": self.iterations, "wall_time_s": self.wall_time,
                       "optima_time_s": self.optima_time, "cpu_time_s": self.cpu_time,
                       "stages_s": {k: {"wall": v[0], "cpu": v[1]} for k, v in self.stages.items()},
                       "multipliers": self.multipliers.tolist(),
                       "minimax_gap": self.gap,
                       "certificate": None if self.certificate is None else {
                           "worst": self.certificate.worst, "dual": self.certificate.dual,
                           "gap": self.certificate.gap, "tolerance": self.certificate.tolerance,
                           "status": self.certificate.status, "success": self.certificate.success},
                       **self.transcription},
            "scan": [{"leave": list(t), "worst_regret": r, "wall_time_s": sec, "K": k}
                     for t, r, sec, k in self.scan],
            "versions": self.versions,
        }


def horizon_optima(spec: ProblemSpec, horizons: Sequence[int], options: SolverOptions | None = None,
                   *, progress: bool = False) -> list[Any]:
    """Each horizon's own optimum (:func:`optctl.solver.solve`), the lower bound of any plan."""
    out = []
    for T in horizons:
        _log(f"anytime: the optimum for T = {T}", progress)
        out.append(solve(replace(spec, T=int(T)), options))
    return out


def solve_branching(spec: ProblemSpec, horizons: Sequence[int], options: SolverOptions | None = None, *,
                    leave: Sequence[int] | None = None, objective: str = "worst",
                    weights: Sequence[float] | None = None, optima: Sequence[Any] | None = None,
                    fractions: Sequence[float] = LEAVE_FRACTIONS, refine: bool = False,
                    coarse: bool = True, progress: bool = False) -> BranchingResult:
    """The best anytime plan for ``horizons``: a shared trunk and a branch per horizon.

    ``leave`` fixes the leave points ``t_i`` (``0 <= t_i < T_i``); without it, each
    decay fraction ``d`` in ``fractions`` (``t_i = round((1 − d) T_i)``, the same for all
    horizons) is solved and the best kept; with ``refine`` it is then refined horizon by
    horizon (each ``t_i`` moved to the neighbouring fractions while the others stay). The
    scan runs on coarse grids (``K`` scaled by ``SCAN_K_SHARE``; ``coarse=False`` scans on
    the solver's ``K``), each point warm-started from the one before, and the chosen
    leave points are solved again on the solver's ``K``. ``objective`` is
    ``"worst"`` (minimise the worst regret by re-weighted solves; default) or ``"weighted"``
    (minimise ``Σ w_i`` regret_i, ``weights`` default equal). ``optima`` are the
    horizons' own optima (results of :func:`~optctl.solver.solve`, solved here when not
    given); each horizon's lower bound ``L*_{T_i}`` is the lower of its own optimum and its
    optimum on the plan's grids (:func:`lower_bounds`), so the regrets are ``>= 0`` up to
    the replay gap. The grids follow ``options.K`` (:func:`~optctl.solver.plan.branch_blocks`). Every horizon's schedule is replayed step by step; the replayed losses are
    the ones reported and compared with the transcription (``replay_gap``).
    """
    hs = check_horizons(list(horizons))
    if objective not in OBJECTIVES:
        raise SpecError("objective", objective, f"choose one of {', '.join(OBJECTIVES)}")
    w = _check_weights(weights, len(hs))
    options = SolverOptions() if options is None else options
    t0 = time.perf_counter()
    if optima is None:
        optima = horizon_optima(spec, hs, options, progress=progress)
    if len(optima) != len(hs):
        raise SpecError("optima", len(optima), f"give one optimum per horizon ({len(hs)})")
    optima_time = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), time.process_time()
    own = np.array([float(r.final_loss) for r in optima])
    own_status = tuple((str(getattr(r, "status", "unknown")), bool(getattr(r, "success", True))) for r in optima)
    schedules = tuple(np.asarray(r.eta, dtype=float) for r in optima)
    tail = spectrum(spec).tail

    def attempt(points: tuple[int, ...], opts: SolverOptions, warm: _Solved | None = None) -> _Solved:
        _log(f"anytime: leave points {list(points)}, K = {opts.K}", progress)
        t1 = time.perf_counter()
        out = _solve_fixed(spec, hs, points, opts, own, tail, schedules, objective, w, progress, warm,
                           coarse=opts.K < options.K, own_status=own_status)
        out.seconds, out.K = time.perf_counter() - t1, opts.K
        _log(f"anytime:   worst regret {out.worst:.4%}, {out.status}, {out.seconds:.1f} s", progress)
        return out

    if leave is not None:
        best = attempt(check_leave(list(leave), hs), options)
        tried = [best]
    else:
        fr = sorted({float(f) for f in fractions})
        if not fr or any(not 0 < f <= 1 for f in fr):
            raise SpecError("fractions", fr, "give decay fractions 0 < d <= 1")
        scan_K = max(SCAN_MIN_K, int(round(SCAN_K_SHARE * options.K))) if coarse else options.K
        scan_opts = replace(options, K=min(scan_K, options.K))
        tried = []
        prev: _Solved | None = None
        for f in fr:  # each scan point warm-started from the one before
            prev = attempt(_points(hs, [f] * len(hs)), scan_opts, prev)
            tried.append(prev)
        best = min(tried, key=lambda s: s.score)
        # Refine horizon by horizon: the neighbouring fractions of the best common one.
        k = fr.index(_fraction_of(best.leave, hs, fr))
        for i in range(len(hs) if refine else 0):
            for kk in (k - 1, k + 1):
                if 0 <= kk < len(fr):
                    chosen = [_fraction_of((t,), (T,), fr) for t, T in zip(best.leave, hs, strict=True)]
                    chosen[i] = fr[kk]
                    cand = attempt(_points(hs, chosen), scan_opts, best)
                    tried.append(cand)
                    if cand.score < best.score:
                        best = cand
        if scan_opts.K != options.K:  # the chosen leave points on the solver's grids
            best = attempt(best.leave, options, best)
            tried.append(best)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    stages: dict[str, list[float]] = {}
    for s in tried:
        for stage, (sw, sc) in s.stages.items():
            acc = stages.setdefault(stage, [0.0, 0.0])
            acc[0] += sw
            acc[1] += sc
    return BranchingResult(
        spec=spec, horizons=hs, leave=best.leave, trunk=best.trunk, branches=best.branches,
        losses=best.losses, optima=best.optima, nlp_losses=best.nlp_losses,
        replay_gap=(best.nlp_losses - best.losses) / best.losses, objective=objective,
        success=best.success, status=best.status, message=_message(best),
        iterations=sum(s.iterations for s in tried), wall_time=wall, optima_time=optima_time,
        optimal_schedules=schedules, multipliers=best.multipliers,
        gap=float("nan") if best.certificate is None else best.certificate.gap,
        scan=tuple((s.leave, s.worst, s.seconds, s.K) for s in tried),
        transcription=best.plan.describe(), versions=versions(), own_optima=own,
        certificate=best.certificate, options=options, stages=stages, cpu_time=cpu,
        lower_bound_status=best.lb_status)


@dataclass
class _Solved:
    leave: tuple[int, ...]
    plan: BranchPlan
    trunk: np.ndarray
    branches: tuple[np.ndarray, ...]
    losses: np.ndarray
    nlp_losses: np.ndarray
    optima: np.ndarray
    objective: str
    weights: np.ndarray
    success: bool
    status: str
    discarded: bool
    iterations: int
    multipliers: np.ndarray = field(default_factory=lambda: np.zeros(0))
    certificate: Certificate | None = None
    lb_schedules: tuple[np.ndarray, ...] = ()
    lb_status: tuple[tuple[str, bool], ...] = ()
    seconds: float = 0.0
    K: int = 0
    stages: dict[str, list[float]] = field(default_factory=dict)

    def schedule(self, i: int) -> np.ndarray:
        return np.concatenate([self.trunk[: self.leave[i]], self.branches[i]])

    @property
    def worst(self) -> float:
        return float(np.max(self.losses / self.optima - 1.0))

    @property
    def score(self) -> float:
        reg = self.losses / self.optima - 1.0
        return float(np.max(reg)) if self.objective == "worst" else float(self.weights @ reg)


def _weighted_run(spec: ProblemSpec, plan: BranchPlan, opts: SolverOptions,
                  cands: list[np.ndarray]) -> tuple[Any, Any, tuple[np.ndarray, np.ndarray], np.ndarray]:
    """The weighted-sum NLP of ``plan`` compiled and solved from the best of ``cands``:
    the compiled problem, its run, the bounds and the scaling floor."""
    prob = compile_problem(plan, Branching(), 0.0, opts)
    prob.model = model_parameters(plan, spec)
    K = plan.n_controls
    lo, hi = np.zeros(K), np.full(K, spec.eta_max)
    floor = np.full(K, 1e-3 * spec.eta_max)
    scores = np.asarray(prob.score(cands), dtype=float)
    start = cands[int(np.nanargmin(np.where(np.isfinite(scores), scores, np.nan)))]
    scale = curvature_scale(prob, start / np.maximum(start, floor), np.maximum(start, floor))
    run = run_rounds(prob, start, scale, np.zeros(K), (lo, hi), floor, opts, {})
    return prob, run, (lo, hi), floor


def _schedules_of(plan: BranchPlan, u: np.ndarray) -> tuple[np.ndarray, tuple[np.ndarray, ...]]:
    """The per-update trunk and branches of the block values ``u``."""
    trunk_b, branch_b = Branching.split(plan, u)
    trunk = expand(np.asarray(trunk_b), plan.grid)
    return trunk, tuple(expand(np.asarray(b), g) for b, g in zip(branch_b, plan.branch_grids, strict=True))


def lower_bounds(spec: ProblemSpec, plan: BranchPlan, options: SolverOptions, own: np.ndarray,
                 schedules: tuple[np.ndarray, ...], *, starts: Sequence[np.ndarray] | None = None,
                 with_own: bool = True, progress: bool = False,
                 own_status: Sequence[tuple[str, bool]] | None = None,
                 ) -> tuple[np.ndarray, tuple[np.ndarray, ...], tuple[tuple[str, bool], ...]]:
    """Each horizon's lower bound ``L*_{T_i}`` on the plan's grids, its schedule, and the
    IPOPT status of the solve it came from with whether that solve converged (``own_status``:
    those of the own optima, unknown when not given).

    Horizon ``i`` alone is solved on the union of the trunk's blocks up to ``t_i`` and
    branch ``i``'s (:func:`~optctl.solver.plan.lower_bound_plan`), from the horizon's own
    optimum ``schedules[i]`` (and ``starts[i]``, a per-update schedule, when given); its
    schedule is replayed. ``L*_{T_i}`` is the lower of that replayed loss and the replayed
    own optimum ``own[i]`` (solved on the solver's grid): both are losses a single run of
    ``T_i`` updates reaches, and the first is at least as low as any plan on these grids
    can make horizon ``i``'s (up to the replay gap and IPOPT's local optimality).
    ``with_own=False`` keeps the plan-grid bound alone (the coarse scan, whose grids are
    coarser than the own optima's: its regrets then compare grids of one coarseness). A bound
    whose solve did not converge may sit above the true optimum, and regrets against it
    below zero: :attr:`BranchingResult.unconverged_bounds` lists them."""
    best, scheds, status = [], [], []
    for i, T in enumerate(plan.horizons):
        sub = lower_bound_plan(plan, i)
        cands = _candidates(spec, sub, (schedules[i],))
        if starts is not None:
            s = np.asarray(starts[i], dtype=float)
            cands.append(np.concatenate([block_means(s[: int(sub.grid[-1])], sub.grid) if sub.grid[-1] > 0
                                         else np.zeros(0),
                                         block_means(s[int(sub.branch_grids[0][0]):],
                                                     sub.branch_grids[0] - sub.branch_grids[0][0])]))
        _, run, _, _ = _weighted_run(spec, sub, replace(options, progress=False), cands)
        trunk, (branch,) = _schedules_of(sub, run.u)
        sched = np.concatenate([trunk, branch])
        loss = replay(replace(spec, T=T), sched).final
        _log(f"anytime:   lower bound T = {T}: {loss:.6g} on the plan's grid "
             f"({sub.trunk_blocks} + {sub.branch_blocks[0]} blocks), own optimum {own[i]:.6g}", progress)
        if loss < own[i] or not with_own:
            best.append(float(loss))
            scheds.append(sched)
            status.append((str(run.stats.get("return_status", "unknown")), _converged(run)))
        else:
            best.append(float(own[i]))
            scheds.append(np.asarray(schedules[i], dtype=float))
            status.append(("unknown", True) if own_status is None else
                          (str(own_status[i][0]), bool(own_status[i][1])))
    return np.array(best), tuple(scheds), tuple(status)


def _solve_fixed(spec: ProblemSpec, hs: tuple[int, ...], leave: tuple[int, ...], options: SolverOptions,
                 own: np.ndarray, tail: float, schedules: tuple[np.ndarray, ...], objective: str,
                 w: np.ndarray, progress: bool = False, warm: _Solved | None = None,
                 coarse: bool = False, own_status: Sequence[tuple[str, bool]] | None = None) -> _Solved:
    """One branching solve for fixed leave points: each horizon's lower bound on the
    plan's grids (:func:`lower_bounds`), the weighted sum (a smooth problem that the
    curvature scaling suits), then, for ``worst``, re-weighted from there and certified
    (:func:`_certify`). ``warm`` is an earlier solve (another grid or other leave points)
    whose schedules are one more start."""
    opts = replace(options, progress=False)
    clock = _Clock()
    wt = tuple(float(x) for x in w)
    grid_plan = make_branch_plan(spec, opts, hs, leave, tuple(float(s) for s in own), tail, "weighted",
                                 wt)
    warm_scheds = None if warm is None else [warm.schedule(i) for i in range(len(hs))]
    star, lb_scheds, lb_status = lower_bounds(spec, grid_plan, opts, own, schedules, starts=warm_scheds,
                                              with_own=not coarse, progress=progress, own_status=own_status)
    clock.lap("lower_bounds")
    targets = tuple(float(s) for s in star)
    ws_plan = replace(grid_plan, targets=targets)
    cands = _candidates(spec, ws_plan, schedules) + _candidates(spec, ws_plan, lb_scheds)[:1]
    if warm is not None:  # its longest horizon's schedule as the trunk, its schedules' tails as branches
        ws = [warm.schedule(i) for i in range(len(hs))]
        cands.append(_blocks_of(ws_plan, ws[-1], [s[t:] for s, t in zip(ws, leave, strict=True)], spec.eta_max))
    prob, run, bounds, floor = _weighted_run(spec, ws_plan, opts, cands)
    clock.lap("weighted_sum")
    u, iterations, status, discarded = run.u, run.iterations, str(run.stats.get("return_status", "unknown")), \
        run.discarded
    plan = ws_plan
    nlp_losses = _nlp_losses(ws_plan, u, prob.model, tail)
    w_final = w
    cert: Certificate | None = None
    if objective == "worst":
        mm, nlp_losses, w_final = _minimax(prob, run, targets, tail, ws_plan, bounds, floor, opts, w, progress,
                                           SCAN_ROUNDS if coarse else MINIMAX_ROUNDS)
        clock.lap("reweighting")
        u, iterations = mm.u, iterations + mm.iterations
        status, discarded = str(mm.stats.get("return_status", "unknown")), mm.discarded
        if _converged(mm) or not coarse:
            # The kept re-weighted solve is the weighted sum at w_final solved from the solve
            # before it; when IPOPT converged on it, it is the certificate's dual solve.
            cert = _certify(prob, ws_plan, u, w_final, bounds, floor, opts, tail,
                            solved=status if _converged(mm) else None, lam_x=mm.lam_x)
            iterations += cert.iterations
            _log(f"anytime:   certificate: max regret {cert.worst:.4%} - min_x w.G(x) {cert.dual:.4%} = gap "
                 f"{cert.gap:.2e} (tolerance {cert.tolerance:.2e}), {cert.status}"
                 + (" (the last re-weighted solve)" if _converged(mm) else ""), progress)
        else:
            _log("anytime:   no certificate for a coarse scan point (it ranks, it is solved again)", progress)
        clock.lap("certificate")
    trunk, branches = _schedules_of(plan, u)
    losses = np.array([replay(replace(spec, T=T), np.concatenate([trunk[:t], b])).final
                       for T, t, b in zip(hs, leave, branches, strict=True)])
    clock.lap("replay")
    success = status in SOLVED and not discarded
    if cert is not None:  # the worst regret: the certificate alone decides
        success = cert.success
        status = cert.status if cert.success or cert.status not in SOLVED else GAP_NOT_CLOSED
    elif objective == "worst":
        success, status = False, NOT_CERTIFIED
    return _Solved(leave=leave, plan=plan, trunk=trunk, branches=branches, losses=losses,
                   nlp_losses=np.asarray(nlp_losses, dtype=float), optima=star, objective=objective, weights=w,
                   success=success, status=status, discarded=discarded, iterations=iterations,
                   multipliers=w_final, certificate=cert, lb_schedules=lb_scheds, stages=clock.stages,
                   lb_status=lb_status)


class _Clock:
    """Wall and CPU seconds (every thread of the process) per stage of a solve."""

    def __init__(self) -> None:
        self.stages: dict[str, list[float]] = {}
        self._wall, self._cpu = time.perf_counter(), time.process_time()

    def lap(self, name: str) -> None:
        wall, cpu = time.perf_counter(), time.process_time()
        acc = self.stages.setdefault(name, [0.0, 0.0])
        acc[0] += wall - self._wall
        acc[1] += cpu - self._cpu
        self._wall, self._cpu = wall, cpu


@dataclass(frozen=True)
class Certificate:
    """Weak duality for the worst regret. For any weights ``w`` on the simplex,
    ``min_x w · G(x) <= min_x max_i G_i(x)``: the weighted sum's optimum ``dual`` is a
    lower bound of the best worst regret, and ``gap = worst − dual`` (``worst`` the plan's
    transcribed worst regret ``max_i G_i(x̂)``) bounds how far the plan is from the
    minimax. ``dual`` is IPOPT's optimum of the weighted sum at ``w``: the last
    re-weighted solve when IPOPT converged on it (``x̂`` is then that optimum), else solved
    on from ``x̂`` (:func:`_certify`) — a local optimum, so the certificate holds against
    the minima IPOPT reaches from there, not globally. ``success`` when IPOPT solved that problem
    (``status`` in :data:`SOLVED`; a ``Dual_Stalled`` solve is not solved, and its value
    only an upper estimate of the minimum) and ``gap <= tolerance``
    (``max(MINIMAX_TOL · worst, MINIMAX_ABS)``)."""

    worst: float
    dual: float
    gap: float
    tolerance: float
    weights: np.ndarray
    status: str
    iterations: int

    @property
    def success(self) -> bool:
        return self.status in CERTIFIED and self.gap <= self.tolerance


def _certify(prob: Any, plan: BranchPlan, u: np.ndarray, w: np.ndarray, bounds: tuple[np.ndarray, np.ndarray],
             floor: np.ndarray, opts: SolverOptions, tail: float, solved: str | None = None,
             lam_x: np.ndarray | None = None) -> Certificate:
    """The weak-duality certificate (:class:`Certificate`) of the rates ``u`` (block
    values) with the weights ``w``: the weighted sum at ``w`` is solved from ``u``, in
    rounds of ``round_iter`` IPOPT iterations (at most ``max_iter``), until IPOPT
    converges, or until the weighted sum moves by less than ``DUAL_STALL`` of the
    tolerance in a round (status ``Dual_Stalled``: not solved, so not certified).
    ``solved`` is IPOPT's status when ``u`` is already its optimum of the weighted sum at
    ``w`` (the last re-weighted solve converged there): nothing is solved again. IPOPT
    starts warm (a cold restart from a point that is nearly optimal can spend a whole round
    regaining it) from ``lam_x``, the bound multipliers of the solve that ended at ``u``,
    or else from ``−∇(w · G)(u)`` (the bound multipliers where ``u`` is a KKT point)."""
    tg = np.asarray(plan.targets, dtype=float)
    w = np.asarray(w, dtype=float) / float(np.sum(w))
    base = prob.model[: prob.model.size - w.size]
    prob.model = np.concatenate([base, w])
    worst = float(np.max(_nlp_losses(plan, u, base, tail) / tg - 1.0))
    tolerance = max(MINIMAX_TOL * worst, MINIMAX_ABS)
    dual = float(w @ (_nlp_losses(plan, u, base, tail) / tg - 1.0))
    status, iterations, x = solved or "not run", 0, u
    if lam_x is None and not solved:
        unit = np.ones(u.size)
        lam_x = -np.asarray(prob.grad(u, prob.p(unit))[1]).ravel()
    one = replace(opts, max_iter=opts.round_iter)
    for _ in range(0 if solved else max(1, opts.max_iter // opts.round_iter)):
        run = run_rounds(prob, x, fresh_scale(prob, x, floor, True), np.zeros(u.size), bounds, floor, one, {},
                         lam_x=lam_x)
        lam_x = run.lam_x
        iterations += run.iterations
        new = float(w @ (_nlp_losses(plan, run.u, base, tail) / tg - 1.0))
        moved, dual, x = dual - new, min(dual, new), run.u
        status = str(run.stats.get("return_status", "unknown"))
        if _converged(run):
            break
        if run.discarded or moved <= DUAL_STALL * tolerance:
            status = DUAL_STALLED
            break
    return Certificate(worst=worst, dual=dual, gap=worst - dual, tolerance=tolerance, weights=w, status=status,
                       iterations=iterations)


def certify(result: BranchingResult, weights: Sequence[float] | None = None,
            trunk: np.ndarray | None = None, branches: Sequence[np.ndarray] | None = None) -> Certificate:
    """The weak-duality certificate of a plan (:class:`Certificate`): by default the
    result's own plan and multipliers; ``weights``, ``trunk`` and ``branches`` (per-update
    rates, as in the result) replace them, to check another plan or other weights."""
    opts = replace(result.options if result.options is not None else SolverOptions(), progress=False)
    tail = spectrum(result.spec).tail
    targets = tuple(float(s) for s in result.optima)
    w = np.asarray(result.multipliers if weights is None else list(weights), dtype=float)
    w = _check_weights(list(w), len(result.horizons))
    plan = make_branch_plan(result.spec, opts, result.horizons, result.leave, targets, tail, "weighted",
                            tuple(float(x) for x in w))
    prob = compile_problem(plan, Branching(), 0.0, opts)
    prob.model = model_parameters(plan, result.spec)
    u = _blocks_of(plan, result.trunk if trunk is None else np.asarray(trunk, dtype=float),
                   tuple(result.branches if branches is None else branches), result.spec.eta_max)
    K = plan.n_controls
    return _certify(prob, plan, u, w, (np.zeros(K), np.full(K, result.spec.eta_max)),
                    np.full(K, 1e-3 * result.spec.eta_max), opts, tail)


def _blocks_of(plan: BranchPlan, trunk: np.ndarray, branches: Sequence[np.ndarray], eta_max: float) -> np.ndarray:
    """Block values on ``plan`` of per-update rates (a trunk at least ``max t_i`` long,
    branch ``i`` from ``t_i`` to ``T_i``): block means, so exact for rates constant on
    the plan's blocks."""
    end = int(plan.grid[-1])
    t = np.asarray(trunk, dtype=float)
    parts = [block_means(t[:end], plan.grid) if end > 0 else np.zeros(0)]
    for b, g in zip(branches, plan.branch_grids, strict=True):
        parts.append(block_means(np.asarray(b, dtype=float), g - g[0]))
    return np.clip(np.concatenate(parts), 0.0, eta_max)


def _minimax(prob: Any, run: Any, targets: tuple[float, ...], tail: float, plan: BranchPlan,
             bounds: tuple[np.ndarray, np.ndarray], floor: np.ndarray, opts: SolverOptions, w: np.ndarray,
             progress: bool = False, rounds: int = MINIMAX_ROUNDS) -> tuple[Any, np.ndarray, np.ndarray]:
    """The worst regret as a sequence of weighted-sum solves, each smooth and warm-started.

    At the optimum ``u_w`` of ``Σ w_i G_i`` (``G_i`` the transcribed regrets, ``w`` on the
    simplex), ``w · G(u_w)`` is the weighted sum's (local) minimum, a lower bound of the
    worst regret by weak duality, and ``max G(u_w)`` is attained: their difference
    ``max G − w · G = Σ_i w_i (max G − G_i)`` is the duality gap, which :func:`_certify`
    checks at the end. The weights are moved to
    equalise the regrets: a Newton step on the dual with the Jacobian ``∂G/∂w`` from the
    solves so far (a first secant, then Broyden updates; each solve freshly scaled), each weight changed by at most
    a factor ``WEIGHT_STEP`` per step and kept above ``WEIGHT_MIN`` (a horizon with no
    weight would leave its branch undetermined); a step whose solve has a larger gap than
    the last accepted one is halved (at most ``MINIMAX_BACKTRACK`` times in a row, then it
    stops). Stops when the gap is within the tolerance (:class:`Certificate`), or after
    ``rounds`` solves. Each solve is logged once: the weights tried, the regrets, the gap,
    IPOPT's status and whether the step was accepted.
    Returns the solve with the smallest gap (its iterations those of every re-weighted
    solve, its ``stats`` and ``discarded`` its own), the rates' ``L + tail`` and its weights.
    """
    tg = np.asarray(targets, dtype=float)
    base = prob.model[: prob.model.size - w.size]
    last = run
    losses = _nlp_losses(plan, last.u, base, tail)
    G = losses / tg - 1.0
    iterations = 0
    jac: np.ndarray | None = None
    gap = float(np.max(G) - w @ G)
    best: tuple[float, Any, np.ndarray, np.ndarray] = (gap, last, losses, w)
    _log(f"anytime:   start  weights {_fmt(w)}: regrets {_fmt(100 * G)}%, gap {gap:.2e}, "
         f"{_status(last)}, {last.iterations} it", progress)
    pending: np.ndarray | None = None
    backtracks = 0
    for k in range(1, rounds + 1):
        if gap <= max(MINIMAX_TOL * float(np.max(G)), MINIMAX_ABS):
            break  # closed at the accepted solve: the certificate (_certify) checks it
        new_w = _next_weights(w, G, jac) if pending is None else pending
        prob.model = np.concatenate([base, new_w])
        # A fresh curvature scaling: the weights change the curvature of every branch's rates.
        t1 = time.perf_counter()
        scale = fresh_scale(prob, last.u, floor, True)
        nxt = run_rounds(prob, last.u, scale, np.zeros(last.u.size), bounds, floor,
                         replace(opts, max_iter=min(opts.max_iter, REWEIGHT_ROUNDS * opts.round_iter)), {})
        iterations += nxt.iterations
        new_losses = _nlp_losses(plan, nxt.u, base, tail)
        new_G = new_losses / tg - 1.0
        new_gap = float(np.max(new_G) - new_w @ new_G)
        dw, dG = new_w - w, new_G - G
        if float(dw @ dw) > 0:
            if jac is None:
                # The first secant: a multiple of the simplex's projection (∂G/∂w is
                # negative semidefinite and w ⊥ rows when the weighted optimum is unique).
                c = max(-float(dG @ dw) / float(dw @ dw), 1e-12)
                jac = -c * (np.eye(w.size) - 1.0 / w.size)
            else:
                jac = jac + np.outer(dG - jac @ dw, dw) / float(dw @ dw)
        accepted = new_gap < gap
        verdict = "accepted" if accepted else (
            f"rejected (gap above the accepted {gap:.2e}): "
            + ("stop" if backtracks >= MINIMAX_BACKTRACK else "halve the step"))
        _log(f"anytime:   try {k:<2d} weights {_fmt(new_w)}: regrets {_fmt(100 * new_G)}%, gap {new_gap:.2e}, "
             f"{_status(nxt)}, {nxt.iterations} it, {time.perf_counter() - t1:.1f} s: {verdict}", progress)
        if accepted:
            w, G, losses, last, gap = new_w, new_G, new_losses, nxt, new_gap
            pending, backtracks = None, 0
            if gap < best[0]:
                best = (gap, last, losses, w)
        elif backtracks >= MINIMAX_BACKTRACK:
            break  # no step from here lowers the gap: the best solve so far is the answer
        else:  # the gap grew: halve the step from the last accepted weights
            pending, backtracks = 0.5 * (w + new_w), backtracks + 1
    # The re-weighted solve with the smallest gap (the weights can oscillate when the
    # horizons' trade-off is not convex); the certificate checks it.
    _, last, losses, w = best
    last.iterations = iterations
    return last, losses, w


def _fmt(x: np.ndarray) -> str:
    return "[" + ", ".join(f"{float(v):.4f}" for v in x) + "]"


def _status(run: Any) -> str:
    status = str(run.stats.get("return_status", "unknown"))
    return f"{status} (last round discarded)" if run.discarded else status


def _converged(run: Any) -> bool:
    """True when IPOPT solved the run's problem to its tolerance (its last round kept)."""
    return str(run.stats.get("return_status", "unknown")) in SOLVED and not run.discarded


def _next_weights(w: np.ndarray, G: np.ndarray, jac: np.ndarray | None) -> np.ndarray:
    """The weights of the next weighted-sum solve: with a Jacobian ``∂G/∂w``, the Newton
    step to equal regrets on the simplex, a horizon whose regret is below the weighted one
    not gaining weight; without one, a multiplicative step towards the horizons with the
    largest regret. Each weight moves by a factor ``WEIGHT_STEP`` at most and stays above
    ``WEIGHT_MIN``."""
    n = w.size
    if jac is None:
        spread = max(float(np.max(G) - np.min(G)), 1e-300)
        out = w * np.exp(np.log(WEIGHT_STEP) * (G - np.max(G)) / spread)
    else:
        A = np.zeros((n + 1, n + 1))
        A[:n, :n], A[:n, n], A[n, :n] = jac, -1.0, 1.0
        rhs = np.concatenate([jac @ w - G, [1.0]])
        out = np.linalg.lstsq(A, rhs, rcond=None)[0][:n]
        # A horizon below the weighted regret does not gain weight (the Jacobian is a
        # secant estimate; this keeps an inactive horizon's weight going down).
        out = np.where(G < w @ G, np.minimum(out, w), out)
    out = np.clip(out, w / WEIGHT_STEP, w * WEIGHT_STEP)
    out = np.maximum(out / out.sum(), WEIGHT_MIN)
    return out / out.sum()


def _message(best: _Solved) -> str:
    c = best.certificate
    if c is not None and not c.success and c.status not in SOLVED:
        return (f"the worst regret is not certified: the weighted-sum (dual) problem at the final weights was "
                f"not solved by IPOPT ({c.status}"
                + (": a round of iterations lowered it by less than 1% of the tolerance" if c.status == DUAL_STALLED
                   else "") + f"), so its value {c.dual:.3e} is only an upper estimate of its minimum and the gap "
                f"{c.gap:.2e} (tolerance {c.tolerance:.2e}) bounds nothing; the plan is the last weighted-sum "
                "optimum (raise solver.max_iter, or loosen solver.tol).")
    if best.status == NOT_CERTIFIED:
        return "a coarse scan point: ranked by its replayed worst regret, not certified."
    if best.status == GAP_NOT_CLOSED and c is not None:
        return (f"the worst regret is not certified: the weak-duality gap (worst regret {c.worst:.3e} − the "
                f"weighted sum's minimum {c.dual:.3e} at the final weights = {c.gap:.2e}) is above its "
                f"tolerance {c.tolerance:.2e} after {MINIMAX_ROUNDS} re-weightings (IPOPT: {c.status}); the plan "
                "is the last weighted-sum optimum, not the worst-regret optimum (raise solver.max_iter).")
    return message(best.status, best.discarded)


def _nlp_losses(plan: BranchPlan, u: np.ndarray, model: np.ndarray, tail: float) -> np.ndarray:
    """The transcription's ``L_{T_i} + tail`` at the rates ``u`` (no ``r``)."""
    n = plan.spectrum.n_modes
    x = ca.MX.sym("x", plan.n_controls)
    m = Model(lam=ca.MX.sym("lam", n), lam_w=ca.MX.sym("lw", n), c0=ca.MX.sym("c0", n),
              sigma2=ca.MX.sym("s2"), m=ca.MX.sym("m"))
    f = ca.Function("losses", [x, m.lam, m.lam_w, m.c0, m.sigma2, m.m],
                    [ca.vertcat(*Branching().losses(plan, x, m))])
    xv = np.concatenate([u, np.zeros(plan.n_controls - u.size)])
    out = f(xv, model[:n], model[n:2 * n], model[2 * n:3 * n], model[3 * n], model[3 * n + 1])
    return np.asarray(out, dtype=float).ravel() + tail


def _candidates(spec: ProblemSpec, plan: BranchPlan, schedules: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """Starts: the longest horizon's optimum as the trunk with each horizon's own optimum
    as its branch; and WSD-S shapes (a constant trunk, linear or polynomial decays)."""
    cands = []
    longest = schedules[-1]
    trunk = block_means(longest[: int(plan.grid[-1])], plan.grid) if plan.grid[-1] > 0 else np.zeros(0)
    own = [block_means(s[int(g[0]):], g - g[0]) for s, g in zip(schedules, plan.branch_grids, strict=True)]
    cands.append(np.concatenate([trunk, *own]))
    for h in spec.eta_max * np.array([1.0, 0.5, 0.25, 0.1]):
        for delta in (1.0, float(np.clip(2 * spec.b - 1, 1.0, 9.0))):
            parts = [np.full(plan.trunk_blocks, h)]
            for g in plan.branch_grids:
                u = (0.5 * (g[:-1] + g[1:]) - g[0]) / (g[-1] - g[0])
                parts.append(h * (1 - u) ** delta)
            cands.append(np.concatenate(parts))
    return [np.clip(c, 0.0, spec.eta_max) for c in cands]


def _check_weights(weights: Sequence[float] | None, n: int) -> np.ndarray:
    if weights is None:
        return np.full(n, 1.0 / n)
    w = np.asarray(list(weights), dtype=float)
    if w.shape != (n,) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
        raise SpecError("weights", list(weights), f"give {n} finite weights >= 0, not all zero")
    return w / w.sum()


def _points(hs: tuple[int, ...], fracs: Sequence[float]) -> tuple[int, ...]:
    return tuple(min(T - 1, max(0, int(round((1 - f) * T)))) for T, f in zip(hs, fracs, strict=True))


def _fraction_of(leave: tuple[int, ...], hs: tuple[int, ...], fr: list[float]) -> float:
    d = 1 - leave[0] / hs[0]
    return min(fr, key=lambda f: abs(f - d))


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)

