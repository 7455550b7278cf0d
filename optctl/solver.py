"""IPOPT run → :class:`ScheduleResult`: the one entry point of the solver stage."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import casadi as ca
import numpy as np

from optctl.grid import block_means, expand
from optctl.replay import Replay, gradient, replay
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.transcribe import Plan, jit_options, model_parameters, plan, structure_key, transcribe
from optctl.versions import versions

# Above this horizon the exact adjoint gradient (which stores the T × N trajectory)
# is not computed and approximate transcriptions are not polished.
POLISH_MAX_T = 20_000
POLISH_ROUNDS = 1
# Controls whose curvature is measured when rescaling; the rest are interpolated.
CURVATURE_PROBES = 64

Init = np.ndarray | Callable[[np.ndarray], np.ndarray] | None


@dataclass(frozen=True)
class ScheduleResult:
    """An optimal learning-rate schedule and how it was found.

    ``eta`` is the schedule per update (``T`` values), ``loss`` its exactly replayed
    loss curve ``L_0..L_T`` (tail included when the spec asks for it), split into
    ``bias`` and ``variance``. ``final_loss`` is the replayed ``L_T``: the number to
    show. ``objective`` is what the NLP reported; ``replay_gap`` is
    ``(objective − final_loss) / final_loss``, zero up to rounding for the exact
    transcription (``exact``). ``success``/``status``/``message`` and
    ``iterations`` come from IPOPT; times are wall seconds. Joint solves
    (:func:`optctl.joint.solve_controls`) also fill ``batch_size`` with the chosen
    ``m_t`` or ``beta`` with the EMA momentum weights ``β_t``, and record ``controls``.
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
    controls: ControlSpec | None = None


class _Monitor(ca.Callback):
    """IPOPT iteration callback: progress lines, and a clean stop on Ctrl-C.

    IPOPT runs in C; a ``KeyboardInterrupt`` raised inside a callback would be
    swallowed as ``NonIpopt_Exception_Thrown``. While a solve runs, SIGINT only sets
    a flag; the callback then asks IPOPT to stop and :func:`solve` re-raises
    ``KeyboardInterrupt`` once control is back in Python.
    """

    def __init__(self, n_x: int, n_p: int, every: int = 25) -> None:
        ca.Callback.__init__(self)
        self.n_x, self.n_p, self.every = n_x, n_p, every
        self.verbose = False
        self.interrupted = False
        self.reset()
        self.construct("monitor", {})

    def reset(self, verbose: bool = False) -> None:
        self.it, self.t0, self.verbose, self.interrupted = 0, time.perf_counter(), verbose, False

    def get_n_in(self) -> int:
        return ca.nlpsol_n_out()

    def get_n_out(self) -> int:
        return 1

    def get_name_in(self, i: int) -> str:
        return ca.nlpsol_out(i)

    def get_name_out(self, i: int) -> str:
        return "ret"

    def get_sparsity_in(self, i: int) -> ca.Sparsity:
        n = ca.nlpsol_out(i)
        if n in ("x", "lam_x"):
            return ca.Sparsity.dense(self.n_x)
        if n == "f":
            return ca.Sparsity.dense(1)
        if n == "lam_p":
            return ca.Sparsity.dense(self.n_p)
        return ca.Sparsity(0, 0)

    def eval(self, arg: Any) -> list[Any]:  # type: ignore[override]
        if self.verbose and self.it % self.every == 0:
            print(f"  ipopt iter {self.it:5d}  L_T (transcribed) = {float(arg[1]):.8e}  "
                  f"[{time.perf_counter() - self.t0:.1f} s]", file=sys.stderr, flush=True)
        self.it += 1
        return [1 if self.interrupted else 0]


