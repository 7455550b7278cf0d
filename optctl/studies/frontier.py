"""The compute-optimal frontier over N = 16 … 16,384 from the finite-horizon law.

Bordelon & Mori (arXiv:2602.04774) state that with ``tail`` on the loss frontier over
``N`` at fixed compute ``C = N T`` follows a power of ``C`` (MODEL.md §5). Solving every
``(N, T)`` with IPOPT up to ``N = 16,384`` and ``T = 10^7`` is out of reach here, so this
study evaluates the finite-horizon law (:func:`optctl.solver.law.law_loss`: the law's
schedule with its best constant, block propagator, tail included; grouped
modes, tens of milliseconds per point; within about 0.1% of the exact replay) on the grid, takes the lower envelope over ``N``
(:func:`optctl.analysis.scaling.compute_frontier`) and reports the fitted exponent and the
local slopes against the balance ``ν = (a−1)ζ/(a−1+ζ)`` (:func:`optctl.theory.compute_exponent`,
derived in docs/scaling.md). On the overlap with the solved compute sweeps (``N <= 1024``,
``T <= 10^5``) it reports how far the law's loss lies from the solved optimum's, the
check that makes the law's frontier trustworthy.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from optctl import plots, theory
from optctl.analysis.scaling import compute_frontier, decade_slopes
from optctl.io.files import write_json, write_text_atomic
from optctl.io.sweepconfig import SweepSpec
from optctl.solver.law import law_loss
from optctl.studies.sweep import SweepData

FRONTIER_N = tuple(16 * 2**k for k in range(11))  # 16 … 16,384
FRONTIER_T = tuple(int(round(10 ** (2 + 0.5 * k))) for k in range(11))  # 10^2 … 10^7


def law_grid(sweep: SweepSpec, Ns: Sequence[int], Ts: Sequence[int]) -> dict[str, np.ndarray]:
    """The law's final loss at every ``(N, T)`` of the grid for the sweep's base model."""
    rows = [(n, T, law_loss(sweep.spec({"N": float(n)}, T))[0]) for n in Ns for T in Ts]
    arr = np.array(rows, dtype=float)
    return {"N": arr[:, 0], "T": arr[:, 1], "loss": arr[:, 2]}


def overlap_check(data: SweepData, sweep: SweepSpec) -> dict[str, float]:
    """Relative difference of the law's loss from each solved record of a compute sweep."""
    rel = []
    for by_T in data.records.values():
        for T, rec in by_T.items():
            law = law_loss(sweep.spec({"N": float(rec["spec"]["N"])}, int(T)))[0]
            rel.append(law / float(rec["final_loss"]) - 1.0)
    r = np.asarray(rel)
    return {"n": int(r.size), "max_abs": float(np.max(np.abs(r))), "median": float(np.median(r)),
            "min": float(r.min()), "max": float(r.max())}


def frontier_study(cases: Mapping[str, tuple[SweepSpec, SweepData | None]], out: Path, *,
                   Ns: Sequence[int] = FRONTIER_N, Ts: Sequence[int] = FRONTIER_T) -> dict[str, Any]:
    """For each case (a compute sweep's base model, and its solved records if any): the
    law's frontier over ``Ns`` x ``Ts``, its fit and local slopes, the theory's ``ν`` and
    the overlap check. Writes ``frontier_law.json``, ``.md`` and ``fig4_frontier_law.png``."""
    t0 = time.perf_counter()
    res: dict[str, Any] = {"N": list(Ns), "T": list(Ts), "cases": {}}
    fronts = []
    for name, (sweep, data) in cases.items():
        g = law_grid(sweep, Ns, Ts)
        a, b = float(sweep.base["a"]), float(sweep.base["b"])
        nu = theory.compute_exponent(a, b)
        fr = compute_frontier(g["N"], g["T"], g["loss"], theory=nu)
        interior = sorted({int(n) for n in fr.best_N[fr.interior]})
        cx, sl = decade_slopes(fr.compute[fr.interior], fr.loss[fr.interior])
        fronts.append((name, a, b, fr, nu, cx, sl))
        res["cases"][name] = {
            "decade_C": cx.tolist(), "decade_slopes": sl.tolist(),
            "a": a, "b": b, "theory": nu, "zeta": theory.zeta_optimal(a, b),
            "best_N_exponent": theory.zeta_optimal(a, b) / (a - 1 + theory.zeta_optimal(a, b)),
            "fit": None if fr.fit is None else fr.fit.to_dict(), "interior_N": interior,
            "overlap": None if data is None else overlap_check(data, sweep),
        }
    res["wall_s"] = time.perf_counter() - t0
    res["load_average"] = list(os.getloadavg())
    write_json(out / "frontier_law.json", res)
    write_text_atomic(out / "frontier_law.md", frontier_report(res))
    plots.save(plots.plot_law_frontier(fronts), out / "fig4_frontier_law.png")
    return res


def frontier_report(res: dict[str, Any]) -> str:
    """Markdown: fitted ν against the balance, local slopes, the overlap with solved optima."""
    lines = ["# Compute-optimal frontier over N = 16 … 16,384 (the finite-horizon law)", "",
             f"N = {res['N'][0]} … {res['N'][-1]} (powers of 2) × T = 10^2 … 10^7 (half decades), tail on, "
             "σ = 0.5, m = 5, η_max = 1. Loss: the law's schedule with its best constant "
             f"on sub-block midpoints, block propagator (optctl.solver.law.law_loss); {res['wall_s']:.0f} s this run (load average "
             f"{res['load_average'][0]:.1f} on 2 cores). Theory: ν = (a−1)ζ/(a−1+ζ) (docs/scaling.md).", "",
             "| a | b | fitted ν | theory ν | fit range C | best N (interior) | slope per decade of C (midpoint) | "
             "law vs solved optimum on N ≤ 1024, T ≤ 10^5 |", "|---:|---:|---:|---:|---|---|---|---|"]
    for c in res["cases"].values():
        f, o = c["fit"], c["overlap"]
        if f is None:
            lines.append(f"| {c['a']:g} | {c['b']:g} | — | {c['theory']:.3f} | too few interior points | | | |")
            continue
        slopes = ", ".join(f"{s:.3f} ({x:.0e})" for x, s in zip(c["decade_C"], c["decade_slopes"], strict=True))
        ov = "—" if o is None else (f"median {100 * o['median']:+.2f}%, range {100 * o['min']:+.2f}% … "
                                    f"{100 * o['max']:+.2f}% over {o['n']} points")
        lines.append(f"| {c['a']:g} | {c['b']:g} | {f['exponent']:.3f} | {c['theory']:.3f} | "
                     f"{f['fit_range'][0]:.3g} – {f['fit_range'][1]:.3g} | {c['interior_N']} | {slopes} | {ov} |")
    lines.append("")
    return "\n".join(lines) + "\n"
