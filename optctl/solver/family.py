"""Optimal schedules of the momentum families: the family control sets through the one driver.

:func:`solve_family` solves the step schedules of a family control set
(:class:`~optctl.solver.controls.DanaSchedule`, :class:`~optctl.solver.controls.ScheduleFreeLR`)
with the same pieces as :func:`optctl.solver.solve.solve`: the control set's dynamics
transcribed by :func:`~optctl.solver.transcribe.transcribe`, compiled and cached by
:func:`~optctl.solver.ipopt.compile_problem`, ranked starts, curvature scaling and IPOPT
in rounds (:func:`~optctl.solver.ipopt.run_rounds`). The plan (:func:`family_plan`) is the
refined block grid of ``options.K`` blocks on the grouped spectrum when ``N`` exceeds
``options.group_min_N``, integrated by the exact per-step chain or, for long horizons, by
closed-form sub-blocks on which the step-dependent coefficient is held (so a solve at
``T = 10^5`` costs about what one at ``10^3`` does).

The answer is checked against the family's own exact replay
(:func:`optctl.model.families.family_loss`: every mode, the optimizer's literal
coefficients), not against the transcription: ``replay_gap`` is the relative
difference between the transcribed objective and that replay.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from optctl.model import families as F
from optctl.model.spectrum import spectrum
from optctl.solver.controls import DanaSchedule, FamilySchedule, ScheduleFreeLR
from optctl.solver.grid import make_grid, subdivide
from optctl.solver.ipopt import (
    compile_problem,
    fresh_scale,
    ipopt_options,
    message,
    run_rounds,
    stop_on_sigint,
)
from optctl.solver.piecewise import expand
from optctl.solver.plan import SUBBLOCK_RESTART, Plan, plan_spectrum
from optctl.solver.transcribe import model_parameters
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions


@dataclass(frozen=True)
class FamilySolve:
    """A solved family schedule: per-update schedules, the exact replayed ``L_T`` and how
    the solve went. ``schedules`` maps each solved coefficient to its per-step values;
    ``optimizer`` is the family's :class:`~optctl.model.families.LinearOptimizer` with them."""

    family: str
    T: int
    grid: np.ndarray
    schedules: dict[str, np.ndarray]
    optimizer: F.LinearOptimizer
    final_loss: float
    objective: float
    replay_gap: float
    start_loss: float
    start: int
    success: bool
    status: str
    message: str
    iterations: int
    wall_time: float
    at_box: bool
    info: dict[str, Any] = field(default_factory=dict)


# Sub-blocks of the closed-form family propagator (``propagator: block``): after every control
# change 1, 4, 16, ... updates, never more than FAMILY_SUBBLOCK_REL × min(t + 1, T − t). The
# step-dependent factor (DANA's 1 − Δ(t), Δ = δ/(δ + t); Schedule-Free's 1 − c_t, c = 1/(t + 2))
# is held at its geometric mean over a sub-block; the cap bounds its relative change inside one,
# (n − 1)/(δ + t) for Δ and (n − 1)/(t + 2) for c, by FAMILY_SUBBLOCK_REL. Measured on the solved
# schedules of the three models at T = 10^3 and 10^4 (docs/momentum_families.md §7): the blocked L_T
# is within 2.7e-4 of the exact replay at 0.05 (5e-4 at 0.1); the held factor alone costs ~1e-5, the
# rest is the loss taken linear inside a sub-block.
FAMILY_SUBBLOCK_REL = 0.05
# Grouped modes of the family plans: the first FAMILY_GROUP_EXACT stay exact (GROUP_EXACT = 16 for
# SGD and EMA momentum): at effective steps near 1000, 3-point Gauss bins over the head modes
# miss (docs/momentum_families.md §7). Measured on the hard model's capped DANA schedule at T = 10^5 (effective step up to
# 1075), blocked L_T against the exact replay: -5.5e-3 with 16 exact modes, +1.7e-3 with 32,
# -1.4e-4 with 64, +5.7e-4 with 128 and +5.0e-4 with all 1500 (the rest is the sub-block error);
# the other stored solves (effective steps <= 223) move by <= 7e-5 between 16 and 128. A synthetic
# schedule with steps up to 1192 (tests/test_family_blocks.py): 32 exact modes -> 2.3e-2, 64 -> 4.8e-4,
# 128 -> 4.2e-4.
FAMILY_GROUP_EXACT = 128
# ``propagator: auto``: the exact per-step chain up to this many updates, sub-blocks beyond.
FAMILY_STEP_MAX_T = 1000


