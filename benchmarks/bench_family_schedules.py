"""Optimally scheduled families: solved DANA (γ₂, γ₃)(t) and Schedule-Free γ(t) per horizon.

    python benchmarks/bench_family_schedules.py --case hard --max-T 10000
    python benchmarks/bench_family_schedules.py --case easy --min-T 31623 --second-start-T 31623
    python benchmarks/bench_family_schedules.py --two-starts 316     # DANA from two starts
    python benchmarks/bench_family_schedules.py --case hard --bound-check  # bounded Schedule-Free at the bound: KKT?
    python benchmarks/bench_family_schedules.py --case hard --sgd-same-grid  # optimal SGD on the families' blocks

Reads the tuned families of results/momentum_families/<case>.json (written by
bench_momentum_families.py) and writes results/momentum_families/<case>_scheduled.json
after every horizon (resumable); docs/momentum_families.md §7. bench_momentum_long.py
reads it into the exponent table.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from optctl.io.files import read_json, write_json
from optctl.studies.families import load_study, study_spec
from optctl.studies.family_schedules import bound_check, run_schedules, sgd_same_grid, two_starts


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/momentum_families")
    p.add_argument("--case", default="hard")
    p.add_argument("--max-T", type=int, default=100_000)
    p.add_argument("--K", type=int, default=48, help="refined control blocks")
    p.add_argument("--min-T", type=int, default=0)
    p.add_argument("--skip-T", type=int, action="append", default=[],
                   help="leave this horizon out (repeatable); the next one starts from the one before it")
    p.add_argument("--max-iter", type=int, default=3000, help="IPOPT iterations per solve")
    p.add_argument("--attempts", type=int, default=None,
                   help="starts solved in rank order until one succeeds (default: all)")
    p.add_argument("--record", default=None, help="write here instead of <out>/<case>_scheduled.json")
    p.add_argument("--seed", default=None, help="a record whose shorter horizon seeds the first solve")
    p.add_argument("--redo", action="append", default=[], help="recompute this entry (e.g. dana_solved_bounded)")
    p.add_argument("--bounds", choices=("unbounded", "bounded", "both"), default="both")
    p.add_argument("--family", choices=("schedule-free", "dana", "both"), default="both")
    p.add_argument("--second-start-T", type=int, action="append", default=[],
                   help="at this horizon (repeatable) also solve each problem from its best-ranked other start")
    p.add_argument("--two-starts", type=int, default=None, help="only: DANA at this T from two starts")
    p.add_argument("--sgd-same-grid", action="store_true",
                   help="only: optimal SGD on the families' K refined blocks at every stored horizon that lacks it")
    p.add_argument("--bound-check", action="store_true",
                   help="only: the one-sided derivatives of L_T at Schedule-Free's gamma = eta_max, every solved T")
    args = p.parse_args()
    cfg = load_study()
    out = Path(args.out)
    if args.two_starts is not None:
        model = cfg["models"][args.case]
        row = {int(r["T"]): r for r in read_json(out / f"{args.case}.json")["rows"]}[args.two_starts]
        spec = study_spec(model, args.two_starts)
        res = two_starts(spec, row, args.K)
        write_json(out / f"{args.case}_scheduled_two_starts_T{args.two_starts}.json", res)
        print(res, f"load {os.getloadavg()[0]:.1f}")
        return 0
    if args.bound_check:
        return _bound_check(out, cfg, args.case)
    if args.sgd_same_grid:
        sgd_same_grid(out, cfg, args.case, progress=lambda s: print(s, flush=True))
        return 0
    horizons = [T for T in cfg["horizons"] if args.min_T <= T <= args.max_T and T not in args.skip_T]
    run_schedules(out, cfg, args.case, horizons, K=args.K, max_iter=args.max_iter,
                  progress=lambda s: print(s, flush=True), seed=None if args.seed is None else Path(args.seed),
                  record=None if args.record is None else Path(args.record), redo=tuple(args.redo),
                  bounds=("unbounded", "bounded") if args.bounds == "both" else (args.bounds,),
                  second_start_T=tuple(args.second_start_T),
                  families=("schedule-free", "dana") if args.family == "both" else (args.family,),
                  attempts=args.attempts)
    return 0


def _bound_check(out: Path, cfg: dict, case: str) -> int:  # type: ignore[type-arg]
    """Writes <out>/<case>_sf_bound_check.json: per solved T, the one-sided derivatives of the
    exact L_T in each block at gamma = eta_max (h = 1e-3 and 1e-5), seconds and load."""
    model = cfg["models"][case]
    rec = read_json(out / f"{case}_scheduled.json")
    rows = []
    for r in rec["rows"]:
        v = r.get("schedule-free_solved_bounded")
        if v is None:
            continue
        T = int(r["T"])
        spec = study_spec(model, T)
        t0 = time.perf_counter()
        checks = [bound_check(spec, float(v["beta"]), float(rec["eta_max"]), np.asarray(v["grid"]), h)
                  for h in (1e-3, 1e-5)]
        at_bound = bool(np.all(np.asarray(v["schedules"]["lr"]) >= 0.999 * float(rec["eta_max"])))
        rows.append({"T": T, "solved_at_bound_everywhere": at_bound, "solved_loss": v["loss"],
                     "checks": checks, "kkt": all(c["kkt"] for c in checks),
                     "seconds": time.perf_counter() - t0, "load_1min": os.getloadavg()[0]})
        print(f"{case} T={T}: at the bound in every block {at_bound}; max one-sided dL/dγ "
              f"{checks[0]['max_derivative']:.2e} (h=1e-3), {checks[1]['max_derivative']:.2e} (h=1e-5); "
              f"KKT {rows[-1]['kkt']}", flush=True)
    write_json(out / f"{case}_sf_bound_check.json", {"model": model, "eta_max": rec["eta_max"], "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
