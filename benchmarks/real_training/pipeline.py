"""One task end to end: probe, pilots, fits, tuning grids, evaluation runs, predictions.

:func:`run_task` returns a JSON-able record of everything measured; the report is
written from it by :mod:`real_training.report`.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from optctl.calibrate.curves import LossCurve, has_plateau, main_phase_start
from optctl.calibrate.fitting import fit
from optctl.calibrate.params import FitResult, predict
from optctl.io.fitconfig import FitConfig
from optctl.io.fits import run_config
from optctl.solver.solve import solve
from optctl.table import ScheduleTable

from . import peers
from .jobs import Runner
from .methods import (
    CHECKPOINTS,
    EVAL_SEEDS,
    FIT_OPTIONS,
    GRID_EXTEND,
    LADDER_MAX,
    PILOT_FRACTION,
    PILOT_SEED,
    TUNE_SEED,
    WSD_DEFAULT_FRACTION,
    WSD_FRACTIONS,
    Method,
    as_curve,
    best,
    closed_loop_record,
    divergent_rate,
    family,
    is_stable,
    ladder_length,
    peak_grid,
    pilot_design,
    probe_rates,
    record_steps,
    rung_worse,
    rungs_to_fit,
)
from .tasks import Task

FAMILIES = ("cosine", "linear", "wsd")


def _train(task: Task, seed: int, lr: np.ndarray, record: np.ndarray, **kw: Any) -> dict[str, Any]:
    return {"kind": "train", "task": task.name, "T": lr.size, "seed": seed, "lr": np.asarray(lr, dtype=float),
            "record": [int(s) for s in record], **kw}


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def pilot_phase(task: Task, runner: Runner, trunk_decay: float = 0.0) -> dict[str, Any]:
    """The probe, the stability ladder and the pilots (shared by optctl, its closed loop and
    the Multi-Power Law): every curve measured, the curves the fit takes, the model's time 0
    ``s0``, the largest rate ``top`` and the updates spent."""
    T, m = task.T, task.batch_size
    rates = probe_rates(task)
    probe = runner.run([_train(task, PILOT_SEED, rates, np.arange(1, rates.size + 1))], "probe")[0]
    eta_div = divergent_rate(rates, np.asarray(probe["steps"]), np.asarray(probe["loss"]))
    S = ladder_length(task)
    budget = round(PILOT_FRACTION * T) - rates.size
    ladder: list[dict[str, Any]] = []
    rungs: list[Any] = []
    for k in range(1, LADDER_MAX + 1):
        rate = eta_div * 2.0 ** -k
        r = runner.run([_train(task, PILOT_SEED + 10 + k, np.full(S, rate), record_steps(S))])[0]
        ok = is_stable(np.asarray(r["loss"]), r["diverged"])
        ladder.append({"rate": rate, "stable": ok, "first": r["loss"][0], "last": r["loss"][-1],
                       "max": max(r["loss"]), "seed": PILOT_SEED + 10 + k})
        rungs.append(r)
        finals = [rung["last"] for rung in ladder if rung["stable"]]
        # past the short-run optimum, or out of budget once a stable rung exists
        if finals and ((ok and len(finals) > 1 and rung_worse(finals)) or (k + 2) * S > budget):
            break
    stable = [i for i, rung in enumerate(ladder) if rung["stable"]]
    if not stable:
        raise RuntimeError(f"{task.name}: no ladder rate below {eta_div:.3g} was stable; lower the task's "
                           "learning-rate range")
    best_rung = min(stable, key=lambda i: ladder[i]["last"])
    top = ladder[best_rung]["rate"]
    spent = len(ladder) * S
    steps_txt = [f"{r['rate']:.3g} -> {r['last']:.3g}" if r["stable"] else f"{r['rate']:.3g} unstable"
                 for r in ladder]
    _log(f"  probe: divergent at {eta_div:.4g}; ladder {', '.join(steps_txt)}; largest rate {top:.4g}")
    design = pilot_design(task, top, spent, ladder[best_rung]["seed"], S, trunk_decay)
    pilot_logs = runner.run([_train(task, pl.seed, pl.lr, pl.steps) for pl in design], "pilots")
    _check_prefixes(design, pilot_logs, rungs[best_rung], S)
    # the rungs past the short-run optimum (rates above the chosen one) are left out of the
    # fit (``rungs_to_fit``); the Multi-Power Law still sees every stable rung
    fitted_rungs = rungs_to_fit(ladder, best_rung)
    curves = [(f"rung_{rung['rate']:.3g}", np.full(S, rung["rate"]), rungs[i])
              for i, rung in enumerate(ladder) if rung["stable"] and i != best_rung]
    curves += [(pl.name, pl.lr, r) for pl, r in zip(design, pilot_logs, strict=True)]
    raw = [as_curve(name, lr, np.asarray(r["steps"]), np.asarray(r["loss"]), m)
           for name, lr, r in curves if not r["diverged"]]
    pre_cost = rates.size + spent + sum(pl.cost for pl in design)
    # a trunk that falls from its first updates is described by the model from step 0: every
    # curve (rungs included) is fitted from there. One that starts on a plateau (a
    # classifier at chance) is fitted from its main learning phase on: from where the
    # trunk's loss has fallen half way (in log) to its lowest, the trunk and the branch as
    # runs starting there; the rungs, at other rates, reach that phase at other steps and
    # are left out
    s0 = main_phase_start(raw[-2]) if has_plateau(raw[-2]) else 0
    fitted = {f"rung_{ladder[i]['rate']:.3g}" for i in fitted_rungs}
    above = {n for n, _, _ in curves if n.startswith("rung_") and n not in fitted}
    pilots = ([c for c in raw if c.name not in above] if s0 == 0
              else _from_main_phase(raw[-2], raw[-1], design[1].prefix, s0, m))

    return {"rates": rates, "eta_div": eta_div, "ladder": ladder, "spent": spent, "top": top, "design": design,
            "raw": raw, "s0": s0, "pilots": pilots, "pre_cost": pre_cost}


def run_task(task: Task, runner: Runner, *, seeds: tuple[int, ...] = EVAL_SEEDS,
             transfer: tuple[int, ...] = ()) -> dict[str, Any]:
    """Everything measured on one task (see the module docstring of ``methods``); with
    ``transfer``, also the horizon transfer to those multiples of ``T``."""
    t_start = time.perf_counter()
    T, m = task.T, task.batch_size
    rec = record_steps(T)
    _log(f"{task.name}: T = {T}, batch {m}, {task.optimizer}")

    # --- probe, stability ladder and pilots (shared by optctl, its closed loop and MPL)
    ph = pilot_phase(task, runner)
    rates, eta_div, ladder, spent, top = ph["rates"], ph["eta_div"], ph["ladder"], ph["spent"], ph["top"]
    design, raw, s0, pilots, pre_cost = ph["design"], ph["raw"], ph["s0"], ph["pilots"], ph["pre_cost"]

    # --- optctl: fit, solve, table in real units
    t0 = time.perf_counter()
    res = fit(pilots, FIT_OPTIONS)
    p = res.params
    run_cfg, solved, table = _solve_for(task.name, T, m, top, s0, res, pilots)
    fit_time = time.perf_counter() - t0
    predicted_open = p["loss_offset"] + p["loss_scale"] * solved.final_loss
    _log(f"  main phase from step {s0}; fit a = {p['a']:.3f}, b = {p['b']:.3f}, lr_scale {p['lr_scale']:.4g}, "
         f"quality {'ok' if res.quality and res.quality.ok else 'POOR'}; table peak {table.lr.max():.4g} "
         f"[{fit_time:.0f} s]")

    # --- Multi-Power Law on the same pilots
    # (its power law in the summed learning rate is infinite at step 0, which is left out)
    law = peers.fit_multi_power_law([(c.steps[1:], c.lr, c.loss[1:]) for c in raw])
    mpl_lr = peers.optimize_schedule(law, T, top)

    # --- full-length grids on the tuning seed, each extended past an edge that wins
    grid = peak_grid(eta_div)
    grad_p = 1.0 if task.optimizer == "adamw" else 2.0
    runs_of = {f: _bracketed(runner, f"{f} grid", grid, lambda pk, f=f: _train(
        task, TUNE_SEED, family(f, pk, T), [T], **({"grad_norm_p": grad_p} if f == "linear" else {})))
        for f in FAMILIES}
    finals = {(f, pk): r["final"] for f, runs in runs_of.items() for pk, r in runs.items()}
    peak = {f: best({pk: r["final"] for pk, r in runs_of[f].items()}) for f in FAMILIES}
    # WSD's decay fraction at the best peak and its neighbours
    wsd_peaks = [pk for pk in runs_of["wsd"] if abs(np.log2(pk / peak["wsd"])) <= 1.01]
    frac_jobs = [(fr, pk) for fr in WSD_FRACTIONS if fr != WSD_DEFAULT_FRACTION for pk in wsd_peaks]
    frac_runs = runner.run([_train(task, TUNE_SEED, family("wsd", pk, T, fr), [T]) for fr, pk in frac_jobs],
                           "WSD decay fractions")
    wsd_results = {(WSD_DEFAULT_FRACTION, pk): r["final"] for pk, r in runs_of["wsd"].items()}
    wsd_results.update({k: r["final"] for k, r in zip(frac_jobs, frac_runs, strict=True)})
    wsd_fraction, wsd_peak = best(wsd_results)
    n_full = {f: len(runs_of[f]) for f in FAMILIES}
    n_full["wsd"] += len(frac_jobs)

    # Schedule-Free: its learning rate on the same grid, warmup 5%
    warmup = max(1, round(0.05 * T))
    sf_runs = _bracketed(runner, "Schedule-Free grid", grid, lambda pk: {
        "kind": "schedule_free", "task": task.name, "T": T, "seed": TUNE_SEED, "peak": float(pk),
        "record": [T], "warmup": warmup})
    sf_peak = best({pk: r["final"] for pk, r in sf_runs.items()})

    # refinement from the tuned linear-decay run's gradient norms, its peak on the grid
    lin_run = runs_of["linear"][peak["linear"]]
    shape = peers.refined_schedule(np.asarray(lin_run["grad_norms"]), T,
                                   optimizer="adamw" if task.optimizer == "adamw" else "sgd")
    ref_runs = _bracketed(runner, "refined grid", grid, lambda pk: _train(task, TUNE_SEED, pk * shape, [T]))
    ref_peak = best({pk: r["final"] for pk, r in ref_runs.items()})

    # equal budget: the probe and four short runs at four peaks, as many updates as optctl's
    L = (pre_cost - rates.size) // 4
    short_peaks = grid[1:5]
    eq_runs = runner.run([_train(task, TUNE_SEED, family(f, pk, L), [L]) for f in FAMILIES for pk in short_peaks],
                         "equal-budget grids")
    eq_peak = {f: best({pk: eq_runs[i * len(short_peaks) + j]["final"] for j, pk in enumerate(short_peaks)})
               for i, f in enumerate(FAMILIES)}
    eq_cost = rates.size + len(short_peaks) * L

    full = {"cosine": (peak["cosine"], {}), "linear": (peak["linear"], {}),
            "wsd": (wsd_peak, {"fraction": wsd_fraction})}
    methods = [
        Method("optctl (open loop)", table.lr, pre_cost, {"predicted_final": predicted_open}),
        Method("optctl (closed loop)", table.lr, pre_cost),
        *[Method(f"{f} (full grid)", family(f, pk, T, info.get("fraction", WSD_DEFAULT_FRACTION)),
                 n_full[f] * T + rates.size, {"peak": pk, **info}) for f, (pk, info) in full.items()],
        *[Method(f"{f} (equal budget)", family(f, eq_peak[f], T), eq_cost, {"peak": eq_peak[f]}) for f in FAMILIES],
        Method("Schedule-Free", None, len(sf_runs) * T + rates.size, {"peak": sf_peak}, schedule_free_lr=sf_peak),
        Method("refined", ref_peak * shape, (n_full["linear"] + len(ref_runs)) * T + rates.size, {"peak": ref_peak}),
        Method("Multi-Power Law", mpl_lr, pre_cost, {}),
    ]

    # --- evaluation runs on the shared seeds
    eval_jobs, owners = [], []
    for k, meth in enumerate(methods):
        for s in seeds:
            if meth.name.startswith("optctl (closed"):
                job = {"kind": "closed_loop", "task": task.name, "T": T, "seed": s,
                       "record": closed_loop_record(T, s0),
                       "loop": {"pilots": pilots, "result": res, "table": table, "eta_max": top,
                                "checkpoints": CHECKPOINTS, "start": s0}}
            elif meth.schedule_free_lr is not None:
                job = {"kind": "schedule_free", "task": task.name, "T": T, "seed": s, "peak": float(meth.schedule_free_lr),
                       "record": [int(x) for x in rec], "warmup": warmup}
            else:
                job = _train(task, s, meth.lr, rec)  # type: ignore[arg-type]
            eval_jobs.append(job)
            owners.append(k)
    evals = runner.run(eval_jobs, "evaluation runs")
    by_method: dict[str, list[dict[str, Any]]] = {m.name: [] for m in methods}
    for k, r in zip(owners, evals, strict=True):
        by_method[methods[k].name].append(r)

    # --- predictions of schedules the fits never saw: the tuned full-grid baselines
    predictions = {}
    for f in FAMILIES:
        name = f"{f} (full grid)"
        lr = np.asarray(by_method[name][0]["lr"])
        measured = float(np.mean([r["final"] for r in by_method[name]]))
        ours = float(predict(p, lr[s0:], m, FIT_OPTIONS.N)[-1])  # the model runs from s0
        theirs = float(law.predict(lr, np.array([T]))[0])
        predictions[name] = {"measured": measured, "optctl": ours, "mpl": theirs,
                             "optctl_error": ours / measured - 1, "mpl_error": theirs / measured - 1}
    # --- horizon transfer: the pilots' fit solved for longer runs, against the baselines
    # tuned at T and stretched
    moved = {}
    for factor in transfer:
        TT = factor * T
        longer = _solve_for(task.name, TT, m, top, s0, res, pilots)[2]
        schedules = {"optctl (pilots at T, solved for this T)": longer.lr,
                     "cosine tuned at T, stretched": family("cosine", peak["cosine"], TT),
                     "wsd tuned at T, stretched": family("wsd", wsd_peak, TT, wsd_fraction)}
        runs = runner.run([_train(task, s, lr, record_steps(TT)) for lr in schedules.values() for s in seeds],
                          f"transfer to {factor} T")
        moved[str(factor)] = {name: [r["final"] for r in runs[i * len(seeds):(i + 1) * len(seeds)]]
                              for i, name in enumerate(schedules)}
        moved[str(factor)]["T"] = TT  # type: ignore[assignment]

    closed = by_method["optctl (closed loop)"]
    last_pred = [r["history"][-1]["predicted_final_loss"] for r in closed if r.get("history")]
    return {
        "task": task.name, "description": task.description, "T": T, "batch_size": m, "optimizer": task.optimizer,
        "seeds": list(seeds), "eta_div": eta_div, "probe_updates": int(rates.size),
        "ladder": ladder, "ladder_updates": int(spent), "lr_max": float(top), "pre_cost": int(pre_cost),
        "pilots": [{"name": pl.name, "updates": int(pl.lr.size), "cost": pl.cost, "peak": float(pl.lr.max())}
                   for pl in design],
        "fit": _fit_record(res, fit_time), "main_phase_start": s0, "table": {"peak": float(table.lr.max()), "final": float(table.lr[-1])},
        "mpl": {"params": law.__dict__ if hasattr(law, "__dict__") else str(law)},
        "tuning": {"grid": grid.tolist(), "runs_per_family": {**n_full, "schedule_free": len(sf_runs),
                                                                 "refined": len(ref_runs)}, "full_grid_finals": {f"{f}@{pk:.6g}": v for (f, pk), v in finals.items()},
                   "wsd_fraction": wsd_fraction, "equal_budget_peaks": eq_peak, "schedule_free_peak": sf_peak,
                   "refined_peak": ref_peak},
        "methods": {mth.name: {"cost": int(mth.cost), "updates": int(mth.cost + T), "info": mth.info,
                               "finals": [r["final"] for r in by_method[mth.name]],
                               **_mean_curve(by_method[mth.name]),
                               "lr": by_method[mth.name][0]["lr"]} for mth in methods},
        "closed_loop": {"history": [r.get("history", []) for r in closed],
                        "predicted_final_at_last_resolve": last_pred},
        "predictions": predictions, "transfer": moved, "wall_time_s": time.perf_counter() - t_start,
    }


def _bracketed(runner: Runner, label: str, grid: np.ndarray,
               job: Callable[[float], dict[str, Any]]) -> dict[float, dict[str, Any]]:
    """Full-length runs at every peak of ``grid``; while the best is at an edge, one more
    octave beyond it (at most :data:`GRID_EXTEND`), so that a tuned peak is a bracketed
    optimum and not the grid's end."""
    runs = dict(zip((float(pk) for pk in grid), runner.run([job(float(pk)) for pk in grid], label),
                    strict=True))
    for _ in range(GRID_EXTEND):
        b = best({pk: r["final"] for pk, r in runs.items()})
        if b == min(runs):
            new = b / 2
        elif b == max(runs):
            new = b * 2
        else:
            break
        runs[new] = runner.run([job(new)], f"{label}, extended to {new:.3g}")[0]
    return runs


