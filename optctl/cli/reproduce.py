"""``optctl reproduce``: the paper's figures 1–5, the claim table and the studies, resumably."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from optctl.errors import OptctlError
from optctl.io.files import check_writable


def run(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if args.workers < 1:
        raise OptctlError(f"--workers {args.workers}: give a positive number of processes (e.g. --workers 2)")
    check_writable(out)
    from optctl.studies.reproduce import reproduce  # the solver stack, once --out is good

    try:
        rep = reproduce(out, workers=args.workers, progress=not args.quiet, quick=args.quick,
                        controls=not args.no_controls, full=args.full)
    except KeyboardInterrupt:
        print(f"optctl: interrupted; finished points are saved under {out / 'sweeps'}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(f"{len(rep['figures'])} figures and report.md written to {out} [{rep['wall_time_s']:.0f} s]")
    return 0
