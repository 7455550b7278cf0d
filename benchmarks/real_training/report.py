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
        lines.append(f"| {name} | {p['measured']:.5g} | {p['optctl']:.5g} | {100 * p['optctl_error']:+.1f}% | "
                     f"{p['mpl']:.5g} | {100 * p['mpl_error']:+.1f}% |")
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
        lines += ["", f"Closed loop: final loss predicted at the last re-solve vs measured, per seed: "
                  f"mean error {100 * err.mean():+.1f}%, largest {100 * np.max(np.abs(err)):.1f}%."]
    return lines + [""]


def figure(rec: dict[str, Any], path: Path) -> None:
    from matplotlib.figure import Figure

    from optctl.plots import save

    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax0, ax1 = fig.subplots(1, 2)
    for name, m in rec["methods"].items():
        lw = 2.2 if name.startswith("optctl") else 1.0
        lr = np.asarray(m["lr"], dtype=float)
        ax0.plot(np.arange(lr.size), lr, lw=lw, label=name)
        ax1.loglog(np.asarray(m["curve_steps"]) + 1, np.asarray(m["curve_mean"])[: len(m["curve_steps"])],
                   lw=lw, label=name)
    ax0.set(xlabel="update", ylabel="learning rate", title=f"{rec['task']}: schedules (first seed)")
    ax1.set(xlabel="update + 1", ylabel="held-out loss (mean over seeds)", title="loss curves")
    ax0.legend(fontsize=7)
    save(fig, path)
