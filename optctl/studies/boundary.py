"""Near the phase boundary: does the classifier's window exponent p approach 1 as T grows?

The classifier (:mod:`optctl.analysis.classify`, docs/scaling.md) separates the phases by
the exponent ``p`` of the decay window ``T − t_c ∝ T^p`` (``t_c``: the step after which
the optimum stays below ``c η_max``, ``c = 0.9, 0.5``), with a boundary ``p_0 = 1.036``
measured at ``T = 10^3 … 10^5``. Asymptotically both phases meet at ``p = 1``: the hard
phase's window grows like ``T^((a+b−1)/(2b−1))`` (from the finite-horizon law,
:func:`optctl.theory.window_exponent`) and the easy phase's like ``T^(1+ξ/δ)``
(``ξ = 1 − b/a``, ``δ = 2b − 1``, Bordelon & Mori, arXiv:2602.04774); both tend to 1 as
``b → a``. The study solves ``a = 3.5`` with ``|a − b| <= 0.3`` at one horizon per decade
``T = 10^3 … 10^7`` (``optctl/data/sweep_boundary.yaml``; block grid, so the cost does not
grow with ``T``) and reports, per point, ``p`` over the calibration range (``10^3 … 10^5``)
and over all horizons, the local exponent per decade, the same local exponents of the
finite-horizon law's schedule (no IPOPT) and the asymptotic value.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from optctl import plots, theory
from optctl.analysis.classify import (
    CROSSING_LEVELS,
    WINDOW_BOUNDARY,
    ScheduleShape,
    classify,
    describe,
)
from optctl.errors import SweepError
from optctl.io.files import write_json, write_text_atomic
from optctl.io.sweepconfig import SweepSpec
from optctl.solver.law import law_schedule
from optctl.solver.result import record_schedule, record_spec
from optctl.studies.sweep import load_sweep, run_sweep

CALIBRATION_MAX_T = 100_000  # the classifier's p_0 was measured up to this horizon


def asymptotic_p(a: float, b: float) -> float:
    """``p`` as ``T → ∞``: ``(a+b−1)/(2b−1)`` in the hard phase, ``1 + ξ/δ`` in the easy."""
    if b > a:
        return theory.window_exponent(a, b)
    return 1.0 + theory.xi(a, b) / (2.0 * b - 1.0)


def law_log_window(eta: np.ndarray, eta_max: float) -> float:
    """Mean over the classifier's levels of ``log10(T − t_c)`` for a per-step schedule
    (the law's decays monotonically from its peak, so ``t_c`` is the last update at or
    above ``c η_max``)."""
    logs = []
    for c in CROSSING_LEVELS:
        at = np.flatnonzero(eta >= c * eta_max)
        t_c = at[-1] + 1 if at.size else 0
        logs.append(np.log10(max(eta.size - t_c, 1)))
    return float(np.mean(logs))


def solved_log_window(s: ScheduleShape) -> float:
    """The classifier's mean ``log10(T − t_c)`` of one solved schedule."""
    return float(np.mean([np.log10(max(s.T * (1 - s.crossings[c]), 1.0)) for c in CROSSING_LEVELS]))


