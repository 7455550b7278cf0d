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
from optctl.solver.controls import Init, smoothness_penalty
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


def move_to_end(eta: np.ndarray, beta: np.ndarray, s_from: float, s_to: float) -> tuple[np.ndarray, np.ndarray]:
    """A per-step ``(η, β)`` schedule re-timed so that its point ``s_from`` updates before the
    end lands ``s_to`` updates before it: steps to the end are mapped piecewise linearly
    (``0 → 0``, ``s_to → s_from``, ``T → T``), so the last ``s_from`` updates (the anneal)
    are stretched or squeezed into ``s_to`` and the rest of the horizon takes up the
    difference, the first update staying where it is."""
    eta, beta = np.asarray(eta, float), np.asarray(beta, float)
    T = eta.size
    if not (0 < s_from < T and 0 < s_to < T):
        raise SpecError("s_from, s_to", (s_from, s_to), f"give steps to the end inside (0, {T})")
    s = np.arange(T, dtype=float) + 0.5  # steps to the end of updates T-1, T-2, ..., 0
    src = np.interp(s, [0.0, s_to, float(T)], [0.0, s_from, float(T)])
    return np.interp(src, s, eta[::-1])[::-1], np.interp(src, s, beta[::-1])[::-1]


def penalised(res: ScheduleResult, kappa: float | None) -> float:
    """What an ``(η, β)`` solve minimises, evaluated exactly: the replayed ``L_T`` plus the
    smoothness penalty ``κ P`` of its block controls (:func:`smoothness_penalty`); ``L_T``
    alone without ``κ``. Answers of the same problem are ranked by this."""
    if not kappa or res.beta is None:
        return float(res.final_loss)
    return float(res.final_loss) + float(kappa) * smoothness_penalty(res.grid, res.eta_blocks, res.beta[res.grid[:-1]])


def anneal_block(eta_blocks: np.ndarray, eta_max: float, rtol: float = 1e-3) -> int | None:
    """The block where the anneal begins: the one after the last block at the learning-rate
    bound (``None`` when no block but the last, or none, is at the bound)."""
    on = np.flatnonzero(np.asarray(eta_blocks) >= (1 - rtol) * eta_max)
    if on.size == 0 or on[-1] + 1 >= len(eta_blocks):
        return None
    return int(on[-1] + 1)


def smooth_plateau(eta: np.ndarray, beta: np.ndarray, grid: np.ndarray, end: int, width: int = 3) -> np.ndarray:
    """``β`` per update with the plateau's blocks (those before block ``end``) replaced by
    the running median of ``log β`` over ``width`` blocks either side (fewer near the ends of
    the plateau, so that the window stays centred): an isolated stretch
    of up to ``width`` blocks far below (or above) its neighbours is filled in, a monotone
    run is left as it is. The anneal (blocks from ``end`` on) is unchanged."""
    grid = np.asarray(grid)
    b = np.asarray(beta, float)
    blocks = b[grid[:-1]]
    logb = np.log(np.maximum(blocks, 1e-300))
    out = logb.copy()
    for k in range(end):
        w = min(width, k, end - 1 - k)  # a window centred on k (a monotone run stays as it is)
        out[k] = np.median(logb[k - w:k + w + 1])
    return np.repeat(np.exp(out), np.diff(grid))


@dataclass(frozen=True)
class Escape:
    """The lowest ``(η, β)`` answer of :func:`solve_escape`, with every solve's record."""

    result: ScheduleResult
    solves: list[dict[str, object]] = field(default_factory=list)
    seconds: float = 0.0