def _from_main_phase(trunk: LossCurve, branch: LossCurve, mid: int, s0: int, m: float) -> list[LossCurve]:
    """The trunk and the branch as runs starting at the trunk's measured step ``s0`` (the
    branch shares the trunk's loss there when it leaves the trunk later)."""
    out = [trunk.after(s0)]
    if s0 < mid:
        keep = branch.steps >= mid
        steps = np.concatenate([[s0], branch.steps[keep]])
        loss = np.concatenate([[trunk.loss[np.flatnonzero(trunk.steps == s0)[0]]], branch.loss[keep]])
        out.append(as_curve("branch", branch.lr[s0:], steps - s0, loss, m))
    elif s0 in branch.steps[:-2]:
        out.append(branch.after(s0))
    return out


def _solve_for(name: str, T: int, m: float, top: float, s0: int, res: FitResult,
               pilots: list[LossCurve]) -> tuple[Any, Any, ScheduleTable]:
    """The fitted model's optimum for a run of ``T`` updates whose first ``s0`` are the
    transient (held at ``top``, as the pilots ran it): its run config, the solve, and the
    table of the whole run in real units."""
    run_cfg = run_config(FitConfig(name=name, T=T - s0, batch_size=m, lr_max=top), res, pilots)
    solved = solve(run_cfg.problem, run_cfg.solver)
    table = solved.to_table(lr_scale=res.params["lr_scale"])
    if s0:
        table = ScheduleTable(lr=np.concatenate([np.full(s0, top), table.lr]), lr_scale=table.lr_scale,
                              source={**table.source, "main_phase_start": s0})
    return run_cfg, solved, table


