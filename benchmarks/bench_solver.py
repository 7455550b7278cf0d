"""Benchmark optctl's solver against two straightforward CasADi/IPOPT transcriptions.

Run from the repository root::

    python benchmarks/bench_solver.py [--quick] [--out results/benchmarks]

For the two reference cases of MODEL.md §5 (``a = 3.5, N = 1000, σ = 0.5, m = 5,
η_max = 1``; ``b = 2`` easy, ``b = 5`` hard) and ``T ∈ {1000, 3162}``, one process
times three ways of minimising ``L_T`` over the learning-rate schedule:

(i)   ``per_step``: single shooting with one symbolic control per update, the exact
      recursion of MODEL.md §2 unrolled with a CasADi ``Function`` for one step called
      ``T`` times on all ``N`` modes, IPOPT with a limited-memory Hessian and default
      tolerances, under a wall-time cap;
(ii)  ``authors``: the formulation of the authors' reproduction code
      (github.com/blakebordelon/opt-control-sgd-rf, ``SGD_lr_opt.py``), re-implemented
      here: ``K = 100`` piecewise-constant blocks, update ``t`` uses block
      ``int(t / (T / K))``, the batch sizes as extra (fixed) variables with the
      sample-budget equality constraint, a step ``Function`` applied ``T`` times,
      IPOPT with ``limited-memory`` Hessian, ``max_iter = 10000``, ``expand = False``;
(iii) ``optctl``: ``solve(spec, SolverOptions(grid="uniform", K=100))``, the whole call.

All three schedules are judged by the same ground truth, the exact per-step replay
:func:`optctl.model.replay.final_loss`. Part (iv) runs the long-horizon solves
(``T = 10^6``, ``grid="refined"``) each in a fresh spawned process and records that
process's peak resident memory.

Writes ``solver.json`` and ``solver.md`` into ``--out`` (atomically, after every run,
so an interrupted benchmark keeps what it finished).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import multiprocessing
import os
import platform
import resource
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Let ``python benchmarks/bench_solver.py`` find the package without installing it.
_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

import casadi as ca  # noqa: E402
import numpy as np  # noqa: E402

import optctl  # noqa: E402
from optctl import ProblemSpec, SolverOptions, solve  # noqa: E402
from optctl.model.replay import final_loss  # noqa: E402
from optctl.solver.grid import uniform_grid  # noqa: E402
from optctl.versions import versions  # noqa: E402

# Reference cases of MODEL.md §5.
CASES: dict[str, dict[str, float]] = {"easy": {"a": 3.5, "b": 2.0}, "hard": {"a": 3.5, "b": 5.0}}
MODEL: dict[str, Any] = {"N": 1000, "sigma": 0.5, "batch_size": 5.0, "eta_max": 1.0}
HORIZONS = (1000, 3162)
K_BLOCKS = 100
LONG_T = 10**6
AUTHORS_MAX_ITER = 10000


def method_label(method: str, K: int) -> str:
    """Row label of a method in the markdown table."""
    return {"per_step": "(i) per-step single shooting",
            "authors": f"(ii) authors' formulation, K={K}",
            "optctl": f"(iii) optctl uniform K={K}",
            "optctl_per_step": "(iii) optctl per step"}[method]


@dataclass
class Config:
    """What one benchmark invocation runs."""

    horizons: tuple[int, ...]
    N: int
    K: int
    long_T: int
    long_N: int
    per_step_cap_s: float
    authors_cap_s: float | None
    per_step_max_T: int
    run_long: bool
    smoke: bool


@dataclass
class Run:
    """One timed solve of one method on one ``(case, T)``."""

    case: str
    T: int
    N: int
    method: str
    n_controls: int
    wall_s: float
    build_s: float
    solve_s: float
    iterations: int
    status: str
    success: bool
    objective: float
    replayed_loss: float
    hit_time_cap: bool = False
    time_cap_s: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def make_spec(case: str, T: int, N: int) -> ProblemSpec:
    """The reference problem of ``case`` (``"easy"`` or ``"hard"``) at horizon ``T``."""
    return ProblemSpec(a=CASES[case]["a"], b=CASES[case]["b"], N=N, sigma=MODEL["sigma"],
                       batch_size=MODEL["batch_size"], T=T, eta_max=MODEL["eta_max"])


def initial_eta(spec: ProblemSpec) -> float:
    """Constant initial guess of the authors' code: 0.01 in the easy phase, 1.0 otherwise."""
    return 0.01 if spec.b < spec.a else 1.0


