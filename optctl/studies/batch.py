"""Batch size as a control: the ``η/m`` degeneracy, and the fewest serial steps.

MODEL.md §4.2 (Bordelon & Mori, arXiv:2602.04774). Per sample, the SGD dynamics depend
on ``η/m`` almost only: in sample time ``s = Σ m`` the small-``η`` limit is
``dc/ds = −2 (η/m) λ c + (η/m)² λ (L + σ²)``, and only the ``(1 + 1/m) η² λ²`` term and
the bounds on ``η`` and ``m`` break the tie. This study measures both consequences:

1. Degeneracy: from the joint optimum ``(η_t, m_t)`` (sample budget ``S = T m̄``) it
   builds plans with a constant batch ``m'`` and the same ``η/m`` at every consumed
   sample, replays them exactly, and reports how little the final loss moves; it also
   reports how little the joint optimum gains over the best fixed-batch plan.
2. Fewest serial steps: for the same ``S`` samples it finds, by bisection over the
   number of steps ``T'``, the smallest ``T'`` whose optimal plan still reaches the
   fixed-batch optimum's loss (within the study's ``loss_rtol``): once with a free batch schedule
   (a batch ramp) and once with a constant batch ``S/T'``. The difference is the number
   of serial steps a ramp saves.

The models, the budget and the bounds are those of ``optctl/data/study_controls.yaml``
(:mod:`optctl.io.studyconfig`).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from optctl import plots
from optctl.io.files import read_json, write_json, write_text_atomic
from optctl.io.studyconfig import ControlStudy, load_control_study
from optctl.model.replay import final_loss
from optctl.solver.solve import solve
from optctl.spec import SolverOptions


def same_ratio_plan(eta: np.ndarray, m: np.ndarray, m_new: float, eta_max: float
                    ) -> tuple[np.ndarray, float]:
    """A constant-batch plan with the same ``η/m`` per consumed sample as ``(η, m)``.

    The ratio ``r = η_t/m_t`` is a step function of the samples consumed; the new plan
    takes ``T' = S/m'`` steps of ``m'`` samples with ``η'_t = m' r(s)`` at the middle
    sample ``s`` of its batch. Returns ``η'`` (clipped to ``η_max``) and the fraction of
    steps that the clipping changed.
    """
    S = float(np.sum(m))
    edges = np.concatenate([[0.0], np.cumsum(m)])
    T_new = int(round(S / m_new))
    mid = (np.arange(T_new) + 0.5) * m_new
    idx = np.clip(np.searchsorted(edges, mid, side="right") - 1, 0, eta.size - 1)
    raw = m_new * (eta / m)[idx]
    clipped = raw > eta_max
    return np.minimum(raw, eta_max), float(np.mean(clipped))


def degeneracy(study: ControlStudy, phase: str, T0: int) -> dict[str, Any]:
    """Joint optimum at ``(T0, m̄)``, fixed-batch optimum, and the same-``η/m`` family."""
    m_bar = study.mean_batch
    spec = study.spec(phase, T0, batch_size=m_bar)
    fixed = solve(spec)
    joint = solve(spec, controls=study.batch_controls())
    family = []
    for mb in study.constant_batches:
        eta_new, clip = same_ratio_plan(joint.eta, joint.batch_size, mb, spec.eta_max)
        T_new = eta_new.size
        loss = final_loss(study.spec(phase, T_new, batch_size=mb), eta_new)
        family.append({"batch": mb, "steps": T_new, "final_loss": loss, "clipped_fraction": clip,
                       "relative_to_joint": loss / joint.final_loss - 1})
    unclipped = [f["relative_to_joint"] for f in family if f["clipped_fraction"] == 0]
    return {
        "T": T0, "mean_batch": m_bar, "samples": T0 * m_bar, "m_bounds": [study.m_min, study.m_max],
        "fixed_loss": fixed.final_loss, "joint_loss": joint.final_loss,
        "joint_gain_over_fixed": (fixed.final_loss - joint.final_loss) / fixed.final_loss,
        "joint_status": joint.status, "joint_batch": joint.batch_size.tolist(),
        "joint_eta": joint.eta.tolist(), "fixed_eta": fixed.eta.tolist(), "family": family,
        "flatness_unclipped": max(abs(x) for x in unclipped) if unclipped else None,
    }


def fewest_steps(study: ControlStudy, phase: str, target: float, *, ramp: bool,
                 cache: dict[str, float], T0: int, options: SolverOptions | None = None,
                 lower: int | None = None) -> dict[str, Any]:
    """Smallest ``T'`` (same ``S = T0 m̄`` samples) whose optimum reaches ``target``
    (within the study's ``loss_rtol``).

    Bisection in ``T'`` between ``S/m_max`` and ``T0``, assuming (as the records show)
    that the optimal loss at fixed ``S`` grows as ``T'`` shrinks. ``options``: the solver's
    (default: its defaults, per-step up to its ``per_step_max_T``); ``lower``: a first lower
    bracket above ``S/m_max`` (the search falls back to ``S/m_max`` if it reaches the target).
    """
    S = T0 * study.mean_batch

    def reaches(loss: float) -> bool:
        return loss <= target * (1 + study.loss_rtol)

    def loss_at(T: int) -> float:
        key = f"{'ramp' if ramp else 'fixed'}-{T}"
        if key not in cache:
            spec = study.spec(phase, T, batch_size=S / T)
            r = solve(spec, options, controls=study.batch_controls() if ramp else None)
            cache[key] = r.final_loss
        return cache[key]

    lo, hi = int(np.ceil(S / study.m_max)), T0  # hi reaches the target (it is the target, or better)
    if lower is not None and lower > lo:
        if reaches(loss_at(lower)):
            hi = lower
        else:
            lo = lower
    if hi > lo and reaches(loss_at(lo)):
        hi = lo
    while hi - lo > 1:
        mid = int(round(np.sqrt(lo * hi)))
        mid = min(max(mid, lo + 1), hi - 1)
        if reaches(loss_at(mid)):
            hi = mid
        else:
            lo = mid
    return {"steps": hi, "loss": loss_at(hi), "batch_mean": S / hi,
            "evaluated": {k: v for k, v in sorted(cache.items()) if k.startswith("ramp" if ramp else "fixed")}}


RAMP_HORIZONS = (64, 128, 256, 512, 1024, 2048, 4096)
# Past this horizon the ramp study's solves use a refined block grid of this many blocks
# (the per-step NLP of the joint problem grows with T); every loss is still an exact
# per-step replay of the answer.
RAMP_BLOCK_T, RAMP_BLOCK_K = 256, 64


def ramp_steps(study: ControlStudy, phase: str, T0: int, *, progress: bool = False) -> dict[str, Any]:
    """Serial steps a batch ramp saves at horizon ``T0`` (sample budget ``S = T0 m̄``).

    The reference is the fixed-batch optimum at ``(T0, m̄)``; the ramp count is
    :func:`fewest_steps` with a free batch schedule (joint ``(η, m)`` optima, IPOPT),
    searched first between ``T0/2`` and ``T0``. Horizons past :data:`RAMP_BLOCK_T` use a
    refined grid of :data:`RAMP_BLOCK_K` blocks for every solve, the reference included.
    """
    t0 = time.perf_counter()
    options = (SolverOptions(grid="refined", K=RAMP_BLOCK_K, polish=False) if T0 > RAMP_BLOCK_T else None)
    spec = study.spec(phase, T0, batch_size=study.mean_batch)
    fixed = solve(spec, options)
    cache: dict[str, float] = {f"ramp-{T0}": fixed.final_loss}
    ramp = fewest_steps(study, phase, fixed.final_loss, ramp=True, cache=cache, T0=T0, options=options,
                        lower=T0 // 2)
    rec = {"T0": T0, "samples": T0 * study.mean_batch, "fixed_loss": fixed.final_loss,
           "fixed_status": fixed.status, "grid": "per-step" if options is None else f"refined K = {RAMP_BLOCK_K}",
           "ramp_steps": ramp["steps"], "ramp_loss": ramp["loss"], "ramp_batch_mean": ramp["batch_mean"],
           "evaluated": ramp["evaluated"], "steps_saved": T0 - ramp["steps"],
           "saved_fraction": (T0 - ramp["steps"]) / T0, "wall_time_s": time.perf_counter() - t0}
    if progress:
        print(f"{phase} T0={T0}: ramp {ramp['steps']} steps of {T0} ({100 * rec['saved_fraction']:.0f}% saved) "
              f"[{rec['wall_time_s']:.0f} s]", file=sys.stderr, flush=True)
    return rec


def run_ramp_horizons(out: Path, *, study: ControlStudy | None = None,
                      horizons: tuple[int, ...] = RAMP_HORIZONS, progress: bool = True,
                      compute: bool = True) -> dict[str, Any]:
    """:func:`ramp_steps` for each phase of ``study`` and each horizon, resumably (one
    JSON per point under ``out/ramp``; a horizon where the full study
    (:func:`run_batch_study`) ran is taken from its record); ``ramp_horizons.json`` /
    ``.md`` and ``ramp_horizons.png`` in ``out``. With ``compute=False`` only the finished
    points are reported (the rest are listed as missing)."""
    study = load_control_study() if study is None else study
    pts = out / "ramp"
    pts.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"loss_rtol": study.loss_rtol, "mean_batch": study.mean_batch,
                               "m_bounds": [study.m_min, study.m_max], "horizons": list(horizons),
                               "phases": {}}
    recs_of: dict[str, list[dict[str, Any]]] = {p: [] for p in study.models}
    missing_of: dict[str, list[int]] = {p: [] for p in study.models}
    for T0 in horizons:  # horizon by horizon, so that both phases advance together
        for phase in study.models:
            recs, missing = recs_of[phase], missing_of[phase]
            path, full = pts / f"{phase}-T{T0}.json", out / f"{phase}-T{T0}.json"
            if full.exists():
                f = read_json(full)
                rec = {"T0": T0, "fixed_loss": f["degeneracy"]["fixed_loss"], "grid": "per-step",
                       "ramp_steps": f["fewest_steps_ramp"]["steps"], "ramp_loss": f["fewest_steps_ramp"]["loss"],
                       "steps_saved": T0 - f["fewest_steps_ramp"]["steps"],
                       "saved_fraction": (T0 - f["fewest_steps_ramp"]["steps"]) / T0, "from": full.name}
            elif path.exists():
                rec = read_json(path)
            elif compute:
                rec = ramp_steps(study, phase, T0, progress=progress)
                write_json(path, rec)
            else:
                missing.append(T0)
                continue
            recs.append(rec)
    for phase in study.models:
        summary["phases"][phase] = {**study.models[phase], "points": recs_of[phase],
                                    "missing": missing_of[phase]}
    write_json(out / "ramp_horizons.json", summary)
    plots.save(plots.plot_ramp_savings(summary), out / "ramp_horizons.png")
    write_text_atomic(out / "ramp_horizons.md", ramp_report(summary))
    return summary


def ramp_report(summary: dict[str, Any]) -> str:
    """Markdown: per phase and horizon, the reference loss, the ramp's steps and loss."""
    m_lo, m_hi = summary["m_bounds"]
    lines = ["# Serial steps saved by a batch ramp, against the horizon", "",
             f"Sample budget S = T0 × {summary['mean_batch']:g}; reference: the fixed-batch optimum "
             f"(m = {summary['mean_batch']:g}); ramp: the fewest steps T' whose joint (η, m) optimum "
             f"(m_t ∈ [{m_lo:g}, {m_hi:g}], same S samples) reaches the reference's L_T within "
             f"{100 * summary['loss_rtol']:.1f}% (bisection over T', IPOPT; every loss an exact per-step replay). "
             f"Solves past T0 = {RAMP_BLOCK_T} use a refined grid of {RAMP_BLOCK_K} blocks.", ""]
    for phase, ph in summary["phases"].items():
        lines += [f"## {phase} phase (a = {ph['a']}, b = {ph['b']}, N = {ph['N']})", "",
                  "| T0 | reference L_T | ramp steps | saved | ramp L_T | grid |", "|---:|---:|---:|---:|---:|---|"]
        for r in ph["points"]:
            lines.append(f"| {r['T0']} | {r['fixed_loss']:.6g} | {r['ramp_steps']} | "
                         f"{100 * r['saved_fraction']:.1f}% | {r['ramp_loss']:.6g} | {r['grid']} |")
        if ph["missing"]:
            lines.append(f"\nNot computed yet: T0 = {ph['missing']} (`python benchmarks/bench_controls.py "
                         "--only ramps` computes them).")
        lines.append("")
    return "\n".join(lines) + "\n"


def run_batch_study(out: Path, *, study: ControlStudy | None = None, T0: int | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Both measurements for each model of ``study`` (default: the packaged
    ``study_controls.yaml``; ``T0`` overrides its reference horizon); ``summary.json``,
    ``report.md`` and figures in ``out``."""
    study = load_control_study() if study is None else study
    T0 = study.T0 if T0 is None else T0
    out.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"loss_rtol": study.loss_rtol, "T0": T0, "mean_batch": study.mean_batch,
                               "m_bounds": [study.m_min, study.m_max], "phases": {}}
    for phase in study.models:
        path = out / f"{phase}-T{T0}.json"
        if path.exists():
            summary["phases"][phase] = read_json(path)
            continue
        t0 = time.perf_counter()
        deg = degeneracy(study, phase, T0)
        cache: dict[str, float] = {f"fixed-{T0}": deg["fixed_loss"]}
        fixed = fewest_steps(study, phase, deg["fixed_loss"], ramp=False, cache=cache, T0=T0)
        ramp = fewest_steps(study, phase, deg["fixed_loss"], ramp=True, cache=cache, T0=T0)
        rec = {"phase": phase, **study.models[phase], "degeneracy": deg, "fewest_steps_fixed": fixed,
               "fewest_steps_ramp": ramp, "steps_saved_vs_T0": T0 - ramp["steps"],
               "steps_saved_vs_fixed": fixed["steps"] - ramp["steps"], "wall_time_s": time.perf_counter() - t0}
        write_json(path, rec)
        summary["phases"][phase] = rec
        if progress:
            print(f"{phase}: ramp needs {ramp['steps']} steps, a fixed batch {fixed['steps']} "
                  f"(of {T0}) [{rec['wall_time_s']:.0f} s]", file=sys.stderr, flush=True)
    write_json(out / "summary.json", summary)
    for phase, rec in summary["phases"].items():
        plots.save(plots.plot_batch_study(rec, title=f"{phase} phase"), out / f"batch_{phase}.png")
    write_text_atomic(out / "report.md", batch_report(summary))
    return summary


def batch_report(summary: dict[str, Any]) -> str:
    T0, m_bar = summary["T0"], summary["mean_batch"]
    m_lo, m_hi = summary["m_bounds"]
    lines = ["# Batch size as a control: degeneracy and batch ramps", "",
             "Bordelon & Mori, arXiv:2602.04774 (MODEL.md §4.2). Sample budget "
             f"S = T m̄ = {T0} × {m_bar:g}, m_t ∈ [{m_lo:g}, {m_hi:g}], η ≤ 1. "
             "All losses are exact per-step replays.", ""]
    for phase, rec in summary["phases"].items():
        d = rec["degeneracy"]
        lines += [f"## {phase} phase (a = {rec['a']}, b = {rec['b']}, N = {rec['N']}, σ = {rec['sigma']})", "",
                  f"- fixed batch m = {m_bar:g}, optimal η: L_T = {d['fixed_loss']:.6g}",
                  f"- optimal (η, m): L_T = {d['joint_loss']:.6g} "
                  f"({100 * d['joint_gain_over_fixed']:.2f}% lower; IPOPT {d['joint_status']})", "",
                  "Plans with the joint optimum's η/m at every consumed sample, constant batch m':", "",
                  "| m' | steps | L_T | vs joint optimum | steps with η clipped at η_max |", "|---|---|---|---|---|"]
        for f in d["family"]:
            lines.append(f"| {f['batch']:g} | {f['steps']} | {f['final_loss']:.6g} | "
                         f"{100 * f['relative_to_joint']:+.2f}% | {100 * f['clipped_fraction']:.0f}% |")
        flat = d["flatness_unclipped"]
        free = [f"{f['batch']:g}" for f in d["family"] if f["clipped_fraction"] == 0]
        lines += ["", "Flatness: the plans that keep η/m exactly (never clipped: m' ∈ {"
                  f"{', '.join(free)}"
                  "}) land within "
                  f"{'n/a' if flat is None else f'{100 * flat:.2f}%'} of the joint optimum (mean batch "
                  f"{m_bar:g}); the joint optimum itself is only {100 * d['joint_gain_over_fixed']:.2f}% "
                  "below the fixed-batch optimum. Larger constant batches cannot keep η/m under "
                  "η ≤ η_max and lose.", "",
                  f"Fewest serial steps for the same {T0 * m_bar:g} samples and L_T within "
                  f"{100 * summary['loss_rtol']:.1f}% of the fixed-batch optimum:", "",
                  "| plan | steps | mean batch | L_T |", "|---|---|---|---|",
                  f"| fixed batch m̄ = {m_bar:g} (reference) | {T0} | {m_bar:g} | {d['fixed_loss']:.6g} |"]
        for name, key in (("best constant batch", "fewest_steps_fixed"), ("batch ramp (optimal m_t)", "fewest_steps_ramp")):
            r = rec[key]
            lines.append(f"| {name} | {r['steps']} | {r['batch_mean']:.3g} | {r['loss']:.6g} |")
        lines += ["", f"Steps saved by the ramp: {rec['steps_saved_vs_T0']} of {T0} against the reference "
                  f"({100 * rec['steps_saved_vs_T0'] / T0:.0f}%), {rec['steps_saved_vs_fixed']} against the "
                  "best constant batch.", ""]
    return "\n".join(lines) + "\n"
