"""Near the phase boundary up to T = 10^7: the window exponent p of the classifier.

Runs :func:`optctl.studies.boundary.boundary_study` on the packaged sweep
``optctl/data/sweep_boundary.yaml`` (a = 3.5, |a − b| <= 0.3, T = 10^3 … 10^7) and
writes ``results/paper/boundary.json``, ``boundary.md`` and ``fig_boundary_window.png``
(``optctl reproduce`` does the same, reusing the finished solves). Usage (repository
root)::

    python benchmarks/bench_boundary.py [--workers 2] [--out results/paper]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optctl.studies.boundary import boundary_study
from optctl.studies.reproduce import packaged_sweep


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", default=str(Path("results") / "paper"))
    args = ap.parse_args()
    out = Path(args.out)
    boundary_study(packaged_sweep("boundary"), out, workers=args.workers)
    print((out / "boundary.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
