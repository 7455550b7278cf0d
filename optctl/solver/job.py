"""The solve job: the optimum and the tuned baselines, with one tuning policy.

Used by ``optctl solve`` and by every sweep, so that a run folder and a sweep record
made for the same problem hold the same baselines. Baselines are learning-rate
schedules at the fixed batch ``m̄`` with plain SGD: the reference a joint optimum must
beat too. The policy (:mod:`optctl.solver.report`): up to ``exact_tuning_max_T``
updates (default :data:`~optctl.solver.report.EXACT_TUNING_MAX_T`) each baseline family
is tuned on the exact per-step replay; beyond, on the ``T``-independent block evaluator
with :data:`~optctl.solver.evaluate.EVALUATOR_K` blocks (about 1e-5 relative error;
:func:`optctl.solver.evaluate.approximate_evaluator`), and only the tuned schedules are
replayed exactly. Reported baseline losses are always exact replays.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

from optctl.baselines.families import Baseline
from optctl.baselines.tune import tune_baselines
from optctl.errors import SpecError
from optctl.solver.controls import Init
from optctl.solver.evaluate import approximate_evaluator
from optctl.solver.law import law_result
from optctl.solver.report import EXACT_TUNING_MAX_T, SolveReport
from optctl.solver.solve import solve
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions


def run_job(spec: ProblemSpec, options: SolverOptions, baselines: Sequence[str] = (), *,
            controls: ControlSpec | None = None, init: Init = None, progress: bool = False,
            exact_tuning_max_T: int = EXACT_TUNING_MAX_T, law: bool = False, warm: bool = False) -> SolveReport:
    """Solve for the optimal schedule, then tune every requested baseline (module docstring).
    ``law``: take the finite-horizon law's schedule instead of solving (learning rate only;
    :func:`optctl.solver.law.law_result`). ``warm``: start from ``init`` (the optimum of a nearby
    problem, a sweep's previous horizon) or the law's schedule, warm
    (:func:`optctl.solver.solve.solve`)."""
    chosen = ("lr",) if controls is None else controls.controls
    _log(f"{'the law' if law else 'solving'}: T={spec.T}, N={spec.N}, a={spec.a}, b={spec.b} "
         f"({spec.phase} phase), controls {', '.join(chosen)}", progress)
    if law:
        if chosen != ("lr",):
            raise SpecError("controls", ", ".join(chosen), "the law's schedule is for the learning rate "
                            "alone; solve without the law, or leave batch size and momentum fixed")
        result = law_result(spec, options)
    else:
        result = solve(spec, options, controls=controls, init=init, warm=warm)
    if law:
        _log(f"  law schedule L_T = {result.final_loss:.6e} (replayed), no IPOPT, {result.wall_time:.2f} s, "
             f"continuous-time estimate off by {result.replay_gap:.1e}", progress)
    else:
        _log(f"  optimum L_T = {result.final_loss:.6e} (replayed), IPOPT {result.status}, "
             f"{result.iterations} iterations, {result.wall_time:.1f} s, replay gap {result.replay_gap:.1e}",
             progress)
    t0 = time.perf_counter()
    tuning = "none"
    tuned: dict[str, Baseline] = {}
    if baselines:
        exact = spec.T <= exact_tuning_max_T
        tuning = "exact" if exact else "approximate"
        evaluate = None if exact else approximate_evaluator(spec)

        def tuned_one(b: Baseline, seconds: float) -> None:
            _log(f"  baseline {b.name:<13} L_T = {b.final_loss:.6e} [{seconds:.1f} s]", progress)

        tuned = tune_baselines(spec, baselines, evaluate, on_tuned=tuned_one)
    return SolveReport(result=result, baselines=tuned,
                       baseline_time=time.perf_counter() - t0 if tuned else 0.0, tuning=tuning)


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
