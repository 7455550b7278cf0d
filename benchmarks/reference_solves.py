"""The reference solves, against the values the code gave before the single solve path.

Run from the repository root::

    python benchmarks/reference_solves.py [--out results/benchmarks]

Ten solves: the eight learning-rate cases of docs/solver.md (the reference models of
MODEL.md §5, ``a = 3.5, N = 1000, σ = 0.5, m = 5, η_max = 1``, easy ``b = 2`` and hard
``b = 5``, at ``T = 500`` per step, ``T = 1000`` and ``3162`` on the uniform ``K = 100``
grid, and ``T = 10^6`` on the refined grid), one ``(η, β)`` solve
(``configs/momentum_hard.yaml``) and one ``(η, m)`` solve (``configs/batch_ramp_easy.yaml``).
Each final loss (the exact per-step replay) and IPOPT iteration count is compared with
``results/benchmarks/reference_solves_before.json``, recorded by the code before the
solvers were merged into one path (commit fd45324), or with ``--before FILE`` (another
run's values, e.g. ``reference_solves_main.json``). Writes ``reference_solves.json`` and
``reference_solves.md`` into ``--out``; exits 1 if a loss differs by more than 1e-12
(relative) or an iteration count differs. About three minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:
    sys.path.insert(0, str(_ROOT))

from optctl import ProblemSpec, SolverOptions, solve  # noqa: E402
from optctl.io.config import load_config  # noqa: E402
from optctl.io.files import write_json, write_text_atomic  # noqa: E402
from optctl.versions import versions  # noqa: E402

MODEL = {"a": 3.5, "N": 1000, "sigma": 0.5, "batch_size": 5.0, "eta_max": 1.0}
CASES = {"easy": 2.0, "hard": 5.0}
RUNS = ((500, "per_step"), (1000, "uniform"), (3162, "uniform"), (1_000_000, "refined"))
CONFIGS = ("momentum_hard", "batch_ramp_easy")
REL_TOL = 1e-12


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(_ROOT / "results" / "benchmarks"))
    parser.add_argument("--before", default=str(_ROOT / "results" / "benchmarks" / "reference_solves_before.json"),
                        help="the values to compare with: a JSON with 'source' and 'solves' "
                             "(name -> final_loss, iterations); default the pre-refactor values")
    args = parser.parse_args()
    before = json.loads(Path(args.before).read_text())
    rows = {}
    for phase, b in CASES.items():
        for T, grid in RUNS:
            spec = ProblemSpec(b=b, T=T, **MODEL)
            t0 = time.perf_counter()
            r = solve(spec, SolverOptions(grid=grid, K=100))
            rows[f"lr-{phase}-T{T}-{grid}"] = (r, time.perf_counter() - t0)
    for name in CONFIGS:
        cfg = load_config(_ROOT / "configs" / f"{name}.yaml")
        t0 = time.perf_counter()
        r = solve(cfg.problem, cfg.solver, controls=cfg.controls)
        rows[name] = (r, time.perf_counter() - t0)

    out, ok = {}, True
    lines = ["# Reference solves before and after the single solve path", "",
             "`python benchmarks/reference_solves.py`. Before: "
             f"{before['source']}. After: this run. Relative difference of the replayed final "
             f"loss (bar {REL_TOL:g}) and IPOPT iterations (must be equal).", "",
             "| solve | controls | L_T before | L_T after | rel. difference | iterations before | after | status | wall s |",
             "|---|---|---:|---:|---:|---:|---:|---|---:|"]
    for key, (r, wall) in rows.items():
        b = before["solves"][key]
        rel = abs(r.final_loss - b["final_loss"]) / b["final_loss"]
        same = rel <= REL_TOL and r.iterations == b["iterations"]
        ok &= same
        out[key] = {"final_loss": r.final_loss, "iterations": r.iterations, "status": r.status,
                    "before": b, "relative_difference": rel, "same": same, "wall_time_s": wall}
        lines.append(f"| {key} | {', '.join(r.controls.controls)} | {b['final_loss']:.16g} | "
                     f"{r.final_loss:.16g} | {rel:.1e} | {b['iterations']} | {r.iterations} | "
                     f"{r.status} | {wall:.1f} |")
    lines += ["", f"All identical within the bar: {'yes' if ok else 'NO'}.", ""]
    dest = Path(args.out)
    write_json(dest / "reference_solves.json", {"solves": out, "all_same": ok, "versions": versions()})
    write_text_atomic(dest / "reference_solves.md", "\n".join(lines))
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
