"""``optctl sweep CONFIG``: run (or resume) a sweep, then write its report and figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optctl.errors import OptctlError
from optctl.io.files import check_writable, remove_stale_partials
from optctl.io.sweepconfig import load_sweep_config


def run(args: argparse.Namespace) -> int:
    spec = load_sweep_config(args.config)
    out = Path(args.out) if args.out else Path("results") / "sweeps" / spec.name
    if args.workers is not None and args.workers < 1:
        raise OptctlError(f"--workers {args.workers}: give a positive number of processes")
    check_writable(out)
    remove_stale_partials(out, recursive=True)  # temporary files of a killed earlier run
    # The solver (CasADi) and the figures (matplotlib) are loaded once the config is good.
    from optctl.studies.report import write_sweep_report
    from optctl.studies.sweep import run_sweep

    if not args.quiet:
        print(f"sweep {spec.name} ({spec.kind}): {len(spec.points())} points x horizons "
              f"{list(spec.horizons)} -> {out}", file=sys.stderr)
    try:
        done = run_sweep(spec, out, workers=args.workers, scheduler=args.scheduler,
                         progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"optctl: interrupted; finished points are saved in {out}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    print(f"{done.total} points: {done.skipped} already done, {done.ran} run, {len(done.failed)} failed "
          f"[{done.wall_time:.1f} s]")
    if not args.no_plots:
        write_sweep_report(out)
        print(f"report and figures written to {out}")
    if done.failed:
        for key, err in done.failed.items():
            print(f"  point {key} failed: {err}", file=sys.stderr)
        print("optctl: some points failed; re-run the command to retry them", file=sys.stderr)
        return 1
    return 0