def mode_data(spec: ProblemSpec) -> tuple[np.ndarray, np.ndarray]:
    """``λ_k = k^(-b)`` and ``c_{0,k} = k^(-(a-b))`` for ``k = 1..N`` (MODEL.md §1)."""
    if spec.normalize_init or spec.tail:
        raise ValueError("the hand-written transcriptions cover the plain model only")
    k = np.arange(1, spec.N + 1, dtype=float)
    return k ** (-spec.b), k ** (-(spec.a - spec.b))


def _ipopt_stats(solver: ca.Function) -> tuple[int, str, bool]:
    stats = solver.stats()
    return (int(stats.get("iter_count", -1)), str(stats.get("return_status", "unknown")),
            bool(stats.get("success", False)))


def _hit_cap(status: str) -> bool:
    return status in ("Maximum_WallTime_Exceeded", "Maximum_CpuTime_Exceeded")


# ---------------------------------------------------------------------------------------
# (i) per-step single shooting
# ---------------------------------------------------------------------------------------


def per_step_function(lam: np.ndarray, sigma2: float, m: float) -> ca.Function:
    """One SGD update of MODEL.md §2 as an MX ``Function`` ``(c, η) → c_next``.

    ``d = 1 − 2ηλ + (1 + 1/m) η² λ²`` and ``c_next = d ⊙ c + (η²/m) λ (L + σ²)`` with
    ``L = λ · c``.
    """
    lam_dm = ca.DM(lam)
    c = ca.MX.sym("c", lam.size)
    eta = ca.MX.sym("eta")
    loss = ca.dot(lam_dm, c)
    d = 1 - 2 * eta * lam_dm + (1 + 1 / m) * eta**2 * lam_dm**2
    c_next = d * c + (eta**2 / m) * lam_dm * (loss + sigma2)
    return ca.Function("sgd_step", [c, eta], [c_next])


def run_per_step(case: str, spec: ProblemSpec, cap_s: float) -> Run:
    """(i): one decision variable per update, the recursion unrolled step by step."""
    t0 = time.perf_counter()
    lam, c0 = mode_data(spec)
    step = per_step_function(lam, spec.sigma**2, spec.batch_size)
    x = ca.MX.sym("eta", spec.T)
    c: ca.MX | ca.DM = ca.DM(c0)
    for eta_t in ca.vertsplit(x):
        c = step(c, eta_t)
    f = ca.dot(ca.DM(lam), c)
    opts: dict[str, Any] = {
        "ipopt": {"hessian_approximation": "limited-memory", "max_wall_time": float(cap_s),
                  "print_level": 0, "sb": "yes"},
        "print_time": False,
    }
    nlp: dict[str, Any] = {"x": x, "f": f}
    solver = ca.nlpsol("per_step", "ipopt", nlp, opts)
    build = time.perf_counter() - t0

    t1 = time.perf_counter()
    sol = solver(x0=np.full(spec.T, initial_eta(spec)), lbx=0.0, ubx=spec.eta_max)
    solve_s = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    iters, status, success = _ipopt_stats(solver)
    eta = np.clip(np.asarray(sol["x"]).ravel(), 0.0, spec.eta_max)
    return Run(case=case, T=spec.T, N=spec.N, method="per_step", n_controls=spec.T,
               wall_s=wall, build_s=build, solve_s=solve_s, iterations=iters, status=status,
               success=success, objective=float(sol["f"]), replayed_loss=final_loss(spec, eta),
               hit_time_cap=_hit_cap(status), time_cap_s=float(cap_s))


