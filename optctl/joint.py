"""Joint controls: learning rate with batch size, or learning rate with momentum.

MODEL.md §4.2 and §4.3 (Bordelon & Mori, arXiv:2602.04774). The NLP is built from the
same pieces as the learning-rate problem of :mod:`optctl.transcribe` (control grid,
integration sub-blocks, grouped modes, model data as parameters) and solved with the
same IPOPT options, curvature scaling and rounds as :mod:`optctl.solver`; only the
decision vector grows a second block of controls:

- ``batch_size``: ``(η_j, m_j)`` per block, ``m_j ∈ [m_min, m_max]``, with the linear
  sample budget ``Σ_j n_j m_j = T m̄`` as IPOPT's one constraint. The SGD sub-block
  function already takes ``m`` as an input. ``propagator: auto`` means the exact
  per-step recursion here (the block propagator can be exploited, see below).
- ``momentum``: ``(η_j, β_j)`` per block, ``β_j ∈ [β_min, 1]``, propagated with the
  exact per-step EMA recursion of :mod:`optctl.momentum` (three moments per mode),
  plus the penalty ``κ Σ_j ‖u_{j+1} − u_j‖²``.

Every result is replayed step by step with all modes, as for the learning rate alone.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import casadi as ca
import numpy as np

from optctl.grid import block_means, expand
from optctl.momentum import (
    momentum_position,
    momentum_replay,
    momentum_start,
    momentum_velocity,
)
from optctl.replay import replay
from optctl.solver import (
    ScheduleResult,
    _curvature_scale,
    _ipopt_options,
    _message,
    _scratch_dir,
    solve,
)
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.transcribe import (
    Plan,
    _step_function,
    control_grid,
    jit_options,
    plan,
    plan_spectrum,
)
from optctl.versions import versions

# Starting momenta tried besides plain SGD (β = 1), at the SGD optimum's learning rates.
BETA_STARTS = (0.5, 0.2, 0.1, 0.05)

# A joint start: per-step arrays (η, second control), or a function of u = t/T giving both.
JointInit = tuple[np.ndarray, np.ndarray] | Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None


def momentum_plan(spec: ProblemSpec, options: SolverOptions) -> Plan:
    """Grid and modes for the momentum problem: per-step propagation, grouped modes past
    ``per_step_max_T`` updates (or when asked), the control grid as for the learning rate."""
    grid_kind, grid = control_grid(spec, options)
    modes = options.modes
    if modes == "auto":
        modes = "grouped" if spec.T > options.per_step_max_T and spec.N > options.group_min_N else "exact"
    return Plan(grid_kind=grid_kind, grid=grid, lengths=np.ones(spec.T, dtype=np.int64),
                owner=np.repeat(np.arange(grid.size - 1), np.diff(grid)), propagator="step",
                modes=modes, spectrum=plan_spectrum(spec, modes))


def _momentum_step(n: int) -> ca.Function:
    """One EMA-momentum update on the stacked moments ``(C, R, V)`` of ``n`` modes."""
    C, R, V = ca.MX.sym("C", n), ca.MX.sym("R", n), ca.MX.sym("V", n)
    lam, lw = ca.MX.sym("lam", n), ca.MX.sym("lw", n)
    e, b, m, s2 = ca.MX.sym("eta"), ca.MX.sym("beta"), ca.MX.sym("m"), ca.MX.sym("s2")
    C1 = momentum_position(C, R, V, e)
    L1 = ca.dot(lw, C1)
    R1, V1 = momentum_velocity(C1, R, V, L1, e, b, m, lam, s2)
    return ca.Function("momentum_step", [ca.vertcat(C, R, V), e, b, m, lam, lw, s2],
                       [ca.vertcat(C1, R1, V1), L1])


@dataclass(frozen=True)
class JointNLP:
    """Decision vector ``x = (y_η, y_u)``, parameters ``p = (s_η, s_u, λ, wλ, c_0, σ², m̄)``,
    objective ``f`` and constraints ``g`` (the sample budget, or none). ``η_j = s_η,j y_η,j``
    and the second control ``u_j = s_u,j y_u,j``."""

    plan: Plan
    kind: str
    x: ca.MX
    p: ca.MX
    f: ca.MX
    g: ca.MX


def transcribe_joint(pl: Plan, kind: str, kappa: float = 0.0) -> JointNLP:
    """Single-shooting NLP for ``kind`` in ``{"batch_size", "momentum"}`` on the plan's grid."""
    n, K, n_sub = pl.spectrum.n_modes, pl.n_controls, int(pl.lengths.size)
    y, s = ca.MX.sym("y", 2 * K), ca.MX.sym("s", 2 * K)
    lam, lw, c0 = ca.MX.sym("lam", n), ca.MX.sym("lw", n), ca.MX.sym("c0", n)
    sigma2, mbar = ca.MX.sym("sigma2"), ca.MX.sym("mbar")
    u = y * s
    eta, ctrl = u[:K], u[K:]
    select = ca.DM(ca.Sparsity.triplet(n_sub, K, list(range(n_sub)), [int(j) for j in pl.owner]), 1.0)
    eta_seq, ctrl_seq = ca.mtimes(select, eta).T, ca.mtimes(select, ctrl).T
    g = ca.MX(0, 1)
    if kind == "batch_size":
        chain = _step_function(n, pl.propagator).mapaccum("chain", n_sub)
        _, losses = chain(c0, eta_seq, ctrl_seq, ca.DM(pl.lengths.astype(float)).T, lam, lw, sigma2)
        g = ca.dot(ca.DM(np.diff(pl.grid).astype(float)), ctrl)
        f = losses[-1]
    elif kind == "momentum":
        L0 = ca.dot(lw, c0)
        R0, V0 = momentum_start(c0, L0, ctrl[0], mbar, lam, sigma2)
        chain = _momentum_step(n).mapaccum("chain", n_sub)
        _, losses = chain(ca.vertcat(c0, R0, V0), eta_seq, ctrl_seq, mbar, lam, lw, sigma2)
        f = losses[-1]
        if kappa > 0 and K > 1:
            f = f + kappa * (ca.sumsqr(ca.diff(eta)) + ca.sumsqr(ca.diff(ctrl)))
    else:
        raise ValueError(f"unknown joint control {kind!r}")
    return JointNLP(plan=pl, kind=kind, x=y, p=ca.vertcat(s, lam, lw, c0, sigma2, mbar), f=f, g=g)


