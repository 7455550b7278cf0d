"""Time the 12 x 12 (a, b) phase diagram of configs/sweep_phase_diagram.yaml.

N = 1000, horizons T = 10^3, 10^4, 10^5 at every point (warm-started), the best
constant and WSD tuned at T = 10^5, on local processes (default 2). Writes to
``results/benchmarks/``:

- ``phase_diagram.png``: the maps (label with confidence, ζ, ξ, gain; theory boundary
  and contours);
- ``phase_diagram_timing.png``: points finished against wall time;
- ``phase_diagram.json`` / ``phase_diagram.md``: wall time, per-point times and labels, the
  classification's agreement with the theory, machine info.

Usage (repository root, idle machine)::

    python benchmarks/bench_phase_diagram.py [--workers 2] [--keep DIR] [--config PATH]

The sweep runs into a fresh temporary folder (``--keep DIR`` keeps it there instead)
so that nothing is skipped as already done.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from optctl import plots
from optctl.io.files import write_json, write_text_atomic
from optctl.io.sweepconfig import load_sweep_config, point_key
from optctl.studies.horizons import phase_diagram
from optctl.studies.sweep import load_sweep, record_path, run_sweep


def machine() -> dict[str, object]:
    info: dict[str, object] = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
                               "python": platform.python_version()}
    try:
        info["cpus_available"] = len(os.sched_getaffinity(0))
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        info["load_average"] = list(os.getloadavg())
    except (OSError, AttributeError):
        pass
    return info


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/sweep_phase_diagram.yaml")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", help="run the sweep in this folder (kept) instead of a temporary one")
    ap.add_argument("--out", default="results/benchmarks")
    args = ap.parse_args()

    sweep = load_sweep_config(args.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_dir = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="optctl-bench-pd-"))
    if args.keep and run_dir.exists():
        shutil.rmtree(run_dir)
    load_start = machine().get("load_average")
    t0 = time.time()
    run = run_sweep(sweep, run_dir, workers=args.workers, progress=True)
    wall = time.time() - t0
    data = load_sweep(run_dir)
    finish, per_point = [], {}
    for values in sweep.points():
        key = point_key(values)
        recs = data.records.get(key, {})
        if len(recs) == len(sweep.horizons):
            last = record_path(run_dir, key, max(sweep.horizons))
            finish.append(last.stat().st_mtime - t0)
            per_point[key] = {"solve_s": sum(r["wall_time"] for r in recs.values()),
                              "baseline_s": sum(r["baseline_time"] for r in recs.values()),
                              "iterations": [r["iterations"] for r in recs.values()],
                              "status": sorted({r["status"] for r in recs.values()})}
    pd = phase_diagram(data)
    ag = pd.agreement()
    plots.save(plots.plot_phase_diagram(
        pd, title=f"{len(sweep.points())} points x T = {list(sweep.horizons)}, N = {sweep.base['N']}: "
                  f"{wall:.0f} s on {args.workers} processes"), str(out / "phase_diagram.png"))
    plots.save(plots.plot_sweep_timing(np.array(finish), wall,
                                       title=f"phase diagram sweep, {args.workers} worker processes"),
               str(out / "phase_diagram_timing.png"))
    solve_s = [p["solve_s"] for p in per_point.values()]
    base_s = [p["baseline_s"] for p in per_point.values()]
    statuses = sorted({s for p in per_point.values() for s in p["status"]})
    result = {
        "config": args.config, "workers": args.workers, "points": len(sweep.points()),
        "horizons": list(sweep.horizons), "N": sweep.base["N"], "wall_time_s": wall,
        "under_10_minutes": wall < 600, "points_complete": len(per_point), "failed": run.failed,
        "per_point_solve_s": {"mean": float(np.mean(solve_s)), "max": float(np.max(solve_s))},
        "per_point_baseline_s": {"mean": float(np.mean(base_s)), "max": float(np.max(base_s))},
        "ipopt_statuses": statuses, "agreement": ag, "machine": machine(),
        "load_average_start": load_start, "per_point": per_point,
        # every point's label, so that two runs can be compared point by point
        "labels": [{"a": float(a), "b": float(b), "label": str(pd.label[i, j]),
                    "confidence": float(pd.confidence[i, j]), "theory": str(pd.theory[i, j]),
                    "gain": float(pd.gain[i, j])}
                   for i, a in enumerate(pd.a) for j, b in enumerate(pd.b)],
    }
    write_json(out / "phase_diagram.json", result)
    md = [
        "# Phase-diagram benchmark", "",
        f"Generated {time.strftime('%Y-%m-%dT%H:%M:%S')} by `benchmarks/bench_phase_diagram.py` "
        f"(`{args.config}`).", "",
        f"Machine: {result['machine'].get('cpu_model', '?')}, {result['machine'].get('cpus_available', '?')} "
        f"CPUs available; load average at start {load_start}.", "",
        f"- {len(sweep.points())} points (a x b = {len(sweep.axes['a'])} x {len(sweep.axes['b'])}), "
        f"N = {sweep.base['N']}, horizons {list(sweep.horizons)} at every point, baselines "
        f"{list(sweep.baselines)} at T = {list(sweep.baseline_horizons)}",
        f"- **wall time {wall:.0f} s ({wall / 60:.1f} min) on {args.workers} worker processes**; "
        f"{len(per_point)} points complete, {len(run.failed)} failed",
        f"- per point: solves {np.mean(solve_s):.1f} s on average (max {np.max(solve_s):.1f}), "
        f"baselines {np.mean(base_s):.1f} s (max {np.max(base_s):.1f}); IPOPT statuses {statuses}",
        f"- classification vs theory: |a − b| ≥ {ag['band']}: {ag['far']['agree']}/{ag['far']['points']} "
        f"agree, {ag['far']['unsure']} unsure {ag['unsure_far_points']}, {ag['far']['wrong']} wrong; "
        f"|a − b| < {ag['band']}: {ag['near']['agree']}/{ag['near']['points']} agree, "
        f"{ag['near']['unsure']} unsure, {ag['near']['wrong']} wrong {ag['wrong_points']}",
        "", "Figures: `phase_diagram.png`, `phase_diagram_timing.png`.", "",
    ]
    write_text_atomic(out / "phase_diagram.md", "\n".join(md))
    print("\n".join(md))
    print(json.dumps({"wall_time_s": wall, "agreement": ag["far"]}, indent=1))
    if not args.keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return 0 if not run.failed else 1


if __name__ == "__main__":
    sys.exit(main())
