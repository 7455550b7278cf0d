"""optctl: optimal learning-rate (batch-size, momentum) schedules by optimal control.

Implements the power-law random-feature model of Bordelon & Mori, *Theory of Optimal
Learning Rate Schedules and Scaling Laws for a Random Feature Model*
(arXiv:2602.04774), and solves its control problems with CasADi/IPOPT.
"""

from optctl.config import ConfigError, RunConfig, load_config
from optctl.errors import OptctlError, SolverError, SpecError, SpecTypeError
from optctl.replay import Replay, final_loss
from optctl.solver import ScheduleResult, solve
from optctl.spec import ProblemSpec, SolverOptions

__version__ = "0.1.0"

__all__ = [
    "ConfigError", "OptctlError", "ProblemSpec", "RunConfig", "Replay", "ScheduleResult", "SolverError", "SolverOptions",
    "SpecError", "SpecTypeError", "final_loss", "load_config", "solve", "__version__",
]
