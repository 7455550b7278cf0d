"""Momentum families against optimal SGD: the study behind docs/momentum_families.md.

    python benchmarks/bench_momentum_families.py                  # every model and horizon
    python benchmarks/bench_momentum_families.py --case hard      # one model
    python benchmarks/bench_momentum_families.py --max-T 10000    # shorter horizons only
    python benchmarks/bench_momentum_families.py --report-only    # redraw from saved records

Parameters in optctl/data/study_families.yaml. Writes results/momentum_families/
(<model>.json after every horizon, report.md, families_<model>.png); it resumes: finished
horizons are read back, so delete a model's json to recompute it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optctl.io.files import read_json, write_text_atomic
from optctl.studies.families import load_study, run_study, summarize


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/momentum_families", help="output folder")
    p.add_argument("--config", default=None, help="study YAML (default: the packaged one)")
    p.add_argument("--case", action="append", help="model name(s) to run (default: all)")
    p.add_argument("--max-T", type=int, default=None, help="drop horizons above this")
    p.add_argument("--report-only", action="store_true", help="only rewrite report.md and figures")
    args = p.parse_args()
    cfg = load_study(args.config)
    if args.max_T is not None:
        cfg = {**cfg, "horizons": [T for T in cfg["horizons"] if T <= args.max_T]}
    out = Path(args.out)
    if not args.report_only:
        run_study(out, cfg, cases=args.case, progress=lambda s: print(s, flush=True))
    recs = {n: read_json(out / f"{n}.json") for n in cfg["models"] if (out / f"{n}.json").exists()}
    if not recs:
        print("no records to report", file=sys.stderr)
        return 1
    from optctl import plots

    parts = ["# Momentum families against optimal SGD", "",
             "Every loss is the exact expected final loss L_T of the per-step second-moment "
             "recursion (docs/momentum_families.md); each family tuned per horizon, optimal SGD "
             "solved by IPOPT (learning rate alone). Percentages: relative to optimal SGD.", ""]
    for name, rec in recs.items():
        parts.append(summarize(name, rec, list(cfg["families"])))
        plots.save(plots.plot_family_study(rec, list(cfg["families"]), title=name),
                   out / f"families_{name}.png")
    write_text_atomic(out / "report.md", "\n".join(parts) + "\n")
    print(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
