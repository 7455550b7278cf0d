"""``solve``: the one verb that solves every control problem of MODEL.md §4."""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np

from optctl.errors import SpecError
from optctl.model.replay import preload, state_after
from optctl.model.spectrum import spectrum, stable_rate
from optctl.solver.controls import Init, LearningRate, control_set, per_step_start
from optctl.solver.ipopt import (
    CURVATURE_PROBES,
    POLISH_MAX_T,
    Compiled,
    Rounds,
    compile_problem,
    fresh_scale,
    message,
    polish,
    run_rounds,
    stop_on_sigint,
)
from optctl.solver.law import law_schedule
from optctl.solver.piecewise import block_means
from optctl.solver.plan import Plan, make_plan, resolve_options
from optctl.solver.resources import check_solve_fits
from optctl.solver.result import ScheduleResult
from optctl.solver.transcribe import model_parameters
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.validate import per_step
from optctl.versions import versions

# From this horizon on, a learning-rate solve without ``init`` (and without a prefix) also
# ranks the finite-horizon law's schedule (optctl.solver.law) among its starts. It costs
# milliseconds and lies close to the optimum. Where the run from it does not converge the
# best generic start runs too. Per-step problems (T <= 500 by default) keep the generic starts.
LAW_START_MIN_T = 1000
# IPOPT's options for the run from the law's start and its polish, over the solver's own (a
# key the config's solver.ipopt sets is left as given). IPOPT's default adaptive barrier
# opens far above what a start this close needs and steps away from it: hard T = 10^7 spent
# a whole 200-iteration round coming back, ended above its start, and fell back to a generic
# start (591 iterations). A monotone barrier from 1e-6 (as the momentum problem uses,
# optctl.solver.controls) stays near the start. Reference solves (benchmarks/reference_solves.py,
# with 32 curvature probes then; LAW_START_PROBES below for 16), IPOPT iterations, polish included: easy T = 10^3 56 -> 18, 3162
# 70 -> 17, 10^6 90 -> 15; hard 95 -> 34, 95 -> 31, 164 -> 21; every replayed L_T lower (hard
# T = 10^3 by 8e-9, 10^6 by 6e-8, easy 10^6 by 2e-7, relative). Hard T = 10^7: 591 -> 23.
LAW_START_IPOPT = {"mu_strategy": "monotone", "mu_init": 1e-6}
# Curvature probes of the scaling at the law's start (optctl.solver.ipopt.curvature_scale;
# 64 elsewhere). Each costs one gradient, about one IPOPT iteration, and at T = 1000 the 32
# probes used before cost more CPU than the whole IPOPT run. The reference solves
# (benchmarks/reference_solves.py, results/benchmarks/reference_solves_probes16.md), IPOPT
# iterations with 32 -> 16 probes: easy T = 1000 18 -> 18, 3162 17 -> 17, 10^6 15 -> 17;
# hard 34 -> 35, 31 -> 34, 21 -> 25; replayed L_T equal within 1.4e-11 relative but at
# 10^6 (easy 1.6e-8 lower, hard 2.7e-10 higher); the (eta, beta) solve, whose start is such a
# learning-rate solve, 333 -> 355 iterations, L_T 1.6e-10 higher. With 8, hard T = 1000 took
# 36 iterations.
LAW_START_PROBES = 16
# A warm solve (``warm=True``: ``init`` is the optimum of a nearby problem, a sweep's previous
# horizon say) measures the curvature at this many controls instead of CURVATURE_PROBES
# (the warm IPOPT run needs a rough scaling only; the 64 probes cost more than its ~15
# iterations at T = 10^5).
WARM_PROBES = 16


