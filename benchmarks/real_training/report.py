"""The benchmark's report: per task, final held-out loss of every method, paired
differences to optctl, updates spent, predictions; figures of schedules and curves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

REFERENCE = "optctl (open loop)"


def _mean_se(x: np.ndarray) -> tuple[float, float]:
    """Mean and standard error; a run that diverged (inf) makes the mean inf."""
    x = np.asarray(x, dtype=float)
    if not np.all(np.isfinite(x)):
        return float("inf"), float("nan")
    return float(x.mean()), float(x.std(ddof=1) / np.sqrt(x.size)) if x.size > 1 else float("nan")


def _paired(f: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    both = np.isfinite(f) & np.isfinite(ref)
    if not both.all():
        return float("nan"), float("nan")
    return _mean_se(f - ref)


def summary_rows(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per method: mean ± SE, paired difference to optctl (open loop), updates."""
    ref = np.asarray(rec["methods"][REFERENCE]["finals"], dtype=float)
    rows = []
    for name, m in rec["methods"].items():
        f = np.asarray(m["finals"], dtype=float)
        mean, se = _mean_se(f)
        dmean, dse = _paired(f, ref)
        rows.append({"method": name, "mean": mean, "se": se, "minus_optctl": dmean, "minus_optctl_se": dse,
                     "relative": mean / float(ref.mean()) - 1 if np.isfinite(mean) else float("inf"),
                     "diverged": int(np.sum(~np.isfinite(f))), "updates": m["updates"]})
    return rows


def task_markdown(rec: dict[str, Any]) -> list[str]:
    f = rec["fit"]
    q = f["quality"] or {}
    P = f["params"]
    lines = [f"## {rec['task']}", "", rec["description"] + f"; T = {rec['T']} updates, "
             f"{len(rec['seeds'])} paired seeds.", "",
             f"Probe: {rec['probe_updates']} updates, divergent rate {rec['eta_div']:.4g}. Stability ladder "
             f"({rec['ladder_updates']} updates): " + ", ".join(
                 f"{r['rate']:.3g} {'stable' if r['stable'] else 'unstable'}" for r in rec["ladder"])
             + f", so the schedule's largest rate is {rec['lr_max']:.4g}. Pilots: "
             + ", ".join(f"{p['name']} ({p['updates']} updates, {p['cost']} new, peak {p['peak']:.3g})"
                         for p in rec["pilots"])
             + f". optctl spends {rec['pre_cost']:,} updates before its run.",
             f"Fit: a = {P['a']:.3f}, b = {P['b']:.3f}, phase {f['phase']} ({f['confidence']:.2f}), "
             f"worst rms log error {max(f['rms_log_error'].values()):.3f}; quality "
             f"{'ok' if q.get('ok') else 'POOR: ' + '; '.join(q.get('reasons', []))}.",
             f"optctl table: peak {rec['table']['peak']:.4g}, final rate {rec['table']['final']:.3g}.", "",
             "| method | final held-out loss | vs optctl open loop (paired) | relative | updates spent |",
             "|---|---|---|---:|---:|"]
    for r in sorted(summary_rows(rec), key=lambda r: r["mean"]):
        diff = "—" if r["method"] == REFERENCE else f"{r['minus_optctl']:+.4g} ± {r['minus_optctl_se']:.2g}"
        mean = f"{r['mean']:.5g} ± {r['se']:.2g}" if not r["diverged"] else f"diverged on {r['diverged']} seeds"
        lines.append(f"| {r['method']} | {mean} | {diff} | "
                     f"{100 * r['relative']:+.2f}% | {r['updates']:,} |")
    lines += ["", "Predicted final loss of schedules the pilots' fits never saw (the tuned baselines):", "",
              "| schedule | measured | optctl fit | error | Multi-Power Law | error |", "|---|---:|---:|---:|---:|---:|"]
    for name, p in rec["predictions"].items():
        mpl = (f"{p['mpl']:.5g} | {100 * p['mpl_error']:+.1f}%" if p["mpl"] > 0
               else f"{p['mpl']:.3g} | fails (a negative loss)")
        lines.append(f"| {name} | {p['measured']:.5g} | {p['optctl']:.5g} | {100 * p['optctl_error']:+.1f}% | {mpl} |")
    edges = mpl_edges(rec["mpl"]["params"])
    if edges:
        lines += ["", "The Multi-Power Law's fit ends on the edge of its search box (" + ", ".join(edges)
                  + "): the pilots do not determine those parameters, and its predictions and schedule rest "
                  "on the box."]
    if rec.get("transfer"):
        lines += ["", "Horizon transfer: the pilots (a quarter of a run of T) fitted once, the schedule solved "
                  "for longer runs; against cosine and WSD tuned at T and stretched (no further tuning):", "",
                  "| horizon | method | final held-out loss | vs optctl (paired) |", "|---|---|---|---|"]
        for factor, res in rec["transfer"].items():
            names = [k for k in res if k != "T"]
            ref = np.asarray(res[names[0]], dtype=float)
            for name in names:
                f = np.asarray(res[name], dtype=float)
                mean, se = _mean_se(f)
                d, dse = _paired(f, ref)
                diff = "—" if name == names[0] else f"{d:+.4g} ± {dse:.2g} ({100 * d / ref.mean():+.2f}%)"
                lines.append(f"| {factor} T = {res['T']} | {name} | {mean:.5g} ± {se:.2g} | {diff} |")
    closed = rec["methods"]["optctl (closed loop)"]["finals"]
    pred = rec["closed_loop"]["predicted_final_at_last_resolve"]
    if pred:
        err = np.asarray(pred) / np.asarray(closed) - 1
        last = [h[-1] for h in rec["closed_loop"]["history"] if h]
        where = [h["step"] / rec["T"] for h in last]
        covered = sum(h["interval"]["low"] <= f <= h["interval"]["high"]
                      for h, f in zip(last, closed, strict=True) if "interval" in h)
        span = f"{min(where):.2f}" + (f"–{max(where):.2f}" if f"{min(where):.2f}" != f"{max(where):.2f}" else "")
        lines += ["", f"Closed loop: final loss predicted at the last re-solve ({span} T) "
                  f"vs measured, per seed: mean error {100 * err.mean():+.1f}%, largest "
                  f"{100 * np.max(np.abs(err)):.1f}%; its 90% interval covers {covered} of {len(closed)} seeds."]
    return lines + diagnosis_markdown(rec) + [""]


