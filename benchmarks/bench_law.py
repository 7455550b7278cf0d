"""The finite-horizon law of the optimal learning rate against the solver.

    python benchmarks/bench_law.py                   # T = 10^3 ... 10^6, both reference cases
    python benchmarks/bench_law.py --T 1000 10000    # chosen horizons
    python benchmarks/bench_law.py --K 100 400       # the solver on other grids (default 100 and 200 blocks)
    python benchmarks/bench_law.py --reuse-solves --out results/paper/law_T1e7
                                                     # re-time the law only; the solves of --out/law.json kept

The measurement is :func:`optctl.studies.lawbench.law_bench` (``optctl reproduce --full``
runs it too). Writes ``results/paper/law.md`` and ``law.json``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optctl.studies.lawbench import LAW_BENCH_K, LAW_BENCH_T, law_bench


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--T", type=int, nargs="+", default=list(LAW_BENCH_T))
    p.add_argument("--K", type=int, nargs="+", default=list(LAW_BENCH_K))
    p.add_argument("--out", type=Path, default=Path("results") / "paper")
    p.add_argument("--reuse-solves", action="store_true", help="re-time and replay the law only, keeping the "
                   "phases, horizons and solves of the existing OUT/law.json (seconds, no IPOPT)")
    args = p.parse_args(argv)
    law_bench(args.out, Ts=args.T, Ks=args.K, reuse_solves=args.reuse_solves)
    print(f"written {args.out / 'law.md'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
