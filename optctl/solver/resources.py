"""What a solve will need, estimated before it starts, and a refusal when it cannot fit.

The estimate follows the plan's choices (:mod:`optctl.solver.plan`) without building
anything: the transcription's size (integration stages × modes, × 3 moments with
momentum), the exact adjoint gradient of the polish (every per-step state of every
mode, ``(T + 1) N`` values), the exact replay (``T + 1`` values per array, all ``N``
modes), and the interpreter with its numerical stack. The constants were measured on
the solves of this package (peak resident memory over a range of ``N`` and ``T``); the
estimate is meant to be right within a factor of two, which is what a refusal needs:
it stops the solves that would take tens of gigabytes (``N = 10⁷`` modes, ``T = 10⁸``
updates), not the ones near the limit.

The limit is this machine's memory: the physical memory, or the control group's limit
when one is set, or ``OPTCTL_MEMORY_LIMIT`` (bytes, with an optional ``K``/``M``/``G``
suffix) when the environment sets it. Nothing here imports CasADi or jax.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from optctl.errors import ResourceError
from optctl.solver.grid import make_grid, subdivide
from optctl.solver.plan import (
    GROUP_EXACT,
    GROUP_NODES,
    GROUP_RATIO,
    SUBBLOCK_REL,
    SUBBLOCK_RESTART,
    lower_bound_plan,
    make_branch_plan,
    resolve_modes,
    resolve_options,
)
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions

# Measured peak memory (bytes) of the parts of a solve.
BASE_BYTES = 150e6             # interpreter, numpy, CasADi, jax, matplotlib
NLP_BYTES_PER_NODE = 200.0     # compiled transcription and IPOPT, per stage and mode
ADJOINT_BYTES_PER_STATE = 8.0  # the polish's exact gradient keeps every per-step state
LAW_GRID_POINTS = 240  # the law's grid of remaining rates (optctl.solver.law)
REPLAY_BYTES_PER_STEP = 400.0  # exact replay: loss, bias, variance and the scan's outputs
BYTES_PER_MODE = 200.0         # spectrum, states and their copies
# Refuse what would need more than this share of the limit (the rest: the system, others).
USABLE_SHARE = 0.8
# Longest horizon the polish runs on (optctl.solver.ipopt.POLISH_MAX_T; the driver imports
# CasADi, so the number is repeated here and checked by a test).
POLISH_MAX_T = 20_000


@dataclass(frozen=True)
class Estimate:
    """Estimated peak memory of a solve, in bytes, with its largest parts named."""

    total: float
    parts: dict[str, float]
    stages: int
    modes: int

    def describe(self) -> str:
        big = sorted(self.parts.items(), key=lambda kv: -kv[1])[:2]
        return f"{gib(self.total)} ({', '.join(f'{k} {gib(v)}' for k, v in big)})"


def gib(x: float) -> str:
    return f"{x / 2**30:.1f} GiB" if x >= 2**30 else f"{x / 2**20:.0f} MiB"


def grouped_modes(N: int, n_exact: int = GROUP_EXACT, ratio: float = GROUP_RATIO,
                  nodes: int = GROUP_NODES) -> int:
    """How many modes :func:`~optctl.model.spectrum.group_modes` keeps for ``N`` (its loop,
    counted without the spectrum)."""
    if N <= n_exact + nodes:
        return N
    count, start = n_exact, n_exact
    while start < N:
        stop = min(N, max(start + nodes + 1, math.ceil(start * ratio)))
        if N - stop < nodes + 1:
            stop = N
        count += nodes
        start = stop
    return count


def estimate_solve(spec: ProblemSpec, options: SolverOptions,
                   controls: ControlSpec | None = None) -> Estimate:
    """The peak memory a :func:`~optctl.solver.solve.solve` of ``spec`` will need (module
    docstring), from the choices :func:`~optctl.solver.plan.make_plan` would make."""
    second = None if controls is None or len(controls.controls) < 2 else controls.controls[1]
    options = resolve_options(options, second)
    grid_kind = options.grid
    if grid_kind == "auto":
        grid_kind = "per_step" if spec.T <= options.per_step_max_T else "refined"
    propagator = options.propagator
    if propagator == "auto":
        propagator = "step" if grid_kind == "per_step" else "block"
    if propagator == "step":
        stages = spec.T
    else:
        stages = int(subdivide(make_grid(grid_kind, spec.T, options.K), SUBBLOCK_REL,
                                    SUBBLOCK_RESTART)[0].size)
    modes = resolve_modes(spec, options, second, propagator)
    n_modes = grouped_modes(spec.N) if modes == "grouped" else spec.N
    moments = 3 if second == "momentum" else 1
    exact = propagator == "step" and modes == "exact"
    polish = second is None and options.polish and not exact and spec.T <= POLISH_MAX_T
    parts = {
        "base": BASE_BYTES,
        "transcription": NLP_BYTES_PER_NODE * stages * n_modes * moments * (2 if second else 1),
        "polish gradient": ADJOINT_BYTES_PER_STATE * (spec.T + 1) * spec.N if polish else 0.0,
        "replay": REPLAY_BYTES_PER_STEP * (spec.T + 1) + BYTES_PER_MODE * spec.N,
    }
    return Estimate(total=sum(parts.values()), parts=parts, stages=stages, modes=n_modes)


def memory_limit() -> tuple[float, str]:
    """The memory a job of this machine may use, in bytes, and where the number comes from."""
    env = os.environ.get("OPTCTL_MEMORY_LIMIT")
    if env:
        return parse_bytes(env), "OPTCTL_MEMORY_LIMIT"
    total = float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    source = "this machine's memory"
    try:  # a container's limit (cgroup v2) is lower than the machine's
        text = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if text.isdigit() and float(text) < total:
            total, source = float(text), "this container's memory limit"
    except OSError:
        pass
    return total, source


def parse_bytes(text: str) -> float:
    """``"8G"``, ``"512M"``, ``"1e9"`` → bytes."""
    units = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
    s = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = units.get(s[-1:], 1)
    try:
        value = float(s[:-1] if s[-1:] in units else s) * scale
    except ValueError:
        raise ResourceError(f"OPTCTL_MEMORY_LIMIT = {text!r}: give bytes, e.g. 8G or 512M") from None
    if not math.isfinite(value) or value <= 0:
        raise ResourceError(f"OPTCTL_MEMORY_LIMIT = {text!r}: give a positive size, e.g. 8G")
    return value


def check_fits(what: str, est: Estimate, fixes: list[str]) -> None:
    """Refuse (:class:`~optctl.errors.ResourceError`) an estimate above the usable memory;
    ``what`` names the sizes that drive it, ``fixes`` what to change."""
    limit, source = memory_limit()
    if est.total <= USABLE_SHARE * limit:
        return
    raise ResourceError(
        f"{what}: this needs about {est.describe()}, more than {USABLE_SHARE:.0%} of {source} "
        f"({gib(limit)}); nothing was started. Try {'; or '.join(fixes)}")


def check_solve_fits(spec: ProblemSpec, options: SolverOptions,
                     controls: ControlSpec | None = None) -> Estimate:
    """Refuse, before any work, a solve that would not fit in memory: a
    :class:`~optctl.errors.ResourceError` with the estimate, the limit and what to change.
    Returns the estimate otherwise."""
    est = estimate_solve(spec, options, controls)
    fixes = []
    if est.parts["polish gradient"] > 0.3 * est.total:
        fixes.append("solver.polish: false (the exact-gradient polish keeps T x N states)")
    if est.parts["transcription"] > 0.3 * est.total:
        if est.modes == spec.N and spec.N > 200:
            fixes.append("solver.modes: grouped")
        if est.stages == spec.T and spec.T > 200:
            fixes.append("a block grid (solver.grid: refined, with solver.propagator: block)")
    fixes.append("a smaller model.N" if spec.N > 1000 else "a smaller training.T")
    check_fits(f"model.N = {spec.N}, training.T = {spec.T}", est, fixes)
    return est


def check_law_fits(spec: ProblemSpec) -> Estimate:
    """The same refusal for the law's schedule (:mod:`optctl.solver.law`), which builds no
    NLP: its grid of remaining rates (two arrays of ``(GRID_POINTS + 1) × N`` values) and
    the exact replay."""
    parts = {"law grid": 2.0 * 8.0 * (LAW_GRID_POINTS + 1) * spec.N,  # K(F): the outer product and its exp
             "replay": REPLAY_BYTES_PER_STEP * (spec.T + 1) + BYTES_PER_MODE * spec.N}
    est = Estimate(total=sum(parts.values()), parts=parts, stages=spec.T, modes=spec.N)
    check_fits(f"model.N = {spec.N}, training.T = {spec.T}", est,
               ["a smaller model.N" if spec.N > 1000 else "a smaller training.T"])
    return est


# Branching solves (anytime plans, optctl.solver.branching): the compiled NLPs stay in the
# process's cache (optctl.solver.ipopt keeps NLP_CACHE_SIZE of them), the leave-point scan
# compiles the branching NLP and one lower-bound NLP per horizon at every point, and the
# Schedule-Free tuning scans SF_CANDIDATES rates at a time with 8 coefficients per update
# each (the scan pads T_n by at most 1.25x), held by numpy and by jax.
NLP_CACHE_SIZE = 8
SF_CANDIDATES = 13
SF_BYTES_PER_STEP = 2 * 8 * 8.0


def estimate_branching(spec: ProblemSpec, horizons: tuple[int, ...], options: SolverOptions, *,
                       baselines: bool = True) -> Estimate:
    """The peak memory of an anytime study (:func:`optctl.studies.anytime.run_anytime`; the
    branching solve alone with ``baselines=False``): the interpreter; every horizon's own
    optimum (their NLPs stay cached; the largest polish gradient and replay); the
    branching NLP and the horizons' lower-bound NLPs (their sub-blocks on the plan's
    grids at 10% decay, the scan's coarser ones as many again, at most ``NLP_CACHE_SIZE``
    in the cache); the replays; and, with the baselines, the Schedule-Free tuning scan."""
    own = [estimate_solve(replace(spec, T=int(T)), options) for T in horizons]
    leave = tuple(int(round(0.9 * T)) for T in horizons)
    plan = make_branch_plan(spec, options, tuple(horizons), leave, tuple(1.0 for _ in horizons), 0.0,
                            "weighted", tuple(1.0 for _ in horizons))
    modes = plan.spectrum.n_modes
    stages = [int(plan.lengths.size + sum(n.size for n in plan.branch_lengths))]
    for i in range(len(horizons)):
        sub = lower_bound_plan(plan, i)
        stages.append(int(sub.lengths.size + sub.branch_lengths[0].size))
    # The scan's NLPs (coarser) counted at the final ones' size: an upper bound.
    nlp = NLP_BYTES_PER_NODE * modes * sum(sorted(stages * 2, reverse=True)[:NLP_CACHE_SIZE])
    T_n = int(horizons[-1])
    parts = {
        "base": BASE_BYTES,
        "own optima": sum(e.parts["transcription"] for e in own) + max(e.parts["polish gradient"] for e in own),
        "branching transcription": nlp,
        "replay": REPLAY_BYTES_PER_STEP * (T_n + 1) + BYTES_PER_MODE * spec.N,
        "Schedule-Free tuning": SF_BYTES_PER_STEP * SF_CANDIDATES * 1.25 * T_n if baselines else 0.0,
    }
    return Estimate(total=sum(parts.values()), parts=parts, stages=sum(stages), modes=modes)


def check_branching_fits(spec: ProblemSpec, horizons: tuple[int, ...], options: SolverOptions, *,
                         baselines: bool = True) -> Estimate:
    """Refuse, before any work, an anytime study that would not fit in memory
    (:func:`estimate_branching`); returns the estimate otherwise."""
    est = estimate_branching(spec, horizons, options, baselines=baselines)
    fixes = ["fewer horizons or a smaller solver.K"]
    if est.parts["Schedule-Free tuning"] > 0.3 * est.total:
        fixes.append("--no-baselines (the Schedule-Free tuning scans T_n updates per rate)")
    fixes.append("a smaller model.N" if spec.N > 1000 else "shorter horizons")
    check_fits(f"model.N = {spec.N}, horizons = {list(horizons)}", est, fixes)
    return est