# ---------------------------------------------------------------------------------------
# (ii) the authors' formulation
# ---------------------------------------------------------------------------------------


def authors_step_function(lam: np.ndarray, sigma: float) -> ca.Function:
    """The authors' step ``(C, η, m) → C_next``, batch size as an input (MODEL.md §2)."""
    C = ca.MX.sym("C", lam.size)
    eta = ca.MX.sym("eta")
    m = ca.MX.sym("m")
    d = 1 - 2 * eta * lam + ((m + 1) / m) * eta**2 * (lam * lam)
    coupled = d * C + eta**2 * lam * ca.dot(lam, C) / m
    return ca.Function("step", [C, eta, m], [coupled + eta**2 * sigma**2 * lam / m])


def authors_block_index(T: int, K: int) -> np.ndarray:
    """Block of each update as the authors compute it: ``int(t / (T / K))``."""
    ell = T / K
    return np.array([int(t / ell) for t in range(T)], dtype=np.int64)


def run_authors(case: str, spec: ProblemSpec, K: int, cap_s: float | None) -> Run:
    """(ii): ``K`` blocks of learning rates plus ``K`` fixed batch sizes, budget constraint."""
    t0 = time.perf_counter()
    lam, c0 = mode_data(spec)
    step = authors_step_function(lam, spec.sigma)
    index = authors_block_index(spec.T, K)
    m_bar = spec.batch_size

    w = ca.MX.sym("x", 2 * K)
    v_eta, v_m = w[:K], w[K:]
    lbw = np.concatenate([np.zeros(K), np.full(K, m_bar)])
    ubw = np.concatenate([np.full(K, spec.eta_max), np.full(K, m_bar)])
    w0 = np.concatenate([np.full(K, initial_eta(spec)), np.full(K, m_bar)])

    total_m: ca.MX = ca.MX(0)
    C: ca.MX | np.ndarray = c0
    for j in index:
        total_m += v_m[int(j)]
        C = step(C, v_eta[int(j)], v_m[int(j)])
    g = spec.T * m_bar - total_m
    f = ca.dot(C, lam)
    ipopt: dict[str, Any] = {"linear_solver": "mumps", "hessian_approximation": "limited-memory",
                             "max_iter": AUTHORS_MAX_ITER, "print_level": 0, "sb": "yes"}
    if cap_s is not None:
        ipopt["max_wall_time"] = float(cap_s)
    nlp: dict[str, Any] = {"f": f, "x": w, "g": g}
    solver = ca.nlpsol("authors", "ipopt", nlp,
                       {"ipopt": ipopt, "expand": False, "print_time": False})
    build = time.perf_counter() - t0

    t1 = time.perf_counter()
    sol = solver(x0=w0, lbx=lbw, ubx=ubw, lbg=0.0, ubg=0.0)
    solve_s = time.perf_counter() - t1
    wall = time.perf_counter() - t0
    iters, status, success = _ipopt_stats(solver)
    blocks = np.clip(np.asarray(sol["x"]).ravel()[:K], 0.0, spec.eta_max)
    eta = blocks[index]
    # Updates whose block differs from optctl's floor(t K / T) indexing (float rounding).
    ours = np.repeat(np.arange(K), np.diff(uniform_grid(spec.T, K))) if K < spec.T else index
    return Run(case=case, T=spec.T, N=spec.N, method="authors", n_controls=K, wall_s=wall,
               build_s=build, solve_s=solve_s, iterations=iters, status=status, success=success,
               objective=float(sol["f"]), replayed_loss=final_loss(spec, eta),
               hit_time_cap=_hit_cap(status), time_cap_s=cap_s,
               extra={"index_mismatch_vs_uniform_grid": int(np.sum(ours != index))})


