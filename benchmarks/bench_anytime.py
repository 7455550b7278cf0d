"""Anytime schedules: the optimal branching plan against WSD-S, SGDR and the longest
optimum stopped early, in both phases of MODEL.md §5 (configs/easy_phase.yaml,
configs/hard_phase.yaml), at horizons {10^3, 10^4, 10^5} and (``--dense``) at every
doubling from 10^3 to 6.4·10^4.

Writes results/anytime/<phase>-<set>.md (the regret table), .json (every number) and
.png (trunk and branches, regret per horizon). Run:

    python benchmarks/bench_anytime.py            # the three decades, both phases
    python benchmarks/bench_anytime.py --dense    # the doublings as well
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
    args = ap.parse_args(argv)
    phases = ("hard", "easy") if args.phase == "both" else (args.phase,)
    sets = ("decades", "dense") if args.dense else ("decades",)
    for name in sets:
        for phase in phases:
            cfg = load_config(ROOT / "configs" / f"{phase}_phase.yaml")
            print(f"== {phase} phase, horizons {list(SETS[name])}", file=sys.stderr, flush=True)
            rep = run_anytime(cfg.problem, SETS[name], cfg.solver, name=f"{phase}-{name}", progress=True)
            rep.write(Path(args.out))
            print(rep.markdown(), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
