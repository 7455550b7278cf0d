"""Anytime schedules: the optimal branching plan against WSD-S, SGDR and the longest
optimum stopped early, in both phases of MODEL.md §5 (configs/easy_phase.yaml,
configs/hard_phase.yaml), at horizons {10^3, 10^4, 10^5} and (``--dense``) at every
doubling from 10^3 to 6.4·10^4.

Writes results/anytime/<phase>-<set>.md (the regret table), .json (every number) and
.png (trunk and branches, regret per horizon). Run:

    python benchmarks/bench_anytime.py            # the three decades, both phases
    python benchmarks/bench_anytime.py --dense    # the doublings as well
    python benchmarks/bench_anytime.py --time     # one branching solve, n = 3, N = 1000, to 10^5
    python benchmarks/bench_anytime.py --convergence 40 100 160 --phase hard --fraction 0.2
                                                  # worst regret as the grids are refined
    python benchmarks/bench_anytime.py --scan-cost --phase hard   # the leave-point scan, full vs coarse

``--time`` times the branching solve for fixed leave points (10% decay per horizon) in the
hard phase, the horizons' own optima given (they are timed apart), and writes
results/anytime/timing.json: wall and CPU seconds (every thread of the process; the load of
other jobs inflates wall time far more than CPU time) in all and per stage. Run it twice on a
fresh checkout: the first run compiles the NLPs (kept on disk), the second times the solve. ``--convergence K...`` solves the decades at one fixed decay
fraction for each solver ``K`` (the own optima, the lower bounds and the plan's grids all
follow ``K``) and writes results/anytime/convergence-<phase>.{md,json}. ``--scan-cost``
times the default leave-point scan on the solver's grids and on coarse grids (the
default) and writes results/anytime/scan-cost-<phase>.{md,json}.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from optctl.io.config import load_config
from optctl.studies.anytime import run_anytime

ROOT = Path(__file__).resolve().parent.parent
SETS = {"decades": (1000, 10000, 100000), "dense": tuple(1000 * 2**k for k in range(7))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dense", action="store_true", help="also the horizons at every doubling")
    ap.add_argument("--phase", choices=("easy", "hard", "both"), default="both")
    ap.add_argument("--out", default=str(ROOT / "results" / "anytime"))
    ap.add_argument("--time", action="store_true", help="time one branching solve and stop")
    ap.add_argument("--fractions", type=float, nargs="+", default=None,
                    help="decay fractions to scan for the leave points (default: the solver's)")
    ap.add_argument("--sets", nargs="+", choices=tuple(SETS), default=None,
                    help="horizon sets to run (default: decades, and dense with --dense)")
    ap.add_argument("--convergence", type=int, nargs="+", default=None, metavar="K",
                    help="worst regret at a fixed leave fraction for each solver K")
    ap.add_argument("--fraction", type=float, default=0.2, help="the decay fraction of --convergence")
    ap.add_argument("--scan-cost", action="store_true", help="time the scan: solver's K vs coarse grids")
    args = ap.parse_args(argv)
    if args.time:
        return timing(Path(args.out))
    if args.convergence:
        for phase in (("hard", "easy") if args.phase == "both" else (args.phase,)):
            convergence(Path(args.out), phase, args.convergence, args.fraction)
        return 0
    if args.scan_cost:
        for phase in (("hard", "easy") if args.phase == "both" else (args.phase,)):
            scan_cost(Path(args.out), phase)
        return 0
    phases = ("hard", "easy") if args.phase == "both" else (args.phase,)
    sets = args.sets or (("decades", "dense") if args.dense else ("decades",))
    for name in sets:
        for phase in phases:
            cfg = load_config(ROOT / "configs" / f"{phase}_phase.yaml")
            print(f"== {phase} phase, horizons {list(SETS[name])}", file=sys.stderr, flush=True)
            rep = run_anytime(cfg.problem, SETS[name], cfg.solver, name=f"{phase}-{name}",
                              fractions=args.fractions, progress=True)
            rep.write(Path(args.out))
            print(rep.markdown(), flush=True)
    return 0


def timing(out: Path) -> int:
    """Wall time of one branching solve (n = 3 horizons to 10^5, N = 1000, fixed leave points)."""
    import json
    import os
    import time

    from optctl.solver.branching import horizon_optima, solve_branching

    cfg = load_config(ROOT / "configs" / "hard_phase.yaml")
    hs = SETS["decades"]
    t0 = time.perf_counter()
    optima = horizon_optima(cfg.problem, hs, cfg.solver)
    t_opt = time.perf_counter() - t0
    t0 = time.perf_counter()
    res = solve_branching(cfg.problem, hs, cfg.solver, leave=[9 * T // 10 for T in hs], optima=optima,
                          progress=True)
    t_br = time.perf_counter() - t0
    rec = {"horizons": list(hs), "N": cfg.problem.N, "leave": list(res.leave), "optima_s": round(t_opt, 1),
           "branching_s": round(t_br, 1), "branching_cpu_s": round(res.cpu_time, 1),
           "stages_s": {k: {"wall": round(v[0], 1), "cpu": round(v[1], 1)} for k, v in res.stages.items()},
           "certificate_status": None if res.certificate is None else res.certificate.status,
           "worst_regret": res.worst_regret, "regret": res.regret.tolist(), "status": res.status,
           "success": res.success, "iterations": res.iterations, "multipliers": res.multipliers.tolist(),
           "minimax_gap": res.gap,
           "replay_gap": res.replay_gap.tolist(), "cpus": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing.json").write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec, indent=1))
    return 0


def convergence(out: Path, phase: str, Ks: list[int], fraction: float) -> None:
    """Worst regret of the decades at one decay fraction as the solver's K grows."""
    import os
    import time
    from dataclasses import replace

    from optctl.solver.branching import horizon_optima, solve_branching

    cfg = load_config(ROOT / "configs" / f"{phase}_phase.yaml")
    hs = SETS["decades"]
    leave = [int(round((1 - fraction) * T)) for T in hs]
    rows: list[dict[str, Any]] = []
    for K in Ks:
        opts = replace(cfg.solver, K=K)
        print(f"== {phase}: K = {K}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        optima = horizon_optima(cfg.problem, hs, opts)
        res = solve_branching(cfg.problem, hs, opts, leave=leave, optima=optima, progress=True)
        rows.append({"K": K, "trunk_blocks": res.transcription["trunk_blocks"],
                     "branch_blocks": res.transcription["branch_blocks"], "regret": res.regret.tolist(),
                     "worst_regret": res.worst_regret, "lower_bounds": res.optima.tolist(),
                     "own_optima": res.own_optima.tolist(), "losses": res.losses.tolist(),
                     "replay_gap": res.replay_gap.tolist(), "status": res.status, "success": res.success,
                     "minimax_gap": res.gap, "seconds": round(time.perf_counter() - t0, 1),
                     "load_average_1min": os.getloadavg()[0]})
        _write_convergence(out, phase, hs, leave, fraction, rows)  # after every K: a partial table


def _write_convergence(out: Path, phase: str, hs: tuple[int, ...], leave: list[int], fraction: float,
                       rows: list[dict[str, Any]]) -> None:
    from optctl.io.files import write_json, write_text_atomic

    lines = [f"### Convergence in K: {phase} phase, horizons {list(hs)}, leave points {leave} "
             f"({fraction:g} decay)", "",
             "Regrets against each horizon's lower bound on the plan's grids at that K (replayed).", "",
             "| K | trunk + branch blocks | regret per horizon (%) | worst (%) | lower bounds L* | certified | s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['K']} | {r['trunk_blocks']} + {r['branch_blocks']} | "
                     f"{', '.join(f'{100 * g:.3f}' for g in r['regret'])} | {100 * r['worst_regret']:.3f} | "
                     f"{', '.join(f'{x:.6g}' for x in r['lower_bounds'])} | {r['status']} | {r['seconds']} |")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"convergence-{phase}.json", {"horizons": list(hs), "leave": leave, "rows": rows})
    write_text_atomic(out / f"convergence-{phase}.md", "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


def scan_cost(out: Path, phase: str) -> None:
    """Wall time of the default leave-point scan: on the solver's grids, and coarse (default)."""
    import os
    import time

    from optctl.io.files import write_json, write_text_atomic
    from optctl.solver.branching import horizon_optima, solve_branching

    cfg = load_config(ROOT / "configs" / f"{phase}_phase.yaml")
    hs = SETS["decades"]
    optima = horizon_optima(cfg.problem, hs, cfg.solver)
    rows = []
    for coarse in (False, True):
        print(f"== {phase}: scan, coarse = {coarse}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        res = solve_branching(cfg.problem, hs, cfg.solver, optima=optima, coarse=coarse, progress=True)
        rows.append({"coarse": coarse, "seconds": round(time.perf_counter() - t0, 1), "leave": list(res.leave),
                     "worst_regret": res.worst_regret, "status": res.status,
                     "load_average_1min": os.getloadavg()[0]})
    lines = [f"### Leave-point scan cost: {phase} phase, horizons {list(hs)}", "",
             "| scan | wall s | leave points chosen | worst regret (%) | status | load |", "|---|---|---|---|---|---|"]
    lines += [f"| {'coarse grids, then K' if r['coarse'] else 'every point at K'} | {r['seconds']} | {r['leave']} | "
              f"{100 * r['worst_regret']:.3f} | {r['status']} | {r['load_average_1min']:.1f} |" for r in rows]
    write_json(out / f"scan-cost-{phase}.json", {"rows": rows})
    write_text_atomic(out / f"scan-cost-{phase}.md", "\n".join(lines) + "\n")
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