# ---------------------------------------------------------------------------------------
# (iii) optctl
# ---------------------------------------------------------------------------------------


def run_optctl(case: str, spec: ProblemSpec, K: int, grid: str = "uniform") -> Run:
    """(iii): the whole ``solve`` call (compilation, start ranking, IPOPT, exact replay).

    ``grid="uniform"`` is compared with (ii) on the same K-block grid,
    ``grid="per_step"`` with (i) on the same one-control-per-update grid.
    """
    t0 = time.perf_counter()
    res = solve(spec, SolverOptions(grid=grid, K=K))
    wall = time.perf_counter() - t0
    replayed = final_loss(spec, res.eta)
    method = "optctl" if grid == "uniform" else "optctl_per_step"
    return Run(case=case, T=spec.T, N=spec.N, method=method, n_controls=int(res.grid.size - 1),
               wall_s=wall, build_s=res.build_time, solve_s=res.solve_time,
               iterations=res.iterations, status=res.status, success=res.success,
               objective=res.objective, replayed_loss=replayed,
               extra={"replay_s": res.replay_time, "result_wall_time": res.wall_time,
                      "result_final_loss": res.final_loss, "replay_gap": res.replay_gap,
                      "transcription": res.transcription})


# ---------------------------------------------------------------------------------------
# (iv) long horizon, one fresh process per solve
# ---------------------------------------------------------------------------------------


def _maxrss_mib() -> float:
    """``ru_maxrss`` of this process in MiB (KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def _vm_hwm_mib() -> float | None:
    """Peak resident set size of this process's own address space (Linux ``VmHWM``)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**10
    except OSError:
        pass
    return None


def peak_rss_mib() -> tuple[float, str]:
    """Peak resident memory of this process in MiB and where the figure comes from.

    On Linux ``ru_maxrss`` survives ``execve``: a process started by (v)fork + exec,
    as 'spawn' and ``subprocess`` do, starts with its parent's high-water mark, so it
    overstates a small child's peak whenever the parent was bigger. ``VmHWM`` belongs
    to the new address space and has no such floor; it is used where available.
    """
    hwm = _vm_hwm_mib()
    return (hwm, "VmHWM") if hwm is not None else (_maxrss_mib(), "ru_maxrss")


def long_horizon_child(case: str, T: int, N: int, K: int) -> dict[str, Any]:
    """Solve one long-horizon case; runs in a freshly spawned interpreter."""
    spec = make_spec(case, T, N)
    rss_before, source = peak_rss_mib()
    t0 = time.perf_counter()
    res = solve(spec, SolverOptions(grid="refined", K=K))
    wall = time.perf_counter() - t0
    peak, _ = peak_rss_mib()
    return {
        "case": case, "T": T, "N": N, "K": K, "grid": "refined", "wall_s": wall,
        "build_s": res.build_time, "solve_s": res.solve_time, "replay_s": res.replay_time,
        "iterations": res.iterations, "status": res.status, "success": res.success,
        "replayed_loss": res.final_loss, "objective": res.objective,
        "replay_gap": res.replay_gap, "n_controls": int(res.grid.size - 1),
        "transcription": res.transcription,
        "peak_rss_mib": peak, "rss_before_solve_mib": rss_before,
        "solve_rss_increase_mib": peak - rss_before, "peak_rss_source": source,
        # For reference only: on Linux this is at least the parent's peak (see peak_rss_mib).
        "ru_maxrss_mib": _maxrss_mib(),
    }


def run_long_horizon(case: str, T: int, N: int, K: int) -> dict[str, Any]:
    """Run :func:`long_horizon_child` in a new 'spawn' process and return its record."""
    ctx = multiprocessing.get_context("spawn")
    parent_peak, _ = peak_rss_mib()
    with concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=ctx) as pool:
        rec = pool.submit(long_horizon_child, case, T, N, K).result()
    return {**rec, "parent_peak_rss_at_spawn_mib": parent_peak}


