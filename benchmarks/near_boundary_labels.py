"""Phase labels of the near-boundary points of the phase diagram, to compare two versions.

Solves the points of ``configs/sweep_phase_diagram.yaml`` with ``|a − b| < 0.3`` (18 of
144: the only ones whose label is not decided with a confidence near 1) exactly as the
sweep does (every horizon, warm-started, baselines at T = 10^5) in one process, labels
them, and writes ``{point: [label, confidence]}`` as JSON. Run it with two versions of
optctl on the path and compare the files (``--compare A.json B.json`` prints the table)::

    python benchmarks/near_boundary_labels.py --out labels_new.json
    python benchmarks/near_boundary_labels.py --compare labels_old.json labels_new.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ["OPTCTL_THREADS"] = "1"  # as in a sweep's worker processes

_ROOT = Path(__file__).resolve().parents[1]
BAND = 0.3


def labels(config: str, folder: str) -> dict[str, list[object]]:
    from optctl.io.sweepconfig import load_sweep_config
    from optctl.studies.horizons import phase_diagram
    from optctl.studies.sweep import PointTask, load_sweep, prepare_out, run_point

    sw = load_sweep_config(config)
    prepare_out(sw, Path(folder))
    for v in sw.points():
        if abs(v["a"] - v["b"]) < BAND - 1e-9:
            run_point(PointTask(sweep=sw, values=v, out=folder))
    pd = phase_diagram(load_sweep(Path(folder)))
    return {f"{a:.2f},{b:.2f}": [str(pd.label[i, j]), float(pd.confidence[i, j])]
            for i, a in enumerate(pd.a) for j, b in enumerate(pd.b) if pd.label[i, j] != ""}


def compare(old: dict[str, list[object]], new: dict[str, list[object]]) -> tuple[str, bool]:
    rows = ["| a, b | label before | confidence | label after | confidence |", "|---|---|---:|---|---:|"]
    same = set(old) == set(new)
    for k in sorted(old):
        o, n = old[k], new.get(k, ["(missing)", float("nan")])
        same &= o[0] == n[0]
        rows.append(f"| {k} | {o[0]} | {float(o[1]):.4f} | {n[0]} | {float(n[1]):.4f} |")
    return "\n".join(rows), same


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=str(_ROOT / "configs" / "sweep_phase_diagram.yaml"))
    ap.add_argument("--out", help="write the labels here (JSON)")
    ap.add_argument("--compare", nargs=2, metavar=("BEFORE", "AFTER"), help="compare two label files")
    args = ap.parse_args()
    if args.compare:
        table, same = compare(*(json.loads(Path(p).read_text()) for p in args.compare))
        print(table)
        print(f"\nlabels identical: {same}")
        return 0 if same else 1
    if not args.out:
        ap.error("give --out FILE (or --compare BEFORE AFTER)")
    t0, c0 = time.perf_counter(), time.process_time()
    with tempfile.TemporaryDirectory(prefix="optctl-near-") as folder:
        found = labels(args.config, folder)
    Path(args.out).write_text(json.dumps(found, indent=1) + "\n")
    print(f"{len(found)} points, {time.perf_counter() - t0:.0f} s wall, {time.process_time() - c0:.0f} CPU s, "
          f"load average {[round(x, 2) for x in os.getloadavg()]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