def boundary_study(sweep: SweepSpec, out: Path, *, workers: int = 2, progress: bool = True) -> dict[str, Any]:
    """Run (or resume) ``sweep`` into ``out/sweeps/boundary`` and write ``boundary.json``,
    ``boundary.md`` and ``fig_boundary_window.png`` into ``out``. Returns the summary."""
    t0 = time.perf_counter()
    run = run_sweep(sweep, out / "sweeps" / "boundary", workers=workers, progress=progress)
    solve_s = time.perf_counter() - t0
    if run.failed:
        raise SweepError(f"sweep boundary: points failed: {run.failed}")
    data = load_sweep(out / "sweeps" / "boundary")
    rows = []
    for recs in sorted(data.records.values(), key=lambda r: record_spec(next(iter(r.values()))).b):
        Ts = sorted(recs)
        spec = record_spec(recs[Ts[0]])
        scheds = [record_schedule(recs[T]) for T in Ts]
        shapes = [describe(s, spec.eta_max) for s in scheds]
        w = np.array([solved_log_window(s) for s in shapes])
        lT = np.log10(np.asarray(Ts, float))
        calib = [i for i, T in enumerate(Ts) if T <= CALIBRATION_MAX_T]
        lw = np.array([law_log_window(law_schedule(record_spec(recs[T])).eta, spec.eta_max) for T in Ts])
        c_calib = classify(scheds[: len(calib)], spec=spec)
        c_all = classify(scheds, spec=spec)
        rows.append({
            "a": spec.a, "b": spec.b, "theory_phase": theory.phase(spec.a, spec.b), "T": Ts,
            "p_calibration": float(np.polyfit(lT[calib], w[calib], 1)[0]),
            "p_all": float(np.polyfit(lT, w, 1)[0]), "local_p": (np.diff(w) / np.diff(lT)).tolist(),
            "law_local_p": (np.diff(lw) / np.diff(lT)).tolist(), "p_asymptotic": asymptotic_p(spec.a, spec.b),
            "label_calibration": c_calib.label, "confidence_calibration": c_calib.confidence,
            "label_all": c_all.label, "confidence_all": c_all.confidence, "evidence_all": c_all.evidence,
            "peak_at_longest": shapes[-1].peak, "status": [recs[T].get("status") for T in Ts],
        })
    summary = {"solve_wall_s": solve_s, "analysis_wall_s": time.perf_counter() - t0 - solve_s,
               "window_boundary": WINDOW_BOUNDARY, "load_average": list(os.getloadavg()), "points": rows}
    write_json(out / "boundary.json", summary)
    write_text_atomic(out / "boundary.md", boundary_report(summary))
    plots.save(plots.plot_boundary_windows(rows, boundary=WINDOW_BOUNDARY), out / "fig_boundary_window.png")
    return summary


def boundary_report(s: dict[str, Any]) -> str:
    """Markdown: per point, p over the calibration range and over all horizons, labels,
    local exponents (solved and the law's) and the asymptotic value."""
    rows = s["points"]
    Ts = rows[0]["T"]
    dec = [f"{Ts[i]:.0e}→{Ts[i + 1]:.0e}" for i in range(len(Ts) - 1)]
    lines = ["# Near the phase boundary: the window exponent p up to T = 10^7", "",
             "Sweep `optctl/data/sweep_boundary.yaml` (a = 3.5, N = 1000, σ = 0.5, m = 5, η_max = 1), analysed "
             f"by `optctl reproduce` (solves {s['solve_wall_s']:.0f} s this run, finished points reused; "
             f"analysis {s['analysis_wall_s']:.0f} s; load average {s['load_average'][0]:.1f} on 2 cores). p: "
             "slope of the mean log10 window T − t_c (c = 0.9, 0.5) against log10 T; the classifier's boundary "
             f"p_0 = {s['window_boundary']}; label (confidence, evidence).", "",
             "| b | theory | p (10^3…10^5) | label (10^3…10^5) | p (10^3…10^7) | label (10^3…10^7) | "
             f"local p: {', '.join(dec)} | the law's local p | p as T → ∞ |",
             "|---:|---|---:|---|---:|---|---|---|---:|"]
    for r in rows:
        lines.append(
            f"| {r['b']:g} | {r['theory_phase']} | {r['p_calibration']:.3f} | {r['label_calibration']} "
            f"({r['confidence_calibration']:.2f}) | {r['p_all']:.3f} | {r['label_all']} ({r['confidence_all']:.2f}, "
            f"{r['evidence_all']}) | {', '.join(f'{x:.3f}' for x in r['local_p'])} | "
            f"{', '.join(f'{x:.3f}' for x in r['law_local_p'])} | {r['p_asymptotic']:.3f} |")
    lines.append("")
    return "\n".join(lines) + "\n"