def _check_prefixes(design: list[Any], logs: list[dict[str, Any]], rung: dict[str, Any], S: int) -> None:
    """The trunk repeats the stable ladder run and the branch the trunk's first half, bit for
    bit: their shared updates are counted once."""
    trunk, branch = (dict(zip(r["steps"], r["loss"], strict=True)) for r in logs[:2])
    ladder_end, mid = rung["loss"][-1], design[1].prefix
    if trunk[S] != ladder_end or branch[mid] != trunk[mid]:
        raise RuntimeError("a continued pilot did not reproduce its prefix bit for bit (is this run "
                           "deterministic?); its updates cannot be counted once")


def _mean_curve(runs: list[dict[str, Any]]) -> dict[str, list[float]]:
    """The seeds' mean loss at the steps every run measured. The closed loop measures more
    often near its re-solves, which fall at different steps on different seeds."""
    common = sorted(set.intersection(*(set(r["steps"]) for r in runs)))
    at = [dict(zip(r["steps"], r["loss"], strict=True)) for r in runs]
    return {"curve_steps": common,
            "curve_mean": np.mean([[m[s] for s in common] for m in at], axis=0).tolist()}


def _fit_record(res: FitResult, seconds: float) -> dict[str, Any]:
    return {"params": res.params, "intervals": {k: list(v) for k, v in res.intervals.items()},
            "phase": res.phase, "confidence": res.confidence, "rms_log_error": res.rms_log_error,
            "quality": None if res.quality is None else res.quality.to_dict(), "seconds": seconds}

