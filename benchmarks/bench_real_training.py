"""Does an optctl schedule help a real training job? The real-training benchmark.

    python benchmarks/bench_real_training.py             # every task (about an hour on 2 cores)
    python benchmarks/bench_real_training.py --quick     # tiny horizons and 2 seeds: a smoke test
    python benchmarks/bench_real_training.py --tasks digits charlm
    python benchmarks/bench_real_training.py --part closed_loop   # pilots, fit, gate, closed loop only

Needs the benchmark extra (``pip install -e ".[bench]"``: torch, scikit-learn,
schedulefree). For every task of ``real_training.tasks`` it runs the protocol of
``real_training.methods`` — optctl open and closed loop from a quarter run's pilots,
cosine / linear / WSD tuned on full-length grids and at equal budget, Schedule-Free,
refinement, the Multi-Power Law — on the same evaluation seeds, and writes
``results/real_training/``: ``report.md`` (per task: final held-out loss mean ± SE, paired
differences to optctl, updates spent, fit predictions of unseen schedules), ``results.json``
and a figure per task. Every training run is kept under ``--cache`` (default
``results/real_training/cache``, not in git), so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

_HERE = Path(__file__).resolve().parent
for path in (_HERE, _HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from real_training import report  # noqa: E402
from real_training.jobs import Runner  # noqa: E402
from real_training.pipeline import run_task  # noqa: E402
from real_training.tasks import TASKS  # noqa: E402

from optctl.io.files import write_json, write_text_atomic  # noqa: E402
from optctl.versions import versions  # noqa: E402

QUICK_T = {"mlp_teacher": 200, "digits": 200, "charlm": 60, "rf_hard": 300}
# Horizon transfer (multiples of T) on these tasks.
TRANSFER = {"mlp_teacher": (4, 16), "rf_hard": (4, 16)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    p.add_argument("--quick", action="store_true", help="tiny horizons, 2 seeds: checks the pipeline only")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path("results") / "real_training")
    p.add_argument("--cache", type=Path, default=None, help="finished runs (default OUT/cache)")
    p.add_argument("--part", choices=("all", "closed_loop"), default="all",
                   help="closed_loop: only the pilots, the fit and its gate, and the closed loop "
                        "(a partial re-run, written to OUT/partial/)")
    p.add_argument("--seeds", nargs="+", default=None, metavar="N or TASK=N",
                   help="evaluation seeds 0..N-1 (default 8; --quick 2), for every task or for one (TASK=N)")
    p.add_argument("--trunk-decay", type=float, default=0.0,
                   help="share of the trunk pilot that decays to 0 at its end (--part closed_loop only)")
    p.add_argument("--report-only", action="store_true",
                   help="write report.md and the figures again from OUT/results.json, training nothing")
    args = p.parse_args(argv)
    if args.part == "closed_loop":
        return _closed_loop_part(args)
    if args.report_only:
        out = args.out / "quick" if args.quick else args.out
        data = json.loads((out / "results.json").read_text())
        for rec in data["tasks"]:
            report.figure(rec, out / f"{rec['task']}.png")
        _write_report(out, data)
        print(f"report written to {out / 'report.md'}")
        return 0
    t0 = time.perf_counter()
    out = args.out / "quick" if args.quick else args.out
    seeds = tuple(range(_seed_counts(args.seeds, 2 if args.quick else 8)[""]))
    records = []
    with Runner(args.cache or out / "cache", workers=args.workers) as runner:
        for name in args.tasks:
            task = TASKS[name]
            if args.quick:
                task = dataclasses.replace(task, T=QUICK_T[name])
            transfer = TRANSFER.get(name, ()) if not args.quick else TRANSFER.get(name, ())[:1]
            rec = run_task(task, runner, seeds=seeds, transfer=transfer)
            records.append(rec)
            report.figure(rec, out / f"{name}.png")
            data = {"tasks": records, "versions": versions(), "quick": args.quick, "workers": args.workers,
                    "goals": {r["task"]: report.goals(r) for r in records}}
            write_json(out / "results.json", data)
        data["cost"] = {"runs": runner.runs, "fresh": runner.fresh, "training_seconds": runner.seconds,
                        "wall_seconds": time.perf_counter() - t0}
    write_json(out / "results.json", data)
    _write_report(out, data)
    print(f"report written to {out / 'report.md'} [{data['cost']['wall_seconds']:.0f} s]")
    return 0


def _write_report(out: Path, data: dict[str, Any]) -> None:
    c, workers = data["cost"], data["workers"]
    md = ["# Real training: optctl schedules against tuned baselines and the literature", "",
          f"`python benchmarks/bench_real_training.py{' --quick' if data['quick'] else ''}`: {c['runs']} training "
          f"runs taking {c['training_seconds'] / 60:.0f} min of one core in all (about "
          f"{c['training_seconds'] / 60 / workers:.0f} min on {workers} processes, plus the fits and solves); "
          + (f"this invocation ran all of them in {c['wall_seconds'] / 60:.0f} min. " if c["fresh"] == c["runs"] else
             f"this invocation ran {c['fresh']} of them and took {c['wall_seconds'] / 60:.0f} min (the rest came "
             "from the cache). ")
          + "Every method ends in one schedule run on the same seeds; 'updates spent' counts every "
          "update before that run (probe, ladder, pilots, tuning) and the run itself. What the numbers say: "
          "docs/real_training.md.", ""]
    md += report.summary_markdown(data["tasks"])
    for rec in data["tasks"]:
        md += report.task_markdown(rec)
    md += [report.WHAT_WAS_TRIED]
    write_text_atomic(out / "report.md", "\n".join(md))


def _seed_counts(given: list[str] | None, default: int) -> dict[str, int]:
    """``--seeds``: ``N`` for every task, ``TASK=N`` for one; ``""`` holds the default."""
    counts = {"": default}
    for item in given or []:
        task, _, n = item.rpartition("=")
        if task and task not in TASKS or not n.isdigit() or int(n) < 1:
            raise SystemExit(f"--seeds: {item!r} is not N or TASK=N (N >= 1, TASK one of {sorted(TASKS)})")
        counts[task] = int(n)
    return counts


def _closed_loop_part(args: argparse.Namespace) -> int:
    from real_training.partial import closed_loop_part, write_part

    t0 = time.perf_counter()
    out = (args.out / "quick" if args.quick else args.out) / "partial"
    counts = _seed_counts(args.seeds, 2 if args.quick else 8)
    records = []
    # the stored runs of an earlier version of the loop, to pair the new runs' final losses with
    stored = out / "closed_loop.json"
    previous = ({r["task"]: r for r in json.loads(stored.read_text())["tasks"]} if stored.exists() else {})
    with Runner(args.cache or out.parent / "cache", workers=args.workers) as runner:
        for name in args.tasks:
            task = TASKS[name]
            if args.quick:
                task = dataclasses.replace(task, T=QUICK_T[name])
            seeds = tuple(range(counts.get(name, counts[""])))
            records.append(closed_loop_part(task, runner, seeds=seeds, trunk_decay=args.trunk_decay))
            given = (f" --tasks {' '.join(args.tasks)}" if args.tasks != list(TASKS) else "") + (
                f" --seeds {' '.join(args.seeds)}" if args.seeds else "") + (
                f" --trunk-decay {args.trunk_decay:g}" if args.trunk_decay else "")
            write_part(records, out, time.perf_counter() - t0, args.quick, given, previous)
    print(f"report written to {out / 'closed_loop.md'} [{time.perf_counter() - t0:.0f} s]")
    return 0


if __name__ == "__main__":
    sys.exit(main())
