"""A fast, approximate ``L_T`` of any per-step schedule, for tuning baselines at long horizons."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from optctl.model.blocks import NUMPY, propagate_block
from optctl.solver.piecewise import block_means
from optctl.solver.plan import make_plan
from optctl.spec import ProblemSpec, SolverOptions

# Control blocks of the evaluator. Halving 200 halves the tuning time and, on the
# reference cases at T = 10^5, picked the same constant and WSD parameters.
EVALUATOR_K = 100


def approximate_evaluator(spec: ProblemSpec, K: int = EVALUATOR_K) -> Callable[[np.ndarray], float]:
    """A fast, approximate ``L_T`` (tail included) of any per-step schedule.

    The schedule is averaged over the integration sub-blocks of a refined grid of ``K``
    blocks and propagated with the block propagator on grouped modes (MODEL.md §2), in
    numpy: the cost does not depend on ``T``. About 1e-5 relative error on the reference
    cases; the schedule it picks is then replayed exactly.
    """
    pl = make_plan(spec, SolverOptions(grid="refined", K=K, propagator="block", modes="auto"))
    edges = np.concatenate([[0], np.cumsum(pl.lengths)])
    sp = pl.spectrum
    lw = sp.weight * sp.lam

    def evaluate(eta: np.ndarray) -> float:
        eta_sub = block_means(np.asarray(eta, dtype=float), edges)
        c, loss = sp.c0, float(lw @ sp.c0)
        for n, e in zip(pl.lengths, eta_sub, strict=False):
            c, loss = propagate_block(c, e, spec.batch_size, float(n), sp.lam, lw, sp.sigma2, NUMPY)
        return float(loss) + sp.tail

    return evaluate
