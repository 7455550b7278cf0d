"""A finished sweep folder → its analysis (``report.json``, ``report.md``) and figures.

What is written depends on the sweep's kind: ``horizons`` fits the exponents of every
point and draws schedules, loss curves and fits; ``phase_diagram`` draws the maps and
checks the labels against the theory; ``compute_optimal`` draws the frontier. Every
kind gets the table of all records. Files are written atomically into
``<out>/figures`` and ``<out>``; re-running replaces them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from optctl import plots
from optctl.io.files import write_json, write_text_atomic
from optctl.model.replay import replay
from optctl.solver.result import record_schedule, record_spec
from optctl.studies.horizons import HorizonStudy, compute_studies, horizon_study, phase_diagram
from optctl.studies.sweep import SweepData, load_sweep, summary_table


def exponent_table(studies: list[HorizonStudy]) -> str:
    """Markdown: fitted vs theory exponents with the local slopes, one row per quantity."""
    lines = ["| model | quantity | fitted | theory | fitted − theory | fit range T | local slopes (T midpoints) |",
             "|---|---|---:|---:|---:|---|---|"]
    for st in studies:
        model = f"a={st.spec.a:g}, b={st.spec.b:g} ({st.spec.phase})"
        for row in st.table_rows():
            th = row["theory"]
            slopes = ", ".join(f"{s:.3f}" for s in row["local_slopes"])
            lo, hi = row["fit_range"]
            th_s = "—" if th is None else f"{th:.3f}"
            dev_s = "—" if th is None else f"{row['deviation']:+.3f}"
            lines.append(f"| {model} | {row['quantity']} | {row['fitted']:.3f} | {th_s} | {dev_s} | "
                         f"{lo:,.0f} – {hi:,.0f} | {slopes} |")
    return "\n".join(lines)


def shape_lines(st: HorizonStudy) -> list[str]:
    """Markdown bullets: the label, the easy-form and WSD fits of one point's schedules."""
    c, spec = st.classification, st.spec
    e = c.easy
    xi = "—" if e.xi is None else f"{e.xi:.3f}"
    w0, w1 = c.shapes[0].wsd, c.shapes[-1].wsd
    lines = [
        f"- a = {spec.a:g}, b = {spec.b:g}: classified **{c.label}** (confidence {c.confidence:.3f}, "
        f"{c.evidence}, score {c.score:+.4f}); theory: {spec.phase}." + (f" {'; '.join(c.notes)}." if c.notes else ""),
        f"  - easy form η ≈ A T^(−ξ)(1 − t/T)^δ over T = {list(c.used)}: ξ = {xi}, δ = {e.delta:.2f} "
        + (f"(theory ξ = 1 − b/a = {st.theory['peak_lr']:.3f}, δ = 2b − 1 = {2 * spec.b - 1:g})"
           if spec.phase == "easy" else "(no easy-phase theory: b > a)")
        + f", rms residual of log η {e.residual:.3f}",
        f"  - WSD form: plateau {w0.plateau_value:.3f} → {w1.plateau_value:.3f} (T = {c.shapes[0].T:,} → "
        f"{c.shapes[-1].T:,}), warmup {w0.warmup_steps} → {w1.warmup_steps} steps, annealing fraction "
        f"{', '.join(f'{x:.3f}' for x in st.anneal_fraction)} (trend "
        f"{'—' if c.anneal_trend is None else f'{c.anneal_trend:+.3f}'} per decade), decay power "
        f"{w0.decay_power:.2f} → {w1.decay_power:.2f}",
    ]
    return lines


def horizon_figures(data: SweepData, st: HorizonStudy, figdir: Path, *, prefix: str = "") -> None:
    """Schedules, loss curves and exponent fits of one point of a horizon sweep."""
    recs = data.records[st.key]
    Ts = [int(T) for T in st.horizons]
    etas = [record_schedule(recs[T]).per_step for T in Ts]
    spec = st.spec
    name = prefix or st.key
    plots.save(plots.plot_schedule_family(Ts, etas, a=spec.a, b=spec.b, eta_max=spec.eta_max),
               figdir / f"{name}_schedules.png")
    shown = [T for T in Ts if T <= 100_000][-4:] if len(Ts) > 4 else Ts
    losses = [replay(record_spec(recs[T]), etas[Ts.index(T)]).loss for T in shown]
    plots.save(plots.plot_loss_family(shown, losses), figdir / f"{name}_losses.png")
    if st.fits:
        plots.save(plots.plot_exponents(st), figdir / f"{name}_exponents.png")


