"""The IPOPT driver shared by every control set: compile, start, scale, solve in rounds, polish.

- :func:`compile_problem`: the NLP of a plan and control set compiled to C once and
  cached by shape, in the process and on disk (:func:`nlp_cache_dir`), so a sweep over
  models at one horizon compiles once and a second command of the same shape not at all;
- :class:`Monitor`: progress lines every few iterations, and a clean stop on Ctrl-C
  (:func:`stop_on_sigint`);
- :func:`fresh_scale`: per-variable scaling to unit curvature at the start of a round;
- :func:`run_rounds`: IPOPT in rounds of ``round_iter`` iterations with a fresh scaling
  between them; a round that ends above its own start is discarded;
- :func:`polish`: for approximate transcriptions of the learning rate, a re-solve whose
  objective is corrected to the exact first-order conditions;
- :class:`~optctl.errors.SolverError` when IPOPT cannot be set up or run at all.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import casadi as ca
import numpy as np

from optctl.errors import ConfigError, SolverError
from optctl.model.ckernel import BuildError, cache_root, compiler, store_library, stored
from optctl.model.replay import gradient
from optctl.solver.controls import LearningRate
from optctl.solver.piecewise import expand
from optctl.solver.plan import Plan
from optctl.solver.transcribe import jit_options, transcribe
from optctl.spec import ProblemSpec, SolverOptions
from optctl.versions import versions

# Above this horizon the exact adjoint gradient (which stores the T × N trajectory)
# is not computed and approximate transcriptions are not polished.
POLISH_MAX_T = 20_000
# Polish rounds at most (each kept only while the replayed loss falls). Warm-started, a second
# round costs a few iterations (reference cases, T = 1000: 2-5); with one, easy T = 3162
# ended 3.7e-11 above the answer of the version before the warm start.
POLISH_ROUNDS = 2
# Controls whose curvature is measured when rescaling; the rest are interpolated.
CURVATURE_PROBES = 64
# Default clip of the measured curvatures, relative to their median (from below only):
# a control with almost no effect on L_T is scaled up by at most 1/sqrt(clip). A control set
# may ask for a tighter, two-sided clip (``curvature_clip``, :mod:`optctl.solver.controls`).
CURVATURE_CLIP = 1e-8
# Threads that evaluate the probes' gradients together (one call, no interpreter lock held):
# at most this many, fewer on a smaller machine; ``OPTCTL_THREADS`` overrides
# (:func:`threads`; a sweep's worker processes, which share the cores, use 1).
MAX_THREADS = 4
THREADS_ENV = "OPTCTL_THREADS"
# IPOPT statuses that mean it could not run the problem at all (not a mere non-convergence).
SETUP_FAILURES = ("Invalid_Option", "Invalid_Problem_Definition", "Not_Enough_Degrees_Of_Freedom",
                  "Insufficient_Memory", "Internal_Error", "Unrecoverable_Exception",
                  "NonIpopt_Exception_Thrown")


class Monitor(ca.Callback):
    """IPOPT iteration callback: progress lines, and a clean stop on Ctrl-C.

    IPOPT runs in C; a ``KeyboardInterrupt`` raised inside a callback would be
    swallowed as ``NonIpopt_Exception_Thrown``. While a solve runs, SIGINT only sets
    a flag (:func:`stop_on_sigint`); the callback then asks IPOPT to stop and
    ``KeyboardInterrupt`` is re-raised once control is back in Python.
    """

    def __init__(self, n_x: int, n_p: int, n_g: int = 0, every: int = 25) -> None:
        ca.Callback.__init__(self)
        self.n_x, self.n_p, self.n_g, self.every = n_x, n_p, n_g, every
        self.verbose = False
        self.interrupted = False
        self.reset()
        self.construct("monitor", {})

    def reset(self, verbose: bool = False) -> None:
        self.it, self.t0, self.verbose, self.interrupted = 0, time.perf_counter(), verbose, False
        self.best = math.inf

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
        if n in ("g", "lam_g") and self.n_g:
            return ca.Sparsity.dense(self.n_g)
        return ca.Sparsity(0, 0)

    def eval(self, arg: Any) -> list[Any]:  # type: ignore[override]
        value = float(arg[1])
        if value < self.best:
            self.best = value
        # The iterate's own value may rise (IPOPT's barrier and line search, and each round
        # restarting from rescaled controls), so the best value so far is printed beside it.
        if self.verbose and self.it % self.every == 0:
            print(f"  ipopt iter {self.it:5d}  L_T (transcribed) = {value:.8e}  (best so far "
                  f"{self.best:.8e}; an iterate may rise)  [{time.perf_counter() - self.t0:.1f} s]",
                  file=sys.stderr, flush=True)
        self.it += 1
        return [1 if self.interrupted else 0]


@contextlib.contextmanager
def stop_on_sigint(monitor: Monitor) -> Iterator[None]:
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


def ipopt_options(options: SolverOptions, defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """IPOPT's options: optctl's, then a control set's ``defaults``, then ``options.ipopt``."""
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
    ipopt.update(defaults or {})
    ipopt.update(options.ipopt)
    return ipopt


