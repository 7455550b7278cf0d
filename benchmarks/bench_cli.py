"""How fast is ``optctl solve`` from the command line, stage by stage?

Every timing is of a fresh process, as a user would run it:

(A) the whole command on the reference cases of MODEL.md §5 (``a = 3.5``, ``b = 2`` easy
    / ``b = 5`` hard, ``N = 1000``, ``T = 1000``, ``K = 100`` uniform blocks, baselines
    constant and power law), first with no compiled NLP of that shape (cold; the replay's
    C kernels, built once per machine, are built and timed before), then again (warm: the
    second command of the same shape); beside it the authors' formulation of
    the same solve (``bench_solver.run_authors``: their build and IPOPT, no imports);
(B) the whole command at long horizons, hard case, no baselines: ``T = 10^6`` (and
    ``10^7`` unless ``--quick`` without ``--long``), cold and warm, with the process's
    peak memory;
(C) the exact replay alone at ``T = 10^6``, ``N = 1000``: the fused C loop (first call
    in a fresh process, and warm), the same loop under numba (the fallback without a C
    compiler; first call and warm), the reference jax scan, the reference numpy
    loop (timed at ``10^4`` updates and scaled), with their agreement.

Stages come from the run's own ``summary.json`` (``timings`` and ``solver``): interpreter
start and argument parsing, config validation, the numerical stack's imports, the NLP
build (``compile_cache``: built / disk), IPOPT, the exact replay, the baselines, and
writing (arrays compressed while the figures are drawn). Wall and CPU seconds are both
recorded: on a shared machine the wall time of a process includes the time it waited for
a core, the CPU time does not.

    python benchmarks/bench_cli.py                  # everything (tens of minutes on 2 cores)
    python benchmarks/bench_cli.py --quick          # no authors, no 10^7 (a few minutes)
    python benchmarks/bench_cli.py --quick --long   # the same and T = 10^7

Writes ``results/benchmarks/cli.md`` and ``cli.json`` (``cli_quick.*`` with ``--quick``;
``--out`` to change the folder).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from optctl.io.files import write_text_atomic

_ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
CASES = {"easy": 2.0, "hard": 5.0}


def _config(folder: Path, case: str, T: int, baselines: list[str], grid: str) -> Path:
    """A config of the reference case (written as YAML by hand: no import of yaml here)."""
    path = folder / f"{case}-T{T}.yaml"
    path.write_text(
        "schema_version: 1\n"
        f"name: {case}_bench\n"
        f"model: {{a: 3.5, b: {CASES[case]}, N: 1000, sigma: 0.5}}\n"
        f"training: {{T: {T}, batch_size: 5, eta_max: 1.0}}\n"
        f"solver: {{grid: {grid}, K: 100}}\n"
        f"baselines: [{', '.join(baselines)}]\n")
    return path


def _run(cmd: list[str], env: dict[str, str], log: Path) -> dict[str, Any]:
    """Run ``cmd`` in a fresh process: wall and CPU seconds, peak memory, exit code."""
    with log.open("w") as fh:
        t0 = time.time()
        proc = subprocess.Popen(cmd, cwd=_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.time() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"launched_unix": t0, "wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime,
            "peak_rss_mib": usage.ru_maxrss / 1024, "rc": proc.returncode}


def run_command(folder: Path, tag: str, cfg: Path, env: dict[str, str], extra: list[str]) -> dict[str, Any]:
    out = folder / f"run-{tag}"
    rec = _run([PY, "-m", "optctl.cli.main", "solve", str(cfg), "--out", str(out), "--overwrite",
                "--quiet", *extra], env, folder / f"{tag}.log")
    if rec["rc"] != 0:
        raise SystemExit(f"optctl solve failed ({tag}); see {folder / f'{tag}.log'}:\n"
                         + (folder / f"{tag}.log").read_text()[-2000:])
    summary = json.loads((out / "summary.json").read_text())
    s, tm = summary["solver"], summary.get("timings", {})
    rec.update({
        "final_loss": summary["final_loss"],
        "baselines": {k: v["final_loss"] for k, v in summary.get("baselines", {}).items()},
        "iterations": s["iterations"], "status": s["status"],
        "stages": {
            "startup_s": tm.get("cli_started_unix", rec["launched_unix"]) - rec["launched_unix"],
            "prepare_s": tm.get("prepare_s"), "imports_s": tm.get("imports_s"),
            "build_s": s["build_time_s"], "compile_s": s.get("compile_time_s"),
            "compile_cache": s.get("compile_cache"), "ipopt_s": s["solve_time_s"],
            "replay_s": s["replay_time_s"], "baselines_s": summary.get("baseline_time_s", 0.0),
            "write_s": tm.get("write_s"), "write_arrays_s": tm.get("write_arrays_s"),
            "figures_s": tm.get("figures_s"), "cpu_main_thread_s": tm.get("job_cpu_main_thread_s"),
            "cpu_process_s": tm.get("job_cpu_process_s")},
    })
    shutil.rmtree(out, ignore_errors=True)
    return rec


_AUTHORS = """
import json, sys, time
sys.path.insert(0, {bench!r})
import bench_solver as bs
spec = bs.make_spec({case!r}, {T}, 1000)
r = bs.run_authors({case!r}, spec, 100, None)
print(json.dumps({{"build_s": r.build_s, "ipopt_s": r.solve_s, "iterations": r.iterations,
                  "status": r.status, "final_loss": r.replayed_loss}}))