def solve(spec: ProblemSpec, options: SolverOptions | None = None, *,
          controls: ControlSpec | None = None, init: Init = None,
          prefix: np.ndarray | None = None, start_from: str = "best", warm: bool = False) -> ScheduleResult:
    """Minimise the final loss ``L_T`` over the schedule of ``controls`` with IPOPT.

    ``controls`` (default: the learning rate alone, MODEL.md §4.1) may add the batch size
    under the sample budget ``Σ_t m_t = T m̄`` (§4.2) or the EMA momentum weight ``β``
    (§4.3). The schedule is piecewise constant on the control grid chosen by ``options``
    (:mod:`optctl.solver.plan` resolves ``auto``); IPOPT starts from the best of several
    ranked candidates (a joint problem's are built on the learning-rate optimum, solved
    first with the same options) and ``init``: a per-step learning rate of length ``T``
    (with a second control, a pair of per-step arrays), or a function of ``u = t/T``
    returning it (another horizon's solution, say). From ``T = LAW_START_MIN_T`` on, a
    learning-rate solve without ``init`` or ``prefix`` also ranks the finite-horizon
    law's schedule (:func:`optctl.solver.law.law_schedule`; ``transcription["law_start"]``
    says whether it was the start taken). The answer is always replayed step
    by step with all ``N`` modes, and the replayed loss is the one reported.
    Bordelon & Mori, arXiv:2602.04774, section 4.

    ``prefix`` (learning rate alone) fixes the first ``t = len(prefix)`` updates: the
    rest of the horizon is solved from the state they lead to (a closed-loop re-solve
    during training, or a branch leaving a trunk), ``init`` is then a start for the rest
    (``T − t`` updates), and the result covers all ``T`` updates, prefix included.

    ``start_from="init"`` makes IPOPT start from ``init`` itself instead of the best-ranked
    candidate (to test that two different starts reach the same optimum).

    ``warm=True`` (learning rate alone, no prefix) says that ``init`` is the optimum of a
    nearby problem (a sweep's previous horizon in ``u = t/T``), or, without ``init`` from
    ``T = LAW_START_MIN_T`` on, that the law's schedule is close enough to the optimum to
    start from: the start is then the better of ``init`` and the law's schedule (not the
    generic candidates; ``transcription["warm_start"]`` says which), the curvature is
    measured at :data:`WARM_PROBES` controls, and IPOPT starts warm from the bound
    multipliers of the gradient there, with the objective scaled to order one so that
    ``options.tol`` is relative to ``L_T`` (:func:`_warm_rounds`). A warm run that does not
    converge is followed by the usual cold solve from the best-ranked generic candidate,
    and the lower of the two kept (``transcription["warm"]`` says so). Sweeps solve this
    way (:mod:`optctl.studies.sweep`); a plain solve does not.

    Ctrl-C stops IPOPT and raises ``KeyboardInterrupt``; an IPOPT that cannot run at all
    (an invalid option, say) raises :class:`~optctl.errors.SolverError`; a run that does
    not converge is reported in ``status``/``message`` with ``success = False``. Solves
    of the same shape share one compiled problem: run concurrent solves in separate
    processes (as sweeps do), not in threads.
    """
    controls = ControlSpec() if controls is None else controls
    controls.check_problem(spec)
    controls.check_options(SolverOptions() if options is None else options)
    cs = control_set(controls)
    options = resolve_options(SolverOptions() if options is None else options, cs.second)
    check_solve_fits(spec, options, controls)  # refuse, before any work, what cannot fit
    t_start = time.perf_counter()
    preload()  # the replay's kernels load on another core while CasADi computes
    full, done = spec, _check_prefix(prefix, spec, cs.second)
    if done is not None:
        spec = replace(full, T=full.T - done.size)
    extra: dict[str, object] = {}
    start = None
    inner_time = 0.0
    if cs.second is not None:
        # The learning-rate optimum at the mean batch (β = 1): a feasible start.
        given = per_step_start(init, spec, 2) if options.warm_start else None
        # The start needs no more modes than the joint problem (polished when grouped).
        grouped = options.modes == "grouped" or (
            options.modes == "auto" and make_plan(spec, options, cs.second).modes == "grouped")
        sgd = solve(spec, replace(options, progress=False, modes="grouped" if grouped else options.modes),
                    init=None if given is None else given[0])
        start, extra["sgd_final_loss"] = sgd.eta, sgd.final_loss
        inner_time = extra["sgd_solve_time"] = sgd.wall_time
    pl = make_plan(spec, options, cs.second)
    kappa = float(controls.kappa or 0.0)
    prob = compile_problem(pl, cs, kappa, options)  # starts the progress clock
    extra["compile_cache"], extra["compile_time_s"] = prob.cache, prob.build_time
    start_state = None if done is None else state_after(full, done)
    prob.model = model_parameters(pl, spec, None if done is None else state_after(full, done, sp=pl.spectrum))
    K = pl.n_controls

    ranked: Init = init if options.warm_start else None
    law = cs.second is None and done is None and init is None and spec.T >= LAW_START_MIN_T
    if law:  # the law's schedule as the given start (the last candidate)
        ranked = law_schedule(spec).eta
    given_init = init if options.warm_start else None
    quick = (warm and cs.second is None and done is None and start_from == "best"
             and (given_init is not None or spec.T >= LAW_START_MIN_T))
    cands = _warm_candidates(spec, pl, given_init) if quick else cs.candidates(spec, controls, pl, ranked, start)
    scores = np.asarray(prob.score(cands), dtype=float)
    law = law and not quick  # a warm solve ranks the law's schedule itself
    if quick and not np.any(np.isfinite(scores)):  # no warm start is usable: the generic ones
        quick = False
        cands = cs.candidates(spec, controls, pl, ranked, start)
        scores = np.asarray(prob.score(cands), dtype=float)
    if not np.any(np.isfinite(scores)):
        raise _diverges(spec)
    best = int(np.nanargmin(np.where(np.isfinite(scores), scores, np.nan)))
    if start_from not in ("best", "init"):
        raise SpecError("start_from", start_from, "choose best (the best-ranked candidate) or init")
    if start_from == "init":
        if init is None or not options.warm_start or not np.isfinite(scores[-1]):
            raise SpecError("start_from", start_from, "needs a finite init (and solver.warm_start on): "
                            "the given start is the last candidate")
        best = len(cands) - 1
    if cs.second is not None:
        extra["start"] = best
    if law:
        extra["law_start"] = "chosen" if best == len(cands) - 1 else "ranked"
    bounds = cs.bounds(spec, controls, K)
    floor = cs.floor(spec, controls, K)
    taken = law and best == len(cands) - 1  # the run starts from the law's schedule
    probes = WARM_PROBES if quick else LAW_START_PROBES if taken else CURVATURE_PROBES
    scale = fresh_scale(prob, cands[best], floor, options.precondition, cs.curvature_clip, probes)
    build_time = time.perf_counter() - t_start - inner_time  # the start's own solve apart

    t0 = time.perf_counter()
    near = {k: v for k, v in LAW_START_IPOPT.items() if k not in options.ipopt} if taken else None
    with stop_on_sigint(prob.monitor):
        if quick:
            run = _warm_rounds(prob, cands[best], float(scores[best]), scale, bounds, floor, options)
            extra["warm"] = "warm"
            extra["warm_start"] = "init" if given_init is not None and best == len(cands) - 1 else "law"
            if not prob.monitor.interrupted and (run.discarded or not run.stats.get("success", False)):
                # The safeguard: the usual cold solve from the best generic candidate.
                generic = cs.candidates(spec, controls, pl, ranked, start)
                g_scores = np.asarray(prob.score(generic), dtype=float)
                if not np.any(np.isfinite(g_scores)):
                    raise _diverges(spec)
                g_best = int(np.nanargmin(np.where(np.isfinite(g_scores), g_scores, np.nan)))
                run, _ = _then_cold(prob, run, generic[g_best], bounds, floor, options,
                                    cs.constraint_bounds(spec, pl), cs.curvature_clip)
                extra["warm"] = "warm, then cold (the warm run did not converge)"
        else:
            run = run_rounds(prob, cands[best], scale, np.zeros(prob.size), bounds, floor, options,
                             cs.constraint_bounds(spec, pl), cs.curvature_clip, ipopt=near)
        if (taken and not prob.monitor.interrupted
                and (run.discarded or not run.stats.get("success", False))):
            # The law's start did not lead IPOPT to an optimum (hard case, T = 10^7: its
            # round was discarded): run from the best generic start too, keep the lower.
            other = int(np.nanargmin(np.where(np.isfinite(scores[:-1]), scores[:-1], np.nan)))
            run, generic_kept = _then_cold(prob, run, cands[other], bounds, floor, options,
                                           cs.constraint_bounds(spec, pl), cs.curvature_clip)
            extra["law_start"] = "chosen, then the best generic start (the law's run did not converge)"
            if generic_kept:
                near = None
        polished = 0
        if cs.second is None and options.polish and not pl.exact and spec.T <= POLISH_MAX_T:
            run, polished = polish(prob, pl, spec, run, bounds, floor, options, c0=start_state, ipopt=near)
    objective = prob.objective(run.u, run.scale)
    solve_time = time.perf_counter() - t0

    t0 = time.perf_counter()
    ans = cs.answer(spec, pl, run.u, prefix=done)
    replay_time = time.perf_counter() - t0
    objective += ans.replay.tail
    final = ans.replay.final
    status = str(run.stats.get("return_status", "unknown"))
    grid, eta_blocks = pl.grid, run.u[:K]
    if done is not None:  # the prefix as one block per update, then the solved blocks
        grid = np.concatenate([np.arange(done.size), done.size + pl.grid])
        eta_blocks = np.concatenate([done, eta_blocks])
        extra["prefix_steps"] = done.size
    return ScheduleResult(
        spec=full, options=options, controls=controls, grid=grid, eta_blocks=eta_blocks,
        eta=ans.eta, batch_size=ans.batch_size, beta=ans.beta, loss=ans.replay.loss,
        bias=ans.replay.bias, variance=ans.replay.variance, final_loss=final,
        objective=objective, replay_gap=(objective - final) / final,
        exact=pl.exact and kappa == 0.0, success=bool(run.stats.get("success", False)) and not run.discarded,
        status=status, message=message(status, run.discarded, run.capped), iterations=run.iterations,
        wall_time=time.perf_counter() - t_start, build_time=build_time, solve_time=solve_time,
        replay_time=replay_time,
        transcription={**pl.describe(), "ipopt_rounds": run.rounds, "polish_rounds": polished,
                       **extra, "initial_objective": float(np.nanmin(scores)) + ans.replay.tail},
        versions=versions(),
    )


