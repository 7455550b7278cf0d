"""`optctl reproduce`: regenerate the paper's figures 1–5 (MODEL.md §5) and the claim table into one folder.

Bordelon & Mori (arXiv:2602.04774), with ``N = 1000, η_max = 1, a = 3.5, m = 5,
σ = 0.5`` and ``b = 2`` (easy) or ``b = 5`` (hard):

- figure 1(b): final loss against a constant rate, the best constant against ``T``;
- figure 2: optimal schedules over horizons (the finite-horizon law dashed), their loss
  curves, and ``L_T`` against ``T`` for the optimum, the best constant and the best power
  law with fitted and theory exponents and local slopes (2(c, f));
- figure 3: the bias/variance split at ``T = 3162``;
- figure 4: the compute-optimal frontier with ``tail`` on (easy ``a = 2, b = 1.5``;
  hard ``a = 1.5, b = 2``), solved for ``N = 16 … 1024`` and from the finite-horizon law
  for ``N = 16 … 16,384``, ``T <= 10^7`` (:mod:`optctl.studies.frontier`);
- figure 5: the loss ``L(t)`` for each horizon of optimal ``(η, β)`` against optimal SGD,
  easy and hard (:mod:`optctl.studies.momentum`), and the batch-size study of MODEL.md
  §4.2 with the ramp savings against ``T`` found on disk (:mod:`optctl.studies.batch`);
- not in the paper: the hard phase's decay window, and the classifier's window exponent
  near ``a = b`` up to ``T = 10^7`` (:mod:`optctl.studies.boundary`).

The sweeps are the packaged configs ``optctl/data/sweep_horizons.yaml`` (horizons
``10^2.5 .. 10^6`` in quarter decades), ``sweep_compute_{easy,hard}.yaml``
(``N = 16 .. 1024``, ``T = 10^2 .. 10^5``) and ``sweep_boundary.yaml``. Their records are
kept under ``<out>/sweeps/``, so an interrupted reproduction resumes where it stopped.
``quick=True`` shrinks every sweep (horizons to ``3162``, ``N <= 64``) to check the
pipeline in a minute; its exponents are not meant to match the theory.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optctl import plots, theory
from optctl.errors import SweepError
from optctl.io.files import read_json, write_json, write_text_atomic
from optctl.io.sweepconfig import SweepSpec, load_sweep_config
from optctl.model.replay import final_loss, replay
from optctl.model.spectrum import spectrum
from optctl.solver.law import (
    decay_window,
    kernel,
    law_decay_exponent,
    law_deviation,
    law_schedule,
    law_window,
)
from optctl.solver.report import record_baseline
from optctl.solver.result import record_schedule, record_spec
from optctl.studies.batch import RAMP_HORIZONS, run_batch_study, run_ramp_horizons
from optctl.studies.boundary import boundary_study
from optctl.studies.frontier import FRONTIER_N, FRONTIER_T, frontier_study
from optctl.studies.horizons import compute_studies, horizon_study
from optctl.studies.lawbench import LAW_LONG_K, LAW_LONG_T, law_bench
from optctl.studies.momentum import load_points, loss_curves, run_momentum_study
from optctl.studies.report import exponent_table, shape_lines
from optctl.studies.sweep import load_sweep, run_sweep

BIAS_VARIANCE_T = 3162
ETA_MAX_HELD = "constant η_max"  # figure 3's hard panel: the plateau's rate held to the end
BV_PLATEAU_BIAS = 1.1  # the optimum keeps the plateau's bias: at most 1.1 x that of η_max held
BV_ANNEAL_VARIANCE = 0.1  # the annealing removes variance: at most 0.1 x that of η_max held


def packaged_sweep(name: str) -> SweepSpec:
    """One of the packaged sweep configs (``horizons``, ``compute_easy``, ``compute_hard``)."""
    return load_sweep_config(Path(str(resources.files("optctl") / "data" / f"sweep_{name}.yaml")))


def _quick(s: SweepSpec) -> SweepSpec:
    if s.kind == "horizons":
        hs = (316, 1000, BIAS_VARIANCE_T)
        return dataclasses.replace(s, horizons=hs, baseline_horizons=hs)
    return dataclasses.replace(s, horizons=(100, 316, 1000), axes={"N": (16.0, 32.0, 64.0)})


def reproduce(out: Path, *, workers: int = 2, progress: bool = True, quick: bool = False,
              controls: bool = True, full: bool = False) -> dict[str, Any]:
    """Run (or resume) the three sweeps and write figures 2–4, ``report.md`` and ``report.json``.

    With ``controls`` (the default) also the momentum study of figure 5
    (:mod:`optctl.studies.momentum`, into ``<out>/momentum``) and the batch-size study
    (:mod:`optctl.studies.batch`, into ``<out>/batch``), each with its own ``report.md``.
    Without ``full`` two slow studies are read from ``out`` (:data:`READ_NOT_COMPUTED`):
    the law against the block solves (``law.md``, :mod:`optctl.studies.lawbench`) and the
    batch-ramp savings for the horizons not yet computed (``batch/ramp/``); ``full`` runs
    them too (the law's comparison again, the ramp points that are missing).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    sweeps = {n: packaged_sweep(n) for n in ("horizons", "compute_easy", "compute_hard")}
    if quick:
        sweeps = {n: _quick(s) for n, s in sweeps.items()}
    for n, s in sweeps.items():
        ts = time.perf_counter()
        if progress:
            print(f"sweep {n}: {len(s.points())} points x horizons {list(s.horizons)}",
                  file=sys.stderr, flush=True)
        run = run_sweep(s, out / "sweeps" / n, workers=workers, progress=progress)
        if run.failed:
            raise SweepError(f"sweep {n}: points failed: {run.failed}")
        timings[f"sweep {n}"] = time.perf_counter() - ts
    written: list[str] = []
    if full:
        ts = time.perf_counter()
        if quick:
            law_bench(out, Ts=(1000,), Ks=(50,), progress=progress)
        else:
            law_bench(out, progress=progress)
            law_bench(out / "law_T1e7", Ts=LAW_LONG_T, Ks=LAW_LONG_K, progress=progress)
        timings["the law against block solves (law.md, law_T1e7/)"] = time.perf_counter() - ts
    ts = time.perf_counter()

    data = load_sweep(out / "sweeps" / "horizons")
    studies = [horizon_study(data, k) for k in data.records]
    bv: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    checks: dict[str, dict[str, Any]] = {}
    for st in studies:
        phase = st.spec.phase
        recs = data.records[st.key]
        Ts = [int(T) for T in st.horizons]
        etas = [record_schedule(recs[T]).per_step for T in Ts]
        shown = [T for T in Ts if T in (316, 1000, 3162, 10000, 31623, 100000, 316228, 1000000)] or Ts
        laws = {T: law_schedule(record_spec(recs[T])).eta for T in shown}
        law = [laws[T] for T in shown]
        fig = plots.plot_schedule_family(shown, [etas[Ts.index(T)] for T in shown], a=st.spec.a,
                                         b=st.spec.b, eta_max=st.spec.eta_max, law=law)
        plots.save(fig, out / f"fig2_schedules_{phase}.png")
        curves = [T for T in shown if T <= 100_000]
        losses = [replay(record_spec(recs[T]), etas[Ts.index(T)]).loss for T in curves]
        base = {}
        if "constant" in data.sweep.baselines:
            base["constant"] = [replay(record_spec(recs[T]), record_baseline(recs[T], "constant")).loss
                                for T in curves]
        plots.save(plots.plot_loss_family(curves, losses, baseline=base,
                                          title=f"a = {st.spec.a:g}, b = {st.spec.b:g} ({phase} phase)"),
                   out / f"fig2_losses_{phase}.png")
        plots.save(plots.plot_exponents(st), out / f"fig2cf_exponents_{phase}.png")
        written += [f"fig2_schedules_{phase}.png", f"fig2_losses_{phase}.png", f"fig2cf_exponents_{phase}.png"]
        checks[phase] = _law_checks(recs, [T for T in LAW_CHECK_T if T in recs], laws)
        bench = _bench_law(out, phase, [T for T in LAW_CHECK_T if T in recs])
        if bench is not None:
            checks[phase]["bench_law"] = bench
        if phase == "easy":
            checks[phase]["law_decay"] = law_decay_study(st.spec, out)
            written.append("law_decay.md")
        if "constant" in data.sweep.baselines:
            rate_curves, best = _constant_rates(recs, Ts)
            checks[phase]["best_constant"] = _slope(*best, last=3)
            plots.save(plots.plot_constant_rates(rate_curves, best, a=st.spec.a, b=st.spec.b, eta_max=st.spec.eta_max),
                       out / f"fig1b_constant_rates_{phase}.png")
            written.append(f"fig1b_constant_rates_{phase}.png")
        if phase == "hard":
            solved, law_w = _decay_windows(st.spec, Ts, etas)
            checks[phase]["window_solved"] = _slope(solved["T"], solved["window"], last=5)
            checks[phase]["window_law"] = _slope(law_w["T"], law_w["window"], last=2)
            plots.save(plots.plot_decay_window(solved, law_w, a=st.spec.a, b=st.spec.b),
                       out / "fig_decay_window_hard.png")
            written.append("fig_decay_window_hard.png")
        if BIAS_VARIANCE_T in recs:
            spec = record_spec(recs[BIAS_VARIANCE_T])
            parts = bias_variance_parts(recs[BIAS_VARIANCE_T], etas[Ts.index(BIAS_VARIANCE_T)], phase)
            bv[f"{phase} phase (a = {spec.a:g}, b = {spec.b:g})"] = parts
            checks[phase]["bias_variance"] = {"T": BIAS_VARIANCE_T, **{
                n: (float(bias[-1]), float(var[-1])) for n, (bias, var) in parts.items()}}
    if bv:
        plots.save(plots.plot_bias_variance(bv, T=BIAS_VARIANCE_T), out / "fig3_bias_variance.png")
        written.append("fig3_bias_variance.png")

    timings["figures 1-3 and the law's checks"] = time.perf_counter() - ts
    ts = time.perf_counter()
    frontiers = []
    for n in ("compute_easy", "compute_hard"):
        frontiers += compute_studies(load_sweep(out / "sweeps" / n))
    plots.save(plots.plot_compute_frontier(frontiers, title="compute-optimal frontier, C = N T (tail on)"),
               out / "fig4_compute_frontier.png")
    written.append("fig4_compute_frontier.png")
    cases = {n: (sweeps[n], load_sweep(out / "sweeps" / n)) for n in ("compute_easy", "compute_hard")}
    checks["frontier_law"] = frontier_study(cases, out, Ns=FRONTIER_N[:4] if quick else FRONTIER_N,
                                            Ts=FRONTIER_T[:5] if quick else FRONTIER_T)
    written.append("fig4_frontier_law.png")
    timings["figure 4 and the law's frontier to N = 16,384"] = time.perf_counter() - ts

    ts = time.perf_counter()
    bsweep = packaged_sweep("boundary")
    if quick:
        bsweep = dataclasses.replace(bsweep, horizons=(1000, 10000, 100000), axes={"a": (3.5,), "b": (3.2, 3.8)})
    checks["boundary"] = boundary_study(bsweep, out, workers=workers, progress=progress)
    written.append("fig_boundary_window.png")
    timings["near-boundary study"] = time.perf_counter() - ts

    if controls:
        ts = time.perf_counter()
        short: dict[str, Sequence[int]] = {"easy": (32, 64, 128), "hard": (32, 64, 128)}
        mom = run_momentum_study(out / "momentum", horizons=short if quick else None, progress=progress)
        checks["momentum"] = mom["phases"]
        for mphase, mrecs in load_points(out / "momentum").items():
            shown_recs = [r for r in mrecs if r["T"] in mom["phases"][mphase]["horizons"]]
            mcurves = [loss_curves(r) for r in shown_recs]
            ms = mom["phases"][mphase]
            plots.save(plots.plot_momentum_curves([r["T"] for r in shown_recs], [c[0] for c in mcurves],
                                                  [c[1] for c in mcurves],
                                                  [np.asarray(r["eta"]) for r in shown_recs],
                                                  [np.asarray(r["beta"]) for r in shown_recs],
                                                  title=f"{mphase} phase (a = {ms['a']:g}, b = {ms['b']:g})",
                                                  momentum_capped=[r["momentum_status"] == ITERATION_CAP
                                                                   for r in shown_recs],
                                                  sgd_capped=[r["sgd_status"] == ITERATION_CAP for r in shown_recs]),
                       out / f"fig5_momentum_{mphase}.png")
            written.append(f"fig5_momentum_{mphase}.png")
        timings["momentum study and figure 5"] = time.perf_counter() - ts
        ts = time.perf_counter()
        run_batch_study(out / "batch", T0=64 if quick else 256, progress=progress)
        timings["batch study"] = time.perf_counter() - ts
        ts = time.perf_counter()
        checks["ramps"] = run_ramp_horizons(out / "batch", horizons=(64,) if quick else RAMP_HORIZONS,
                                            progress=progress, compute=quick or full)
        written.append("batch/ramp_horizons.png")
        timings["batch ramps against T" + ("" if full or quick else " (finished points)")] = time.perf_counter() - ts
        written += [f"momentum/momentum_{p}.png" for p in ("easy", "hard")]
        written += [f"batch/batch_{p}.png" for p in ("easy", "hard")]

    warn_missing_law(out)
    report = _report(studies, frontiers, sweeps, quick, time.perf_counter() - t0, written, checks, timings,
                     full=full, controls=controls)
    write_json(out / "report.json", report["json"])
    write_text_atomic(out / "report.md", report["md"])
    return report["json"]


CONSTANT_CURVE_T = (316, 3162, 31623)  # horizons of figure 1(b)'s loss curves
ITERATION_CAP = "Maximum_Iterations_Exceeded"  # IPOPT's status when it stopped at its cap
LAW_DECAY_T = tuple(10**k for k in range(4, 13))  # horizons of the law's local decay exponent
LAW_DECAY_N = (1000, 100_000)  # the reference N, and one large enough that the modes do not run out
LAW_DECAY_WINDOW = (0.2, 0.5)  # 1 − t/T
BENCH_LAW_K = "200"  # the solver's grid in results/paper/law.md that the claim table cites
LAW_AGREE, LAW_PARTLY = 0.05, 0.10  # the solved schedule's largest deviation from the law
LAW_LOSS_GAP = 0.01  # |law − solved| / solved


def law_decay_study(spec: Any, out: Path) -> dict[str, Any]:
    """The law's local decay exponent ``δ`` (``η ∝ (1 − u)^δ`` over ``1 − u`` in
    :data:`LAW_DECAY_WINDOW`, :func:`optctl.solver.law.law_decay_exponent`) at the horizons
    :data:`LAW_DECAY_T` for the spec with ``N`` in :data:`LAW_DECAY_N`, against the paper's
    ``2b − 1``: no IPOPT, seconds. Writes ``law_decay.md`` and ``law_decay.json``."""
    rows = {N: [law_decay_exponent(dataclasses.replace(spec, N=N), float(T), LAW_DECAY_WINDOW) for T in LAW_DECAY_T]
            for N in LAW_DECAY_N}
    target = 2 * spec.b - 1
    lo, hi = LAW_DECAY_WINDOW
    md = [f"# The finite-horizon law's decay exponent (a = {spec.a:g}, b = {spec.b:g})", "",
          f"Local exponent δ of the law's rate, η ∝ (1 − t/T)^δ, fitted over 1 − t/T ∈ [{lo:g}, {hi:g}] "
          f"(`optctl.solver.law.law_decay_exponent`, no IPOPT), against the paper's 2b − 1 = {target:g}. "
          f"σ = {spec.sigma:g}, m = {spec.batch_size:g}, η_max = {spec.eta_max:g}. Horizons past 10^8 "
          "exist for the law only (a solve or replay stops there). Written by `optctl reproduce`.", "",
          "| T | " + " | ".join(f"δ, N = {N:,}" for N in LAW_DECAY_N) + " |", "|---:|" + "---:|" * len(LAW_DECAY_N)]
    for i, T in enumerate(LAW_DECAY_T):
        md.append(f"| 10^{int(round(np.log10(T)))} | " + " | ".join(f"{rows[N][i]:.3f}" for N in LAW_DECAY_N) + " |")
    res = {"a": spec.a, "b": spec.b, "target": target, "window": list(LAW_DECAY_WINDOW), "T": list(LAW_DECAY_T),
           "delta": {str(N): rows[N] for N in LAW_DECAY_N}}
    write_json(out / "law_decay.json", res)
    write_text_atomic(out / "law_decay.md", "\n".join(md) + "\n")
    return res


def warn_missing_law(out: Path) -> list[str]:
    """Warn on stderr (and return them) when the files of ``benchmarks/bench_law.py`` that
    the claim table and the docs cite are not in ``out``: this command does not write them."""
    missing = [n for n in ("law.json", "law.md", "law_T1e7/law.md") if not (out / n).exists()]
    if missing:
        print(f"optctl: warning: {', '.join(missing)} not found in {out}: the claim rows on the law against "
              f"the {BENCH_LAW_K}-block solves say \"{NOT_MEASURED}\"; python benchmarks/bench_law.py --out "
              f"{out} writes law.md, and --T 10000000 --K 100 --out {out / 'law_T1e7'} the T = 10^7 comparison",
              file=sys.stderr, flush=True)
    return missing


def _bench_law(out: Path, phase: str, Ts: list[int]) -> dict[str, Any] | None:
    """The 200-block comparison of ``benchmarks/bench_law.py`` (``<out>/law.json``) at the
    horizons ``Ts``, or ``None`` when it has not been run into ``out``."""
    path = out / "law.json"
    if not path.exists():
        return None
    rows = {int(r["T"]): r for r in read_json(path)["rows"] if r["phase"] == phase and BENCH_LAW_K in r["solved"]}
    if not all(T in rows for T in Ts):
        return None
    sol = [rows[T]["solved"][BENCH_LAW_K] for T in Ts]
    return {"T": Ts, "K": int(BENCH_LAW_K), "deviation": [s["law_deviation"] for s in sol],
            "loss_vs_solved": [rows[T]["law_loss"] / s["loss"] - 1 for T, s in zip(Ts, sol, strict=True)],
            "status": [s["status"] for s in sol]}


LAW_CHECK_T = (10_000, 100_000, 1_000_000)  # horizons where the solved optimum meets the law


def _slope(x: Any, y: Any, *, last: int) -> float:
    """The least-squares slope of ``log y`` on ``log x`` over the ``last`` points."""
    lx, ly = np.log(np.asarray(x, float)[-last:]), np.log(np.asarray(y, float)[-last:])
    return float(np.polyfit(lx, ly, 1)[0])


def _law_checks(recs: dict[int, Any], Ts: list[int], laws: dict[int, np.ndarray]) -> dict[str, Any]:
    """At each of ``Ts``: how far the solved schedule lies from the finite-horizon law, and
    the law's schedule (from ``laws`` when the figure made it already) replayed against the
    solved optimum's loss (the record's own replay)."""
    out: dict[str, Any] = {"T": Ts, "deviation": [], "loss_vs_solved": []}
    for T in Ts:
        spec, sched = record_spec(recs[T]), record_schedule(recs[T])
        out["deviation"].append(law_deviation(spec, sched.per_step, sched.grid, sched.values)[0])
        law = laws[T] if T in laws else law_schedule(spec).eta
        out["loss_vs_solved"].append(final_loss(spec, law) / float(recs[T]["final_loss"]) - 1)
    return out




def _constant_rates(recs: dict[int, Any], Ts: list[int]) -> tuple[dict[int, tuple[np.ndarray, np.ndarray]],
                                                                 tuple[np.ndarray, np.ndarray]]:
    """Figure 1(b)'s data: ``L_T`` of constant rates replayed on a grid around each shown
    horizon's tuned constant, and the tuned constant at every horizon of the sweep."""
    best = np.array([float(record_baseline(recs[T], "constant")[0]) for T in Ts])
    curves = {}
    shown = [T for T in CONSTANT_CURVE_T if T in recs] or Ts[:: max(1, len(Ts) // 3)][:3]
    for T in shown:
        spec = record_spec(recs[T])
        grid = np.unique(np.clip(best[Ts.index(T)] * np.geomspace(1 / 30, 30, 25), 0, spec.eta_max))
        curves[T] = (grid, np.array([final_loss(spec, float(e)) for e in grid]))
    return curves, (np.asarray(Ts, float), best)


def _decay_windows(spec: Any, Ts: list[int], etas: list[np.ndarray]) -> tuple[dict[str, list[float]],
                                                                                dict[str, list[float]]]:
    """The decay window and last rate of the solved optima at ``Ts``, and of the law from
    the smallest of them to ``10^8`` updates (the largest horizon a spec takes) (the law costs the same at any horizon)."""
    solved = {"T": [float(T) for T in Ts], "window": [float(decay_window(e, spec.eta_max)) for e in etas],
              "last": [float(e[-1]) for e in etas]}
    law: dict[str, list[float]] = {"T": [], "window": [], "last": []}
    top = float(np.sqrt(kernel(spectrum(spec), np.zeros(1))[0]))
    for T in np.geomspace(min(Ts), 1e8, 23):
        window, C = law_window(dataclasses.replace(spec, T=int(round(T))))
        law["T"].append(float(round(T)))
        law["window"].append(window)
        law["last"].append(min(spec.eta_max, C / top))
    return solved, law


# What each figure shows and which of the paper's figures it reproduces (``{phase}``: the
# reference case's phase in the file name).
CAPTIONS = {
    "fig1b_constant_rates": "paper's figure 1(b): final loss against a constant rate at three horizons; the best "
                            "constant against T with −(a−1)/(a+b−1)",
    "fig2_schedules": "paper's figure 2: optimal schedules over horizons (right: the easy phase's collapse in "
                      "η T^ξ against 1 − t/T, the hard phase's rate against the steps left), the law dashed",
    "fig2_losses": "paper's figure 2: replayed loss curves L_t of the optimum at each horizon, best constant dashed",
    "fig2cf_exponents": "paper's figure 2(c, f): final loss against T for the optimum and the tuned baselines, "
                        "fitted and theory exponents, local slopes",
    "law_decay.md": "not in the paper: the finite-horizon law's local decay exponent δ at T = 10^4 … 10^12 "
                    "against 2b − 1 (easy phase; no IPOPT)",
    "fig_decay_window_hard": "not in the paper: the hard phase's decay window and last rate against T, with the "
                             "exponents derived from the finite-horizon law (docs/scaling.md)",
    "fig3_bias_variance": "paper's figure 3: bias and variance parts of the loss of the optimum and the baselines "
                          "(hard phase: also η_max held to the end, the plateau alone)",
    "fig4_compute_frontier": "paper's figure 4: the compute-optimal frontier over N at C = N T (tail on)",
    "fig4_frontier_law": "paper's figure 4 extended: the finite-horizon law's frontier over N = 16 … 16,384, "
                         "T ≤ 10^7, with the slope per decade of C against the derived ν",
    "fig_boundary_window": "not in the paper: near a = b, the classifier's window exponent p per decade of T up to "
                           "10^7 (solved, the law's, T → ∞) against p = 1 and p_0",
    "batch/ramp_horizons": "the paper's batch-ramp claim (ramps improve wall-clock time in the easy phase): serial "
                           "steps a ramp saves against T, both phases",
    "fig5_momentum": "paper's figure 5: the loss L(t) against t for each horizon T, optimal (η, β) solid and "
                     "optimal SGD dashed, with the optimal η(t) and β(t); a solve that stopped at IPOPT's "
                     "iteration cap dotted ((η, β)) or dash-dotted (SGD), '(iteration cap)' in the legend",
    "momentum/momentum": "paper's figure 5 (exponents): final loss of optimal (η, β) and optimal SGD against T "
                         "with the theory slopes; β(t) and η(t) against t/T",
    "batch/batch": "batch-size ramps under a sample budget (MODEL.md §4.2); the paper's batch-size control, "
                   "not matched to a numbered figure of the paper",
}


def caption(name: str) -> str:
    """The caption of a written figure, from its file name."""
    if name in CAPTIONS:
        return CAPTIONS[name]
    stem = name.removesuffix(".png")
    for key in sorted(CAPTIONS, key=len, reverse=True):
        if stem == key or stem.startswith(key + "_"):
            return CAPTIONS[key]
    return ""


NOT_MEASURED = "not measured here (run benchmarks/bench_law.py)"
# What `optctl reproduce` without --full reads from its output folder instead of computing
# it: the file, and the command that writes it.
READ_NOT_COMPUTED = {
    "law.md, law.json": "python benchmarks/bench_law.py --out OUT",
    "law_T1e7/law.md": "python benchmarks/bench_law.py --T 10000000 --K 100 --out OUT/law_T1e7",
    "batch/ramp/*.json (points past those found)": "python benchmarks/bench_controls.py --only ramps",
}
BY_REPRODUCE = "`optctl reproduce`"


RAMP_TREND_POINTS, RAMP_TREND_FLAT = 3, 0.01  # the last horizons; under 1 point per doubling reads as flat


def ramp_trend(points: Sequence[dict[str, Any]]) -> str:
    """How the saved fraction moves with ``T0`` over the last :data:`RAMP_TREND_POINTS`
    horizons: its least-squares change per doubling of ``T0``, and whether it grows,
    shrinks or levels off (a change within :data:`RAMP_TREND_FLAT` per doubling)."""
    pts = list(points)[-RAMP_TREND_POINTS:]
    if len(pts) < 2:
        return "one horizon"
    x = np.log2([p["T0"] for p in pts])
    y = np.array([p["saved_fraction"] for p in pts])
    slope = float(np.polyfit(x, y, 1)[0])
    word = "levels off" if abs(slope) <= RAMP_TREND_FLAT else ("grows" if slope > 0 else "shrinks")
    return f"{word}: {100 * slope:+.1f} points per doubling over T0 = {pts[0]['T0']} … {pts[-1]['T0']}"


def _verdict(fitted: float, theory: float, agree: float = 0.02, partly: float = 0.1) -> str:
    gap = abs(fitted - theory)
    return "agree" if gap <= agree else ("partly" if gap <= partly else "disagree")


def bias_variance_parts(rec: dict[str, Any], eta: np.ndarray, phase: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Figure 3's curves: ``(bias, variance)`` of the replayed loss of the optimum ``eta``
    and of each tuned baseline of the sweep record ``rec``, and in the hard phase of the
    plateau's rate ``η_max`` held to the end (:data:`ETA_MAX_HELD`)."""
    spec = record_spec(rec)
    r = replay(spec, eta)
    parts = {"optimal": (r.bias, r.variance)}
    for name in rec["baselines"]:
        rb = replay(spec, record_baseline(rec, name))
        parts[name] = (rb.bias, rb.variance)
    if phase == "hard":
        rm = replay(spec, float(spec.eta_max))
        parts[ETA_MAX_HELD] = (rm.bias, rm.variance)
    return parts


def _pow10(T: float) -> str:
    """``10^k`` for a power of ten, else the number with thousands separators."""
    k = float(np.log10(T))
    return f"10^{round(k)}" if abs(k - round(k)) < 1e-9 else f"{T:,.0f}"


def bias_variance_claim(phase: str, bv: dict[str, Any]) -> tuple[str, str, str]:
    """Figure 3's claim at ``T = bv["T"]`` (``bv[name] = (bias, variance)`` of the final
    loss, from the replays the figure draws): the claim, what was measured, the verdict.

    Easy phase: the optimum lowers bias and variance together, below every tuned baseline
    (agree: both, partly: one). Hard phase: the plateau removes bias (the optimum's bias at
    most :data:`BV_PLATEAU_BIAS` x that of η_max held to the end) and the annealing removes
    variance (its variance at most :data:`BV_ANNEAL_VARIANCE` x that of η_max held, and below
    every tuned baseline's); agree: both, partly: one."""
    ob, ov = bv["optimal"]
    base = {n: v for n, v in bv.items() if n not in ("T", "optimal", ETA_MAX_HELD)}
    names = ", ".join(f"{n} {b:.2e} / {v:.2e}" for n, (b, v) in base.items())
    at = f"T = {bv['T']:,}, bias / variance of L_T: optimal {ob:.2e} / {ov:.2e}"
    if phase == "easy":
        lower_b = all(ob < b for b, _ in base.values())
        lower_v = all(ov < v for _, v in base.values())
        verdict = "agree" if lower_b and lower_v else ("partly" if lower_b or lower_v else "disagree")
        return ("the optimum lowers bias and variance together (paper's figure 3)",
                f"{at}; {names}; agree: both below every tuned baseline's, partly: one", verdict)
    hb, hv = bv[ETA_MAX_HELD]
    bias_ok = ob <= BV_PLATEAU_BIAS * hb
    var_ok = ov <= BV_ANNEAL_VARIANCE * hv and all(ov < v for _, v in base.values())
    verdict = "agree" if bias_ok and var_ok else ("partly" if bias_ok or var_ok else "disagree")
    return ("the plateau removes bias, the annealing removes variance (paper's figure 3)",
            f"{at}; η_max held to the end {hb:.2e} / {hv:.2e}; {names}; agree: the optimum's bias ≤ "
            f"{BV_PLATEAU_BIAS:g} x η_max held's and its variance ≤ {BV_ANNEAL_VARIANCE:g} x η_max held's and "
            "below every tuned baseline's, partly: one of the two", verdict)


def momentum_hard_verdict(s: dict[str, Any], margin: float = 0.02) -> str:
    """The hard-phase momentum claim is about the exponent: agree when (η, β) beats SGD's
    fitted exponent and its local slope at the largest T both by more than ``margin``,
    partly when one of the two, disagree when neither (a lower loss at the same exponent
    is a better constant, not a better exponent)."""
    fit = s["momentum_exponent"] - s["sgd_exponent"] > margin
    last = s["momentum_local_slopes"][-1] - s["sgd_local_slopes"][-1] > margin
    return "agree" if fit and last else ("partly" if fit or last else "disagree")


def _claims(studies: list[Any], frontiers: list[Any], checks: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """The paper's claims (and the two laws derived here), each with what was measured and
    a verdict: agree within 0.02 of the theory's exponent, partly within 0.1."""
    rows: list[dict[str, Any]] = []

    def add(claim: str, measured: str, verdict: str, evidence: str, source: str = BY_REPRODUCE) -> None:
        rows.append({"claim": claim, "measured": measured, "verdict": verdict, "evidence": evidence,
                     "source": source})

    full = bool(checks.get("run", {}).get("full"))
    law_src = ("`optctl reproduce --full`" if full else
               "read from law.json (`python benchmarks/bench_law.py`; `optctl reproduce --full`)")
    ramp_src = ("`optctl reproduce --full`" if full else
                "read from batch/ramp/ (`python benchmarks/bench_controls.py --only ramps`; "
                "`optctl reproduce --full`)")

    for st in studies:
        a, b, phase = st.spec.a, st.spec.b, st.spec.phase
        tag = f"{phase} (a = {a:g}, b = {b:g})"
        fig = f"fig2cf_exponents_{phase}.png"
        for name, label in (("optimal", "optimal schedule"), ("constant", "best constant"),
                            ("power_law", "best power law")):
            f = st.fits.get(name)
            if f is not None and f.theory is not None:
                add(f"{tag}: L_T ∝ T^−{f.theory:.3f} for the {label}", f"{f.exponent:.3f} (T = 10^5 … 10^6)",
                    _verdict(f.exponent, f.theory), fig)
        if phase == "easy" and st.mean_lr is not None:
            add(f"{tag}: η* ∝ T^−ξ, ξ = 1 − b/a = {theory.xi(a, b):.3f}", f"{st.mean_lr.exponent:.3f} (mean η)",
                _verdict(st.mean_lr.exponent, theory.xi(a, b)), fig)
            delta = st.classification.easy.delta
            ld = checks.get(phase, {}).get("law_decay")
            law_d = "" if ld is None else "; the law's local δ " + ", ".join(
                f"{d:.2f}" for d in ld["delta"][str(max(LAW_DECAY_N))][::2]) + " at T = " + ", ".join(
                f"10^{int(round(np.log10(T)))}" for T in ld["T"][::2]) + f" (N = {max(LAW_DECAY_N):,})"
            add(f"{tag}: decay (1 − t/T)^(2b−1), 2b − 1 = {2 * b - 1:g}", f"δ = {delta:.2f} over T ≤ 10^6{law_d}",
                _verdict(delta, 2 * b - 1, 0.1, 0.5),
                "law_decay.md (the law's exponent tends to 2b − 1 slowly); docs/scaling.md, 'The asymptotic exponent'")
        c = checks.get(phase, {})
        if c.get("T"):
            at = f"at T = {', '.join(_pow10(T) for T in c['T'])}"
            bl = c.get("bench_law")
            if bl is None:
                dev = ", ".join(f"{d:.1%}" for d in c["deviation"])
                gap = ", ".join(f"{g:+.2%}" for g in c["loss_vs_solved"])
                add(f"{tag}: η = C K(F)^−1/2 (derived here)",
                    f"from the sweep's solves: deviation of the solved optimum {dev}; the law's loss vs it {gap} "
                    f"{at}; the {BENCH_LAW_K}-block comparison: {NOT_MEASURED}", NOT_MEASURED,
                    f"fig2_schedules_{phase}.png")
            else:
                dev = ", ".join(f"{d:.1%}" for d in bl["deviation"])
                gap = ", ".join(f"{g:+.2%}" for g in bl["loss_vs_solved"])
                capped = [T for T, st_ in zip(bl["T"], bl["status"], strict=True) if st_ != "Solve_Succeeded"]
                worst, close = max(bl["deviation"]), all(abs(g) <= LAW_LOSS_GAP for g in bl["loss_vs_solved"])
                verdict = ("agree" if worst <= LAW_AGREE and close else
                           "partly" if worst <= LAW_PARTLY or close else "disagree")
                add(f"{tag}: η = C K(F)^−1/2 (derived here)",
                    f"deviation of the solved optimum ({bl['K']} blocks) {dev}; the law's loss vs it {gap} {at}"
                    + (f" (the {bl['K']}-block solve at T = {', '.join(_pow10(T) for T in capped)} stopped at "
                       "IPOPT's iteration cap: a reference there, not an optimum)" if capped else "")
                    + f"; agree: deviation ≤ {LAW_AGREE:.0%} and the loss gap within ±{LAW_LOSS_GAP:.0%}, partly: "
                    f"deviation ≤ {LAW_PARTLY:.0%} or the loss gap within ±{LAW_LOSS_GAP:.0%}",
                    verdict, f"fig2_schedules_{phase}.png, law.md", law_src)
        if "bias_variance" in c:
            claim, measured, verdict = bias_variance_claim(phase, c["bias_variance"])
            add(f"{tag}: {claim}", measured, verdict, "fig3_bias_variance.png")
        if phase == "hard":
            frac = st.anneal_fraction
            add(f"{tag}: warmup-stable-decay with a vanishing annealing fraction",
                f"plateau at η_max at every T; annealing fraction {frac[0]:.3f} → {frac[-1]:.3f}",
                "agree" if st.classification.label == "hard" and frac[-1] < frac[0] else "disagree",
                f"fig2_schedules_{phase}.png")
            if "window_law" in c:
                w = theory.window_exponent(a, b)
                add(f"{tag}: T − t_s ∝ T^{w:.3f} (derived here)",
                    f"solved {c['window_solved']:.3f} (last 5 T ≤ 10^6), law {c['window_law']:.3f} (T → 10^8)",
                    max(_verdict(c["window_law"], w, 0.03), _verdict(c["window_solved"], w, 0.03, 0.15),
                        key=("agree", "partly", "disagree").index),
                    "fig_decay_window_hard.png; docs/scaling.md: the solver's slope drifts towards it")
        if "best_constant" in c:
            z = theory.zeta_constant(a, b)
            add(f"{tag}: best constant η* ∝ T^−{z:.3f}", f"{-c['best_constant']:.3f} (last 3 T)",
                _verdict(-c["best_constant"], z), f"fig1b_constant_rates_{phase}.png")
    for phase, s in checks.get("momentum", {}).items():
        slopes = f"local slopes at the largest T: SGD {s['sgd_local_slopes'][-1]:.3f}, (η, β) " \
                 f"{s['momentum_local_slopes'][-1]:.3f}"
        tag = f"momentum, {phase} (a = {s['a']:g}, b = {s['b']:g})"
        lo, hi = s["horizons"][0], s["horizons"][-1]
        if phase == "easy":
            gap = s["momentum_exponent"] - s["sgd_exponent"]
            add(f"{tag}: optimal (η, β) keeps SGD's exponent 1 − 1/a = {s['theory_easy']:.3f}",
                f"ζ = {s['momentum_exponent']:.3f} vs SGD {s['sgd_exponent']:.3f} (T = {lo} … {hi}); {slopes}",
                "agree" if abs(gap) <= 0.02 else "partly", "fig5_momentum_easy.png, momentum/report.md",
                f"{BY_REPRODUCE} (points in momentum/points/)")
        else:
            capped = [T for T, st in zip(s["horizons"], s["momentum_status"], strict=True)
                      if st != "Solve_Succeeded"]
            if capped:
                slopes += (f"; IPOPT stopped at its iteration cap for (η, β) at T = {', '.join(map(str, capped))} "
                           "(upper bounds, not optima)")
            gains = [100 * g for g in s["gain"]]
            lower = (f"; the loss of (η, β) is {min(gains):.2f}–{max(gains):.2f}% below SGD's at every T (a better "
                     "constant)" if s["beats_sgd_everywhere"] else
                     f"; the loss of (η, β) against SGD's: {min(gains):+.2f}% … {max(gains):+.2f}%")
            add(f"{tag}: optimal (η, β) beats SGD's exponent (a−1)/b = {s['theory_hard_sgd']:.3f}; the "
                f"authors' notebook draws 1.5(a−1)/b = {s['theory_hard_momentum']:.3f}",
                f"ζ = {s['momentum_exponent']:.3f} vs SGD {s['sgd_exponent']:.3f} (T = {lo} … {hi}); {slopes}{lower}"
                "; agree: the fitted exponent and the last local slope both above SGD's by > 0.02, partly: one",
                momentum_hard_verdict(s),
                "fig5_momentum_hard.png, momentum/report.md", f"{BY_REPRODUCE} (points in momentum/points/)")
    bd = checks.get("boundary")
    if bd and bd.get("points"):
        pts = bd["points"]
        right = [r for r in pts if r["label_all"] == r["theory_phase"]]
        unsure = [r for r in pts if r["label_all"] == "unsure"]
        wrong = [r for r in pts if r["label_all"] not in ("unsure", r["theory_phase"])]
        first = ", ".join(f"{r['local_p'][0]:.3f}" for r in pts)
        last = ", ".join(f"{r['local_p'][-1]:.3f}" for r in pts)
        law_last = ", ".join(f"{r['law_local_p'][-1]:.3f}" for r in pts)
        bs = ", ".join(f"{r['b']:g}" for r in pts)
        add(f"phase boundary at b = a (near it: a = {pts[0]['a']:g}, b within a ± 0.3): the window exponent p → 1 "
            "from both sides (derived here)",
            f"b = {bs}: local p {first} (first decade) → {last} (last decade, "
            f"T ≤ {max(pts[0]['T']):.0e}); the law's {law_last}; labels over all T: {len(right)} right, "
            f"{len(unsure)} unsure, {len(wrong)} wrong",
            "partly" if not wrong else "disagree", "fig_boundary_window.png, boundary.md",
            f"{BY_REPRODUCE} (sweeps/boundary/)")
    rp = checks.get("ramps")
    if rp and rp.get("phases"):
        parts = []
        for ph, d in rp["phases"].items():
            sv = ", ".join(f"{p['T0']}: {100 * p['saved_fraction']:.0f}%" for p in d["points"])
            parts.append(f"{ph}: {sv or 'none computed'}" + (f" ({ramp_trend(d['points'])})" if sv else "")
                         + (f", not computed: T0 = {d['missing']}" if d.get("missing") else ""))
        easy_pts = rp["phases"].get("easy", {}).get("points", [])
        hard_pts = rp["phases"].get("hard", {}).get("points", [])
        both = bool(hard_pts) and all(p["saved_fraction"] > 0.05 for p in hard_pts)
        hard_fades = len(hard_pts) > 1 and ramp_trend(hard_pts).startswith("shrinks")
        easy_ok = bool(easy_pts) and all(p["saved_fraction"] > 0.05 for p in easy_pts)
        verdict = "agree" if easy_ok and (not both or hard_fades) else "partly"
        note = ("; the hard phase saves too at these T0, less at longer ones" if both and hard_fades else
                "; savings in the hard phase too" if both else "")
        add("batch ramps save serial steps in the easy phase (same samples, same loss)",
            "steps saved by the ramp at T0 = " + "; ".join(parts), verdict,
            "batch/ramp_horizons.png, batch/ramp_horizons.md" + note, ramp_src)
    law_fr = {(c["a"], c["b"]): c for c in checks.get("frontier_law", {}).get("cases", {}).values()}
    for fr in frontiers:
        f = fr.frontier.fit
        lf = law_fr.get((fr.a, fr.b))
        solved = "too few interior points" if f is None else f"solved ν = {f.exponent:.3f} over N = 16 … 1024"
        if lf is None or lf["fit"] is None:
            add(f"a = {fr.a:g}, b = {fr.b:g}: the compute frontier is a power of C = NT", solved, "partly",
                f"fig4_compute_frontier.png; compared with the balance ν = (a−1)ζ/(a−1+ζ) = {fr.theory:.3f} "
                "(derived in docs/scaling.md)")
            continue
        sl = lf["decade_slopes"]
        ok = abs(lf["fit"]["exponent"] - fr.theory) <= 0.02 and (f is None or abs(f.exponent - fr.theory) <= 0.02)
        add(f"a = {fr.a:g}, b = {fr.b:g}: the compute frontier is a power of C = NT; ν = (a−1)ζ/(a−1+ζ) = "
            f"{fr.theory:.3f} (derived here)",
            f"{solved}; the law's ν = {lf['fit']['exponent']:.3f} over N = 16 … 16,384 (best N up to "
            f"{max(lf['interior_N'])}), slope per decade of C {min(sl):.3f} … {max(sl):.3f}; the law's loss "
            f"{100 * lf['overlap']['median']:+.1f}% (median) from the solved optima",
            "agree" if ok else "partly",
            "fig4_compute_frontier.png, fig4_frontier_law.png, frontier_law.md; the paper gives no number here")
    return rows


def _report(studies: list[Any], frontiers: list[Any], sweeps: dict[str, SweepSpec], quick: bool,
            wall: float, written: list[str], checks: dict[str, dict[str, Any]] | None = None,
            timings: dict[str, float] | None = None, *, full: bool = False, controls: bool = True
            ) -> dict[str, Any]:
    claims = _claims(studies, frontiers, {**(checks or {}), "run": {"full": full}})
    flags = (" --quick" if quick else "") + (" --full" if full else "") + ("" if controls else " --no-controls")
    read = "" if full else (
        " Read from this folder, not computed by this run (`optctl reproduce --full` computes them): "
        + "; ".join(f"`{k}` (`{v}`)" for k, v in READ_NOT_COMPUTED.items() if controls or "batch" not in k) + ".")
    md = ["# Reproduction of Bordelon & Mori (arXiv:2602.04774), figures 1–5", "",
          f"Written by `optctl reproduce{flags}` (this run: {wall:.0f} s; finished "
          f"points are reused from `sweeps/`).{read} Horizons: "
          f"{list(sweeps['horizons'].horizons)} (reference cases); compute sweeps: N = "
          f"{[int(n) for n in sweeps['compute_easy'].axes['N']]} x T = {list(sweeps['compute_easy'].horizons)}.",
          "", "## Loss and learning-rate exponents (fit over the last decade of horizons)", "",
          exponent_table(studies), "", "## Classification and schedule shapes", ""]
    claim_md = ["## The paper's claims", "", "| claim | measured | verdict | evidence | produced by |",
                "|---|---|---|---|---|"]
    claim_md += [f"| {r['claim']} | {r['measured']} | {r['verdict']} | {r['evidence']} | {r['source']} |"
                 for r in claims]
    md[4:4] = [*claim_md, ""]
    for st in studies:
        md += shape_lines(st)
    md += ["", "## Compute-optimal frontiers", "",
           "| a | b | fitted ν (L* ∝ C^−ν) | balance estimate | fit range C | best N along C |",
           "|---:|---:|---:|---:|---|---|"]
    for fr in frontiers:
        f = fr.frontier.fit
        if f is None:
            md.append(f"| {fr.a:g} | {fr.b:g} | — | {fr.theory:.3f} | too few interior points | |")
            continue
        bestN = sorted({int(n) for n in fr.frontier.best_N[fr.frontier.interior]})
        md.append(f"| {fr.a:g} | {fr.b:g} | {f.exponent:.3f} | {fr.theory:.3f} | "
                  f"{f.fit_range[0]:.3g} – {f.fit_range[1]:.3g} | {bestN} |")
    md += ["", "## Figures", "", "| file | what it shows |", "|---|---|"]
    md += [f"| `{w}` | {caption(w)} |" for w in written]
    if timings:
        md += ["", f"## Time of this run (load average {os.getloadavg()[0]:.1f} at the end)", "",
               "| part | seconds |", "|---|---:|"]
        md += [f"| {k} | {v:.0f} |" for k, v in timings.items()]
        md.append(f"| whole | {wall:.0f} |")
    md.append("")
    js = {"wall_time_s": wall, "timings_s": timings or {}, "quick": quick, "full": full, "figures": written,
          "claims": claims, "read_not_computed": {} if full else READ_NOT_COMPUTED,
          "horizons": list(sweeps["horizons"].horizons),
          "exponents": {st.key: st.table_rows() for st in studies},
          "classification": {st.key: st.classification.to_dict() for st in studies},
          "frontiers": [{"a": fr.a, "b": fr.b, "theory": fr.theory,
                         "fit": None if fr.frontier.fit is None else fr.frontier.fit.to_dict()}
                        for fr in frontiers]}
    return {"md": "\n".join(md), "json": js}
