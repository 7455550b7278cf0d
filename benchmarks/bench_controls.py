"""Batch size and momentum as controls: the studies behind docs/controls.md.

    python benchmarks/bench_controls.py                    # both studies, full horizons
    python benchmarks/bench_controls.py --only momentum    # figure 5 of the paper only
    python benchmarks/bench_controls.py --quick            # tiny horizons: checks the pipeline
    python benchmarks/bench_controls.py --only ramps       # batch-ramp savings for T0 = 64 .. 4096

Writes ``results/momentum/`` (report.md, summary.json, points/*.json, momentum_*.png)
and ``results/batch/`` (report.md, summary.json, batch_*.png). Both resume: finished
points are read back, so delete a folder to recompute it. ``--only ramps`` writes the
batch-ramp savings against the horizon into ``results/paper/batch/`` (ramp_horizons.md,
.json, .png; one JSON per point under ``ramp/``), which ``optctl reproduce`` reports. Bordelon & Mori,
arXiv:2602.04774 (MODEL.md §3, §4.2, §4.3, §5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from optctl.studies.batch import run_batch_study, run_ramp_horizons
from optctl.studies.momentum import run_momentum_study


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results", help="parent folder (default: results)")
    p.add_argument("--only", choices=("momentum", "batch", "ramps"), help="run one study only")
    p.add_argument("--quick", action="store_true", help="horizons up to 128 / T0 = 64")
    p.add_argument("--eta-max", type=float, default=1.0, help="η_max of both problems (default 1)")
    p.add_argument("--setting", default="project",
                   help="momentum setting of the study file: project (default) or notebook "
                        "(normalised initial loss, κ = 1e-2, the notebook's velocity start)")
    args = p.parse_args()
    out = Path(args.out)
    if args.only in (None, "momentum"):
        short = {"easy": (32, 64, 128), "hard": (32, 64, 128)}
        name = "momentum" if args.eta_max == 1.0 else f"momentum_etamax{args.eta_max:g}"
        if args.setting != "project":
            name += f"_{args.setting}"
        run_momentum_study(out / name, horizons=short if args.quick else None, eta_max=args.eta_max,
                           setting=args.setting)
        print(f"momentum study written to {out / name}")
    if args.only in (None, "batch"):
        run_batch_study(out / "batch", T0=64 if args.quick else 256)
        print(f"batch study written to {out / 'batch'}")
    if args.only == "ramps":
        run_ramp_horizons(out / "paper" / "batch")
        print(f"batch-ramp savings written to {out / 'paper' / 'batch'}")


if __name__ == "__main__":
    main()