def family_plan(spec: ProblemSpec, options: SolverOptions) -> Plan:
    """The refined grid of ``options.K`` blocks (per step when ``K ≥ T``) on grouped modes when
    ``N > options.group_min_N`` (the first :data:`FAMILY_GROUP_EXACT` kept; ``modes: exact`` keeps all), with ``options.propagator``:
    ``step`` chains the exact recursion update by update (cost ∝ T), ``block`` propagates
    closed-form sub-blocks (:data:`FAMILY_SUBBLOCK_REL`; cost ∝ log T), ``auto`` is ``step`` up
    to :data:`FAMILY_STEP_MAX_T` updates and ``block`` beyond."""
    grid = make_grid("refined", spec.T, options.K)
    grouped = options.modes == "grouped" or (options.modes == "auto" and spec.N > options.group_min_N)
    modes = "grouped" if grouped else "exact"
    propagator = options.propagator
    if propagator == "auto":
        propagator = "step" if spec.T <= FAMILY_STEP_MAX_T else "block"
    if propagator == "step":
        lengths = np.ones(spec.T, dtype=np.int64)
        owner = np.repeat(np.arange(grid.size - 1), np.diff(grid))
    else:
        lengths, owner = subdivide(grid, FAMILY_SUBBLOCK_REL, SUBBLOCK_RESTART)
    return Plan(grid_kind="refined", grid=grid, lengths=lengths, owner=owner, propagator=propagator,
                modes=modes, spectrum=plan_spectrum(spec, modes, FAMILY_GROUP_EXACT))


def optimizer_of(cs: FamilySchedule, T: int, schedules: dict[str, np.ndarray]) -> F.LinearOptimizer:
    """The family's literal optimizer with these per-step schedules."""
    if isinstance(cs, DanaSchedule):
        return F.generalized_momentum(T, 1.0, schedules["gamma2"], schedules["gamma3"], cs.momentum_rate(T),
                                      name="dana-scheduled", params={"delta": cs.delta})
    if isinstance(cs, ScheduleFreeLR):
        return F.schedule_free(T, schedules["lr"], cs.beta)
    raise TypeError(type(cs).__name__)


def start_of(opt: F.LinearOptimizer, eta_max: float | None = None) -> tuple[np.ndarray, ...]:
    """A family optimizer's per-step schedules as a start of its schedule solve (ordered as
    :func:`schedule_names`): Schedule-Free's ``γ_t``, or DANA's ``(γ₂, γ₃)``; with ``eta_max``
    they are shrunk where the effective step exceeds ``0.99 · eta_max``."""
    T = opt.T
    eff = F.effective_step(opt)
    shrink = np.ones(T) if eta_max is None else np.minimum(1.0, 0.99 * eta_max / np.maximum(eff, 1e-300))
    if opt.name == "schedule-free":
        return (np.broadcast_to(np.asarray(opt.params["_lr_t"], dtype=float), (T,)) * shrink,)
    g2 = np.broadcast_to(np.asarray(opt.params["_g2"], dtype=float), (T,)) * shrink
    g3 = np.broadcast_to(np.asarray(opt.params["_g3"], dtype=float), (T,)) * shrink
    return g2.copy(), g3.copy()


def schedule_names(cs: FamilySchedule) -> tuple[str, ...]:
    return ("gamma2", "gamma3") if isinstance(cs, DanaSchedule) else ("lr",)