FAMILIES = ("cosine", "linear", "wsd")


def _better_loop(means: dict[str, float]) -> float:
    """optctl's mean final loss as every goal and diagnosis counts it: the better of its open
    and closed loop."""
    return min(means["optctl (open loop)"], means["optctl (closed loop)"])


def mpl_edges(params: dict[str, float]) -> list[str]:
    """The Multi-Power Law parameters that its fit left on an edge of their box (within 1%)."""
    from real_training.peers import MPL_BOUNDS

    out = []
    for name, (lo, hi) in MPL_BOUNDS.items():
        v = params[name]
        if lo is not None and v <= lo * 1.01:
            out.append(f"{name} = {v:.3g} at its lower bound")
        elif hi is not None and v >= hi / 1.01:
            out.append(f"{name} = {v:.3g} at its upper bound")
    return out


def _tuned_peak(rec: dict[str, Any]) -> tuple[str, float, float]:
    """The full-grid-tuned schedule with the lowest mean final loss on the evaluation seeds:
    its name, tuned peak and mean."""
    runs = {f"{f} (full grid)": rec["methods"][f"{f} (full grid)"] for f in FAMILIES}
    mean, name = min((_mean_se(np.asarray(m["finals"], dtype=float))[0], k) for k, m in runs.items())
    return name, float(runs[name]["info"]["peak"]), mean


def diagnosis(rec: dict[str, Any]) -> dict[str, Any]:
    """What the run measured about why optctl wins or loses on a task: the largest rate
    against the tuned peak, the fit's miss on its own table and on schedules it never saw,
    how much of the pilots lies in the main phase, what averaging gains, the closed loop's
    effect. Every number is read off the record; nothing is assumed."""
    means = {k: _mean_se(np.asarray(m["finals"], dtype=float))[0] for k, m in rec["methods"].items()}
    family, peak, best_full = _tuned_peak(rec)
    open_loop = means[REFERENCE]
    ours = _better_loop(means)
    own = rec["methods"][REFERENCE]["info"].get("predicted_final")
    unseen = [p["optctl_error"] for p in rec["predictions"].values()]
    mpl = [p["mpl_error"] for p in rec["predictions"].values()]
    trunk = next((p for p in rec["pilots"] if p["name"] == "trunk"), None)
    scheduled = min(v for k, v in means.items() if k.split(" ")[0] in FAMILIES)
    closed = np.asarray(rec["methods"]["optctl (closed loop)"]["finals"], dtype=float)
    d_closed, se_closed = _paired(closed, np.asarray(rec["methods"][REFERENCE]["finals"], dtype=float))
    return {
        "tuned_family": family, "tuned_peak": peak, "lr_max": rec["lr_max"], "peak_ratio": rec["lr_max"] / peak,
        "vs_tuned_full": ours / best_full - 1,
        "own_prediction_error": (own / open_loop - 1) if own is not None else float("nan"),
        "unseen_error_max": float(np.max(np.abs(unseen))) if unseen else float("nan"),
        "mpl_unseen_error_max": float(np.max(np.abs(mpl))) if mpl else float("nan"),
        "quality_reasons": len((rec["fit"]["quality"] or {}).get("reasons", [])),
        "phase": rec["fit"]["phase"], "confidence": rec["fit"]["confidence"],
        "main_phase_start": rec["main_phase_start"],
        "trunk_updates": trunk["updates"] if trunk else 0,
        "averaging_gain": means["Schedule-Free"] / scheduled - 1,
        "closed_minus_open": d_closed / open_loop, "closed_minus_open_se": se_closed / open_loop,
        "optimizer": rec["optimizer"],
    }


