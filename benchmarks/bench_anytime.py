"""Anytime schedules: the optimal branching plan against WSD-S, SGDR and the longest
optimum stopped early, in both phases of MODEL.md §5 (configs/easy_phase.yaml,
configs/hard_phase.yaml), at horizons {10^3, 10^4, 10^5} and (``--dense``) at every
doubling from 10^3 to 6.4·10^4.

Writes results/anytime/<phase>-<set>.md (the regret table), .json (every number) and
.png (trunk and branches, regret per horizon). Run:

    python benchmarks/bench_anytime.py            # the three decades, both phases
    python benchmarks/bench_anytime.py --dense    # the doublings as well
    python benchmarks/bench_anytime.py --time     # one branching solve, n = 3, N = 1000, to 10^5

``--time`` times the branching solve for fixed leave points (10% decay per horizon) in the
hard phase, the horizons' own optima given (they are timed apart), and writes
results/anytime/timing.json.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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
    args = ap.parse_args(argv)
    if args.time:
        return timing(Path(args.out))
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
           "branching_s": round(t_br, 1), "worst_regret": res.worst_regret, "regret": res.regret.tolist(), "status": res.status,
           "success": res.success, "iterations": res.iterations, "multipliers": res.multipliers.tolist(),
           "minimax_gap": res.gap,
           "replay_gap": res.replay_gap.tolist(), "cpus": os.cpu_count(),
           "load_average_1min": os.getloadavg()[0]}
    out.mkdir(parents=True, exist_ok=True)
    (out / "timing.json").write_text(json.dumps(rec, indent=1) + "\n")
    print(json.dumps(rec, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