# ---------------------------------------------------------------------------------------
# Reporting
# ---------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """CPU, memory, platform and package versions of this machine."""
    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": {**versions(), "optctl": optctl.__version__},
        "hostname": platform.node(),
        "thread_env": {k: os.environ[k] for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                                                  "MKL_NUM_THREADS", "XLA_FLAGS")
                       if k in os.environ},
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_available"] = len(os.sched_getaffinity(0))
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem_kib = Path("/proc/meminfo").read_text().split()[1]
        info["memory_gib"] = round(int(mem_kib) / 2**20, 2)
    except OSError:
        pass
    return info


def comparisons(runs: list[Run]) -> list[dict[str, Any]]:
    """Per ``(case, T)``: each method's time and loss relative to optctl's on the same grid."""
    out = []
    for key in sorted({(r.case, r.T) for r in runs}):
        group = {r.method: r for r in runs if (r.case, r.T) == key}
        for method, ref_method in (("authors", "optctl"), ("per_step", "optctl_per_step")):
            ref, other = group.get(ref_method), group.get(method)
            if ref is None or other is None:
                continue
            out.append({
                "case": key[0], "T": key[1], "method": method,
                "speedup": other.wall_s / ref.wall_s,
                "speedup_is_lower_bound": other.hit_time_cap,
                "rel_diff_loss": (other.replayed_loss - ref.replayed_loss) / ref.replayed_loss,
                "optctl_loss_le": bool(ref.replayed_loss <= other.replayed_loss),
            })
    return out


def _fmt_speedup(c: dict[str, Any]) -> str:
    return f"{'≥ ' if c['speedup_is_lower_bound'] else ''}{c['speedup']:.1f}×"


