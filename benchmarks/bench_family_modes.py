"""How many exact modes a family plan needs: a stored DANA schedule's sub-blocked L_T against its exact replay.

    python benchmarks/bench_family_modes.py --case hard --T 100000
    git show 8df3090:results/momentum_families/hard_scheduled.json > hard_scheduled_capped.json
    python benchmarks/bench_family_modes.py --case hard --T 100000 --record hard_scheduled_capped.json --tag capped16 --subblock 0.02,0.01

Reads the solved DANA schedule (``dana_solved_unbounded``) at ``--T`` from
results/momentum_families/<case>_scheduled.json (or ``--record``), transcribes it on the family
plan's sub-blocks with the first ``n`` modes exact and 3-point Gauss bins beyond, for each
``--exact`` (``all``: no grouping), and with ``--subblock`` sub-block caps, and compares each
with the family's exact per-step replay (all modes). Writes
results/momentum_families/modes_check_<case>_T<T>[_<tag>].json (docs/momentum_families.md §7,
``FAMILY_GROUP_EXACT`` in optctl/solver/family.py).
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from optctl.io.files import read_json, write_json
from optctl.model import families as F
from optctl.solver import family as FS
from optctl.solver.controls import DanaSchedule
from optctl.solver.grid import subdivide
from optctl.solver.plan import SUBBLOCK_RESTART, plan_spectrum
from optctl.solver.transcribe import transcribed_loss
from optctl.spec import SolverOptions
from optctl.studies.families import load_study, study_spec


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="hard")
    p.add_argument("--T", type=int, default=100_000)
    p.add_argument("--record", default=None, help="a *_scheduled.json record (default: the stored one)")
    p.add_argument("--tag", default="", help="suffix of the output name")
    p.add_argument("--exact", default="16,32,64,128,all", help="exact head modes to try (comma-separated)")
    p.add_argument("--subblock", default="", help="sub-block caps to try with 16 exact modes (e.g. 0.02,0.01)")
    args = p.parse_args()
    out = Path("results/momentum_families")
    model = load_study()["models"][args.case]
    spec = study_spec(model, args.T)
    rec = read_json(Path(args.record) if args.record else out / f"{args.case}_scheduled.json")
    v = next(r for r in rec["rows"] if int(r["T"]) == args.T)["dana_solved_unbounded"]
    grid = np.asarray(v["grid"])
    cs = DanaSchedule(float(v["delta"]))
    g2, g3 = (np.asarray(v["schedules"][k], dtype=float) for k in ("gamma2", "gamma3"))
    steps = F.generalized_momentum(spec.T, 1.0, np.repeat(g2, np.diff(grid)), np.repeat(g3, np.diff(grid)),
                                   cs.momentum_rate(spec.T))
    exact = float(F.family_loss(spec, steps))
    plan = FS.family_plan(spec, SolverOptions(K=grid.size - 1))
    assert np.array_equal(plan.grid, grid), "the stored grid is not the family plan's"
    u = np.concatenate([g2, g3])
    rows = []
    for n in args.exact.split(","):
        t0 = time.perf_counter()
        pl = replace(plan, modes="exact", spectrum=plan_spectrum(spec, "exact")) if n == "all" else \
            replace(plan, spectrum=plan_spectrum(spec, "grouped", int(n)))
        L = transcribed_loss(pl, cs, spec, u)
        rows.append({"exact_modes": n, "n_modes": pl.spectrum.n_modes, "subblock_rel": FS.FAMILY_SUBBLOCK_REL,
                     "blocked": L, "gap": L / exact - 1, "seconds": time.perf_counter() - t0})
        print(f"exact modes {n} ({pl.spectrum.n_modes} in all): gap {rows[-1]['gap']:+.2e}", flush=True)
    for rel in (float(x) for x in args.subblock.split(",") if x):
        t0 = time.perf_counter()
        lengths, owner = subdivide(grid, rel, SUBBLOCK_RESTART)
        pl = replace(plan, lengths=lengths, owner=owner, spectrum=plan_spectrum(spec, "grouped", 16))
        L = transcribed_loss(pl, cs, spec, u)
        rows.append({"exact_modes": "16", "n_modes": pl.spectrum.n_modes, "subblock_rel": rel,
                     "blocked": L, "gap": L / exact - 1, "seconds": time.perf_counter() - t0})
        print(f"16 exact modes, sub-blocks {rel}: gap {rows[-1]['gap']:+.2e}", flush=True)
    name = f"modes_check_{args.case}_T{args.T}" + (f"_{args.tag}" if args.tag else "") + ".json"
    write_json(out / name, {"case": args.case, "T": args.T, "record": Path(args.record).name if args.record else f"{args.case}_scheduled.json",
                            "exact_replay": exact, "max_effective_step": float(np.max(F.effective_step(steps))),
                            "load_1min": os.getloadavg()[0], "rows": rows})
    print(f"wrote {out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
