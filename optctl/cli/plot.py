"""``optctl plot FOLDER``: redraw the figures of a sweep or of a solve run."""

from __future__ import annotations

import argparse
from pathlib import Path

from optctl.errors import OptctlError
from optctl.io.runs import ARRAYS, SUMMARY, draw_run, read_run, title


def run(args: argparse.Namespace) -> int:
    folder = Path(args.run)
    if (folder / "sweep.yaml").exists():
        from optctl.studies.report import write_sweep_report  # the sweep analyses and figures

        write_sweep_report(folder)
        print(f"figures written to {folder / 'figures'}")
        return 0
    if (folder / SUMMARY).exists() and (folder / ARRAYS).exists():
        rf = read_run(folder)
        draw_run(folder, rf.report, title(rf.config))
        print(f"figures written to {folder}")
        return 0
    if not folder.is_dir():
        raise OptctlError(f"{folder}: no such folder; pass a folder written by `optctl sweep` or "
                          "`optctl solve`")
    raise OptctlError(f"{folder}: not a results folder (no sweep.yaml, nor {SUMMARY} and {ARRAYS}); "
                      "pass a folder written by `optctl sweep` or `optctl solve`")
