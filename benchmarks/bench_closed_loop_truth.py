"""How much of the closed loop's prediction error is the run's own luck, and how much misfit.

rf_hard is the one task whose model is exactly optctl's: linear regression on Gaussian
power-law features, its held-out loss the exact population excess loss, its true
parameters known (``a``, ``b``, ``N``, ``σ`` from the task, ``lr_scale = loss_scale = 1``,
offset 0). On the stored closed-loop runs of ``results/real_training/partial/closed_loop.json``
(nothing is trained again) this script

1. replays the *true* expected loss ``E`` on the table each seed ran (the per-step replay,
   :func:`optctl.calibrate.params.predict`) and splits the loop's prediction error at
   every re-solve, ``P/F − 1``, into the run's fluctuation ``F/E − 1`` (no predictor of
   the expectation can do better) and the misfit ``P/E − 1`` (refitted against true
   parameters);
2. simulates ``--runs`` independent runs of the same SGD on the table of the worst-predicted
   seed (Gaussian features of spectrum ``k^−b``, teacher ``±k^−(a−b)/2``, batch and noise of
   the task; independent of the replay's algebra): the spread of a single run's final loss
   around ``E``, and, at every re-solve, a single run's geometric-mean loss against its
   expectation (what a fit of log losses sees against what the model predicts);
3. refits at the last re-solve with the task's own ``N`` (400; the loop fits ``N = 1000``):
   whether the model's size is the misfit;
4. on every task, the final loss predicted at each re-solve *conditioned on the run's
   observed level*: the refit's prediction times the ratio of the measured to the model's
   loss over the preceding tenth of the run (geometric means; ``full``), and the same ratio
   shrunk by the level's own noise (``shrunk``: the log ratio times ``max(0, 1 − se²/d²)``,
   ``se`` the standard error of the inverse-variance weighted mean log residual from the
   points' local noise, :func:`optctl.calibrate.fitmodel.local_noise`).

    python benchmarks/bench_closed_loop_truth.py [--runs 400]

writes ``truth.md`` and ``truth.json`` next to the input. A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
for path in (_HERE, _HERE.parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_closed_loop_diagnosis import OPTIONS, pilot_curves, run_curve, stored_records  # noqa: E402
from real_training.tasks import TASKS  # noqa: E402

from optctl.calibrate.fitmodel import local_noise  # noqa: E402
from optctl.calibrate.fitting import fit  # noqa: E402
from optctl.calibrate.params import predict  # noqa: E402
from optctl.io.files import write_json, write_text_atomic  # noqa: E402

TASK = "rf_hard"
# The window before a re-solve over which the level is measured (a fraction of T), as in
# bench_closed_loop_diagnosis.level.
WINDOW = 0.1


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def true_params() -> tuple[dict[str, float], int]:
    o = TASKS[TASK].options
    return ({"a": o["a"], "b": o["b"], "sigma": o["sigma"], "lr_scale": 1.0, "loss_scale": 1.0,
             "loss_offset": 0.0}, int(o["N"]))


def simulate(lr: np.ndarray, batch: int, runs: int, seed: int = 0, chunk: int = 100) -> np.ndarray:
    """Held-out losses ``(runs, T + 1)`` of independent runs of the task's SGD on ``lr``:
    features ``x ~ N(0, diag k^−b)``, teacher ``w*_k = ±k^(−(a−b)/2)`` (a random sign per
    mode and run), labels ``x·w* + σ z``, student from 0, ``w ← w − η (1/m) Σ x (x·w − y)``;
    the loss is ``Σ_k λ_k (w − w*)_k²``."""
    o = TASKS[TASK].options
    k = np.arange(1, o["N"] + 1, dtype=float)
    lam = k ** (-o["b"])
    rng = np.random.default_rng(seed)
    out = []
    for start in range(0, runs, chunk):
        n = min(chunk, runs - start)
        delta = -rng.choice([-1.0, 1.0], size=(n, k.size)) * k ** (-(o["a"] - o["b"]) / 2)
        L = np.empty((n, lr.size + 1))
        L[:, 0] = delta**2 @ lam
        for t, eta in enumerate(lr):
            x = rng.standard_normal((n, batch, k.size)) * np.sqrt(lam)
            resid = np.einsum("nbk,nk->nb", x, delta) - o["sigma"] * rng.standard_normal((n, batch))
            delta -= eta * np.einsum("nb,nbk->nk", resid, x) / batch
            L[:, t + 1] = delta**2 @ lam
        out.append(L)
    return np.concatenate(out)


def split_truth(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per seed and re-solve: measured final, true expectation, the loop's prediction."""
    p, N = true_params()
    rows = []
    for run in rec["runs"]:
        lr = np.asarray(run["lr"])
        E = float(predict(p, lr, rec["batch_size"], N)[-1])
        rows.append({"seed": run["seed"], "final": run["final"], "expected": E,
                     "fluctuation": run["final"] / E - 1,
                     "checkpoints": [{"step": h["step"], "predicted": h["predicted_final_loss"],
                                      "error": h["predicted_final_loss"] / run["final"] - 1,
                                      "misfit": h["predicted_final_loss"] / E - 1} for h in run["history"]]})
    return rows


