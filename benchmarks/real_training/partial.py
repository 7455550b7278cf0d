"""A partial re-run of the benchmark: the closed loop and the fit-quality gate only.

The full benchmark (``bench_real_training.py``) tunes every baseline on full-length grids;
a change to the closed loop or to the gate does not touch those runs. This part recomputes
what such a change affects, on every task: the probe, the ladder and the pilots (from the
run cache when present), the pilots' fit and its gate, the open-loop table, and the closed
loop on the evaluation seeds. Per seed it records the final loss the loop predicted at
each re-solve against the one measured; per task, the gate's verdict.

    python benchmarks/bench_real_training.py --part closed_loop
"""

from __future__ import annotations

import hashlib
import pickle
import time
from pathlib import Path
from typing import Any

import numpy as np

from optctl.calibrate.closedloop import PREDICTION_VERSION
from optctl.calibrate.fitting import fit
from optctl.calibrate.params import FitResult

from .jobs import Runner
from .methods import CHECKPOINTS, EVAL_SEEDS, FIT_OPTIONS, record_steps
from .pipeline import _log, _solve_for, pilot_phase
from .tasks import Task


def _cached_fit(cache: Path, task: Task, pilots: list[Any]) -> tuple[FitResult, float]:
    """The pilots' fit, kept in the run cache under a hash of its curves and options (the
    fit with its bootstrap and held-out refits takes minutes)."""
    h = hashlib.sha256(pickle.dumps([(c.name, c.steps.tobytes(), c.lr.tobytes(), c.loss.tobytes())
                                     for c in pilots]))
    h.update(repr(FIT_OPTIONS).encode())
    path = cache / f"{task.name}-fit-{h.hexdigest()[:24]}.pkl"
    if path.exists():
        res, seconds = pickle.loads(path.read_bytes())
        return res, seconds
    t0 = time.perf_counter()
    res = fit(pilots, FIT_OPTIONS)
    seconds = time.perf_counter() - t0
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(pickle.dumps((res, seconds)))
    tmp.replace(path)
    return res, seconds


def closed_loop_part(task: Task, runner: Runner, *, seeds: tuple[int, ...] = EVAL_SEEDS) -> dict[str, Any]:
    """The closed loop of ``task`` on ``seeds``: per seed the measured final loss and the
    final loss predicted at every re-solve; the pilots' fit and its gate."""
    t_start = time.perf_counter()
    T, m = task.T, task.batch_size
    rec = record_steps(T)
    _log(f"{task.name}: T = {T}, batch {m}, {task.optimizer} (closed loop and gate only)")
    ph = pilot_phase(task, runner)
    top, s0, pilots = ph["top"], ph["s0"], ph["pilots"]
    res, fit_seconds = _cached_fit(runner.cache, task, pilots)
    _, _, table = _solve_for(task.name, T, m, top, s0, res, pilots)
    q = res.quality
    _log(f"  fit a = {res.params['a']:.3f}, b = {res.params['b']:.3f}; gate "
         f"{'silent' if q is not None and q.ok else 'FIRES'} [{fit_seconds:.0f} s]")
    jobs = [{"kind": "closed_loop", "task": task.name, "T": T, "seed": s,
             "record": [int(x) for x in np.union1d(rec, [s0])],
             "loop": {"pilots": pilots, "result": res, "table": table, "eta_max": top,
                      "checkpoints": CHECKPOINTS, "start": s0, "version": PREDICTION_VERSION}}
            for s in seeds]
    runs = runner.run(jobs, "closed-loop runs")
    per_seed = []
    for s, r in zip(seeds, runs, strict=True):
        hist = r.get("history", [])
        per_seed.append({
            "seed": s, "final": r["final"], "steps": r["steps"], "loss": r["loss"], "lr": r["lr"],
            "history": hist,
            "predicted": [h["predicted_final_loss"] for h in hist],
            "error_at_last": (hist[-1]["predicted_final_loss"] / r["final"] - 1) if hist else None})
    errs = [abs(p["error_at_last"]) for p in per_seed if p["error_at_last"] is not None]
    _log(f"  closed loop: final {np.mean([p['final'] for p in per_seed]):.4g}; prediction at the last "
         f"re-solve off by at most {100 * max(errs):.1f}% [{time.perf_counter() - t_start:.0f} s]")
    return {"task": task.name, "T": T, "batch_size": m, "optimizer": task.optimizer, "main_phase_start": s0,
            "lr_max": float(top), "seeds": list(seeds), "prediction_version": PREDICTION_VERSION,
            "fit": {"params": res.params, "rms_log_error": res.rms_log_error, "phase": res.phase,
                    "confidence": res.confidence, "seconds": fit_seconds,
                    "quality": None if q is None else q.to_dict()},
            "pilots": [{"name": c.name, "steps": c.steps.tolist(), "loss": c.loss.tolist(), "lr": c.lr.tolist()}
                       for c in pilots],
            "table": table.lr.tolist(), "runs": per_seed, "wall_time_s": time.perf_counter() - t_start}


def write_part(records: list[dict[str, Any]], out: Path, seconds: float, quick: bool) -> None:
    """``closed_loop.json`` and ``closed_loop.md`` under ``out``."""
    import datetime
    import os

    from optctl.io.files import write_json, write_text_atomic

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    write_json(out / "closed_loop.json", {"tasks": records, "quick": quick, "seconds": seconds})
    day = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    md = ["# Closed loop and fit-quality gate (a partial re-run)", "",
          f"`python benchmarks/bench_real_training.py --part closed_loop{' --quick' if quick else ''}`, {day}: "
          f"the pilots, their fit and its gate, and the closed loop on every task; the baselines are not "
          f"re-run (results/real_training/report.md). {seconds / 60:.0f} min with a load average of "
          f"{load:.1f} on 2 cores at the end (a shared machine). Prediction method version "
          f"{records[0]['prediction_version'] if records else '?'}.", "",
          "| task | closed loop final (mean) | error of the final loss predicted at the last re-solve, "
          "per seed | worst | within 10% | gate |", "|---|---:|---|---:|---:|---|"]
    for r in records:
        errs = [p["error_at_last"] for p in r["runs"] if p["error_at_last"] is not None]
        finals = [p["final"] for p in r["runs"]]
        q = r["fit"]["quality"]
        worst = max(abs(e) for e in errs) if errs else float("nan")
        md.append(f"| {r['task']} | {np.mean(finals):.4g} | {', '.join(f'{100 * e:+.1f}%' for e in errs)} | "
                  f"{100 * worst:.1f}% | {sum(abs(e) <= 0.1 for e in errs)}/{len(errs)} | "
                  f"{'silent' if q and q['ok'] else 'fires'} |")
    md += ["", "Gate reasons, per task:", ""]
    for r in records:
        q = r["fit"]["quality"]
        md.append(f"- {r['task']}: " + ("silent" if q and q["ok"] else "; ".join(q["reasons"] if q else [])))
    write_text_atomic(out / "closed_loop.md", "\n".join(md) + "\n")