def markdown(payload: dict[str, Any]) -> str:
    """The result tables as markdown."""
    m = payload["machine"]
    cfg = payload["config"]
    lines = [
        "# Solver benchmark",
        "",
        f"Generated {payload['finished'] or payload['started']} by `benchmarks/bench_solver.py`"
        f"{' (smoke test: tiny sizes, numbers meaningless)' if cfg['smoke'] else ''}.",
        f"Machine: {m.get('cpu_model', m['machine'])}, {m['cpu_count']} CPUs "
        f"({m.get('cpus_available', '?')} available), {m.get('memory_gib', '?')} GiB, "
        f"{m['platform']}; casadi {m['versions'].get('casadi')}, numpy "
        f"{m['versions'].get('numpy')}, jax {m['versions'].get('jax')}.",
        f"Load average at start: {payload['load_start']}.",
        "",
        f"Model: a = 3.5, N = {cfg['N']}, σ = 0.5, m = 5, η_max = 1; easy b = 2, hard b = 5. "
        "Replayed L_T is the exact per-step recursion (`optctl.model.replay.final_loss`) of each "
        "method's schedule. Rel. diff = (L_method − L_optctl) / L_optctl: positive means "
        "optctl found the lower loss; (ii) is compared with optctl on the same uniform grid, "
        "(i) with optctl per step. Speed-up = wall(method) / wall(optctl on that grid); "
        f"'≥' marks a run stopped by its time cap (per-step cap {cfg['per_step_cap_s']:.0f} s).",
        "",
        "| case | T | method | wall s | iterations | status | replayed L_T "
        "| rel. diff to optctl | speed-up of optctl |",
        "|---|---:|---|---:|---:|---|---:|---:|---:|",
    ]
    comps = {(c["case"], c["T"], c["method"]): c for c in payload["comparisons"]}
    order = {"optctl": 0, "authors": 1, "optctl_per_step": 2, "per_step": 3}
    for r in sorted(payload["runs"], key=lambda r: (r["case"], r["T"], order[r["method"]])):
        c = comps.get((r["case"], r["T"], r["method"]))
        if r["method"] in ("optctl", "optctl_per_step"):
            rel, speed = "—", "1 (ref.)"
        elif c is None:
            rel, speed = "n/a", "n/a"
        else:
            rel, speed = f"{c['rel_diff_loss']:+.2e}", _fmt_speedup(c)
        status = r["status"] + (" (cap)" if r["hit_time_cap"] else "")
        lines.append(f"| {r['case']} | {r['T']} | {method_label(r['method'], cfg['K'])} | "
                     f"{r['wall_s']:.2f} | {r['iterations']} | {status} | "
                     f"{r['replayed_loss']:.6e} | {rel} | {speed} |")
    if payload["long_horizon"]:
        lines += [
            "",
            f"## Long horizon (optctl, `grid=\"refined\"`, K = {cfg['K']}), "
            "one fresh process per solve",
            "",
            "Peak RSS is the high-water resident memory of the solving process (Linux "
            "`VmHWM`; interpreter and imports included, the JIT's C compiler, a separate "
            "process, not); 'before' is its value just before `solve` was called.",
            "",
            "| case | T | N | wall s | iterations | status | replayed L_T | replay gap "
            "| peak RSS MiB | RSS before solve MiB |",
            "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|",
        ]
        for r in payload["long_horizon"]:
            lines.append(f"| {r['case']} | {r['T']:.0e} | {r['N']} | {r['wall_s']:.2f} | "
                         f"{r['iterations']} | {r['status']} | {r['replayed_loss']:.6e} | "
                         f"{r['replay_gap']:+.2e} | {r['peak_rss_mib']:.0f} | "
                         f"{r['rss_before_solve_mib']:.0f} |")
    return "\n".join(lines) + "\n"


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_outputs(out: Path, stem: str, payload: dict[str, Any]) -> None:
    """``<stem>.json`` with every number and ``<stem>.md`` with the tables."""
    write_atomic(out / f"{stem}.json", json.dumps(payload, indent=2, default=_json_default) + "\n")
    write_atomic(out / f"{stem}.md", markdown(payload))


