"""Where should the fit of the real-training pilots start? A measured comparison.

For each task of ``bench_real_training.py`` the pilots (probe, rate ladder, trunk, branch;
the same runs, from the same cache) are fitted three ways, and each fit predicts the final
held-out loss of the full-grid-tuned baselines, schedules no fit has seen, against their
measured mean over the evaluation seeds (read from that benchmark's ``results.json``):

- *main phase*: the trunk and the branch cut at ``main_phase_start`` and fitted as runs
  starting there, the rungs left out;
- *step 0, pilots*: the trunk and the branch from step 0;
- *step 0, every curve*: the rungs, the trunk and the branch from step 0.

The benchmark's rule (``has_plateau``) takes *step 0, every curve* unless the trunk starts
on a plateau, and *main phase* when it does. Writes ``fit_start.md`` and ``fit_start.json``
next to the results it reads::

    python benchmarks/bench_fit_start.py [--results results/real_training/results.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    path = Path(__file__).resolve().parent
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from real_training.jobs import Runner  # noqa: E402
from real_training.methods import FIT_OPTIONS  # noqa: E402
from real_training.pipeline import _from_main_phase, pilot_phase  # noqa: E402
from real_training.tasks import TASKS  # noqa: E402

from optctl.calibrate.curves import has_plateau, main_phase_start  # noqa: E402
from optctl.calibrate.fitting import fit  # noqa: E402
from optctl.calibrate.params import predict  # noqa: E402
from optctl.io.files import write_json, write_text_atomic  # noqa: E402

BASELINES = ("cosine (full grid)", "linear (full grid)", "wsd (full grid)")


def variants(ph: dict) -> dict[str, tuple[list, int]]:
    raw, design, m = ph["raw"], ph["design"], ph["raw"][-1].batch_size[0]
    s0 = main_phase_start(raw[-2])
    cut = _from_main_phase(raw[-2], raw[-1], design[1].prefix, s0, m) if s0 else raw
    return {"main phase": (cut, s0), "step 0, pilots": (raw[-2:], 0), "step 0, every curve": (raw, 0)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path("results") / "real_training" / "results.json")
    p.add_argument("--cache", type=Path, default=None, help="finished runs (default: the results' cache)")
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=None)
    args = p.parse_args(argv)
    if not args.results.is_file():
        p.error(f"--results {args.results}: no such file; run benchmarks/bench_real_training.py first")
    measured = {t["task"]: t for t in json.loads(args.results.read_text())["tasks"]}
    names = args.tasks or [n for n in TASKS if n in measured]
    out_dir = args.results.parent
    rows, records = [], {}
    t_start = time.perf_counter()
    options = dataclasses.replace(FIT_OPTIONS, bootstrap=0, holdout=False)
    with Runner(args.cache or out_dir / "cache", workers=1, progress=False) as runner:
        for name in names:
            task, rec = TASKS[name], measured[name]
            ph = pilot_phase(task, runner)
            chosen = "main phase" if has_plateau(ph["raw"][-2]) else "step 0, every curve"
            records[name] = {"plateau": chosen == "main phase", "variants": {}}
            for label, (curves, s0) in variants(ph).items():
                t0 = time.perf_counter()
                res = fit(curves, options)
                errors = {}
                for b in BASELINES:
                    lr = np.asarray(rec["methods"][b]["lr"], dtype=float)
                    truth = float(np.mean(rec["methods"][b]["finals"]))
                    pred = float(predict(res.params, lr[s0:], task.batch_size, options.N)[-1])
                    errors[b] = pred / truth - 1 if np.isfinite(pred) else float("inf")
                records[name]["variants"][label] = {
                    "start": s0, "curves": [c.name for c in curves], "a": res.params["a"], "b": res.params["b"],
                    "rms_log_error": max(res.rms_log_error.values()), "errors": errors,
                    "seconds": time.perf_counter() - t0}
                worst = max(abs(e) for e in errors.values())
                rows.append(f"| {name} | {label}{' (chosen)' if label == chosen else ''} | {s0} | "
                            f"{res.params['a']:.2f} | {res.params['b']:.2f} | "
                            + " | ".join(f"{100 * e:+.0f}%" for e in errors.values()) + f" | {100 * worst:.0f}% |")
                print(rows[-1], file=sys.stderr, flush=True)
    md = ["# Where the fit of the pilots starts", "",
          f"`python benchmarks/bench_fit_start.py` ({time.perf_counter() - t_start:.0f} s): the same pilots fitted "
          "three ways; each fit predicts the final held-out loss of the full-grid-tuned baselines (schedules no "
          "fit saw), against their mean over the 8 evaluation seeds in `results.json`. 'chosen' is the "
          "benchmark's rule: from step 0 with every curve, unless the trunk starts on a plateau.", "",
          "| task | fit | start | a | b | cosine | linear | WSD | worst |",
          "|---|---|---:|---:|---:|---:|---:|---:|---:|", *rows, ""]
    write_text_atomic(out_dir / "fit_start.md", "\n".join(md))
    write_json(out_dir / "fit_start.json", records)
    print(f"written {out_dir / 'fit_start.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
