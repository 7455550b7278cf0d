"""The result of a solve, and the formats it owns: run-folder record, sweep record, table.

:class:`ScheduleResult` is what :func:`optctl.solver.solve` returns, for every control
set. It writes and reads its own records, so that every place that stores a solve
(the run folders of :mod:`optctl.io.runs`, the sweep records of
:mod:`optctl.studies.sweep`, schedule tables) agrees on one layout:

- :meth:`ScheduleResult.summary` and :meth:`ScheduleResult.arrays` are its part of a run
  folder (``summary.json`` and ``arrays.npz``); :meth:`ScheduleResult.from_run` reads
  them back;
- :meth:`ScheduleResult.to_record` is its compact JSON record (the block schedule and the
  scalars, no per-step arrays); :func:`record_spec`, :func:`record_schedule` and
  :func:`record_start` read one;
- :meth:`ScheduleResult.to_table` is its schedule table.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optctl.solver.piecewise import BlockSchedule, block_means
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.table import ScheduleTable, momentum_from_beta

# Solver statistics kept under "solver" in a run summary, by field name.
_STATS = {"success": "success", "status": "status", "message": "message",
          "iterations": "iterations", "wall_time": "wall_time_s", "build_time": "build_time_s",
          "solve_time": "solve_time_s", "replay_time": "replay_time_s"}


@dataclass(frozen=True)
class ScheduleResult:
    """An optimal schedule and how it was found.

    ``eta`` is the learning rate per update (``T`` values), ``loss`` its exactly replayed
    loss curve ``L_0..L_T`` (tail included when the spec asks for it), split into
    ``bias`` and ``variance``. ``final_loss`` is the replayed ``L_T``: the number to
    show. ``objective`` is what the NLP reported; ``replay_gap`` is
    ``(objective − final_loss) / final_loss``, zero up to rounding for the exact
    transcription (``exact``). ``success``/``status``/``message`` and ``iterations``
    come from IPOPT; times are wall seconds. ``batch_size`` holds ``m_t`` per update (the
    chosen ones with a batch-size control, else the spec's), ``beta`` the EMA momentum
    weights ``β_t`` with a momentum control (else ``None``); ``controls`` says which.
    ``grid``/``eta_blocks`` are the control grid and the learning rate per block;
    ``transcription`` the resolved plan and solver counters.
    """

    spec: ProblemSpec
    options: SolverOptions
    grid: np.ndarray
    eta_blocks: np.ndarray
    eta: np.ndarray
    batch_size: np.ndarray
    loss: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    final_loss: float
    objective: float
    replay_gap: float
    exact: bool
    success: bool
    status: str
    message: str
    iterations: int
    wall_time: float
    build_time: float
    solve_time: float
    replay_time: float
    transcription: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    beta: np.ndarray | None = None
    controls: ControlSpec = field(default_factory=ControlSpec)

    # --- views -----------------------------------------------------------------------

    @property
    def label(self) -> str:
        """How the schedule is named wherever it is printed or drawn: ``optimal`` only after
        IPOPT success, ``law`` for the finite-horizon law, else ``optimum (not converged:
        STATUS)`` (a solve stopped at its iteration cap is a point on the way, not an optimum;
        a success whose last round was discarded returns that round's start)."""
        if self.status == "Law":
            return "law"
        if self.success:
            return "optimal"
        if self.status == "Solve_Succeeded":
            return "optimum (not converged: last round discarded)"
        return f"optimum (not converged: {self.status})"


    def schedule(self) -> BlockSchedule:
        """The learning rate as a block schedule on the control grid."""
        return BlockSchedule(np.asarray(self.grid), np.asarray(self.eta_blocks, dtype=float))

    def second_blocks(self) -> np.ndarray | None:
        """The second control per block (``β`` or ``m``), or ``None`` for the learning rate alone."""
        if "momentum" in self.controls.controls and self.beta is not None:
            return block_means(self.beta, self.grid)
        if "batch_size" in self.controls.controls:
            return block_means(self.batch_size, self.grid)
        return None

    # --- run folder ------------------------------------------------------------------

    def summary(self) -> dict[str, Any]:
        """The scalars of a run folder's ``summary.json`` that belong to the solve."""
        return {
            "success": bool(self.success),
            "T": self.spec.T,
            "model": self.spec.to_dict(),
            "phase_theory": self.spec.phase,
            "final_loss": self.final_loss,
            "objective": self.objective,
            "replay_gap": self.replay_gap,
            "exact_transcription": self.exact,
            "solver": {**{key: getattr(self, name) for name, key in _STATS.items()},
                       **self.transcription},
            "bias_final": float(self.bias[-1]),
            "variance_final": float(self.variance[-1]),
            "eta_peak": float(np.max(self.eta)),
            "controls": self.controls.to_dict(),
            "versions": self.versions,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The arrays of a run folder's ``arrays.npz`` that belong to the solve."""
        out = {"eta": self.eta, "loss": self.loss, "bias": self.bias, "variance": self.variance,
               "grid": self.grid, "eta_blocks": self.eta_blocks, "batch_size": self.batch_size}
        if self.beta is not None:
            out["beta"] = self.beta
        return out

    @classmethod
    def from_run(cls, spec: ProblemSpec, options: SolverOptions, controls: ControlSpec,
                 summary: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> ScheduleResult:
        """The result written by :meth:`summary` and :meth:`arrays` (``KeyError`` if a part is missing)."""
        solver = dict(summary["solver"])
        stats = {name: solver.pop(key) for name, key in _STATS.items()}
        return cls(spec=spec, options=options, controls=controls, grid=arrays["grid"],
                   eta_blocks=arrays["eta_blocks"], eta=arrays["eta"],
                   batch_size=arrays.get("batch_size", np.full(spec.T, spec.batch_size)),
                   beta=arrays.get("beta"), loss=arrays["loss"], bias=arrays["bias"],
                   variance=arrays["variance"], final_loss=float(summary["final_loss"]),
                   objective=float(summary["objective"]), replay_gap=float(summary["replay_gap"]),
                   exact=bool(summary["exact_transcription"]), transcription=solver,
                   versions=dict(summary.get("versions", {})), **stats)

    # --- compact record --------------------------------------------------------------

    def to_record(self) -> dict[str, Any]:
        """A compact JSON record: the spec, the block schedule and the scalars.

        With a second control the record adds ``controls`` and ``second_blocks``; a
        learning-rate record has the same keys as before controls existed.
        """
        rec: dict[str, Any] = {
            "spec": self.spec.to_dict(), "T": self.spec.T, "phase_theory": self.spec.phase,
            "final_loss": self.final_loss, "bias": float(self.bias[-1]),
            "variance": float(self.variance[-1]), "initial_loss": float(self.loss[0]),
            "replay_gap": self.replay_gap, "success": self.success, "status": self.status,
            "iterations": self.iterations, "wall_time": self.wall_time,
            "replay_time": self.replay_time, "grid": self.grid.tolist(),
            "eta_blocks": self.eta_blocks.tolist(),
        }
        second = self.second_blocks()
        if second is not None:
            rec["controls"] = self.controls.to_dict()
            rec["second_blocks"] = second.tolist()
        return rec

    # --- table -----------------------------------------------------------------------

    def to_table(self, *, source: Mapping[str, Any] | None = None, lr_scale: float = 1.0) -> ScheduleTable:
        """The schedule table: per-step ``lr`` (times ``lr_scale`` for real units),
        ``batch_size`` and, with a momentum control, the torch ``momentum`` column
        (:func:`optctl.table.momentum_from_beta`). ``source`` is merged into the table's
        informational source record."""
        src = {"kind": "result", "final_loss": float(self.final_loss), "status": self.status,
               "success": bool(self.success), "versions": dict(self.versions)}
        if source is not None:
            src.update(source)
        return ScheduleTable(
            lr=np.asarray(self.eta) * lr_scale, lr_scale=lr_scale, batch_size=self.batch_size,
            momentum=None if self.beta is None else momentum_from_beta(self.beta),
            spec=self.spec.to_dict(), solver=self.options.to_dict(), source=src,
            horizon={"mode": "solved"},
            controls=self.controls.to_dict() if self.controls.controls != ("lr",) else {},
        )


def record_spec(rec: Mapping[str, Any]) -> ProblemSpec:
    """The spec of a record written by :meth:`ScheduleResult.to_record`."""
    return ProblemSpec(**rec["spec"])


def record_schedule(rec: Mapping[str, Any]) -> BlockSchedule:
    """The learning rate of a record as a block schedule."""
    return BlockSchedule(np.asarray(rec["grid"], dtype=np.int64), np.asarray(rec["eta_blocks"], dtype=float))


def record_start(rec: Mapping[str, Any]) -> Callable[[np.ndarray], Any]:
    """A warm start for another horizon: the record's controls as functions of ``u = t/T``
    (the learning rate alone, or the pair with the second control)."""
    eta = record_schedule(rec)
    if "second_blocks" not in rec:
        return eta.at
    second = BlockSchedule(eta.grid, np.asarray(rec["second_blocks"], dtype=float))
    return lambda u: (eta.at(u), second.at(u))
