"""optctl: optimal learning-rate (batch-size, momentum) schedules by optimal control.

Implements the power-law random-feature model of Bordelon & Mori, *Theory of Optimal
Learning Rate Schedules and Scaling Laws for a Random Feature Model*
(arXiv:2602.04774), and solves its control problems with CasADi/IPOPT.
"""

from optctl.errors import OptctlError, SolverError, SpecError, SpecTypeError
from optctl.replay import Replay, final_loss
from optctl.solve import ScheduleResult, solve
from optctl.spec import ProblemSpec, SolverOptions

__version__ = "0.1.0"

__all__ = [
    "OptctlError", "ProblemSpec", "Replay", "ScheduleResult", "SolverError", "SolverOptions",
    "SpecError", "SpecTypeError", "final_loss", "solve", "__version__",
]