"""


def run_authors(folder: Path, case: str, T: int, env: dict[str, str]) -> dict[str, Any]:
    log = folder / f"authors-{case}.log"
    rec = _run([PY, "-c", _AUTHORS.format(bench=str(_ROOT / "benchmarks"), case=case, T=T)], env, log)
    if rec["rc"] != 0:
        raise SystemExit(f"the authors' formulation failed: {log.read_text()[-2000:]}")
    rec.update(json.loads(log.read_text().strip().splitlines()[-1]))
    rec["script_s"] = rec["build_s"] + rec["ipopt_s"]  # their work, without the imports
    return rec


_REPLAY = """
import json, time
import numpy as np
t0 = time.perf_counter()
import optctl.model.replay as rp
from optctl.model.spectrum import spectrum
from optctl.spec import ProblemSpec
T = {T}
spec = ProblemSpec(a=3.5, b=5.0, N=1000, sigma=0.5, batch_size=5, T=T)
sp = spectrum(spec)
eta = 0.8 * np.cos(np.linspace(0, np.pi / 2, T)) ** 2
m = np.full(T, 5.0)
c0, s2 = np.stack([sp.c0, np.zeros_like(sp.c0)]), np.array([0.0, sp.sigma2])
out = {{}}
t = time.perf_counter(); fused = rp._recurse(sp.lam, sp.lam, c0, s2, eta, m)
out["fused_first_s"] = time.perf_counter() - t
warm = []
for _ in range(3):
    t = time.perf_counter(); rp._recurse(sp.lam, sp.lam, c0, s2, eta, m); warm.append(time.perf_counter() - t)
out["fused_warm_s"] = min(warm)
t = time.perf_counter(); nb = rp._fused_pair(rp._load_fused(), sp.lam, sp.lam, c0, s2, eta, m)
out["numba_first_s"] = time.perf_counter() - t
warm = []
for _ in range(3):
    t = time.perf_counter(); rp._fused_pair(rp._load_fused(), sp.lam, sp.lam, c0, s2, eta, m)
    warm.append(time.perf_counter() - t)
out["numba_warm_s"] = min(warm)
t = time.perf_counter(); ref = rp._recurse_reference(sp.lam, sp.lam, c0, s2, eta, m)
out["jax_first_s"] = time.perf_counter() - t
t = time.perf_counter(); rp._recurse_reference(sp.lam, sp.lam, c0, s2, eta, m)
out["jax_warm_s"] = time.perf_counter() - t
n = rp.NUMPY_MAX_T
t = time.perf_counter(); rp._recurse_reference(sp.lam, sp.lam, c0, s2, eta[:n], m[:n])
out["numpy_s_scaled"] = (time.perf_counter() - t) * T / n
nz = ref != 0
out["max_rel_diff_fused_vs_jax"] = float(np.max(np.abs(fused[nz] - ref[nz]) / np.abs(ref[nz])))
out["max_rel_diff_numba_vs_jax"] = float(np.max(np.abs(nb[nz] - ref[nz]) / np.abs(ref[nz])))
print(json.dumps(out))
"""


def run_replay(folder: Path, T: int, env: dict[str, str]) -> dict[str, Any]:
    log = folder / "replay.log"
    rec = _run([PY, "-c", _REPLAY.format(T=T)], env, log)
    if rec["rc"] != 0:
        raise SystemExit(f"the replay benchmark failed: {log.read_text()[-2000:]}")
    rec.update(json.loads(log.read_text().strip().splitlines()[-1]))
    # One replay of one state costs about 3 N T flops (MODEL.md §2); bias and variance are two.
    rec["gflops_fused"] = 2 * 3 * 1000 * T / rec["fused_warm_s"] / 1e9
    return rec


def _repeat(first: dict[str, Any], n: int, folder: Path, tag: str, cfg: Path, env: dict[str, str],
            extra: list[str]) -> dict[str, Any]:
    """``n`` runs of a warm command in all (``first`` and ``n − 1`` more): min / median / max
    of wall and CPU seconds and of peak memory, and every run's replayed L_T (equal runs)."""
    runs = [first] + [run_command(folder, f"{tag}{i}", cfg, env, extra) for i in range(1, n)]

    def mmm(key: str) -> list[float]:
        v = sorted(r[key] for r in runs)
        return [v[0], float(statistics.median(v)), v[-1]]

    return {"n": n, "wall_s": mmm("wall_s"), "cpu_s": mmm("cpu_s"), "peak_rss_mib": mmm("peak_rss_mib"),
            "final_losses": [r["final_loss"] for r in runs]}


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _f(x: Any, digits: int = 2) -> str:
    return "–" if x is None else (f"{x:.{digits}f}" if isinstance(x, float) else str(x))


