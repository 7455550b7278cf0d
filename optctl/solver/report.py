"""What the solve job reports: the optimum with its tuned baselines, and the formats it owns.

:class:`SolveReport` is written by :func:`optctl.solver.job.run_job`. Like
:class:`~optctl.solver.result.ScheduleResult` it lays out its own run-folder record
(``summary.json``, ``arrays.npz``) and its compact sweep record, and reads them back;
this module imports neither CasADi nor jax, so run folders can be read without them.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from optctl.baselines.families import Baseline, rates
from optctl.model.replay import replay
from optctl.solver.result import ScheduleResult
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions

# Baselines are tuned on the exact replay up to this horizon, on the block evaluator beyond.
EXACT_TUNING_MAX_T = 2000


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
        """The optimum against the best baseline: loss ratio and relative improvement
        (``None`` without baselines, or when a loss is not finite: no comparison is made
        with a baseline that diverged at every rate its tuning tried)."""
        best = self.best_baseline
        if best is None:
            return None
        b_loss, opt = self.baselines[best].final_loss, self.result.final_loss
        if not (np.isfinite(b_loss) and np.isfinite(opt)):
            return None
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
