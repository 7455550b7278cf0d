"""optctl: optimal learning-rate schedules by optimal control.

Implements the power-law random-feature model of Bordelon & Mori, *Theory of Optimal
Learning Rate Schedules and Scaling Laws for a Random Feature Model*
(arXiv:2602.04774), and solves its control problems with CasADi/IPOPT.

Importing ``optctl`` is cheap: each name below is loaded from its module on first use
(``optctl.solve`` brings in CasADi; ``optctl.ScheduleTable`` only numpy). The layers are
described in ``docs/architecture.md``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# Public name -> the module that defines it.
_EXPORTS: dict[str, str] = {
    "OptctlError": "optctl.errors", "SpecError": "optctl.errors", "SpecTypeError": "optctl.errors",
    "ConfigError": "optctl.errors", "SolverError": "optctl.errors", "ExportError": "optctl.errors",
    "ResultsError": "optctl.errors", "HorizonWarning": "optctl.errors",
    "AssumptionWarning": "optctl.errors",
    "ResourceError": "optctl.errors",
    "ProblemSpec": "optctl.spec", "SolverOptions": "optctl.spec", "ControlSpec": "optctl.spec",
    "ScheduleTable": "optctl.table",
    "Replay": "optctl.model.replay", "replay": "optctl.model.replay",
    "final_loss": "optctl.model.replay",
    "solve": "optctl.solver.solve", "ScheduleResult": "optctl.solver.result",
    "resolve_table": "optctl.solver.horizon", "run_job": "optctl.solver.job",
    "SolveReport": "optctl.solver.report", "tune_baselines": "optctl.baselines.tune",
    "classify": "optctl.analysis.classify",
    "RunConfig": "optctl.io.config", "load_config": "optctl.io.config",
    "export_table": "optctl.io.tables", "load_table": "optctl.io.tables",
    "schedule": "optctl.studies.tables",
}

__all__ = [
    "AssumptionWarning",
    "ConfigError",
    "ControlSpec",
    "ExportError",
    "HorizonWarning",
    "OptctlError",
    "ProblemSpec",
    "Replay",
    "ResourceError",
    "ResultsError",
    "RunConfig",
    "ScheduleResult",
    "ScheduleTable",
    "SolveReport",
    "SolverError",
    "SolverOptions",
    "SpecError",
    "SpecTypeError",
    "classify",
    "export_table",
    "final_loss",
    "load_config",
    "load_table",
    "replay",
    "resolve_table",
    "run_job",
    "schedule",
    "solve",
    "tune_baselines",
    "__version__",
]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value  # later lookups skip this function
        return value
    raise AttributeError(f"module 'optctl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))


if TYPE_CHECKING:
    from optctl.analysis.classify import classify
    from optctl.baselines.tune import tune_baselines
    from optctl.errors import (
        AssumptionWarning,
        ConfigError,
        ExportError,
        HorizonWarning,
        OptctlError,
        ResourceError,
        ResultsError,
        SolverError,
        SpecError,
        SpecTypeError,
    )
    from optctl.io.config import RunConfig, load_config
    from optctl.io.tables import export_table, load_table
    from optctl.model.replay import Replay, final_loss, replay
    from optctl.solver.horizon import resolve_table
    from optctl.solver.job import run_job
    from optctl.solver.report import SolveReport
    from optctl.solver.result import ScheduleResult
    from optctl.solver.solve import solve
    from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
    from optctl.studies.tables import schedule
    from optctl.table import ScheduleTable