@contextlib.contextmanager
def _sigint_to(monitor: _Monitor) -> Iterator[None]:
    """Route Ctrl-C to ``monitor`` while IPOPT runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        monitor.interrupted = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if monitor.interrupted:
        raise KeyboardInterrupt


def _candidates(spec: ProblemSpec, grid: np.ndarray, init: Init) -> np.ndarray:
    """Initial schedules (one value per block) to rank before IPOPT starts.

    Polynomial decays ``p (1 − u)^δ`` (the easy-phase form, ``δ = 1`` and the
    theory's ``2b − 1``), plateaus with a final linear decay (the hard-phase form),
    and constants, all at several heights; plus the caller's warm start.
    """
    u = (grid[:-1] + grid[1:]) / (2.0 * spec.T)
    eta_max = spec.eta_max
    # Down to 1e-4 η_max: with a flat spectrum (b near 1) and long horizons the best
    # constant can sit below 1e-3 η_max.
    heights = eta_max * np.logspace(-4, 0, 17)
    cands = [np.full(u.size, h) for h in heights]
    for delta in sorted({1.0, float(np.clip(2 * spec.b - 1, 1.0, 9.0))}):
        cands += [h * (1 - u) ** delta for h in heights]
    for frac in (0.02, 0.05, 0.1, 0.2, 0.4):
        cands += [h * np.minimum(1.0, (1 - u) / frac) for h in eta_max * np.array([1.0, 0.5, 0.25])]
    if init is not None:
        if callable(init):
            t = np.arange(spec.T)
            per_step = np.asarray(init(t / spec.T), dtype=float)
        else:
            per_step = np.asarray(init, dtype=float)
            if per_step.shape != (spec.T,):
                raise ValueError(f"init has shape {per_step.shape}; expected ({spec.T},) "
                                 "or a function of t/T")
        cands.append(np.clip(block_means(per_step, grid), 0.0, eta_max))
    return np.array(cands)


def _ipopt_options(options: SolverOptions) -> dict[str, Any]:
    ipopt = {
        "hessian_approximation": "limited-memory",
        "limited_memory_max_history": 30,
        "tol": options.tol,
        # The default "acceptable" exit stops while the objective is still moving
        # in the 7th digit; the per-block scaling makes the real tolerance reachable.
        "acceptable_iter": 0,
        # The start is a ranked candidate already close to the optimum, with the
        # plateau on its bound; the default push (1e-2) would throw that away.
        "bound_push": 1e-8,
        "bound_frac": 1e-8,
        "max_iter": min(options.round_iter, options.max_iter),
        "print_level": 0,
        "sb": "yes",
    }
    if options.hessian == "exact":
        ipopt["hessian_approximation"] = "exact"
    ipopt.update(options.ipopt)
    return ipopt


@dataclass
class _Compiled:
    """A compiled NLP and its functions, reusable for every spec of the same shape."""

    solver: ca.Function
    f: ca.Function
    grad: ca.Function
    monitor: _Monitor
    K: int
    model: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def p(self, scale: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """The NLP parameter vector: scale, gradient correction (in ``y`` units), model."""
        return np.concatenate([scale, np.zeros(self.K) if corr is None else corr, self.model])


# Compiled problems by shape (grid, sub-blocks, modes, IPOPT options): a sweep over
# (a, b) or σ at one horizon compiles once.
_CACHE: OrderedDict[tuple[object, ...], _Compiled] = OrderedDict()
_CACHE_SIZE = 8


@functools.cache
def _scratch_dir() -> str:
    path = tempfile.mkdtemp(prefix="optctl-jit-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _compile(pl: Plan, options: SolverOptions) -> _Compiled:
    ipopt = _ipopt_options(options)
    key = (structure_key(pl), repr(sorted(ipopt.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        hit = _CACHE[key]
        hit.monitor.reset(options.progress)
        return hit
    nlp = transcribe(pl)
    K = pl.n_controls
    solver_opts: dict[str, Any] = {"ipopt": ipopt, "print_time": False}
    solver_opts.update(jit_options())
    monitor = _Monitor(K, int(nlp.p.numel()))
    monitor.reset(options.progress)
    solver_opts["iteration_callback"] = monitor
    # CasADi's C compiler writes its sources and objects into the working directory;
    # build in a scratch one (removed at exit) so that users' folders stay clean.
    here = os.getcwd()
    os.chdir(_scratch_dir())
    try:
        solver = ca.nlpsol("optctl", "ipopt", {"x": nlp.x, "p": nlp.p, "f": nlp.f}, solver_opts)
    finally:
        os.chdir(here)
    out = _Compiled(solver=solver, f=solver.get_function("nlp_f"),
                    grad=solver.get_function("nlp_grad_f"), monitor=monitor, K=K)
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def solve(spec: ProblemSpec, options: SolverOptions | None = None, *, init: Init = None) -> ScheduleResult:
    """Minimise ``L_T`` over the learning-rate schedule with IPOPT (MODEL.md §4.1).

    The schedule is piecewise constant on the control grid chosen by ``options``;
    the result is always replayed step by step with all ``N`` modes, and the
    replayed loss is the one reported. ``init`` warms the start: a per-step
    schedule of length ``T``, or a function of ``u = t/T`` (another horizon's
    solution, say). Bordelon & Mori, arXiv:2602.04774, section 4.
    """
    options = SolverOptions() if options is None else options
    t_start = time.perf_counter()
    pl: Plan = plan(spec, options)
    prob = _compile(pl, options)
    prob.model = model_parameters(pl, spec)
    K = pl.n_controls

    # Rank candidate schedules with the compiled objective, start from the best.
    cands = _candidates(spec, pl.grid, init if options.warm_start else None)
    ones = np.ones(K)
    scores = [float(prob.f(ones, prob.p(c))[0]) for c in cands]
    best = cands[int(np.nanargmin(scores))]
    scale = np.maximum(best, 1e-3 * spec.eta_max)
    if options.precondition:
        scale = _curvature_scale(prob, best / scale, scale)
    build_time = time.perf_counter() - t_start

    t0 = time.perf_counter()
    with _sigint_to(prob.monitor):
        eta_blocks, scale, stats, iterations, rounds = _run_ipopt(prob, best, scale, np.zeros(K),
                                                                  spec, options)
        polished = 0
        if options.polish and not pl.exact and spec.T <= POLISH_MAX_T:
            eta_blocks, scale, stats, iterations, polished = _polish(
                prob, pl, eta_blocks, scale, stats, iterations, spec, options)
    objective = float(prob.f(eta_blocks / scale, prob.p(scale))[0])
    solve_time = time.perf_counter() - t0

    eta = expand(eta_blocks, pl.grid)
    t0 = time.perf_counter()
    rp: Replay = replay(spec, eta)
    replay_time = time.perf_counter() - t0
    objective += rp.tail
    final = rp.final
    status = str(stats.get("return_status", "unknown"))
    return ScheduleResult(
        spec=spec, options=options, grid=pl.grid, eta_blocks=eta_blocks, eta=eta,
        batch_size=np.full(spec.T, spec.batch_size), loss=rp.loss, bias=rp.bias,
        variance=rp.variance, final_loss=final, objective=objective,
        replay_gap=(objective - final) / final, exact=pl.exact,
        success=bool(stats.get("success", False)), status=status,
        message=_message(status), iterations=iterations,
        wall_time=time.perf_counter() - t_start, build_time=build_time,
        solve_time=solve_time, replay_time=replay_time,
        transcription={"grid": pl.grid_kind, "n_controls": int(K), "propagator": pl.propagator, "modes": pl.modes,
                       "n_modes": pl.spectrum.n_modes, "n_subblocks": int(pl.lengths.size),
                       "ipopt_rounds": rounds, "polish_rounds": polished,
                       "initial_objective": float(np.nanmin(scores)) + rp.tail},
        versions=versions(),
    )


def _run_ipopt(prob: _Compiled, start: np.ndarray, scale: np.ndarray, corr: np.ndarray,
               spec: ProblemSpec, options: SolverOptions
               ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int, int]:
    """IPOPT in rounds of ``options.round_iter`` iterations, re-scaling between rounds.

    The curvature scaling is estimated where a round starts; far from there it goes
    stale and the quasi-Newton run slows down, so an unfinished round restarts from
    its last iterate with a fresh scaling, until IPOPT converges or ``max_iter``
    iterations are spent. ``corr`` is the gradient correction per block, in units
    of ``η`` (it is rescaled with the controls). Returns the block learning rates, the
    last scale, IPOPT's stats, the iterations and the rounds.
    """
    eta = start
    total, rounds = 0, 0
    while True:
        rounds += 1
        p = prob.p(scale, corr * scale)
        f_start = float(prob.f(eta / scale, p)[0])
        sol = prob.solver(x0=eta / scale, p=p, lbx=0.0, ubx=spec.eta_max / scale)
        stats = prob.solver.stats()
        total += int(stats.get("iter_count", 0))
        new = np.clip(np.asarray(sol["x"]).ravel() * scale, 0.0, spec.eta_max)
        if not float(prob.f(new / scale, p)[0]) <= f_start:
            # A round stopped by max_iter (or a failure) can end above its start on an
            # ill-conditioned problem: keep the better point and stop.
            return eta, scale, stats, total, rounds
        eta = new
        if (stats.get("return_status") != "Maximum_Iterations_Exceeded" or total >= options.max_iter
                or prob.monitor.interrupted):
            return eta, scale, stats, total, rounds
        scale = np.maximum(eta, 1e-3 * spec.eta_max)
        if options.precondition:
            scale = _curvature_scale(prob, eta / scale, scale)


def _polish(prob: _Compiled, pl: Plan, eta: np.ndarray, scale: np.ndarray,
            stats: dict[str, Any], iterations: int, spec: ProblemSpec, options: SolverOptions
            ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], int, int]:
    """Move an approximate transcription's optimum onto the exact problem's.

    The approximate objective ``L̃`` is corrected by the linear term
    ``(∇L − ∇L̃)(η*) · η``, with ``∇L`` the exact per-step adjoint gradient summed
    over each block: the corrected problem has the exact first-order optimality
    conditions at ``η*``, so its optimum agrees with the exact one up to the
    (small) error in curvature. Kept only while the replayed loss improves.
    """
    best_loss, exact_grad = gradient(spec, expand(eta, pl.grid))
    rounds = 0
    for _ in range(POLISH_ROUNDS):
        if prob.monitor.interrupted:
            break
        approx_grad = np.asarray(prob.grad(eta / scale, prob.p(scale))[1]).ravel() / scale
        block_grad = np.add.reduceat(exact_grad, pl.grid[:-1])
        new_eta, new_scale, new_stats, its, _ = _run_ipopt(
            prob, eta, scale, block_grad - approx_grad, spec, options)
        iterations += its
        loss, new_grad = gradient(spec, expand(new_eta, pl.grid))
        if not loss < best_loss:
            break
        rounds += 1
        eta, scale, stats, best_loss, exact_grad = new_eta, new_scale, new_stats, loss, new_grad
    return eta, scale, stats, iterations, rounds


def _curvature_scale(prob: _Compiled, y: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Rescale the controls so that every one has unit curvature at the start.

    A limited-memory Hessian starts from a multiple of the identity; the learning
    rates of a schedule differ in their effect on ``L_T`` by many orders of magnitude
    (early blocks are forgotten, the last updates set the noise floor), so without
    this a quasi-Newton run crawls. The diagonal of the Hessian is estimated by
    forward differences of the compiled gradient at up to ``CURVATURE_PROBES``
    controls, and interpolated (in log scale) between them.
    """
    K = y.size
    p = prob.p(scale)
    g0 = np.asarray(prob.grad(y, p)[1]).ravel()
    probes = np.unique(np.rint(np.linspace(0, K - 1, min(K, CURVATURE_PROBES))).astype(int))
    h = 1e-4 * np.maximum(np.abs(y), 1e-2)
    diag = np.empty(probes.size)
    for i, j in enumerate(probes):
        yj = y.copy()
        yj[j] += h[j]
        diag[i] = (float(prob.grad(yj, p)[1][j]) - g0[j]) / h[j]
    curv = np.abs(diag)
    ref = np.median(curv[curv > 0]) if np.any(curv > 0) else 1.0
    curv = np.clip(curv, 1e-8 * ref, None)
    curv = np.exp(np.interp(np.arange(K), probes, np.log(curv)))
    return scale * np.sqrt(ref / curv)


def _message(status: str) -> str:
    messages = {
        "Solve_Succeeded": "IPOPT converged to the requested tolerance.",
        "Solved_To_Acceptable_Level": "IPOPT stopped at its acceptable tolerance.",
        "Maximum_Iterations_Exceeded": "IPOPT hit max_iter; raise solver.max_iter or loosen solver.tol.",
        "Maximum_CpuTime_Exceeded": "IPOPT hit its CPU-time limit.",
    }
    return messages.get(status, f"IPOPT returned {status}.")


def per_step(result: ScheduleResult) -> np.ndarray:
    """The schedule as one learning rate per update (alias of ``result.eta``)."""
    return expand(result.eta_blocks, result.grid)
