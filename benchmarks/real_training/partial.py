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

from optctl.calibrate.closedloop import PREDICTION_VERSION, refit_wins
from optctl.calibrate.curves import curve_from_arrays
from optctl.calibrate.fitting import fit
from optctl.calibrate.params import FitResult, predict

from .jobs import Runner
from .methods import CHECKPOINTS, EVAL_SEEDS, FIT_OPTIONS, closed_loop_record
from .pipeline import _log, _solve_for, pilot_phase
from .tasks import Task


def _cached_fit(cache: Path, task: Task, pilots: list[Any]) -> tuple[FitResult, float]:
    """The pilots' fit, kept in the run cache under a hash of its curves and options (the
    fit with its bootstrap and held-out refits takes minutes)."""
    h = hashlib.sha256(pickle.dumps([(c.name, c.steps.tobytes(), c.lr.tobytes(), c.loss.tobytes())
                                     for c in pilots]))
    h.update(repr(FIT_OPTIONS).encode())
    h.update(b"gate net of noise")  # the gate's verdict is part of the cached result
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


def closed_loop_part(task: Task, runner: Runner, *, seeds: tuple[int, ...] = EVAL_SEEDS,
                     trunk_decay: float = 0.0) -> dict[str, Any]:
    """The closed loop of ``task`` on ``seeds``: per seed the measured final loss and the
    final loss predicted at every re-solve; the pilots' fit and its gate."""
    t_start = time.perf_counter()
    T, m = task.T, task.batch_size
    _log(f"{task.name}: T = {T}, batch {m}, {task.optimizer} (closed loop and gate only)")
    ph = pilot_phase(task, runner, trunk_decay)
    top, s0, pilots = ph["top"], ph["s0"], ph["pilots"]
    res, fit_seconds = _cached_fit(runner.cache, task, pilots)
    _, _, table = _solve_for(task.name, T, m, top, s0, res, pilots)
    q = res.quality
    _log(f"  fit a = {res.params['a']:.3f}, b = {res.params['b']:.3f}; gate "
         f"{'silent' if q is not None and q.ok else 'FIRES'} [{fit_seconds:.0f} s]")
    jobs = [{"kind": "closed_loop", "task": task.name, "T": T, "seed": s,
             "record": closed_loop_record(T, s0),
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
            "trunk_decay": trunk_decay, "pre_cost": int(ph["pre_cost"]),
            "fit": {"params": res.params, "rms_log_error": res.rms_log_error, "phase": res.phase,
                    "confidence": res.confidence, "seconds": fit_seconds,
                    "quality": None if q is None else q.to_dict()},
            "pilots": [{"name": c.name, "steps": c.steps.tolist(), "loss": c.loss.tolist(), "lr": c.lr.tolist()}
                       for c in pilots],
            "table": table.lr.tolist(), "runs": per_seed, "wall_time_s": time.perf_counter() - t_start}


def replay_predictions(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed, the final loss predicted at the last re-solve by the latest refit
    (``refit``, the loop's prediction up to version 1) and by the accepted model
    (``accepted``, :class:`~optctl.calibrate.closedloop.ClosedLoop` from version 2),
    replayed from the stored run with the loop's own rule
    (:func:`~optctl.calibrate.closedloop.refit_wins`). The schedule the run followed does not
    depend on which model predicts (the re-solves use the latest refit), so the replay of
    a version-1 run is what version 2 computes on the same run."""
    import dataclasses

    s0, m = rec["main_phase_start"], rec["batch_size"]
    options = dataclasses.replace(FIT_OPTIONS, bootstrap=0, holdout=False, progress=False)
    out = []
    for r in rec["runs"]:
        hist = r["history"]
        if not hist:
            continue
        lr, st, y = np.asarray(r["lr"]), np.asarray(r["steps"]), np.asarray(r["loss"])
        accepted, since = dict(rec["fit"]["params"]), s0
        for i, h in enumerate(hist):
            k = h["step"]
            if i:
                keep = (st >= s0) & (st <= k)
                run = curve_from_arrays("run", st[keep] - s0, lr[np.minimum(st[keep], lr.size - 1)], y[keep], m)
                run = dataclasses.replace(run, lr=lr[s0:k])
                if refit_wins(accepted, hist[i - 1]["params"], run, since - s0, m, options)["accepted"]:
                    accepted = dict(hist[i - 1]["params"])
            since = k
        refit = hist[-1].get("refit_predicted_final_loss", hist[-1]["predicted_final_loss"])
        acc = float(predict(accepted, lr[s0:], m, options.N, tail=options.tail)[-1])
        out.append({"seed": r["seed"], "final": r["final"], "refit": refit, "accepted": acc,
                    "refit_error": refit / r["final"] - 1, "accepted_error": acc / r["final"] - 1,
                    "accepted_params": accepted, "refit_params": hist[-1]["params"], "step": hist[-1]["step"]})
    return out


def rejudge(rec: dict[str, Any]) -> None:
    """The gate of a record whose fit was judged before the gate was net of noise: its
    in-sample and held-out errors are kept, each pilot's noise is measured from the fit's
    residuals (:func:`~optctl.calibrate.fitting.noise_level`), the edge and phase reasons
    carried over."""
    from optctl.calibrate.fitting import gate, noise_level

    q = rec["fit"]["quality"]
    if q is None or "noise" in q:
        return
    p, m = rec["fit"]["params"], rec["batch_size"]
    noise = {}
    for c in rec["pilots"]:
        st = np.asarray(c["steps"])
        pred = predict(p, np.asarray(c["lr"]), m, FIT_OPTIONS.N, tail=FIT_OPTIONS.tail)[st]
        noise[c["name"]] = noise_level(np.log(pred / np.asarray(c["loss"])))
    edges = [r for r in q["reasons"] if "edge of its search box" in r]
    label = "unsure" if any("do not fix the phase" in r for r in q["reasons"]) else rec["fit"]["phase"]
    rec["fit"]["quality"] = gate(rec["fit"]["rms_log_error"], q["held_out_rms_log_error"], noise, edges,
                                 label).to_dict()
    rec["fit"]["quality"]["rejudged"] = True


def figure(records: list[dict[str, Any]], path: Path) -> None:
    """Per task, the seed the refit predicted worst: its measured held-out loss, the latest
    refit's curve and the accepted model's curve for the schedule the run followed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(records), figsize=(4.2 * len(records), 3.6), squeeze=False)
    for ax, rec in zip(axes[0], records, strict=True):
        preds = rec["predictions"]
        worst = max(preds, key=lambda p: abs(p["refit_error"]))
        run = next(r for r in rec["runs"] if r["seed"] == worst["seed"])
        s0, m = rec["main_phase_start"], rec["batch_size"]
        lr = np.asarray(run["lr"])
        t = np.arange(s0, lr.size + 1)
        ax.plot(run["steps"], run["loss"], "k.", ms=3, label="measured (held-out)")
        ax.plot(t, predict(worst["refit_params"], lr[s0:], m, FIT_OPTIONS.N), "C3-",
                label=f"latest refit ({100 * worst['refit_error']:+.0f}%)")
        ax.plot(t, predict(worst["accepted_params"], lr[s0:], m, FIT_OPTIONS.N), "C0--",
                label=f"accepted model ({100 * worst['accepted_error']:+.0f}%)")
        ax.axvline(worst["step"], color="0.6", lw=0.8)
        ax.set_yscale("log")
        ax.set_title(f"{rec['task']}, seed {worst['seed']}")
        ax.set_xlabel("update")
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("held-out loss")
    fig.suptitle("Final loss predicted at the last re-solve (grey line)", fontsize=10)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def interval_markdown(records: list[dict[str, Any]]) -> list[str]:
    """Per task and seed: where the last re-solve fell (and why), the final loss predicted
    there with its interval, and whether the measured final loss lies inside; the
    coverage per task and over every seed."""
    rows = [r for r in records if all(p["history"] and "interval" in p["history"][-1] for p in r["runs"])]
    if not rows:
        return []
    level = rows[0]["runs"][0]["history"][-1]["interval"]["level"]
    md = ["", f"The last re-solve per seed — its step (`a`: the extra re-solve after the last checkpoint, where "
          "the rate has fallen for good to half the table's largest from that checkpoint on; `c`: the "
          "last fixed checkpoint; in brackets where the anneal of the table it left begins) — and the "
          f"{100 * level:.0f}% interval of the final loss predicted there "
          "(`optctl.calibrate.fitting.final_loss_interval`: the refit's autocorrelation-robust parameter "
          "covariance, linearised, the noise of a loss measured after an anneal and, from version 5, the "
          "model error: the previous model's miss on the run's points it had not seen, net of their noise, "
          "`optctl.calibrate.closedloop.held_out_error`), as half-widths in log "
          "(±, ≈ relative), and whether the measured final loss lies inside (✓) or not (✗); `inside` "
          "also without the model-error term:", "",
          "| task | per seed: step, error, ± half-width | inside | without model error | median ± |",
          "|---|---|---:|---:|---:|"]
    inside_all, bare_all, n_all = 0, 0, 0
    for r in rows:
        cells, inside, bare, widths = [], 0, 0, []
        for p in r["runs"]:
            h = p["history"][-1]
            iv = h["interval"]
            ok = iv["low"] <= p["final"] <= iv["high"]
            inside += ok
            half = float(np.log(iv["high"] / iv["prediction"]))
            sd0 = float(np.sqrt(max(iv["sd_log"] ** 2 - iv.get("sd_model", 0.0) ** 2, 0.0)))
            bare += abs(np.log(p["final"] / iv["prediction"])) <= half * sd0 / iv["sd_log"]
            widths.append(half)
            tag = "a" if h.get("trigger") == "anneal" else "c"
            cells.append(f"{h['step'] / r['T']:.3f} T {tag} (anneal {h['anneal_step'] / r['T']:.3f}), "
                         f"{100 * (h['predicted_final_loss'] / p['final'] - 1):+.1f}% ± {100 * half:.1f}% "
                         f"{'✓' if ok else '✗'}")
        inside_all, bare_all, n_all = inside_all + inside, bare_all + bare, n_all + len(r["runs"])
        md.append(f"| {r['task']} | {'; '.join(cells)} | {inside}/{len(r['runs'])} | {bare}/{len(r['runs'])} | "
                  f"{100 * float(np.median(widths)):.1f}% |")
    md += ["", f"Coverage over all {n_all} seeds: {inside_all}/{n_all} ({100 * inside_all / n_all:.0f}%; "
           f"nominal {100 * level:.0f}%); without the model-error term {bare_all}/{n_all}."]
    return md


def paired_markdown(records: list[dict[str, Any]], previous: dict[str, dict[str, Any]]) -> list[str]:
    """The loop's own final loss per task against the stored runs of an earlier version of
    the loop (paired by seed): mean relative difference and its standard error."""
    md: list[str] = []
    for r in records:
        old = previous.get(r["task"])
        if old is None or old.get("prediction_version") == r["prediction_version"]:
            continue
        by_seed = {p["seed"]: p["final"] for p in old["runs"]}
        pairs = [(p["final"], by_seed[p["seed"]]) for p in r["runs"] if p["seed"] in by_seed]
        if len(pairs) < 2:
            continue
        d = np.array([a / b - 1 for a, b in pairs])
        if not md:
            md = ["", "The loop's own final loss against the stored runs of the previous version of the loop, "
                  "paired by seed (new / old − 1; negative: the new runs ended lower):", "",
                  "| task | versions | seeds | mean difference ± SE | per seed |", "|---|---|---:|---:|---|"]
        md.append(f"| {r['task']} | {old.get('prediction_version')} → {r['prediction_version']} | {len(pairs)} | "
                  f"{100 * d.mean():+.2f}% ± {100 * d.std(ddof=1) / np.sqrt(d.size):.2f}% | "
                  + ", ".join(f"{100 * x:+.2f}%" for x in d) + " |")
    return md


def write_part(records: list[dict[str, Any]], out: Path, seconds: float, quick: bool,
               options: str = "", previous: dict[str, dict[str, Any]] | None = None) -> None:
    """``closed_loop.json``, ``closed_loop.md`` and ``closed_loop.png`` under ``out``;
    ``previous``: per task, the record of an earlier version's runs to pair the loop's own
    final losses with."""
    import datetime
    import os

    from optctl.io.files import write_json, write_text_atomic

    for rec in records:
        rejudge(rec)
        rec["predictions"] = replay_predictions(rec)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    write_json(out / "closed_loop.json", {"tasks": records, "quick": quick, "seconds": seconds})
    figure(records, out / "closed_loop.png")
    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    md = ["# Closed loop and fit-quality gate (a partial re-run)", "",
          f"`python benchmarks/bench_real_training.py --part closed_loop{' --quick' if quick else ''}{options}`, "
          f"{day}: "
          f"the pilots, their fit and its gate, and the closed loop on every task; the baselines are not "
          f"re-run (results/real_training/report.md). {seconds / 60:.0f} min, with a load average of "
          f"{load:.1f} on 2 cores at the end (a shared machine).", "",
          *([f"The trunk pilot's last {100 * records[0]['trunk_decay']:.0f}% decays linearly to 0 "
             f"(`--trunk-decay {records[0]['trunk_decay']:g}`), a second decaying pilot at no extra updates.", ""]
            if records[0].get("trunk_decay") else []),
          *([f"The runs were made with version {min(r['prediction_version'] for r in records)} of the loop "
             f"(current: {PREDICTION_VERSION}); the accepted model's predictions are replayed on them with the "
             "loop's own rule (the schedule does not depend on it), and a gate judged before it was net of "
             "noise is judged again from the stored errors.", ""]
            if any(r["prediction_version"] < PREDICTION_VERSION for r in records) else []),
          f"Final held-out loss predicted at the last re-solve ({CHECKPOINTS[-1]:g} T, or from version 4 the "
          "first measured step after the solved table's anneal has begun when it begins later: where the rate "
          "has fallen for good to half the table's largest; from version 5 the first measured step after "
          f"{CHECKPOINTS[-1]:g} T where the rate has fallen for good to half the table's largest from "
          f"{CHECKPOINTS[-1]:g} T on, which is the same step for a table that holds its largest rate past "
          f"{CHECKPOINTS[-1]:g} T; table below), relative error per seed: "
          "by the latest refit (the loop's prediction; from version 3 its refits weigh each point by the "
          "inverse of its local noise variance) and, for comparison, by the accepted model (the pilots' fit "
          "until a refit predicts the run's unseen points better; the loop's prediction in version 2).", "",
          "| task | closed loop final (mean) | latest refit, per seed | worst | within 10% "
          "| accepted model, per seed | worst | within 10% |", "|---|---:|---|---:|---:|---|---:|---:|"]
    for r in records:
        finals = [p["final"] for p in r["runs"]]
        row = [r["task"], f"{np.mean(finals):.4g}"]
        for key in ("refit_error", "accepted_error"):
            errs = [p[key] for p in r["predictions"]]
            row += [", ".join(f"{100 * e:+.1f}%" for e in errs), f"{100 * max(abs(e) for e in errs):.1f}%",
                    f"{sum(abs(e) <= 0.1 for e in errs)}/{len(errs)}"]
        md.append("| " + " | ".join(row) + " |")
    md += interval_markdown(records)
    md += paired_markdown(records, previous or {})
    md += ["", "How far ahead the loop predicts: the final loss predicted at every re-solve (the loop's "
           "prediction, the latest refit), relative error per seed, for the schedule the run went on with "
           "from there (later re-solves changed it a little); `anneal`: the extra re-solve after the last "
           "checkpoint, on the seeds that had one (their step in the interval table).", "",
           "| task | re-solve at | per seed | worst | within 10% |", "|---|---:|---|---:|---:|"]
    for r in records:
        n = min(len(p["history"]) for p in r["runs"])
        for i in range(n):
            errs = [p["history"][i]["predicted_final_loss"] / p["final"] - 1 for p in r["runs"]]
            steps = [p["history"][i]["step"] for p in r["runs"]]
            at = (f"{steps[0]} ({steps[0] / r['T']:.2f} T)" if len(set(steps)) == 1 else
                  f"after the last checkpoint ({min(steps) / r['T']:.3f}–{max(steps) / r['T']:.3f} T)")
            md.append(f"| {r['task']} | {at} | "
                      + ", ".join(f"{100 * e:+.1f}%" for e in errs)
                      + f" | {100 * max(abs(e) for e in errs):.1f}% | {sum(abs(e) <= 0.1 for e in errs)}/{len(errs)} |")
        extra = [p for p in r["runs"] if len(p["history"]) > n]
        if extra:
            errs = [p["history"][-1]["predicted_final_loss"] / p["final"] - 1 for p in extra]
            md.append(f"| {r['task']} | anneal ({len(extra)} seeds) | "
                      + ", ".join(f"{100 * e:+.1f}% (seed {p['seed']})" for e, p in zip(errs, extra, strict=True))
                      + f" | {100 * max(abs(e) for e in errs):.1f}% | {sum(abs(e) <= 0.1 for e in errs)}/{len(errs)} |")
    md += ["", "![the worst-predicted seed per task](closed_loop.png)", "",
           "Why the prediction misses (level against drop, parameter sensitivities, refit variants): "
           "`python benchmarks/bench_closed_loop_diagnosis.py` on these runs writes `diagnosis.md`; "
           "rf_hard's error split into the run's luck and misfit with the true parameters, and the prediction "
           "conditioned on the run's observed level on every task: `python benchmarks/bench_closed_loop_truth.py` "
           "writes `truth.md`.", "",
           "The fit-quality gate on the pilots (net of each curve's own noise):", "",
           "| task | gate | curve: noise, rms log error, held-out rms log error |", "|---|---|---|"]
    for r in records:
        q = r["fit"]["quality"] or {}
        noise, held = q.get("noise", {}), q.get("held_out_rms_log_error", {})
        cells = "; ".join(f"{n}: {noise.get(n, float('nan')):.3f}, {e:.3f}, {held.get(n, float('nan')):.3f}"
                          for n, e in r["fit"]["rms_log_error"].items())
        md.append(f"| {r['task']} | {'silent' if q.get('ok') else 'fires'} | {cells} |")
    md += ["", "Gate reasons, per task:", ""]
    for r in records:
        q = r["fit"]["quality"] or {}
        md.append(f"- {r['task']}: " + ("silent" if q.get("ok") else "; ".join(q.get("reasons", []))))
    write_text_atomic(out / "closed_loop.md", "\n".join(md) + "\n")