def _json_default(obj: object) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def _warm_up() -> None:
    """Load the IPOPT plugin once so that no method is billed for the dlopen."""
    x = ca.MX.sym("x")
    s = ca.nlpsol("warmup", "ipopt", {"x": x, "f": (x - 1) ** 2},
                  {"ipopt": {"print_level": 0, "sb": "yes"}, "print_time": False})
    s(x0=0.0)


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> tuple[Config, Path, str]:
    """Command line → what to run, the output folder, and the output file stem."""
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="only T = 1000 (so per-step single shooting is not run at T = 3162)")
    p.add_argument("--out", type=Path, default=Path("results/benchmarks"),
                   help="output folder for solver.json and solver.md")
    p.add_argument("--cap", type=float, default=600.0,
                   help="IPOPT max_wall_time of per-step single shooting, seconds (default 600)")
    p.add_argument("--authors-cap", type=float, default=None,
                   help="optional IPOPT max_wall_time for the authors' formulation (default none)")
    p.add_argument("--no-long", action="store_true", help="skip the T = 10^6 solves (iv)")
    p.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.smoke:
        cfg = Config(horizons=(100,), N=100, K=10, long_T=2 * 10**4, long_N=100,
                     per_step_cap_s=min(a.cap, 60.0), authors_cap_s=a.authors_cap,
                     per_step_max_T=100, run_long=not a.no_long, smoke=True)
        return cfg, a.out, "solver_smoke"
    horizons = (HORIZONS[0],) if a.quick else HORIZONS
    # --quick: T = 1000 only, hence no per-step single shooting at T = 3162.
    cfg = Config(horizons=horizons, N=int(MODEL["N"]), K=K_BLOCKS, long_T=LONG_T,
                 long_N=int(MODEL["N"]), per_step_cap_s=a.cap, authors_cap_s=a.authors_cap,
                 per_step_max_T=HORIZONS[0] if a.quick else max(HORIZONS),
                 run_long=not a.no_long, smoke=False)
    return cfg, a.out, "solver"


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write its outputs; returns the exit status."""
    cfg, out, stem = parse_args(argv)
    payload: dict[str, Any] = {
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "finished": None,
        "machine": machine_info(),
        "load_start": [round(x, 2) for x in os.getloadavg()],
        "config": {**asdict(cfg), "model": MODEL, "cases": CASES,
                   "initial_eta": {"easy": 0.01, "hard": 1.0}},
        "runs": [], "comparisons": [], "long_horizon": [],
    }
    runs: list[Run] = []

    def record(run: Run) -> None:
        runs.append(run)
        payload["runs"] = [asdict(r) for r in runs]
        payload["comparisons"] = comparisons(runs)
        write_outputs(out, stem, payload)
        cap = " [TIME CAP HIT]" if run.hit_time_cap else ""
        _log(f"  {run.case} T={run.T} {run.method}: {run.wall_s:.2f} s wall "
             f"(build {run.build_s:.2f} s, solve {run.solve_s:.2f} s), {run.iterations} it, "
             f"{run.status}{cap}, replayed L_T = {run.replayed_loss:.8e}")

    _log(f"machine: {payload['machine'].get('cpu_model', '?')}, "
         f"{payload['machine']['cpu_count']} CPUs, load {payload['load_start']}")
    _warm_up()
    for T in cfg.horizons:
        for case in CASES:
            spec = make_spec(case, T, cfg.N)
            _log(f"{case} T={T} N={cfg.N}: optctl uniform K={cfg.K} ...")
            record(run_optctl(case, spec, cfg.K))
            _log(f"{case} T={T}: authors' formulation K={cfg.K} ...")
            record(run_authors(case, spec, cfg.K, cfg.authors_cap_s))
            if T <= cfg.per_step_max_T:
                _log(f"{case} T={T} N={cfg.N}: optctl per step ...")
                record(run_optctl(case, spec, cfg.K, grid="per_step"))
                _log(f"{case} T={T}: per-step single shooting (cap {cfg.per_step_cap_s:.0f} s) ...")
                record(run_per_step(case, spec, cfg.per_step_cap_s))
            for c in payload["comparisons"]:
                if (c["case"], c["T"]) == (case, T):
                    bound = ">= " if c["speedup_is_lower_bound"] else ""
                    verdict = "<=" if c["optctl_loss_le"] else ">"
                    _log(f"  {case} T={T}: wall({c['method']}) / wall(optctl) = "
                         f"{bound}{c['speedup']:.2f}; L_optctl {verdict} L_{c['method']} "
                         f"(rel. diff (L_{c['method']} - L_optctl) / L_optctl = "
                         f"{c['rel_diff_loss']:+.3e})")

    if cfg.run_long:
        for case in CASES:
            _log(f"{case} T={cfg.long_T:.0e} N={cfg.long_N}: optctl refined K={cfg.K} "
                 "in a fresh process ...")
            rec = run_long_horizon(case, cfg.long_T, cfg.long_N, cfg.K)
            payload["long_horizon"].append(rec)
            write_outputs(out, stem, payload)
            _log(f"  {case}: {rec['wall_s']:.2f} s wall, {rec['iterations']} it, {rec['status']}, "
                 f"replayed L_T = {rec['replayed_loss']:.8e}, gap {rec['replay_gap']:+.2e}, "
                 f"peak RSS {rec['peak_rss_mib']:.0f} MiB "
                 f"(before solve {rec['rss_before_solve_mib']:.0f} MiB)")

    payload["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
    payload["load_end"] = [round(x, 2) for x in os.getloadavg()]
    write_outputs(out, stem, payload)
    _log(f"wrote {out / (stem + '.json')} and {out / (stem + '.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