def diagnosis_markdown(rec: dict[str, Any]) -> list[str]:
    """The measured causes, one line each, in the order the docs discuss them."""
    g, d = goals(rec), diagnosis(rec)
    outcome = (f"optctl is lowest at equal compute ({100 * g['vs_rival']:+.1f}% against {g['best_rival']})"
               if g["lowest_at_equal_compute"] else
               f"optctl loses at equal compute to {g['best_rival']} by {100 * g['vs_rival']:.1f}%")
    outcome += f"; optctl's {g['optctl_variant']} loop the better of its two"
    lines = ["", f"Why, as measured ({outcome}; {100 * d['vs_tuned_full']:+.1f}% against the best full-grid "
             f"schedule, {d['tuned_family']} at peak {d['tuned_peak']:.3g}):", "",
             f"- largest rate: the ladder's {d['lr_max']:.3g} is {d['peak_ratio']:.2f}x the tuned peak;",
             f"- the fit: its prediction of optctl's own table misses the measured final loss by "
             f"{100 * d['own_prediction_error']:+.0f}%, of the unseen tuned schedules by up to "
             f"{100 * d['unseen_error_max']:.0f}% (Multi-Power Law: {100 * d['mpl_unseen_error_max']:.0f}%); "
             f"phase {d['phase']} ({d['confidence']:.2f}); {d['quality_reasons']} gate reasons;",
             f"- the pilots: the main phase starts at update {d['main_phase_start']} of the trunk's "
             f"{d['trunk_updates']};",
             f"- averaging: Schedule-Free against the best scheduled run {100 * d['averaging_gain']:+.1f}%;",
             f"- the closed loop against the open loop, paired: {100 * d['closed_minus_open']:+.1f}% "
             f"± {100 * d['closed_minus_open_se']:.1f}%"
             + (f"; the optimizer is {d['optimizer']}, whose rate the SGD model only rescales."
                if d["optimizer"] != "sgd" else ".")]
    return lines


WHAT_WAS_TRIED = """## What was tried

Each change below was measured on the tasks (paired seeds) and kept only where it helped
overall; docs/real_training.md, "What was tried, in order" and the sections after it, give
every measurement: a stability ladder for the largest rate instead of the largest pilot
rate; pilots from the curve's main phase (`main_phase_start`); longer trunks and a decay
branch; fitting the floor and the loss offset; fitting from step 0 unless the trunk starts
on a plateau; the stable rungs below the chosen rate as extra curves; raising the largest
rate to the tuned peak (digits: no help, the shape was wrong); a second decaying pilot
(rf_hard: worse); the closed loop's noise-weighted refits, its re-solves at 0.9 T and at
the anneal, and a model-error term in its interval; refit variants (log-mean, inverse
variance across curves, relative residuals: worse, not kept).
"""


def figure(rec: dict[str, Any], path: Path) -> None:
    import matplotlib
    from matplotlib.figure import Figure

    from optctl.plots import save

    fig = Figure(figsize=(13, 4.8), layout="constrained")
    ax0, ax1 = fig.subplots(1, 2)
    colors = matplotlib.colormaps["tab20"].colors
    for i, (name, m) in enumerate(rec["methods"].items()):
        # optctl thick; full-grid baselines solid; equal-budget dashed; the peers dotted
        style = {"lw": 2.4 if name.startswith("optctl") else 1.1, "color": colors[(2 * i) % 20 + (i >= 10)],
                 "ls": "--" if "equal budget" in name else ":" if name in (
                     "Schedule-Free", "refined", "Multi-Power Law") else "-"}
        lr = np.asarray(m["lr"], dtype=float)
        ax0.plot(np.arange(lr.size), lr, label=name, **style)
        ax1.loglog(np.asarray(m["curve_steps"]) + 1, np.asarray(m["curve_mean"], dtype=float),
                   label=name, **style)
    ax0.set(xlabel="update", ylabel="learning rate", title=f"{rec['task']}: schedules (first seed)")
    ax1.set(xlabel="update + 1", ylabel="held-out loss (mean over seeds)", title="loss curves")
    handles, labels = ax0.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    save(fig, path)