def _then_cold(prob: Compiled, run: Rounds, u: np.ndarray, bounds: tuple[np.ndarray, np.ndarray],
               floor: np.ndarray, options: SolverOptions, constraints: dict[str, float],
               clip: float) -> tuple[Rounds, bool]:
    """A cold solve from ``u`` after ``run`` did not converge: the lower of the two, counting
    both runs' iterations and rounds, and whether the cold one was kept."""
    cold = run_rounds(prob, u, fresh_scale(prob, u, floor, options.precondition, clip),
                      np.zeros(prob.size), bounds, floor, options, constraints, clip)
    cold.iterations += run.iterations
    cold.rounds += run.rounds
    if prob.objective(cold.u, cold.scale) <= prob.objective(run.u, run.scale):
        return cold, True
    run.iterations, run.rounds = cold.iterations, cold.rounds
    return run, False


def _warm_candidates(spec: ProblemSpec, plan: Plan, init: Init) -> list[np.ndarray]:
    """A warm solve's starts: the law's schedule (from ``LAW_START_MIN_T`` on) and ``init``
    (last, when given), as block means clipped to the bounds."""
    given = per_step_start(init, spec, 1) or []
    starts = [law_schedule(spec).eta] if spec.T >= LAW_START_MIN_T else []
    return [np.clip(block_means(eta, plan.grid), 0.0, spec.eta_max) for eta in [*starts, *given]]


