"""Horizon continuation: a long-horizon solve warm-started through shorter horizons.

A start rescaled from a much shorter horizon puts the anneal, where the optimal ``β``
rises, at the fraction of the horizon it had there, while in the hard phase that fraction
shrinks with ``T``; short steps of the horizon (a factor of 4 or less) keep every start
near the next optimum. Measured on the hard case of docs/controls.md at ``T = 10⁵``: on 48
refined blocks the ×4 ladder, the cold start and a ×3.16 ladder end at different local
optima (up to 1.1e-3 apart), which the grid makes (its middle blocks hold a constant
``β ~ 1e-4`` for up to 17,000 updates); re-solved on 96 blocks from the ×4 ladder and from
the cold start they agree to 2.6e-5 (``benchmarks/bench_momentum_solver.py``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from optctl.errors import SpecError
from optctl.solver.controls import Init
from optctl.solver.result import ScheduleResult
from optctl.solver.solve import solve
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions


@dataclass(frozen=True)
class Continuation:
    """The solve at the last horizon of a ladder, with every rung's record."""

    result: ScheduleResult
    ladder: tuple[int, ...]
    rungs: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0


def ladder(T: int, start: int = 4096, factor: float = 4.0) -> tuple[int, ...]:
    """``start, start·factor, ...`` up to ``T`` (the last rung is ``T`` itself)."""
    if factor <= 1.0:
        raise SpecError("factor", factor, "a horizon ladder needs a factor > 1")
    if start >= T:
        return (int(T),)
    n = math.ceil(math.log(T / start) / math.log(factor) - 1e-9)
    rungs = [int(round(start * factor**k)) for k in range(n)]
    return (*rungs, int(T))


def rescaled(res: ScheduleResult) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray] | np.ndarray]:
    """A solved schedule as a start for another horizon: its controls as functions of ``t/T``."""
    n = res.eta.size
    u = (np.arange(n) + 0.5) / n
    eta = np.asarray(res.eta)
    if res.beta is None:
        return lambda v: np.interp(v, u, eta)
    beta = np.asarray(res.beta)
    return lambda v: (np.interp(v, u, eta), np.interp(v, u, beta))


def solve_continuation(spec: ProblemSpec, options: SolverOptions | None = None, *,
                       controls: ControlSpec | None = None, rungs: Sequence[int] | None = None,
                       init: Init = None, progress: Callable[[str], None] | None = None) -> Continuation:
    """Solve ``spec`` at each horizon of ``rungs`` (default :func:`ladder` of ``spec.T``), each
    started from the previous rung's optimum rescaled in ``t/T`` (IPOPT starts from it:
    ``start_from="init"``); the first rung starts from ``init`` or the default candidates.
    Returns the last rung's result (the answer at ``spec.T``) and every rung's record."""
    rungs = tuple(int(r) for r in (ladder(spec.T) if rungs is None else rungs))
    if not rungs or rungs[-1] != spec.T or any(b <= a for a, b in zip(rungs, rungs[1:], strict=False)):
        raise SpecError("rungs", list(rungs), f"give increasing horizons ending at T = {spec.T}")
    t_all = time.perf_counter()
    records: list[dict[str, object]] = []
    start: Init = init
    res: ScheduleResult | None = None
    for T in rungs:
        t0 = time.perf_counter()
        sp = ProblemSpec(**{**spec.to_dict(), "T": T})
        res = solve(sp, options, controls=controls, init=start,
                    start_from="best" if start is None else "init")
        rec = {"T": T, "status": res.status, "success": bool(res.success), "iterations": int(res.iterations),
               "loss": float(res.final_loss), "replay_gap": float(res.replay_gap),
               "seconds": time.perf_counter() - t0}
        records.append(rec)
        if progress is not None:
            progress(f"continuation T={T}: {res.status}, {res.iterations} iterations, "
                     f"L_T = {res.final_loss:.10g} ({rec['seconds']:.1f} s)")
        start = rescaled(res)
    assert res is not None
    return Continuation(result=res, ladder=rungs, rungs=records, seconds=time.perf_counter() - t_all)
