"""The solve job: optimum + tuned baselines → one report (numbers only, no files)."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from optctl.baselines import Baseline, tune_baselines
from optctl.replay import replay
from optctl.solver import ScheduleResult, solve
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.transcribe import approximate_evaluator

# Above this horizon baselines are tuned with the T-independent block evaluator
# (about 1e-5 relative error) and only their final schedules are replayed exactly.
EXACT_TUNING_MAX_T = 20_000


@dataclass(frozen=True)
class SolveReport:
    result: ScheduleResult
    baselines: dict[str, Baseline]
    baseline_curves: dict[str, np.ndarray]
    baseline_time: float

    @property
    def best_baseline(self) -> str | None:
        if not self.baselines:
            return None
        return min(self.baselines, key=lambda n: self.baselines[n].final_loss)


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def run_solve(spec: ProblemSpec, options: SolverOptions, baselines: tuple[str, ...],
              *, quiet: bool = False, controls: ControlSpec | None = None) -> SolveReport:
    """Solve for the optimal schedule, then tune and replay every requested baseline.

    With ``controls`` other than ``[lr]`` the joint problem is solved
    (:func:`optctl.joint.solve_controls`); the baselines stay learning-rate schedules at
    the fixed batch ``m̄`` with plain SGD, the reference the joint optimum must beat.
    """
    chosen = ("lr",) if controls is None else controls.controls
    _log(f"solving: T={spec.T}, N={spec.N}, a={spec.a}, b={spec.b} ({spec.phase} phase), "
         f"controls {', '.join(chosen)}", quiet)
    if chosen == ("lr",):
        result = solve(spec, options)
    else:
        from optctl.joint import solve_controls

        result = solve_controls(spec, controls, options)
    _log(f"  optimum L_T = {result.final_loss:.6e} (replayed), IPOPT {result.status}, "
         f"{result.iterations} iterations, {result.wall_time:.1f} s, replay gap {result.replay_gap:.1e}",
         quiet)
    t0 = time.perf_counter()
    tuned: dict[str, Baseline] = {}
    curves: dict[str, np.ndarray] = {}
    evaluate = approximate_evaluator(spec) if spec.T > EXACT_TUNING_MAX_T else None
    for name in baselines:
        t1 = time.perf_counter()
        tuned[name] = tune_baselines(spec, (name,), evaluate)[name]
        curves[name] = replay(spec, tuned[name].eta).loss
        _log(f"  baseline {name:<13} L_T = {tuned[name].final_loss:.6e} "
             f"[{time.perf_counter() - t1:.1f} s]", quiet)
    return SolveReport(result=result, baselines=tuned, baseline_curves=curves,
                       baseline_time=time.perf_counter() - t0)


def summary(report: SolveReport) -> dict[str, Any]:
    """The scalars of a report, ready for ``summary.json``."""
    r = report.result
    best = report.best_baseline
    out: dict[str, Any] = {
        "phase_theory": r.spec.phase,
        "final_loss": r.final_loss,
        "objective": r.objective,
        "replay_gap": r.replay_gap,
        "exact_transcription": r.exact,
        "solver": {
            "success": r.success, "status": r.status, "message": r.message,
            "iterations": r.iterations, "wall_time_s": r.wall_time,
            "build_time_s": r.build_time, "solve_time_s": r.solve_time,
            "replay_time_s": r.replay_time, **r.transcription,
        },
        "bias_final": float(r.bias[-1]),
        "variance_final": float(r.variance[-1]),
        "eta_peak": float(np.max(r.eta)),
        "controls": ({"controls": ["lr"]} if r.controls is None else r.controls.to_dict()),
        "baselines": {n: {"final_loss": b.final_loss, "params": b.params, "n_evals": b.n_evals}
                      for n, b in report.baselines.items()},
        "baseline_tuning": ("exact replay" if r.spec.T <= EXACT_TUNING_MAX_T
                            else "block evaluator, final schedules replayed exactly"),
        "baseline_time_s": report.baseline_time,
        "versions": r.versions,
    }
    if best is not None:
        b_loss = report.baselines[best].final_loss
        out["best_baseline"] = best
        out["gain_over_best_baseline"] = {
            "loss_ratio": b_loss / r.final_loss,
            "relative_improvement": (b_loss - r.final_loss) / b_loss,
        }
    return out


def format_table(report: SolveReport) -> str:
    """A plain-text table of final losses, best first."""
    rows = [("optimal", report.result.final_loss)]
    rows += [(n, b.final_loss) for n, b in report.baselines.items()]
    rows.sort(key=lambda r: r[1])
    opt = report.result.final_loss
    lines = [f"{'schedule':<14}{'L_T (replayed)':>16}{'vs optimal':>12}"]
    lines += [f"{n:<14}{v:>16.6e}{v / opt:>11.3f}x" for n, v in rows]
    return "\n".join(lines)