def solve_escape(spec: ProblemSpec, options: SolverOptions | None = None, *,
                 controls: ControlSpec | None = None, init: Init = None, rtol: float = 1e-7,
                 max_moves: int = 6, smooth: bool = True,
                 progress: Callable[[str], None] | None = None) -> Escape:
    """An ``(η, β)`` solve that searches over the block where the anneal begins.

    On a block grid the optimum's anneal must begin at a block boundary, and each boundary
    is a local optimum of its own (docs/controls.md: on the hard case at ``T = 3162`` three
    answers anneal from three neighbouring boundaries, up to 7.5e-5 apart; at ``10⁴`` the
    continuation's answer anneals two blocks early, 4.5e-4 above the best). Solved from ``init`` (or the default candidates), the answer is re-solved
    from itself with its anneal moved one block later and one block earlier
    (:func:`move_to_end`); while a move lowers the replayed ``L_T`` by more than ``rtol``
    relative (with a smoothness penalty ``κ``, ``L_T + κ P``: :func:`penalised`, what the solve
    minimises), the search keeps moving in that direction (at most ``max_moves`` solves after
    the first; a move that IPOPT takes back to the same block is kept if lower but ends
    that direction). An answer without an anneal at the learning-rate bound is returned as solved.

    With ``smooth``, the answer is then also re-solved from itself with its plateau ``β``
    smoothed (:func:`smooth_plateau`): the other local optima measured on that case hold
    ``β`` 4–8× lower than their neighbours on a few plateau blocks; if that lowers ``L_T``,
    the anneal is searched again from the new answer."""
    controls = ControlSpec(controls=("lr", "momentum")) if controls is None else controls
    if "momentum" not in controls.controls:
        raise SpecError("controls", list(controls.controls), "solve_escape moves the anneal of an (η, β) "
                        "schedule: give controls: [lr, momentum]")
    t_all = time.perf_counter()
    solves: list[dict[str, object]] = []
    kappa = controls.kappa

    def one(start: Init, name: str) -> ScheduleResult:
        t0 = time.perf_counter()
        res = solve(spec, options, controls=controls, init=start, start_from="best" if start is None else "init")
        j = anneal_block(res.eta_blocks, spec.eta_max)
        rec = {"start": name, "status": res.status, "success": bool(res.success), "iterations": int(res.iterations),
               "loss": float(res.final_loss), "replay_gap": float(res.replay_gap),
               "penalised": penalised(res, kappa),
               "anneal_start": None if j is None else int(res.grid[j]), "seconds": time.perf_counter() - t0}
        solves.append(rec)
        if progress is not None:
            progress(f"{name}: {res.status}, {res.iterations} iterations, L_T = {res.final_loss:.10g}, anneal from "
                     f"t = {rec['anneal_start']} ({rec['seconds']:.1f} s)")
        return res

    def moved(res: ScheduleResult, step: int) -> ScheduleResult | None:
        j = anneal_block(res.eta_blocks, spec.eta_max)
        if j is None or not 0 < j + step < len(res.eta_blocks):
            return None
        assert res.beta is not None
        T = spec.T
        start = move_to_end(res.eta, res.beta, T - float(res.grid[j]), T - float(res.grid[j + step]))
        return one(start, f"anneal moved {'later' if step > 0 else 'earlier'}")

    def search(best: ScheduleResult, moves: int) -> tuple[ScheduleResult, int]:
        directions = [1, -1]
        while directions and moves < max_moves:
            step = directions[0]
            res = moved(best, step)
            moves += res is not None
            if res is None or penalised(res, kappa) >= penalised(best, kappa) * (1 - rtol):
                directions = directions[1:]
            elif anneal_block(res.eta_blocks, spec.eta_max) == anneal_block(best.eta_blocks, spec.eta_max):
                best, directions = res, directions[1:]  # lower, but IPOPT moved the anneal back
            else:
                best, directions = res, [step]  # keep going the way that helped
        return best, moves

    best, moves = search(one(init, "start"), 0)
    j = anneal_block(best.eta_blocks, spec.eta_max)
    if smooth and j is not None and j > 2:
        assert best.beta is not None
        res = one((best.eta, smooth_plateau(best.eta, best.beta, best.grid, j)), "plateau β smoothed")
        if penalised(res, kappa) < penalised(best, kappa) * (1 - rtol):
            best, _ = search(res, moves)  # the smoothed answer's anneal may sit elsewhere
    return Escape(result=best, solves=solves, seconds=time.perf_counter() - t_all)
