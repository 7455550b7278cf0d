"""``optctl sweep``, ``optctl plot`` and ``optctl reproduce``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optctl.errors import OptctlError
from optctl.io.runs import draw_run, read_run, title
from optctl.io.sweepconfig import load_sweep_config
from optctl.studies.report import write_sweep_report
from optctl.studies.reproduce import reproduce
from optctl.studies.sweep import run_sweep


def run(args: argparse.Namespace) -> int:
    return {"sweep": sweep, "plot": plot, "reproduce": reproduce_paper}[args.command](args)


def sweep(args: argparse.Namespace) -> int:
    spec = load_sweep_config(args.config)
    out = Path(args.out) if args.out else Path("results") / "sweeps" / spec.name
    if args.workers is not None and args.workers < 1:
        raise OptctlError(f"--workers {args.workers}: give a positive number of processes")
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


def plot(args: argparse.Namespace) -> int:
    folder = Path(args.run)
    if (folder / "sweep.yaml").exists():
        write_sweep_report(folder)
        print(f"figures written to {folder / 'figures'}")
        return 0
    if (folder / "summary.json").exists() and (folder / "arrays.npz").exists():
        rf = read_run(folder)
        draw_run(folder, rf.report, title(rf.config))
        print(f"figures written to {folder}")
        return 0
    if not folder.is_dir():
        raise OptctlError(f"{folder}: no such folder; pass a folder written by `optctl sweep` or "
                          "`optctl solve`")
    raise OptctlError(f"{folder}: not a results folder (no sweep.yaml, nor summary.json and arrays.npz); "
                      "pass a folder written by `optctl sweep` or `optctl solve`")


def reproduce_paper(args: argparse.Namespace) -> int:
    out = Path(args.out)
    try:
        rep = reproduce(out, workers=args.workers, progress=not args.quiet, quick=args.quick,
                        controls=not args.no_controls)
    except KeyboardInterrupt:
        print(f"optctl: interrupted; finished points are saved under {out / 'sweeps'}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(f"{len(rep['figures'])} figures and report.md written to {out} [{rep['wall_time_s']:.0f} s]")
    return 0