def _warm_rounds(prob: Compiled, u: np.ndarray, f0: float, scale: np.ndarray,
                 bounds: tuple[np.ndarray, np.ndarray], floor: np.ndarray, options: SolverOptions) -> Rounds:
    """IPOPT from ``u`` (transcribed objective ``f0``), started warm.

    The bound multipliers at ``u`` are estimated from the gradient there (``−∂L/∂η`` on the
    controls at a bound, zero elsewhere), so IPOPT starts with a small barrier parameter
    (:data:`optctl.solver.ipopt.WARM_START`) instead of pushing a plateau at ``η_max`` off
    its bound and re-converging from barrier 0.1. The objective is scaled by a power of ten
    to order one: IPOPT's tolerance is absolute, and ``L_T`` can be 1e-5, where a run that
    starts close to the optimum would stop at once about 1e-4 (relative) above it.
    """
    lo, hi = bounds
    g = np.asarray(prob.grad(u / scale, prob.p(scale))[1]).ravel() / scale
    # IPOPT leaves a bound-active control a few 1e-7 (relative) inside its bound.
    at_hi = u >= hi * (1.0 - 1e-6)
    at_lo = u <= lo + 1e-6 * hi
    lam = np.where(at_hi, np.maximum(-g, 0.0), np.where(at_lo, np.minimum(-g, 0.0), 0.0))
    factor = 10.0 ** -np.floor(np.log10(f0)) if np.isfinite(f0) and f0 > 0 else 1.0
    return run_rounds(prob, u, scale, np.zeros(prob.size), bounds, floor, options, {},
                      LearningRate.curvature_clip, lam_x=lam, ipopt={"obj_scaling_factor": float(factor)})


def _diverges(spec: ProblemSpec) -> SpecError:
    """The error for a problem whose loss overflows from every start IPOPT could take."""
    limit = stable_rate(spectrum(spec), spec.batch_size)
    if spec.eta_max > limit:
        return SpecError("training.eta_max", spec.eta_max,
                         f"the loss overflows from every starting schedule, so nothing can be "
                         f"solved; the largest stable constant rate of this model is {limit:.4g}: "
                         f"set eta_max to at most a few times that")
    return SpecError("model.sigma", spec.sigma, "the loss overflows from every starting schedule "
                     "(the noise is too large for float64); give a smaller sigma")


def _check_prefix(prefix: np.ndarray | None, spec: ProblemSpec, second: str | None) -> np.ndarray | None:
    if prefix is None:
        return None
    if second is not None:
        raise SpecError("prefix", f"{len(prefix)} updates", "a prefix is supported for the learning "
                        "rate alone; solve the joint problem over the whole horizon")
    done = np.asarray(prefix, dtype=float)
    if done.ndim != 1 or not 0 < done.size < spec.T:
        raise SpecError("prefix", f"array of shape {done.shape}",
                        f"give the learning rates of the first t updates, 0 < t < T = {spec.T}")
    done = per_step("prefix", done, done.size, "learning rate")
    if not np.all(np.isfinite(done)) or np.any(done < 0):
        raise SpecError("prefix", "a rate < 0 or not finite", "the updates already run need finite rates >= 0")
    return done