def _at_budget(rec: dict[str, Any]) -> dict[str, float]:
    """Mean final loss of every method that spent no more updates than optctl."""
    limit = rec["methods"][REFERENCE]["updates"]
    return {name: _mean_se(np.asarray(m["finals"], dtype=float))[0]
            for name, m in rec["methods"].items() if m["updates"] <= limit}


def goals(rec: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, measured: optctl lowest at equal compute; within 1% of the
    full-grid cosine on at most a quarter of its updates; the closed loop's prediction."""
    means = _at_budget(rec)
    ours = _better_loop(means)
    rival = min((v, k) for k, v in means.items() if not k.startswith("optctl"))
    cos = rec["methods"]["cosine (full grid)"]
    cos_mean = _mean_se(np.asarray(cos["finals"], dtype=float))[0]
    closed = np.asarray(rec["methods"]["optctl (closed loop)"]["finals"], dtype=float)
    pred = np.asarray(rec["closed_loop"]["predicted_final_at_last_resolve"], dtype=float)
    err = pred / closed - 1 if pred.size == closed.size else np.array([np.nan])
    return {"lowest_at_equal_compute": bool(ours <= rival[0]), "best_rival": rival[1],
            "optctl_variant": "open" if ours == means["optctl (open loop)"] else "closed",
            "vs_rival": ours / rival[0] - 1, "vs_cosine_full": ours / cos_mean - 1,
            "updates_vs_cosine": rec["methods"][REFERENCE]["updates"] / cos["updates"],
            "within_1pct_of_cosine_at_quarter": bool(ours <= 1.01 * cos_mean
                                                    and rec["methods"][REFERENCE]["updates"] <= cos["updates"] / 4),
            "closed_loop_prediction_max_error": float(np.max(np.abs(err))),
            "closed_loop_prediction_within_10pct": bool(np.max(np.abs(err)) <= 0.10),
            "fit_quality_ok": bool((rec["fit"]["quality"] or {}).get("ok"))}


def summary_markdown(records: list[dict[str, Any]]) -> list[str]:
    """One line per task against the targets, then the counts."""
    lines = ["## Summary", "",
             "| task | optctl open / closed | best other method at optctl's budget | optctl (the better loop) vs it | "
             "optctl (the better loop) vs cosine (full grid), updates ratio | closed-loop prediction, worst seed | "
             "fit gate |",
             "|---|---|---|---:|---|---:|---|"]
    gs = []
    for rec in records:
        g = goals(rec)
        gs.append(g)
        o = {k: _mean_se(np.asarray(rec["methods"][k]["finals"], dtype=float))[0]
             for k in ("optctl (open loop)", "optctl (closed loop)")}
        lines.append(f"| {rec['task']} | {o['optctl (open loop)']:.4g} / {o['optctl (closed loop)']:.4g} | "
                     f"{g['best_rival']} | {100 * g['vs_rival']:+.1f}% ({g['optctl_variant']}) | "
                     f"{100 * g['vs_cosine_full']:+.1f}% at "
                     f"{g['updates_vs_cosine']:.2f}x the updates | {100 * g['closed_loop_prediction_max_error']:.0f}% | "
                     f"{'ok' if g['fit_quality_ok'] else 'fires'} |")
    n = len(records)
    lines += ["", f"- optctl (open or closed loop) lowest at equal compute: "
              f"{sum(g['lowest_at_equal_compute'] for g in gs)} of {n} tasks (target: 3 of 4).",
              f"- optctl within 1% of the full-grid cosine on at most a quarter of its updates: "
              f"{sum(g['within_1pct_of_cosine_at_quarter'] for g in gs)} of {n}.",
              f"- closed loop's final loss, predicted at its last re-solve, within 10% on every seed: "
              f"{sum(g['closed_loop_prediction_within_10pct'] for g in gs)} of {n} (target: all).",
              f"- fit-quality gate silent: {sum(g['fit_quality_ok'] for g in gs)} of {n}.", ""]
    return lines