def markdown(p: dict[str, Any]) -> str:
    lines = ["# `optctl solve` from the command line", "",
             f"Measured {p['started']} to {p['finished']} with `python benchmarks/bench_cli.py"
             f"{' --quick' if p['quick'] else ''}{' --long' if p.get('long') else ''}`; "
             f"{p['machine']['cpu_count']} CPUs "
             f"({p['machine'].get('cpu_model', '?')}), load average {p['load_start']} at start, "
             f"{p['load_end']} at end. Wall seconds include time spent waiting for a core on a "
             "shared machine; CPU seconds (user + system, the process, its compiler and its "
             "figure helper processes) do not. Peak MiB: the largest of the command's process and "
             "its helpers.", ""]
    kb = p.get("kernels_build")
    if kb:
        lines += [f"The replay's C kernels, built once per machine by the first command run there "
                  f"(a fresh process that builds and loads them): {kb['wall_s']:.2f} s wall, "
                  f"{kb['cpu_s']:.2f} CPU s. Every command below finds them built; `cold` is the "
                  "first command of its shape (its NLP compiled).", ""]
    lines += ["## Whole command", "",
              "| job | case | T | cache | wall s | CPU s | peak MiB | L_T (replayed) |",
              "|---|---|---|---|---|---|---|---|"]
    for r in p["commands"]:
        lines.append(f"| {r['job']} | {r['case']} | {r['T']:,} | {r['stages']['compile_cache']} | "
                     f"{r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['peak_rss_mib']:.0f} | "
                     f"{r['final_loss']:.6e} |")
    for a in p["authors"]:
        lines.append(f"| authors' formulation (build + IPOPT, no imports) | {a['case']} | "
                     f"{a['T']:,} | – | {a['script_s']:.2f} | {a['cpu_s']:.2f} (process) | "
                     f"{a['peak_rss_mib']:.0f} | {a['final_loss']:.6e} |")
    reps = [r for r in p["commands"] if r.get("repeats")]
    if reps:
        lines += ["", "Warm commands (compiled NLP on disk) repeated in this run, each a fresh process: "
                  "min / median / max; the speed-ups below use the median.", "",
                  "| job | case | T | runs | wall s | CPU s | peak MiB | L_T of every run |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in reps:
            q = r["repeats"]
            same = "equal" if len(set(q["final_losses"])) == 1 else "differ: " + ", ".join(
                f"{x:.6e}" for x in q["final_losses"])
            lines.append(f"| {r['job']} | {r['case']} | {r['T']:,} | {q['n']} | "
                         + " | ".join(" / ".join(f"{x:.2f}" for x in q[k]) for k in ("wall_s", "cpu_s"))
                         + f" | {q['peak_rss_mib'][1]:.0f} | {same} |")
    if p["speedups"]:
        lines += ["", "Speed-up of the whole command over the authors' formulation, paired in this run. "
                  "Wall: the authors' build + IPOPT against optctl's whole command (imports, build, "
                  "IPOPT, replay, baselines, figures, writing). CPU: each process's CPU seconds "
                  "(the authors' process includes its imports and the replay of its answer).", "",
                  "| case | authors wall s | optctl wall s (cold / warm median) | speed-up, wall (cold / warm) "
                  "| authors CPU s | optctl CPU s (cold / warm) | speed-up, CPU (cold / warm) "
                  "| L_T optctl / authors − 1 |", "|---|---|---|---|---|---|---|---|"]
        for s in p["speedups"]:
            lines.append(f"| {s['case']} | {s['authors_s']:.1f} | {s['optctl_cold_s']:.2f} / "
                         f"{s['optctl_warm_s']:.2f} | {s['speedup_cold']:.1f}x / {s['speedup_warm']:.1f}x"
                         f" | {s['authors_cpu_s']:.1f} | {s['optctl_cold_cpu_s']:.2f} / "
                         f"{s['optctl_warm_cpu_s']:.2f} | {s['speedup_cpu_cold']:.1f}x / "
                         f"{s['speedup_cpu_warm']:.1f}x | {s['rel_loss']:+.2e} |")
    lines += ["", "## Stages (seconds, wall)", "",
              "The replay's kernels load in a background thread while IPOPT runs (CasADi releases "
              "the interpreter lock), so `replay` is the replay itself and the load is inside "
              "`build` and `IPOPT` where no second core is free. The figures are drawn by a helper "
              "process started with the command (it loads matplotlib at a lower priority while "
              "the solve runs, then forks a process per further figure, so they draw side by "
              "side); `figures` is the wait for them after the job, while the arrays are "
              "written. The last "
              "column: CPU seconds of the command's main thread up to the end of the job (the "
              "critical path when a second core is free: a measure that waiting for a core on a "
              "shared machine does not inflate) and of its whole process (the background loads "
              "and threaded probes too; the helper processes are not counted there).", "",
              "| job | case | T | cache | startup | config + imports | solver imports | build (compile) | IPOPT | "
              "replay | baselines | write (arrays ‖ figures) | CPU s to the job's end: main thread / process |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in p["commands"]:
        s = r["stages"]
        lines.append(f"| {r['job']} | {r['case']} | {r['T']:,} | {s['compile_cache']} | "
                     f"{_f(s['startup_s'])} | {_f(s['prepare_s'])} | {_f(s['imports_s'])} | "
                     f"{_f(s['build_s'])} ({_f(s['compile_s'])}) | {_f(s['ipopt_s'])} | "
                     f"{_f(s['replay_s'])} | {_f(s['baselines_s'])} | {_f(s['write_s'])} "
                     f"({_f(s['write_arrays_s'])} ‖ {_f(s['figures_s'])}) | "
                     f"{_f(s.get('cpu_main_thread_s'))} / {_f(s.get('cpu_process_s'))} |")
    r = p["replay"]
    if r:
        lines += ["", f"## Exact replay, T = {r['T']:,}, N = 1000 (bias and variance)", "",
                  "| backend | seconds | note |", "|---|---|---|",
                  f"| fused C loop, warm (min of 3) | {r['fused_warm_s']:.3f} | "
                  f"{r['gflops_fused']:.1f} GFLOP/s at 3·N·T flops per state |",
                  f"| fused C loop, first call in a fresh process | {r['fused_first_s']:.3f} | "
                  "its library loaded (built once per machine) |",
                  f"| the same loop under numba (without a C compiler), warm (min of 3) | "
                  f"{r['numba_warm_s']:.3f} | |",
                  f"| the same loop under numba, first call | {r['numba_first_s']:.3f} | "
                  "numba import and its on-disk kernel cache (compiles once per install) |",
                  f"| jax scan (reference), first call | {r['jax_first_s']:.3f} | jax import and XLA compilation |",
                  f"| jax scan (reference), warm | {r['jax_warm_s']:.3f} | |",
                  f"| numpy loop (reference), scaled from 10^4 updates | {r['numpy_s_scaled']:.3f} | |",
                  "", f"Largest relative difference against jax: C {r['max_rel_diff_fused_vs_jax']:.1e}, "
                  f"numba {r['max_rel_diff_numba_vs_jax']:.1e}."]
    lines += ["", "Second command of the same shape: its NLP comes from the on-disk cache "
              "(`compile_cache: disk` in summary.json, compile seconds in brackets above).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="no authors, no T = 10^7 (unless --long)")
    ap.add_argument("--long", action="store_true", help="with --quick: also T = 10^7")
    ap.add_argument("--no-authors", action="store_true", help="skip the authors' formulation")
    ap.add_argument("--repeat", type=int, default=7,
                    help="runs of each warm command at T = 1000 and 10^6 (min / median / max; default 7)")
    ap.add_argument("--out", default=str(_ROOT / "results" / "benchmarks"), help="output folder")
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    # This process stays small (no numpy, CasADi or optctl until the end): on Linux a child
    # inherits its parent's peak memory through exec, and the children's peaks are measured.
    machine = {"cpu_count": os.cpu_count()}
    payload: dict[str, Any] = {"started": datetime.now(UTC).isoformat(timespec="seconds"),
                               "quick": args.quick, "long": args.long, "machine": machine, "load_start": _load(),
                               "commands": [], "authors": [], "speedups": [], "replay": None}

    stem = "cli_quick" if args.quick else "cli"

    def save() -> None:
        payload["load_end"] = _load()
        payload["finished"] = datetime.now(UTC).isoformat(timespec="seconds")
        write_text_atomic(out / f"{stem}.json", json.dumps(payload, indent=2) + "\n")
        write_text_atomic(out / f"{stem}.md", markdown(payload))

    cases = ["easy", "hard"]
    with tempfile.TemporaryDirectory(prefix="optctl-bench-cli-") as tmp:
        folder = Path(tmp)
        env = {**os.environ, "OPTCTL_CACHE_DIR": str(folder / "cache")}
        env.pop("OPTCTL_NLP_CACHE", None)
        # The replay's C kernels are built once per machine (by the first command ever run
        # there): timed here on their own, so that "cold" is the first command of a shape.
        print("[bench_cli] the replay's C kernels (built once per machine)", flush=True)
        payload["kernels_build"] = _run([PY, "-c", "from optctl.model.ckernel import kernels; "
                                         "assert kernels() is not None"], env, folder / "kernels.log")
        for case in cases:
            cfg = _config(folder, case, 1000, ["constant", "power_law"], "uniform")
            # Cold: no compiled NLP (both cases share one NLP shape, so the second would hit).
            shutil.rmtree(folder / "cache" / "nlp", ignore_errors=True)
            for when in ("cold", "warm"):
                print(f"[bench_cli] {case} T=1000 with baselines ({when})", flush=True)
                rec = run_command(folder, f"{case}-1000-{when}", cfg, env, [])
                if when == "warm":
                    rec["repeats"] = _repeat(rec, args.repeat, folder, f"{case}-1000-warm", cfg, env, [])
                payload["commands"].append({"job": "T = 1000, K = 100, constant + power law",
                                            "case": case, "T": 1000, "when": when, **rec})
                save()
            if not (args.quick or args.no_authors):
                print(f"[bench_cli] {case} T=1000: the authors' formulation", flush=True)
                a = run_authors(folder, case, 1000, env)
                payload["authors"].append({"case": case, "T": 1000, **a})
                cold, warm = (next(r for r in payload["commands"] if r["case"] == case and r["T"] == 1000
                                   and r["when"] == w) for w in ("cold", "warm"))
                w_wall, w_cpu = warm["repeats"]["wall_s"][1], warm["repeats"]["cpu_s"][1]  # medians
                payload["speedups"].append({
                    "case": case, "authors_s": a["script_s"], "optctl_cold_s": cold["wall_s"],
                    "optctl_warm_s": w_wall, "speedup_cold": a["script_s"] / cold["wall_s"],
                    "speedup_warm": a["script_s"] / w_wall,
                    "authors_cpu_s": a["cpu_s"], "optctl_cold_cpu_s": cold["cpu_s"],
                    "optctl_warm_cpu_s": w_cpu,
                    "speedup_cpu_cold": a["cpu_s"] / cold["cpu_s"],
                    "speedup_cpu_warm": a["cpu_s"] / w_cpu,
                    "rel_loss": cold["final_loss"] / a["final_loss"] - 1})
                save()
        for T in ([10**6] if args.quick and not args.long else [10**6, 10**7]):
            cfg = _config(folder, "hard", T, [], "auto")
            shutil.rmtree(folder / "cache" / "nlp", ignore_errors=True)
            for when in ("cold", "warm"):
                print(f"[bench_cli] hard T={T:,} no baselines ({when})", flush=True)
                rec = run_command(folder, f"hard-{T}-{when}", cfg, env, ["--no-baselines"])
                if when == "warm" and T == 10**6:
                    rec["repeats"] = _repeat(rec, args.repeat, folder, f"hard-{T}-warm", cfg, env,
                                             ["--no-baselines"])
                payload["commands"].append({"job": "long horizon, no baselines", "case": "hard",
                                            "T": T, "when": when, **rec})
                save()
        print("[bench_cli] exact replay T=10^6", flush=True)
        payload["replay"] = {"T": 10**6, **run_replay(folder, 10**6, env)}
    sys.path.insert(0, str(_ROOT / "benchmarks"))
    from bench_solver import machine_info

    machine.update(machine_info())
    machine.pop("hostname", None)
    save()
    print((out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main())