def write_sweep_report(out: Path, *, figures: bool = True) -> dict[str, Any]:
    """Analyse the sweep folder ``out``; write ``report.json``, ``report.md``, ``figures/``."""
    out = Path(out)
    data = load_sweep(out)
    kind = data.sweep.kind
    figdir = out / "figures"
    n_done = sum(len(r) for r in data.records.values())
    n_all = len(data.sweep.points()) * len(data.sweep.horizons)
    report: dict[str, Any] = {"name": data.sweep.name, "kind": kind, "records": n_done,
                              "records_expected": n_all}
    md = [f"# Sweep `{data.sweep.name}` ({kind})", "",
          f"{n_done} of {n_all} (point, horizon) records on disk.", ""]
    if kind == "horizons":
        studies = [horizon_study(data, k) for k in data.records if len(data.records[k]) >= 2]
        report["points"] = {
            st.key: {"exponents": st.table_rows(), "classification": st.classification.to_dict(),
                     "anneal_fraction": st.anneal_fraction.tolist(), "horizons": st.horizons.tolist()}
            for st in studies}
        md += ["## Exponents (fit over the last decade of horizons)", "", exponent_table(studies), ""]
        md += ["## Schedule shapes", ""]
        for st in studies:
            md += shape_lines(st)
            if figures:
                horizon_figures(data, st, figdir)
        md.append("")
    elif kind == "phase_diagram":
        pd = phase_diagram(data)
        ag = pd.agreement()
        report["agreement"] = ag
        report["maps"] = {"a": pd.a.tolist(), "b": pd.b.tolist(), "label": pd.label.tolist(),
                          "confidence": pd.confidence.tolist(), "zeta": pd.zeta.tolist(),
                          "xi": pd.xi.tolist(), "gain": pd.gain.tolist(), "best": pd.best.tolist()}
        md += ["## Classification against the theory (easy iff b < a)", "",
               f"- |a − b| ≥ {ag['band']}: {ag['far']['agree']} of {ag['far']['points']} agree, "
               f"{ag['far']['unsure']} unsure ({ag['unsure_far_points']}), {ag['far']['wrong']} wrong",
               f"- |a − b| < {ag['band']}: {ag['near']['agree']} of {ag['near']['points']} agree, "
               f"{ag['near']['unsure']} unsure, {ag['near']['wrong']} wrong",
               f"- wrong labels: {ag['wrong_points'] or 'none'}", ""]
        if figures:
            plots.save(plots.plot_phase_diagram(pd), figdir / "phase_diagram.png")
    elif kind == "compute_optimal":
        studies_c = compute_studies(data)
        report["frontiers"] = []
        md += ["## Compute-optimal frontiers", "",
               "| a | b | fitted ν (L ∝ C^−ν) | balance estimate | fit range C | local slopes |",
               "|---:|---:|---:|---:|---|---|"]
        for cs in studies_c:
            f = cs.frontier.fit
            report["frontiers"].append({"a": cs.a, "b": cs.b, "theory": cs.theory,
                                        "fit": None if f is None else f.to_dict(),
                                        "best_N": cs.frontier.best_N.tolist(),
                                        "compute": cs.frontier.compute.tolist()})
            if f is not None:
                md.append(f"| {cs.a:g} | {cs.b:g} | {f.exponent:.3f} | {cs.theory:.3f} | "
                          f"{f.fit_range[0]:.3g} – {f.fit_range[1]:.3g} | "
                          + ", ".join(f"{s:.3f}" for s in f.local_slopes[:: max(1, f.local_slopes.size // 8)])
                          + " |")
        md.append("")
        if figures and studies_c:
            plots.save(plots.plot_compute_frontier(studies_c), figdir / "compute_frontier.png")
    md += ["## All records", "", "```", summary_table(data), "```", ""]
    write_json(out / "report.json", report)
    write_text_atomic(out / "report.md", "\n".join(md))
    return report
