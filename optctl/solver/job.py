"""The solve job: the optimum and the tuned baselines, with one tuning policy.

Used by ``optctl solve`` and by every sweep, so that a run folder and a sweep record
made for the same problem hold the same baselines. Baselines are learning-rate
schedules at the fixed batch ``m̄`` with plain SGD: the reference a joint optimum must
beat too. Policy: up to ``exact_tuning_max_T`` updates (default
:data:`EXACT_TUNING_MAX_T`) each baseline family is tuned on the exact per-step replay;
beyond, on the ``T``-independent block evaluator with :data:`EVALUATOR_K` blocks (about
1e-5 relative error; :func:`optctl.solver.evaluate.approximate_evaluator`), and only the
tuned schedules are replayed exactly. Reported baseline losses are always exact replays.
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from optctl.baselines.families import rates
from optctl.baselines.tune import Baseline, tune_baselines
from optctl.model.replay import replay
from optctl.solver.controls import Init
from optctl.solver.evaluate import approximate_evaluator
from optctl.solver.result import ScheduleResult
from optctl.solver.solve import solve
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions

# Baselines are tuned on the exact replay up to this horizon, on the block evaluator beyond.
EXACT_TUNING_MAX_T = 2000
# Control blocks of the block evaluator. Halving 200 halves the tuning time and, on the
# reference cases at T = 10^5, picked the same constant and WSD parameters.
EVALUATOR_K = 100


@dataclass(frozen=True)
class SolveReport:
    """The optimum and its tuned baselines.

    ``tuning`` is ``"exact"`` or ``"approximate"`` (the evaluator that tuned the
    baselines; their losses are exact replays either way), or ``"none"``.
    """

    result: ScheduleResult
    baselines: dict[str, Baseline]
    baseline_time: float
    tuning: str

    @property
    def best_baseline(self) -> str | None:
        if not self.baselines:
            return None
        return min(self.baselines, key=lambda n: self.baselines[n].final_loss)

    @functools.cached_property
    def baseline_curves(self) -> dict[str, np.ndarray]:
        """Each baseline's replayed loss curve ``L_0..L_T``."""
        return {n: replay(self.result.spec, b.eta).loss for n, b in self.baselines.items()}

    def gain(self) -> dict[str, float] | None:
        """The optimum against the best baseline: loss ratio and relative improvement."""
        best = self.best_baseline
        if best is None:
            return None
        b_loss, opt = self.baselines[best].final_loss, self.result.final_loss
        return {"loss_ratio": b_loss / opt, "relative_improvement": (b_loss - opt) / b_loss}

    def _baseline_scalars(self) -> dict[str, dict[str, Any]]:
        return {n: {"final_loss": b.final_loss, "params": b.params, "n_evals": b.n_evals}
                for n, b in self.baselines.items()}

    # --- run folder ------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """A run folder's ``summary.json`` (without the run's name and source)."""
        out = {**self.result.summary(), "baselines": self._baseline_scalars(),
               "baseline_tuning": self.tuning, "baseline_time_s": self.baseline_time}
        gain = self.gain()
        if gain is not None:
            out["best_baseline"] = self.best_baseline
            out["gain_over_best_baseline"] = gain
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        """A run folder's ``arrays.npz``: the result's arrays and each baseline's schedule and loss."""
        out = dict(self.result.arrays())
        for name, b in self.baselines.items():
            out[f"baseline_{name}_eta"] = b.eta
            out[f"baseline_{name}_loss"] = self.baseline_curves[name]
        return out

    @classmethod
    def from_run(cls, spec: ProblemSpec, options: SolverOptions, controls: ControlSpec,
                 summary: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> SolveReport:
        """The report written by :meth:`summary` and :meth:`arrays` (``KeyError`` if a part is missing)."""
        result = ScheduleResult.from_run(spec, options, controls, summary, arrays)
        baselines = {n: Baseline(name=n, params=dict(b["params"]), eta=arrays[f"baseline_{n}_eta"],
                                 final_loss=float(b["final_loss"]), n_evals=int(b["n_evals"]))
                     for n, b in summary.get("baselines", {}).items()}
        report = cls(result=result, baselines=baselines,
                     baseline_time=float(summary.get("baseline_time_s", 0.0)),
                     tuning=str(summary.get("baseline_tuning", "none")))
        curves = {n: arrays[f"baseline_{n}_loss"] for n in baselines if f"baseline_{n}_loss" in arrays}
        if len(curves) == len(baselines):
            report.__dict__["baseline_curves"] = curves  # saved; no replay needed
        return report

    # --- compact record --------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """The result's compact record with each baseline's parameters and replayed loss."""
        rec = {**self.result.to_record(), "baselines": self._baseline_scalars(),
               "baseline_time": self.baseline_time}
        if self.baselines:
            rec["baseline_tuning"] = self.tuning
        return rec


def record_baseline(rec: Mapping[str, Any], name: str) -> np.ndarray:
    """A baseline's per-update schedule, rebuilt from the parameters a record saved."""
    spec = rec["spec"]
    return rates(name, rec["baselines"][name]["params"], int(spec["T"]), float(spec["eta_max"]))


def run_job(spec: ProblemSpec, options: SolverOptions, baselines: Sequence[str] = (), *,
            controls: ControlSpec | None = None, init: Init = None, progress: bool = False,
            exact_tuning_max_T: int = EXACT_TUNING_MAX_T) -> SolveReport:
    """Solve for the optimal schedule, then tune every requested baseline (module docstring)."""
    chosen = ("lr",) if controls is None else controls.controls
    _log(f"solving: T={spec.T}, N={spec.N}, a={spec.a}, b={spec.b} ({spec.phase} phase), "
         f"controls {', '.join(chosen)}", progress)
    result = solve(spec, options, controls=controls, init=init)
    _log(f"  optimum L_T = {result.final_loss:.6e} (replayed), IPOPT {result.status}, "
         f"{result.iterations} iterations, {result.wall_time:.1f} s, replay gap {result.replay_gap:.1e}",
         progress)
    t0 = time.perf_counter()
    tuning = "none"
    tuned: dict[str, Baseline] = {}
    if baselines:
        exact = spec.T <= exact_tuning_max_T
        tuning = "exact" if exact else "approximate"
        evaluate = None if exact else approximate_evaluator(spec, K=EVALUATOR_K)

        def tuned_one(b: Baseline, seconds: float) -> None:
            _log(f"  baseline {b.name:<13} L_T = {b.final_loss:.6e} [{seconds:.1f} s]", progress)

        tuned = tune_baselines(spec, baselines, evaluate, on_tuned=tuned_one)
    return SolveReport(result=result, baselines=tuned,
                       baseline_time=time.perf_counter() - t0 if tuned else 0.0, tuning=tuning)


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