@dataclass
class _Compiled:
    """A compiled joint NLP; ``p``/``grad`` follow :mod:`optctl.solver`'s interface so
    that its curvature scaling applies unchanged."""

    solver: ca.Function
    f: ca.Function
    grad: ca.Function
    K: int
    model: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def p(self, scale: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        return np.concatenate([scale, self.model])


_CACHE: OrderedDict[tuple[object, ...], _Compiled] = OrderedDict()
_CACHE_SIZE = 6


def _compile(pl: Plan, kind: str, kappa: float, options: SolverOptions) -> _Compiled:
    import os

    ipopt = _ipopt_options(options)
    key = (kind, kappa, pl.propagator, pl.spectrum.n_modes, pl.grid.tobytes(), pl.lengths.tobytes(),
           repr(sorted(ipopt.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    nlp = transcribe_joint(pl, kind, kappa)
    opts: dict[str, Any] = {"ipopt": ipopt, "print_time": False, **jit_options()}
    here = os.getcwd()
    os.chdir(_scratch_dir())
    try:
        solver = ca.nlpsol("optctl_joint", "ipopt", {"x": nlp.x, "p": nlp.p, "f": nlp.f, "g": nlp.g}, opts)
    finally:
        os.chdir(here)
    out = _Compiled(solver=solver, f=solver.get_function("nlp_f"), grad=solver.get_function("nlp_grad_f"),
                    K=pl.n_controls)
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def _as_blocks(init: JointInit, spec: ProblemSpec, grid: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    if init is None:
        return None
    if callable(init):
        eta, other = init(np.arange(spec.T) / spec.T)
    else:
        eta, other = init
    eta, other = np.asarray(eta, dtype=float), np.asarray(other, dtype=float)
    if eta.shape != (spec.T,) or other.shape != (spec.T,):
        raise ValueError(f"init arrays have shapes {eta.shape}, {other.shape}; expected ({spec.T},)")
    return block_means(eta, grid), block_means(other, grid)


def solve_controls(spec: ProblemSpec, controls: ControlSpec | None = None,
                   options: SolverOptions | None = None, *, init: JointInit = None) -> ScheduleResult:
    """Minimise ``L_T`` over the controls of ``controls`` (MODEL.md §4).

    ``[lr]`` is :func:`optctl.solver.solve`. ``[lr, batch_size]`` chooses ``(η_t, m_t)``
    with ``m_t ∈ [m_min, m_max]`` and ``Σ_t m_t = T m̄`` (``m̄ = spec.batch_size``);
    ``[lr, momentum]`` chooses ``(η_t, β_t) ∈ [0, η_max] × [β_min, 1]`` under the EMA
    dynamics of MODEL.md §3 with penalty ``κ``. IPOPT starts from the best of several
    candidates built on the learning-rate optimum (and ``init``, per-step ``(η, m)`` or
    ``(η, β)``, or a function of ``t/T`` returning both); the result is replayed step by
    step with all modes and carries ``batch_size`` or ``beta`` per update.
    Bordelon & Mori, arXiv:2602.04774.
    """
    controls = ControlSpec() if controls is None else controls
    options = SolverOptions() if options is None else options
    controls.check_problem(spec)
    if controls.controls == ("lr",):
        return solve(spec, options)
    kind = "batch_size" if "batch_size" in controls.controls else "momentum"
    t_start = time.perf_counter()
    if kind == "batch_size" and options.propagator == "auto":
        # With m_t free the block propagator's closure (loss linear inside a block) can be
        # driven to its singularity 1 − α → 0 by small batches at large η, and IPOPT finds
        # that exploit; the exact per-step recursion has no such hole.
        options = replace(options, propagator="step")
    pl = momentum_plan(spec, options) if kind == "momentum" else plan(spec, options)
    kappa = float(controls.kappa or 0.0)
    prob = _compile(pl, kind, kappa, options)
    sp = pl.spectrum
    prob.model = np.concatenate([sp.lam, sp.weight * sp.lam, sp.c0, [sp.sigma2, spec.batch_size]])
    K, widths = pl.n_controls, np.diff(pl.grid).astype(float)

    # Learning-rate optimum at the mean batch (β = 1): a feasible start for both problems.
    sgd = solve(spec, replace(options, progress=False))
    eta0 = np.clip(block_means(sgd.eta, pl.grid), 0.0, spec.eta_max)
    if kind == "batch_size":
        lo, hi = float(controls.m_min or 1.0), float(controls.m_max or 1.0)
        cands = [(eta0, np.full(K, spec.batch_size))]
    else:
        lo, hi = float(controls.beta_min or 0.0), 1.0
        cands = [(eta0, np.full(K, b)) for b in (1.0, *BETA_STARTS) if b >= lo]
    given = _as_blocks(init if options.warm_start else None, spec, pl.grid)
    if given is not None:
        cands.append((np.clip(given[0], 0.0, spec.eta_max), np.clip(given[1], lo, hi)))
    ones = np.ones(2 * K)
    scores = []
    for e, c in cands:
        if kind == "batch_size":
            c = c * (spec.T * spec.batch_size / float(widths @ c))  # onto the budget
        scores.append(float(prob.f(ones, prob.p(np.concatenate([e, c])))[0]))
    best = int(np.nanargmin(scores))
    e_start, c_start = cands[best]
    start = np.concatenate([e_start, c_start])
    floor = np.concatenate([np.full(K, 1e-3 * spec.eta_max), np.full(K, max(lo, 1e-3))])
    lbx = np.concatenate([np.zeros(K), np.full(K, lo)])
    ubx = np.concatenate([np.full(K, spec.eta_max), np.full(K, hi)])
    budget = spec.T * spec.batch_size
    build_time = time.perf_counter() - t_start

    t0 = time.perf_counter()
    u, total, rounds = start, 0, 0
    stats: dict[str, Any] = {}
    while True:
        rounds += 1
        scale = np.maximum(u, floor)
        if options.precondition:
            scale = _curvature_scale(prob, u / scale, scale)  # type: ignore[arg-type]
        args: dict[str, Any] = {"x0": u / scale, "p": prob.p(scale), "lbx": lbx / scale, "ubx": ubx / scale}
        if kind == "batch_size":
            args.update(lbg=budget, ubg=budget)
        sol = prob.solver(**args)
        stats = prob.solver.stats()
        total += int(stats.get("iter_count", 0))
        u = np.clip(np.asarray(sol["x"]).ravel() * scale, lbx, ubx)
        if stats.get("return_status") != "Maximum_Iterations_Exceeded" or total >= options.max_iter:
            break
    objective = float(prob.f(u / scale, prob.p(scale))[0])
    solve_time = time.perf_counter() - t0

    eta_blocks, other = u[:K], u[K:].copy()
    if kind == "momentum" and K > 1 and widths[-1] == 1:
        # β_{T−1} only shapes v_T, which no update uses: report the neighbouring value.
        other[-1] = other[-2]
    eta, per_step = expand(eta_blocks, pl.grid), expand(other, pl.grid)
    t0 = time.perf_counter()
    if kind == "batch_size":
        rp = replay(spec, eta, per_step)
        loss, bias, variance, tail = rp.loss, rp.bias, rp.variance, rp.tail
        batch, beta = per_step, None
    else:
        loss, bias, variance = momentum_replay(spec, eta, per_step)
        tail = float(loss[0] - bias[0] - variance[0])
        batch, beta = np.full(spec.T, spec.batch_size), per_step
    replay_time = time.perf_counter() - t0
    objective += tail
    final = float(loss[-1])
    status = str(stats.get("return_status", "unknown"))
    return ScheduleResult(
        spec=spec, options=options, grid=pl.grid, eta_blocks=eta_blocks, eta=eta, batch_size=batch,
        loss=loss, bias=bias, variance=variance, final_loss=final, objective=objective,
        replay_gap=(objective - final) / final, exact=pl.exact and kappa == 0.0,
        success=bool(stats.get("success", False)), status=status, message=_message(status),
        iterations=total, wall_time=time.perf_counter() - t_start, build_time=build_time,
        solve_time=solve_time, replay_time=replay_time,
        transcription={"grid": pl.grid_kind, "n_controls": int(K), "propagator": pl.propagator,
                       "modes": pl.modes, "n_modes": sp.n_modes, "n_subblocks": int(pl.lengths.size),
                       "ipopt_rounds": rounds, "start": best, "sgd_final_loss": sgd.final_loss,
                       "initial_objective": float(np.nanmin(scores)) + tail},
        versions=versions(), beta=beta, controls=controls,
    )

