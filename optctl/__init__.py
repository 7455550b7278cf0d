"""optctl: optimal learning-rate schedules by optimal control.

Implements the power-law random-feature model of Bordelon & Mori, *Theory of Optimal
Learning Rate Schedules and Scaling Laws for a Random Feature Model*
(arXiv:2602.04774), and solves its control problems with CasADi/IPOPT.
"""

from optctl.config import ConfigError, RunConfig, load_config
from optctl.errors import ExportError, OptctlError, SolverError, SpecError, SpecTypeError
from optctl.export import export_table, load_table
from optctl.replay import Replay, final_loss
from optctl.solver import ScheduleResult, solve
from optctl.spec import ProblemSpec, SolverOptions
from optctl.table import ScheduleTable

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "ExportError", "OptctlError", "ProblemSpec", "RunConfig", "Replay", "ScheduleResult",
    "ScheduleTable", "SolverError", "SolverOptions", "SpecError", "SpecTypeError", "export_table",
    "final_loss", "load_config", "load_table", "solve", "__version__",
]