def refit_true_size(rec: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Refit at the last re-solve with the task's ``N``; adds ``refit_N`` to each row."""
    _, N = true_params()
    options = dataclasses.replace(OPTIONS, N=N, weights="noise")
    pilots, m = pilot_curves(rec), rec["batch_size"]
    for row, run in zip(rows, rec["runs"], strict=True):
        h = run["history"][-1]
        t0 = time.perf_counter()
        res = fit([*pilots, run_curve(rec, run, h["step"])], options, start=h["params"])
        P = float(predict(res.params, np.asarray(run["lr"]), m, N)[-1])
        row["refit_N"] = {"N": N, "params": res.params, "error": P / run["final"] - 1,
                          "misfit": P / row["expected"] - 1}
        _log(f"  seed {run['seed']}: refit with N = {N}: {100 * (P / run['final'] - 1):+.1f}% "
             f"({time.perf_counter() - t0:.0f} s)")


def noise_free(rec: dict[str, Any], row: dict[str, Any], runs: int) -> list[dict[str, Any]]:
    """Refit at the last re-solve of ``row``'s seed on the *expected* curves (the true
    parameters replayed on every pilot's and the run's rates, at their measured steps),
    with the loop's ``N`` and with the task's: whether the fit recovers the truth when
    the run's noise is taken away; and on the *geometric-mean* curves (``runs`` simulated
    runs of each curve's rates): whether the gap between a single run's typical log loss
    and its expectation, which a fit of log losses cannot see, moves the prediction."""
    p, N_true = true_params()
    run = next(r for r in rec["runs"] if r["seed"] == row["seed"])
    k, m = run["history"][-1]["step"], rec["batch_size"]
    curves = [*pilot_curves(rec), run_curve(rec, run, k)]
    clean, geometric = [], []
    for c in curves:
        lr = np.concatenate([c.lr, c.lr[-1:]])[: int(c.steps[-1])]
        clean.append(dataclasses.replace(c, loss=predict(p, lr, m, N_true)[c.steps]))
        sim = simulate(lr, int(m), runs, seed=7)[:, c.steps]
        geometric.append(dataclasses.replace(c, loss=np.exp(np.log(sim).mean(axis=0))))
    out = []
    for data, N in ((clean, OPTIONS.N), (clean, N_true), (geometric, OPTIONS.N)):
        res = fit(data, dataclasses.replace(OPTIONS, N=N, weights="noise"), start=run["history"][-1]["params"])
        P = float(predict(res.params, np.asarray(run["lr"]), m, N)[-1])
        kind = "expected" if data is clean else "geometric-mean"
        out.append({"curves": kind, "N": N, "params": res.params, "misfit": P / row["expected"] - 1})
        _log(f"  seed {row['seed']}: fit on the {kind} curves, N = {N}: misfit {100 * (P / row['expected'] - 1):+.1f}%")
    return out


def conditioned(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """Per re-solve and seed: the loop's prediction and the two level-conditioned ones."""
    T, s0, m = rec["T"], rec["main_phase_start"], rec["batch_size"]
    out = []
    for run in rec["runs"]:
        st, y = np.asarray(run["steps"]), np.asarray(run["loss"])
        lr = np.asarray(run["lr"])[s0:]
        for h in run["history"]:
            k = h["step"]
            P = predict(h["params"], lr, m, OPTIONS.N, tail=OPTIONS.tail)
            seen = (st >= s0) & (st <= k)
            s = local_noise(np.log(y[seen]))
            win = st[seen] > k - WINDOW * T
            r = np.log(y[seen][win]) - np.log(P[st[seen][win] - s0])
            w = s[win] ** -2.0
            d, se2 = float(np.sum(w * r) / np.sum(w)), float(1 / np.sum(w))
            shrink = max(0.0, 1 - se2 / d**2) if d != 0 else 0.0
            full = float(np.exp(np.mean(r)))  # geometric means, as the diagnosis's level
            F = run["final"]
            out.append({"seed": run["seed"], "step": k, "loop": float(P[-1]) / F - 1,
                        "full": float(P[-1]) * full / F - 1, "shrunk": float(P[-1]) * np.exp(shrink * d) / F - 1,
                        "level_ratio": full, "shrink": shrink, "se": float(np.sqrt(se2))})
    return out


def _pct(x: float) -> str:
    return f"{100 * x:+.1f}%"


def _summary(errs: list[float]) -> str:
    e = np.abs(errs)
    return f"{100 * e.max():.1f}%, {100 * np.sqrt(np.mean(np.square(errs))):.1f}%, {int(np.sum(e <= 0.1))}/{e.size}"


def write(out: Path, rec: dict[str, Any], rows: list[dict[str, Any]], mc: dict[str, Any],
          cond: dict[str, list[dict[str, Any]]], horizons: dict[str, int], seconds: float) -> None:
    import datetime
    import os

    day = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    p, N = true_params()
    md = ["# The closed loop's prediction error: the run's luck against misfit", "",
          f"`python benchmarks/bench_closed_loop_truth.py --runs {mc['runs']}`, {day}, on the stored runs of "
          f"`closed_loop.json` (nothing trained again). {seconds / 60:.0f} min, load average {load:.1f} at the "
          "end on 2 shared cores.", "",
          f"## {TASK}: the true expectation", "",
          f"True parameters a = {p['a']}, b = {p['b']}, N = {N}, σ = {p['sigma']}, batch {rec['batch_size']}; "
          "`E` is their expected final loss replayed on the table the seed ran. Fluctuation: measured / E − 1 "
          "(no predictor of the expectation can beat it). Misfit: the loop's prediction / E − 1. At the last "
          "re-solve both are for the table the run ran; at the earlier ones the prediction is for the table "
          "re-solved there (later re-solves changed it a little), E for the table run.", "",
          "| seed | final | E | fluctuation | " + " | ".join(
              f"error / misfit at {c['step']}" for c in rows[0]["checkpoints"]) + " | refit with N = "
          f"{N} at {rows[0]['checkpoints'][-1]['step']}: error / misfit |",
          "|---:|---:|---:|---:|" + "---:|" * (len(rows[0]["checkpoints"]) + 1)]
    for r in rows:
        cells = [f"{_pct(c['error'])} / {_pct(c['misfit'])}" for c in r["checkpoints"]]
        rn = r.get("refit_N")
        md.append(f"| {r['seed']} | {r['final']:.4f} | {r['expected']:.4f} | {_pct(r['fluctuation'])} | "
                  + " | ".join(cells) + f" | {_pct(rn['error']) + ' / ' + _pct(rn['misfit']) if rn else '–'} |")
    fl = np.array([r["fluctuation"] for r in rows])
    md += ["", f"Fluctuation over the 8 seeds: mean {_pct(fl.mean())}, sd {100 * fl.std(ddof=1):.1f}%, "
           f"largest {100 * np.abs(fl).max():.1f}%.", "",
           f"A simulation of {mc['runs']} independent runs of the task's SGD on seed {mc['seed']}'s table "
           f"(`simulate`): mean final {mc['mean']:.4f} against E = {mc['expected']:.4f} ({_pct(mc['mean'] / mc['expected'] - 1)}, "
           f"SE {100 * mc['se'] / mc['expected']:.1f}%); a single run's final loss has a relative sd of "
           f"{100 * mc['rel_sd']:.1f}% (5–95%: {_pct(mc['q05'])} to {_pct(mc['q95'])}); "
           f"{100 * mc['beyond_10']:.1f}% of runs end more than 10% from E.", "",
           *([f"The same refit on noise-free curves, seed {mc['seed']} at its last re-solve: on the *expected* "
              "curves (every pilot's and the run's true expectation at its measured steps) and on the "
              "*geometric-mean* curves (exp of the mean log loss of 200 simulated runs of each curve's rates): misfit "
              + ", ".join(f"{_pct(c['misfit'])} on the {c['curves']} curves with N = {c['N']} (a = {c['params']['a']:.2f}, "
                          f"b = {c['params']['b']:.2f}, σ = {c['params']['sigma']:.2f})" for c in mc["noise_free"])
              + ".", ""] if mc["noise_free"] else []),
           "A single run's loss against its expectation at each re-solve and at the end (the same simulation): "
           "the geometric mean over runs (what a fit of log losses estimates) and the median, each over the mean, "
           "and the sd of the log loss (and its robust estimate, 1.4826 MAD):", "",
           "| step | mean | geometric mean / mean | median / mean | sd of log | 1.4826 MAD of log |",
           "|---:|---:|---:|---:|---:|---:|"]
    for s in mc["by_step"]:
        md.append(f"| {s['step']} | {s['mean']:.4f} | {s['gm_over_mean']:.3f} | {s['median_over_mean']:.3f} | "
                  f"{s['sd_log']:.3f} | {s['mad_log']:.3f} |")
    md += ["", "## Every task: the prediction conditioned on the run's observed level", "",
           "The loop's prediction (the latest refit), the same times the measured/model ratio of the loss over "
           "the tenth of the run before the re-solve (`full`), and with that ratio shrunk by its own noise "
           "(`shrunk`). Each cell: worst, rms, within 10% over the 8 seeds.", "",
           "| task | re-solve at | loop | full | shrunk |", "|---|---:|---|---|---|"]
    for task, rows_c in cond.items():
        for k in sorted({c["step"] for c in rows_c}):
            sel = [c for c in rows_c if c["step"] == k]
            md.append(f"| {task} | {k} ({k / horizons[task]:.2f} T) | " + " | ".join(_summary([c[v] for c in sel])
                                                              for v in ("loop", "full", "shrunk")) + " |")
    write_json(out / "truth.json", {"task": TASK, "rows": rows, "simulation": mc, "conditioned": cond,
                                    "seconds": seconds})
    write_text_atomic(out / "truth.md", "\n".join(md) + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", type=Path, default=Path("results") / "real_training" / "partial" / "closed_loop.json")
    p.add_argument("--runs", type=int, default=400, help="simulated runs of rf_hard")
    p.add_argument("--no-refit", action="store_true", help="skip the refits with the task's N")
    args = p.parse_args()
    if args.runs < 10:
        print(f"error: --runs {args.runs}: give at least 10 simulated runs", file=sys.stderr)
        return 2
    t0 = time.perf_counter()
    records = stored_records(args.input)
    if records is None:
        return 2
    rec = next((r for r in records if r["task"] == TASK), None)
    if rec is None:
        print(f"error: {args.input} has no {TASK} record", file=sys.stderr)
        return 2
    rows = split_truth(rec)
    if not args.no_refit:
        _log(f"{TASK}: refits with the task's N")
        refit_true_size(rec, rows)
    worst = max(rows, key=lambda r: abs(r["checkpoints"][-1]["error"]))
    run = next(r for r in rec["runs"] if r["seed"] == worst["seed"])
    _log(f"{TASK}: simulating {args.runs} runs on seed {worst['seed']}'s table")
    L = simulate(np.asarray(run["lr"]), rec["batch_size"], args.runs)
    fin, E = L[:, -1], worst["expected"]
    by_step = []
    for k in [*(c["step"] for c in worst["checkpoints"]), rec["T"]]:
        x = L[:, k]
        lx = np.log(x)
        by_step.append({"step": int(k), "mean": float(x.mean()), "gm_over_mean": float(np.exp(lx.mean()) / x.mean()),
                        "median_over_mean": float(np.median(x) / x.mean()), "sd_log": float(lx.std(ddof=1)),
                        "mad_log": float(1.4826 * np.median(np.abs(lx - np.median(lx))))})
    mc = {"runs": args.runs, "seed": worst["seed"], "expected": E, "mean": float(fin.mean()),
          "se": float(fin.std(ddof=1) / np.sqrt(fin.size)), "rel_sd": float(fin.std(ddof=1) / E),
          "q05": float(np.quantile(fin / E - 1, 0.05)), "q95": float(np.quantile(fin / E - 1, 0.95)),
          "beyond_10": float(np.mean(np.abs(fin / E - 1) > 0.1)), "by_step": by_step}
    clean = [] if args.no_refit else noise_free(rec, worst, min(args.runs, 200))
    mc["noise_free"] = clean
    cond = {r["task"]: conditioned(r) for r in records}
    write(args.input.parent, rec, rows, mc, cond, {r["task"]: r["T"] for r in records}, time.perf_counter() - t0)
    _log(f"wrote {args.input.parent / 'truth.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