def solve_family(spec: ProblemSpec, cs: FamilySchedule, starts: list[tuple[np.ndarray, ...]],
                 options: SolverOptions | None = None, *, attempts: int = 1) -> FamilySolve:
    """Minimise the exact expected ``L_T`` over the block schedules of ``cs``.

    ``starts``: per-step schedules to start from (a tuple per start, ordered as
    :func:`schedule_names`; a tuned family's constant or decaying schedules, another
    horizon's answer); IPOPT starts from the best-ranked one. When that solve does not
    succeed, up to ``attempts`` starts are solved in rank order until one does, and the
    attempt with the lowest replayed ``L_T`` is returned (its own status); every attempt is
    listed in ``info["attempts"]``. The result's loss is the family's exact
    replay (all modes).
    """
    options = SolverOptions() if options is None else options
    # One round: rescaling every ``round_iter`` iterations made the second round of the
    # DANA solve (hard model, T = 100) end above its start and be discarded, while one
    # round of 426 iterations converged (docs/momentum_families.md §7).
    options = replace(options, round_iter=options.max_iter)
    t0 = time.perf_counter()
    plan = family_plan(spec, options)
    prob = compile_problem(plan, cs, 0.0, options)
    prob.model = model_parameters(plan, spec)
    controls = ControlSpec()
    K = plan.n_controls
    cands = cs.starts(spec, plan, starts)
    scores = np.asarray(prob.score(cands), dtype=float)
    if not np.any(np.isfinite(scores)):
        raise FloatingPointError("every start of the family solve diverges; give smaller steps")
    ranked = [int(i) for i in np.argsort(np.where(np.isfinite(scores), scores, np.inf)) if np.isfinite(scores[i])]
    bounds = cs.plan_bounds(spec, plan)
    floor = cs.floor(spec, controls, K)
    sp = spectrum(spec)
    names = schedule_names(cs)
    ipopt = {k: v for k, v in cs.solve_ipopt(plan).items() if k not in options.ipopt}
    history = int({**ipopt_options(options), **ipopt}["limited_memory_max_history"])
    tried: list[dict[str, Any]] = []
    best: FamilySolve | None = None
    for best_start in ranked[:max(1, attempts)]:
        scale = fresh_scale(prob, cands[best_start], floor, options.precondition, cs.curvature_clip)
        with stop_on_sigint(prob.monitor):
            run = run_rounds(prob, cands[best_start], scale, np.zeros(prob.size), bounds, floor, options,
                             cs.constraint_bounds(spec, plan), cs.curvature_clip, ipopt=ipopt or None)
        objective = prob.objective(run.u, run.scale) + sp.tail
        schedules = {name: expand(run.u[i * K:(i + 1) * K], plan.grid) for i, name in enumerate(names)}
        opt = optimizer_of(cs, spec.T, schedules)
        final = float(F.family_loss(spec, opt, sp=sp))
        status = str(run.stats.get("return_status", "unknown"))
        hi = bounds[1]
        res = FamilySolve(
            family=type(cs).__name__, T=spec.T, grid=plan.grid, schedules=schedules, optimizer=opt,
            final_loss=final, objective=objective, replay_gap=(objective - final) / final,
            start_loss=float(scores[best_start]) + sp.tail, start=best_start,
            success=bool(run.stats.get("success", False)) and not run.discarded, status=status,
            message=message(status, run.discarded, run.capped), iterations=run.iterations,
            wall_time=time.perf_counter() - t0,
            at_box=cs.eta_max is None and bool(np.any((hi > 0) & (run.u >= 0.999 * hi))),
            info={**plan.describe(), "compile_cache": prob.cache, "compile_time_s": prob.build_time,
                  "ipopt_rounds": run.rounds, "start_scores": [float(s) + sp.tail for s in scores],
                  "lbfgs_history": history})
        tried.append({"start": best_start, "loss": final, "status": status, "success": res.success,
                      "iterations": run.iterations})
        if best is None or res.final_loss < best.final_loss:
            best = res
        if res.success:
            break
    assert best is not None
    best.info["attempts"] = tried
    return replace(best, wall_time=time.perf_counter() - t0)
