"""Where a phase-diagram point's time goes, horizon by horizon.

Runs points of ``configs/sweep_phase_diagram.yaml`` one after another in this process,
as a sweep worker runs them (``OPTCTL_THREADS=1``, each horizon warm-started from the
previous one, the baselines at the sweep's baseline horizons), and splits each horizon
into: the NLP build (of which the compilation or its load), the start (candidate scores
and the curvature probes: the rest of the build), IPOPT (iterations, status), the exact
replay and the baselines, with the CPU seconds of the whole horizon. Writes
``results/benchmarks/phase_point_profile.md`` and ``.json``.

    python benchmarks/profile_phase_point.py                 # four representative points
    python benchmarks/profile_phase_point.py 3.35,2.2 2.15,4.6
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ["OPTCTL_THREADS"] = "1"  # as in a sweep's worker processes

import optctl.studies.sweep as sweep_module  # noqa: E402
from optctl.io.files import write_text_atomic  # noqa: E402
from optctl.io.sweepconfig import load_sweep_config  # noqa: E402
from optctl.solver.report import SolveReport  # noqa: E402

_ROOT = Path(__file__).resolve().parents[1]
# easy, hard, near the boundary a = b, and the slow easy corner at b = 1
POINTS = ("3.35,2.2", "2.15,4.6", "2.75,2.6", "4.55,1.0")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("points", nargs="*", default=list(POINTS), help="a,b pairs (default: four)")
    ap.add_argument("--config", default=str(_ROOT / "configs" / "sweep_phase_diagram.yaml"))
    ap.add_argument("--out", default=str(_ROOT / "results" / "benchmarks"))
    args = ap.parse_args(argv)
    sw = load_sweep_config(args.config)
    reports: list[SolveReport] = []
    original = sweep_module.run_job

    def keep(*a: Any, **k: Any) -> SolveReport:
        report = original(*a, **k)
        reports.append(report)
        return report

    sweep_module.run_job = keep  # the sweep's own code path, with the report kept
    rows: list[dict[str, Any]] = []
    load_start = [round(x, 2) for x in os.getloadavg()]
    started = datetime.now(UTC).isoformat(timespec="seconds")
    for text in args.points:
        a, b = (float(x) for x in text.split(","))
        task = sweep_module.PointTask(sweep=sw, values={"a": a, "b": b}, out=None)
        prev = None
        for T in sw.horizons:
            c0 = time.process_time()
            prev = sweep_module.solve_record(sw.spec(task.values, T), task, prev)
            cpu = time.process_time() - c0
            r = reports[-1]
            res = r.result
            compile_s = float(res.transcription.get("compile_time_s", 0.0))
            rows.append({"a": a, "b": b, "T": T, "cpu_s": cpu, "build_s": res.build_time,
                         "compile_s": compile_s, "cache": res.transcription.get("compile_cache"),
                         "start_s": res.build_time - compile_s, "ipopt_s": res.solve_time,
                         "iterations": res.iterations, "status": res.status,
                         "replay_s": res.replay_time, "baselines_s": r.baseline_time})
            print(f"a={a:.2f} b={b:.2f} T={T:>7,}: CPU {cpu:5.2f} s | build {res.build_time:5.2f} "
                  f"(compile {compile_s:.2f}, {rows[-1]['cache']}) | IPOPT {res.solve_time:5.2f} "
                  f"({res.iterations} it) | replay {res.replay_time:.2f} | baselines "
                  f"{r.baseline_time:.2f}", flush=True)
    load_end = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"started": started, "load_start": load_start, "load_end": load_end,
               "config": str(Path(args.config).name), "rows": rows}
    write_text_atomic(out / "phase_point_profile.json", json.dumps(payload, indent=2) + "\n")
    write_text_atomic(out / "phase_point_profile.md", markdown(payload))
    print((out / "phase_point_profile.md").read_text())
    return 0


def markdown(p: dict[str, Any]) -> str:
    lines = ["# Where a phase-diagram point's time goes", "",
             f"`python benchmarks/profile_phase_point.py`, {p['started']}, `{p['config']}`, one "
             f"process with one thread for CasADi's calls, as a sweep worker; load average "
             f"{p['load_start']} at start, {p['load_end']} at end (wall seconds on a loaded machine "
             "include waiting for a core; the CPU column does not). `start`: the candidate "
             "scores and the curvature probes (the build less the compilation or its load).", "",
             "| a | b | T | CPU s | build s | of it compile (cache) | start s | IPOPT s | iterations "
             "| status | replay s | baselines s |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in p["rows"]:
        lines.append(f"| {r['a']:.2f} | {r['b']:.2f} | {r['T']:,} | {r['cpu_s']:.2f} | {r['build_s']:.2f} | "
                     f"{r['compile_s']:.2f} ({r['cache']}) | {r['start_s']:.2f} | {r['ipopt_s']:.2f} | "
                     f"{r['iterations']} | {r['status']} | {r['replay_s']:.2f} | {r['baselines_s']:.2f} |")
    points: dict[tuple[float, float], float] = {}
    for r in p["rows"]:
        points[(r["a"], r["b"])] = points.get((r["a"], r["b"]), 0.0) + r["cpu_s"]
    lines += ["", "CPU seconds per point (all horizons): "
              + ", ".join(f"(a, b) = ({a:.2f}, {b:.2f}): {s:.2f}" for (a, b), s in points.items()), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