def threads() -> int:
    """The threads of one mapped call: ``$OPTCTL_THREADS`` when set (a whole number, 0 for
    automatic), else the cores this process may use, at most :data:`MAX_THREADS`. Read at
    each call, so a bad value is reported where it is used (a :class:`ConfigError` naming
    the variable), not as an import failure."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if text:
        try:
            n = int(text)
        except ValueError:
            n = -1
        if n < 0:
            raise ConfigError(THREADS_ENV, text, "the environment variable must be a whole number "
                              "of threads (1 or more; 0 or unset to use the cores available, at "
                              f"most {MAX_THREADS}); unset it or set e.g. {THREADS_ENV}=1")
        if n > 0:
            return n
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(MAX_THREADS, cores))


@dataclass
class Compiled:
    """A compiled NLP and its functions, reusable for every spec of the same shape.

    ``size`` decision variables; ``model`` the model part of the parameters, set for the
    spec being solved (:func:`optctl.solver.transcribe.model_parameters`). ``cache`` says
    where the compiled problem came from: ``"memory"`` (this process built or loaded it
    before), ``"disk"`` (a library another command compiled), ``"built"`` (transcribed and
    compiled now; stored on disk unless the cache is off), ``"off"`` (no C compiler: the
    functions are interpreted). ``build_time`` the seconds that took.
    """

    solver: ca.Function
    f: ca.Function
    grad: ca.Function
    monitor: Monitor
    size: int
    model: np.ndarray = field(default_factory=lambda: np.zeros(0))
    cache: str = "built"
    build_time: float = 0.0
    _grad_maps: dict[tuple[int, int], ca.Function] = field(default_factory=dict, repr=False)
    _f_maps: dict[tuple[int, int], ca.Function] = field(default_factory=dict, repr=False)
    source: Any = field(default=None, repr=False)
    base: dict[str, Any] = field(default_factory=dict, repr=False)
    _variants: dict[str, ca.Function] = field(default_factory=dict, repr=False)

    def variant(self, ipopt: dict[str, Any]) -> ca.Function:
        """The same NLP (the same compiled functions) with the IPOPT options ``ipopt`` on
        top of its own (a warm start, :data:`WARM_START`); built once per set of options."""
        key = repr(sorted(ipopt.items()))
        if key not in self._variants:
            opts = {**self.base, "ipopt": {**self.base.get("ipopt", {}), **ipopt},
                    "iteration_callback": self.monitor}
            try:
                self._variants[key] = ca.nlpsol("optctl", "ipopt", self.source, opts)
            except RuntimeError as err:
                raise _setup_failure(err) from None
        return self._variants[key]

    def p(self, scale: np.ndarray, corr: np.ndarray | None = None) -> np.ndarray:
        """The NLP parameter vector: scale, gradient correction (in ``y`` units), model."""
        return np.concatenate([scale, np.zeros(self.size) if corr is None else corr, self.model])

    def objective(self, u: np.ndarray, scale: np.ndarray) -> float:
        """The transcribed objective at the controls ``u`` (no gradient correction)."""
        return float(self.f(u / scale, self.p(scale))[0])

    def gradients(self, n: int) -> ca.Function:
        """``grad`` mapped over ``n`` points (the columns of its first input), evaluated on
        :func:`threads` threads; the parameters are shared."""
        key = (n, threads())
        if key not in self._grad_maps:
            self._grad_maps[key] = self.grad.map(n, "thread", key[1])
        return self._grad_maps[key]

    def score(self, candidates: list[np.ndarray]) -> list[float]:
        """The transcribed objective of each candidate start (scaled by itself)."""
        if not candidates:
            return []
        # one call for all of them, on threads (the same values as one call each)
        key = (len(candidates), threads())
        if key not in self._f_maps:
            self._f_maps[key] = self.f.map(key[0], "thread", key[1])
        params = np.stack([self.p(c) for c in candidates], axis=1)
        values = self._f_maps[key](np.ones(self.size), params)  # one output: a 1 x n matrix
        return [float(v) for v in np.asarray(values).ravel()]


# Compiled problems by shape (control set, plan, IPOPT options): a sweep over (a, b) or σ
# at one horizon compiles once.
_CACHE: OrderedDict[tuple[object, ...], Compiled] = OrderedDict()
_CACHE_SIZE = 8
# Environment: OPTCTL_NLP_CACHE=off disables the on-disk cache; OPTCTL_CACHE_DIR moves it.
CACHE_ENV = "OPTCTL_NLP_CACHE"
# The sources that define an NLP: a change to any of them invalidates every stored library.
_NLP_SOURCES = ("solver/transcribe.py", "solver/dynamics.py", "solver/controls.py", "solver/plan.py",
                "solver/piecewise.py", "solver/grid.py", "solver/ipopt.py", "model/spectrum.py",
                "model/blocks.py", "model/momentum.py", "model/families.py")


@functools.cache
def _scratch_dir() -> str:
    path = tempfile.mkdtemp(prefix="optctl-jit-")
    atexit.register(shutil.rmtree, path, True)
    return path


def nlp_cache_dir() -> Path | None:
    """Where compiled NLPs are kept between processes, or None when the cache is off.

    ``$OPTCTL_CACHE_DIR`` if set, else ``$XDG_CACHE_HOME/optctl/nlp`` (``~/.cache`` when
    ``XDG_CACHE_HOME`` is unset); ``OPTCTL_NLP_CACHE=off`` (or ``0``, ``no``) turns it off.
    """
    if os.environ.get(CACHE_ENV, "on").strip().lower() in ("off", "0", "no", "false"):
        return None
    return cache_root() / "nlp"


@functools.cache
def _sources_digest() -> str:
    root = Path(__file__).resolve().parent.parent
    h = hashlib.sha256()
    for rel in _NLP_SOURCES:
        path = root / rel
        h.update(rel.encode())
        h.update(path.read_bytes() if path.is_file() else b"")
    return h.hexdigest()


def _disk_key(key: tuple[object, ...]) -> str:
    """The file name of a shape's library: the shape, the IPOPT options, the package and
    CasADi versions, the compiler flags and the NLP's own sources."""
    v = versions()
    text = repr((key, v.get("optctl"), v.get("casadi"), _COMPILE_FLAGS, _sources_digest()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


_COMPILE_FLAGS = ("-O1", "-shared", "-fPIC")


def _build_library(nlp_solver: ca.Function, lib: Path, compiler: str) -> None:
    """Generate the C code of ``nlp_solver``'s functions and compile it to ``lib`` with its
    checksum record (:func:`optctl.model.ckernel.store_library`: atomic)."""
    work = Path(tempfile.mkdtemp(prefix="optctl-nlp-", dir=_scratch_dir()))
    here = os.getcwd()
    os.chdir(work)  # CasADi writes the generated source into the working directory
    try:
        nlp_solver.generate_dependencies("nlp.c")
    finally:
        os.chdir(here)
    try:
        store_library(compiler, _COMPILE_FLAGS, work / "nlp.c", lib, {"versions": versions()})
    except BuildError as err:
        raise SolverError(f"the C compiler {compiler} could not compile the NLP: {err}; install a "
                          f"working gcc, or set {CACHE_ENV}=off") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _setup_failure(err: Exception) -> SolverError:
    """A one-line :class:`SolverError` from CasADi's multi-line message (source paths dropped)."""
    lines = [re.sub(r"^\S*\.(cpp|hpp):\d+:\s*", "", ln.strip()) for ln in str(err).splitlines()]
    detail = " ".join(ln for ln in lines if ln) or type(err).__name__
    return SolverError(f"IPOPT could not be set up: {detail}; check solver.ipopt and the solver "
                       "options of the config")


def compile_problem(plan: Plan, controls: LearningRate, kappa: float, options: SolverOptions) -> Compiled:
    """The compiled NLP of ``controls`` on ``plan``: from this process's cache when the shape
    repeats, else from the on-disk cache (:func:`nlp_cache_dir`), else transcribed and
    compiled now (and stored). A missing, truncated or altered library on disk is rebuilt.
    Without a C compiler the functions are interpreted and nothing is stored."""
    t0 = time.perf_counter()
    threads()  # a bad OPTCTL_THREADS is reported now, before the build
    ipopt = ipopt_options(options, controls.ipopt_defaults)
    key = (*controls.identity(), kappa, plan.structure(), repr(sorted(ipopt.items())))
    if key in _CACHE:
        _CACHE.move_to_end(key)
        hit = _CACHE[key]
        hit.monitor.reset(options.progress)
        hit.cache, hit.build_time = "memory", time.perf_counter() - t0
        return hit
    base: dict[str, Any] = {"ipopt": ipopt, "print_time": False}
    cc = compiler()
    folder = nlp_cache_dir()
    lib = (folder if folder is not None else Path(_scratch_dir()) / "nlp") / f"{_disk_key(key)}.so"
    how = "disk"
    if cc is None:
        how = "off"
    elif not stored(lib):
        how = "built"
        nlp = transcribe(plan, controls, kappa)
        try:
            plain = ca.nlpsol("optctl", "ipopt", {"x": nlp.x, "p": nlp.p, "f": nlp.f, "g": nlp.g_c}, base)
        except RuntimeError as err:
            raise _setup_failure(err) from None
        _build_library(plain, lib, cc)
    if how == "off":
        nlp = transcribe(plan, controls, kappa)
        n_x, n_p, n_g = int(nlp.x.numel()), int(nlp.p.numel()), int(nlp.g_c.numel())
        source: Any = {"x": nlp.x, "p": nlp.p, "f": nlp.f, "g": nlp.g_c}
        base.update(jit_options())
    else:
        try:
            f_ext, g_ext = ca.external("nlp_f", str(lib)), ca.external("nlp_g", str(lib))
        except RuntimeError as err:
            raise SolverError(f"the compiled NLP {lib} cannot be loaded ({err}); delete it, or set "
                              f"{CACHE_ENV}=off") from None
        n_x, n_p, n_g = f_ext.nnz_in(0), f_ext.nnz_in(1), g_ext.nnz_out(0)
        source = str(lib)
    monitor = Monitor(n_x, n_p, n_g)
    monitor.reset(options.progress)
    try:
        solver = ca.nlpsol("optctl", "ipopt", source, {**base, "iteration_callback": monitor})
    except RuntimeError as err:
        raise _setup_failure(err) from None
    out = Compiled(solver=solver, f=solver.get_function("nlp_f"),
                   grad=solver.get_function("nlp_grad_f"), monitor=monitor, size=n_x, cache=how,
                   build_time=time.perf_counter() - t0, source=source, base=base)
    _CACHE[key] = out
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return out


def fresh_scale(prob: Compiled, u: np.ndarray, floor: np.ndarray, precondition: bool,
                clip: float = CURVATURE_CLIP, probes: int = CURVATURE_PROBES) -> np.ndarray:
    """Each variable's scale at the start of a round: its value (not below ``floor``),
    rescaled to unit curvature when ``precondition`` (:func:`curvature_scale` with up to
    ``probes`` probes, curvatures clipped to ``clip`` of their median)."""
    scale = np.maximum(u, floor)
    return curvature_scale(prob, u / scale, scale, clip, probes) if precondition else scale


@dataclass
class Rounds:
    """Where :func:`run_rounds` ended: the controls, the last scale, IPOPT's last stats,
    the iterations and the rounds spent; ``discarded`` when the last round ended above
    its start and was thrown away (its start is ``u``); ``capped`` when that round was cut
    short by ``max_iter`` (below ``round_iter``), so more iterations might have helped."""

    u: np.ndarray
    scale: np.ndarray
    stats: dict[str, Any]
    iterations: int = 0
    rounds: int = 0
    discarded: bool = False
    capped: bool = False
    lam_x: np.ndarray | None = None


# IPOPT's warm start from the bound multipliers of an earlier solve (run_rounds' ``lam_x``):
# the barrier parameter starts small and the start is barely pushed off its bounds. A cold
# restart from an optimum (barrier 0.1, the plateau's rates pushed off their bound) can
# spend a whole round of iterations getting back to where it started.
WARM_START = {"warm_start_init_point": "yes", "mu_init": 1e-6, "warm_start_bound_push": 1e-9,
              "warm_start_bound_frac": 1e-9, "warm_start_mult_bound_push": 1e-9}


def run_rounds(prob: Compiled, start: np.ndarray, scale: np.ndarray, corr: np.ndarray,
               bounds: tuple[np.ndarray, np.ndarray], floor: np.ndarray, options: SolverOptions,
               constraints: dict[str, float], clip: float = CURVATURE_CLIP,
               lam_x: np.ndarray | None = None, ipopt: dict[str, Any] | None = None) -> Rounds:
    """IPOPT in rounds of ``options.round_iter`` iterations, re-scaling between rounds.

    The curvature scaling is estimated where a round starts; far from there it goes
    stale and the quasi-Newton run slows down, so an unfinished round restarts from
    its last iterate with a fresh scaling, until IPOPT converges or ``max_iter``
    iterations are spent. A round that ends above its own start (a round stopped by
    ``max_iter`` on an ill-conditioned problem can) is discarded and the run stops
    there, so a solve never returns worse than its start. ``corr`` is the gradient
    correction per variable, in the units of the controls (rescaled with them); ``clip``
    the curvature clip of :func:`fresh_scale`. ``lam_x``: the bound multipliers (in the
    units of the controls) of an earlier solve that ended at ``start``; every round then
    starts warm (:data:`WARM_START`) from the multipliers where it starts. The result's
    ``lam_x`` are those of its last kept round. ``ipopt``: IPOPT options for every round on
    top of the compiled problem's own (:meth:`Compiled.variant`; the same compiled functions).
    """
    lo, hi = bounds
    out = Rounds(u=start, scale=scale, stats={}, lam_x=lam_x)
    while True:
        out.rounds += 1
        p = prob.p(out.scale, corr * out.scale)
        f_start = float(prob.f(out.u / out.scale, p)[0])
        solver, warm = prob.variant(ipopt) if ipopt else prob.solver, {}
        if lam_x is not None and out.lam_x is not None:
            solver, warm = prob.variant({**WARM_START, **(ipopt or {})}), {"lam_x0": out.lam_x * out.scale}
        try:
            sol = solver(x0=out.u / out.scale, p=p, lbx=lo / out.scale, ubx=hi / out.scale,
                         **constraints, **warm)
        except RuntimeError as err:
            raise _setup_failure(err) from None
        stats = solver.stats()
        status = str(stats.get("return_status", "unknown"))
        if status in SETUP_FAILURES and not prob.monitor.interrupted:
            raise SolverError(f"IPOPT returned {status}: {message(status)}")
        out.iterations += int(stats.get("iter_count", 0))
        out.stats = stats
        new = np.clip(np.asarray(sol["x"]).ravel() * out.scale, lo, hi)
        if not float(prob.f(new / out.scale, p)[0]) <= f_start:
            out.discarded = True  # keep the better point (the round's start) and stop
            out.capped = (status == "Maximum_Iterations_Exceeded"
                          and options.max_iter < options.round_iter)
            return out
        out.u = new
        out.lam_x = np.asarray(sol["lam_x"]).ravel() / out.scale
        if (status != "Maximum_Iterations_Exceeded" or out.iterations >= options.max_iter
                or prob.monitor.interrupted):
            return out
        out.scale = fresh_scale(prob, out.u, floor, options.precondition, clip)


def polish(prob: Compiled, plan: Plan, spec: ProblemSpec, run: Rounds,
           bounds: tuple[np.ndarray, np.ndarray], floor: np.ndarray,
           options: SolverOptions, c0: np.ndarray | None = None,
           ipopt: dict[str, Any] | None = None) -> tuple[Rounds, int]:
    """Move an approximate transcription's optimum onto the exact problem's.

    The approximate objective ``L̃`` is corrected by the linear term
    ``(∇L − ∇L̃)(η*) · η``, with ``∇L`` the exact per-step adjoint gradient summed
    over each block: the corrected problem has the exact first-order optimality
    conditions at ``η*``, so its optimum agrees with the exact one up to the
    (small) error in curvature. Each round starts warm from the bound multipliers of the
    run it polishes (``run.lam_x``, when it has them). Kept only while the replayed loss improves. Returns
    the run (its iterations include the polish rounds) and the rounds kept. ``c0`` is
    the exact state the problem starts from (default: the spectrum's); ``ipopt``: IPOPT
    options on top of the problem's own, as in :func:`run_rounds`.
    """
    best_loss, exact_grad = gradient(spec, expand(run.u, plan.grid), c0=c0)
    kept = 0
    for _ in range(POLISH_ROUNDS):
        if prob.monitor.interrupted:
            break
        approx_grad = np.asarray(prob.grad(run.u / run.scale, prob.p(run.scale))[1]).ravel() / run.scale
        block_grad = np.add.reduceat(exact_grad, plan.grid[:-1])
        # Warm from the run's bound multipliers (:data:`WARM_START`): the corrected problem's
        # optimum lies next to ``run.u``, and a cold start (a large barrier, the plateau pushed
        # off its bound) spent as many iterations getting back there as the run itself (reference
        # cases, T = 1000 uniform: hard 48 -> 12, easy 28 -> 6, replayed L_T no higher).
        new = run_rounds(prob, run.u, run.scale, block_grad - approx_grad, bounds, floor, options, {},
                         lam_x=run.lam_x, ipopt=ipopt)
        run.iterations += new.iterations
        loss, new_grad = gradient(spec, expand(new.u, plan.grid), c0=c0)
        if not loss < best_loss:
            break
        kept += 1
        run = Rounds(u=new.u, scale=new.scale, stats=new.stats, iterations=run.iterations,
                     rounds=run.rounds, discarded=run.discarded, capped=run.capped, lam_x=new.lam_x)
        best_loss, exact_grad = loss, new_grad
    return run, kept


def curvature_scale(prob: Compiled, y: np.ndarray, scale: np.ndarray,
                    clip: float = CURVATURE_CLIP, n_probes: int = CURVATURE_PROBES) -> np.ndarray:
    """Rescale the controls so that every one has unit curvature at the start.

    A limited-memory Hessian starts from a multiple of the identity; the learning
    rates of a schedule differ in their effect on ``L_T`` by many orders of magnitude
    (early blocks are forgotten, the last updates set the noise floor), so without
    this a quasi-Newton run crawls. The diagonal of the Hessian is estimated by
    forward differences of the compiled gradient at up to ``n_probes`` (default
    ``CURVATURE_PROBES``) controls, and interpolated (in log scale) between them. Curvatures are clipped to
    ``[clip, 1/clip]`` times their median (below only for the default clip), so that no
    variable's scale moves by more than ``1/sqrt(clip)``.
    """
    K = y.size
    p = prob.p(scale)
    probes = np.rint(np.linspace(0, K - 1, min(K, n_probes))).astype(int)
    # the distinct probes, in order (np.unique would load numpy.ma, 0.1 s, for nothing)
    probes = probes[np.concatenate(([True], np.diff(probes) > 0))]
    h = 1e-4 * np.maximum(np.abs(y), 1e-2)
    # The start and every probe in one call, spread over threads (the same compiled
    # gradient on the same points: the values do not depend on the threads).
    cols = np.arange(1, probes.size + 1)
    points = np.repeat(y[:, None], probes.size + 1, axis=1)
    points[probes, cols] += h[probes]
    grads = np.asarray(prob.gradients(probes.size + 1)(points, p)[1])
    g0 = grads[:, 0]
    diag = (grads[probes, cols] - g0[probes]) / h[probes]
    curv = np.abs(diag)
    ref = np.median(curv[curv > 0]) if np.any(curv > 0) else 1.0
    curv = np.clip(curv, clip * ref, None if clip <= CURVATURE_CLIP else ref / clip)
    curv = np.exp(np.interp(np.arange(K), probes, np.log(curv)))
    return scale * np.sqrt(ref / curv)


def message(status: str, discarded: bool = False, capped: bool = False) -> str:
    """A sentence for IPOPT's return status; ``discarded``: the last round was thrown away;
    ``capped``: that round was cut short by ``solver.max_iter``."""
    if discarded and capped:
        return (f"IPOPT ended its last round ({status}) above where the round started, so that "
                "round was discarded and its start returned; the result is not an optimum. "
                "The round was cut short by solver.max_iter, which is below solver.round_iter: "
                "raise solver.max_iter to at least solver.round_iter.")
    if discarded:
        return (f"IPOPT ended its last round ({status}) above where the round started, so that "
                "round was discarded and its start returned; the result is not an optimum "
                "(raising solver.max_iter does not help; try another start with init).")
    messages = {
        "Solve_Succeeded": "IPOPT converged to the requested tolerance.",
        "Solved_To_Acceptable_Level": "IPOPT stopped at its acceptable tolerance.",
        "Maximum_Iterations_Exceeded": "IPOPT hit max_iter; raise solver.max_iter or loosen solver.tol.",
        "Maximum_CpuTime_Exceeded": "IPOPT hit its CPU-time limit.",
        "Invalid_Option": "an IPOPT option is unknown or has a bad value; check solver.ipopt.",
    }
    return messages.get(status, f"IPOPT returned {status}.")
