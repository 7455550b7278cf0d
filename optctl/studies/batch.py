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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from optctl import plots
from optctl.io.files import read_json, write_json, write_text_atomic
from optctl.io.studyconfig import ControlStudy, load_control_study
from optctl.model.replay import final_loss
from optctl.solver.solve import solve
from optctl.spec import ModesKind, SolverOptions


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
# Past this horizon the ramp study's solves use a refined block grid of this many blocks,
# the exact step recursion on the Gauss-grouped spectrum (the per-step NLP on all N modes
# costs ~10x more per iteration for the same replayed loss, see :func:`ramp_check`), and
# the interpolating search of :func:`fewest_steps_interp` with warm starts. Every loss is
# still an exact per-step replay of the answer with all N modes.
RAMP_BLOCK_T, RAMP_BLOCK_K = 256, 64
# The first guess of the saved fraction when no shorter horizon of the phase is known.
RAMP_FIRST_GUESS = 0.2
# Probes of the interpolating search before it gives up (each is one joint solve).
RAMP_MAX_PROBES = 24


def ramp_options(T0: int, K: int = RAMP_BLOCK_K, modes: ModesKind = "grouped") -> SolverOptions | None:
    """The solver options of the ramp study at horizon ``T0`` (``None``: the defaults,
    per step, up to :data:`RAMP_BLOCK_T`)."""
    if T0 <= RAMP_BLOCK_T:
        return None
    return SolverOptions(grid="refined", K=K, propagator="step", modes=modes, polish=False)


def _interp_T(lo: int, f_lo: float, hi: int, f_hi: float, goal: float) -> float:
    """The ``T'`` where ``log L`` (linear in ``log T'`` between the bracket's ends) hits
    ``goal``; the geometric midpoint when the ends do not straddle it."""
    if not (f_lo > goal >= f_hi) or f_lo <= f_hi:
        return float(np.sqrt(lo * hi))
    x0, x1, y0, y1 = np.log(lo), np.log(hi), np.log(f_lo), np.log(f_hi)
    return float(np.exp(x0 + (np.log(goal) - y0) * (x1 - x0) / (y1 - y0)))


def interp_search(loss_at: Callable[[int], float], goal: float, first: int, lo_min: int, top: int, *,
                  f_top: float, where: str = "") -> int:
    """The smallest integer ``T`` in ``[lo_min, top]`` with ``loss_at(T) <= goal``, for a
    ``loss_at`` that decreases with ``T`` and reaches ``goal`` at ``top`` (its value there,
    ``f_top``, is not evaluated). First probe at ``first``, then log-log extrapolation
    outwards (3% past the goal, at most a factor 2) until ``goal`` is bracketed, then regula falsi on ``log loss`` against ``log T``,
    rounding alternately down and up so that both ends of the bracket close in (the
    geometric midpoint when the interpolation is degenerate, or after the same end moved
    twice in a row: an outlying value at the other end stalls regula falsi). Raises ``RuntimeError`` if
    :data:`RAMP_MAX_PROBES` probes do not close the bracket."""
    lo: int | None = None
    hi: int | None = None
    values: dict[int, float] = {}

    def f(T: int) -> float:
        if T not in values:
            values[T] = loss_at(T)
        return values[T]

    def outwards(T: int, down: bool) -> int:
        """The next probe beyond ``T``: the log-log extrapolation of the two probes (or
        probe and top) nearest the goal, 3% past it, at most a factor 2 away (7% without
        a second point)."""
        others = [k for k in values if k != T] or ([top] if T != top else [])
        ys = {**values, top: values.get(top, f_top)}
        step = 0.93 if down else 1.07
        if others:
            k = min(others, key=lambda q: abs(q - T))
            if ys[k] != ys[T] and ys[k] > 0 and ys[T] > 0:
                x = np.log(T) + (np.log(goal) - np.log(ys[T])) * (np.log(k) - np.log(T)) / (np.log(ys[k]) - np.log(ys[T]))
                step = float(np.clip(np.exp(x) / T * (0.97 if down else 1.03), 0.5, 0.99) if down
                             else np.clip(np.exp(x) / T * 1.03, 1.01, 2.0))
        if down:
            return max(lo_min, min(T - 1, int(np.floor(T * step))))
        return min(top, max(T + 1, int(np.ceil(T * step))))

    first = min(max(first, lo_min), top)
    if first == top or f(first) <= goal:
        hi = T = first
        while lo is None:
            if T == lo_min:
                return lo_min  # reaches at the fewest steps allowed
            T = outwards(T, down=True)
            if f(T) <= goal:
                hi = T
            else:
                lo = T
    else:
        lo = T = first
        while hi is None:
            T = outwards(T, down=False)
            if T == top or f(T) <= goal:
                hi = T  # at the top the loss reaches the goal by assumption
            else:
                lo = T
    moved: list[str] = []
    for _ in range(RAMP_MAX_PROBES):
        if hi - lo <= 1:
            return hi
        if moved[-2:] in (["hi", "hi"], ["lo", "lo"]):
            est = float(np.sqrt(lo * hi))  # one end stuck (an outlying value there): bisect once
        else:
            est = _interp_T(lo, values.get(lo, np.inf), hi, values.get(hi, f_top), goal)
        last = moved[-1] if moved else ""
        T = int(np.floor(est)) if last == "hi" else int(np.ceil(est)) if last == "lo" else int(round(est))
        T = min(max(T, lo + 1), hi - 1)
        if f(T) <= goal:
            hi = T
            moved.append("hi")
        else:
            lo = T
            moved.append("lo")
    if hi - lo <= 1:
        return hi
    raise RuntimeError(f"the search{' at ' + where if where else ''} did not close its bracket [{lo}, {hi}] "
                       f"in {RAMP_MAX_PROBES} probes")


def fewest_steps_interp(study: ControlStudy, phase: str, target: float, *, T0: int,
                        options: SolverOptions | None, guess: float = RAMP_FIRST_GUESS,
                        progress: bool = False) -> dict[str, Any]:
    """Smallest ``T'`` (same ``S = T0 m̄`` samples) whose joint ``(η, m)`` optimum reaches
    ``target`` within the study's ``loss_rtol``, with few solves.

    The same answer as :func:`fewest_steps` (the smallest ``T'`` that reaches, the next
    smaller one does not), found by regula falsi on ``log L(T')`` against ``log T'``
    instead of bisection: a first probe at ``T0 (1 − guess)`` (``guess``: the saved
    fraction of the previous horizon), steps of 7% outwards until the target is
    bracketed, then interpolation (:func:`interp_search`). Each solve starts (besides
    IPOPT's own candidates) from the solved plan of the nearest ``T'`` already solved,
    rescaled to ``u = t/T'``. Assumes, as the records show, that the optimal loss at fixed
    ``S`` grows as ``T'`` shrinks.
    """
    S = T0 * study.mean_batch
    goal = target * (1 + study.loss_rtol)
    lo_min = int(np.ceil(S / study.m_max))
    losses: dict[int, float] = {}
    plans: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    solves: list[dict[str, Any]] = []

    def loss_at(T: int) -> float:
        if T in losses:
            return losses[T]
        init = None
        if plans:
            near = min(plans, key=lambda k: abs(np.log(k / T)))
            eta_n, m_n = plans[near]
            u_n = (np.arange(near) + 0.5) / near

            def init(u: np.ndarray, e: np.ndarray = eta_n, m: np.ndarray = m_n, g: np.ndarray = u_n
                     ) -> tuple[np.ndarray, np.ndarray]:
                return np.interp(u, g, e), np.interp(u, g, m)
        t0 = time.perf_counter()
        r = solve(study.spec(phase, T, batch_size=S / T), options, controls=study.batch_controls(), init=init)
        losses[T], plans[T] = r.final_loss, (r.eta, r.batch_size)
        solves.append({"T": T, "loss": r.final_loss, "status": r.status, "iterations": r.iterations,
                       "warm": init is not None, "seconds": time.perf_counter() - t0})
        if progress:
            print(f"  {phase} T0={T0}: T' = {T} L = {r.final_loss:.6g} ({'reaches' if r.final_loss <= goal else 'above'}"
                  f" {goal:.6g}) {r.iterations} it, {solves[-1]['seconds']:.0f} s", file=sys.stderr, flush=True)
        return losses[T]

    T1 = int(np.clip(round(T0 * (1 - guess)), lo_min, T0 - 1))
    hi = interp_search(loss_at, goal, T1, lo_min, T0, f_top=target, where=f"{phase} T0 = {T0}")
    return {"steps": hi, "loss": losses.get(hi, target), "batch_mean": S / hi,
            "evaluated": {f"ramp-{k}": v for k, v in sorted(losses.items())}, "solves": solves}


def ramp_steps(study: ControlStudy, phase: str, T0: int, *, progress: bool = False,
               guess: float = RAMP_FIRST_GUESS, options: SolverOptions | None = None) -> dict[str, Any]:
    """Serial steps a batch ramp saves at horizon ``T0`` (sample budget ``S = T0 m̄``).

    The reference is the fixed-batch optimum at ``(T0, m̄)``; the ramp count is the
    fewest steps whose joint ``(η, m)`` optimum (IPOPT) reaches its loss: up to
    :data:`RAMP_BLOCK_T` per step and by bisection (:func:`fewest_steps`, searched first
    between ``T0/2`` and ``T0``), beyond on :func:`ramp_options`' grid (the reference
    included) by :func:`fewest_steps_interp` from ``guess`` (``options`` overrides the grid,
    for a convergence check).
    """
    t0 = time.perf_counter()
    options = ramp_options(T0) if options is None else options
    spec = study.spec(phase, T0, batch_size=study.mean_batch)
    fixed = solve(spec, options)
    if options is None:
        cache: dict[str, float] = {f"ramp-{T0}": fixed.final_loss}
        ramp = fewest_steps(study, phase, fixed.final_loss, ramp=True, cache=cache, T0=T0, options=options,
                            lower=T0 // 2)
        grid, search = "per-step", "bisection"
    else:
        ramp = fewest_steps_interp(study, phase, fixed.final_loss, T0=T0, options=options, guess=guess,
                                   progress=progress)
        grid, search = f"refined K = {options.K}, {options.modes} modes", "interpolation, warm starts"
    rec = {"T0": T0, "samples": T0 * study.mean_batch, "fixed_loss": fixed.final_loss,
           "fixed_status": fixed.status, "grid": grid, "search": search,
           "ramp_steps": ramp["steps"], "ramp_loss": ramp["loss"], "ramp_batch_mean": ramp["batch_mean"],
           "evaluated": ramp["evaluated"], "solves": ramp.get("solves"), "steps_saved": T0 - ramp["steps"],
           "saved_fraction": (T0 - ramp["steps"]) / T0, "wall_time_s": time.perf_counter() - t0}
    if progress:
        print(f"{phase} T0={T0}: ramp {ramp['steps']} steps of {T0} ({100 * rec['saved_fraction']:.0f}% saved) "
              f"[{rec['wall_time_s']:.0f} s, {len(ramp['evaluated'])} solves]", file=sys.stderr, flush=True)
    return rec


def ramp_check(study: ControlStudy, phase: str, rec: dict[str, Any], *, K: int = 2 * RAMP_BLOCK_K,
               exact_modes: bool = True, progress: bool = False) -> dict[str, Any]:
    """Grid and spectrum convergence of one ramp point ``rec`` (from :func:`ramp_steps`):
    the whole point again on a refined grid of ``K`` blocks (grouped modes; the reference
    and the search), and with ``exact_modes`` the joint optimum at the answer ``T*`` with
    all ``N`` modes in the NLP on the study's grid (against the grouped solve's loss)."""
    t0 = time.perf_counter()
    T0, Ts = int(rec["T0"]), int(rec["ramp_steps"])
    S = T0 * study.mean_batch
    fine = ramp_steps(study, phase, T0, progress=progress, guess=float(rec["saved_fraction"]),
                      options=ramp_options(T0, K=K))
    out: dict[str, Any] = {
        "phase": phase, "T0": T0, "K": K, "ramp_steps": Ts, "saved_fraction": rec["saved_fraction"],
        "fixed_loss": rec["fixed_loss"], "loss_at_steps": rec["ramp_loss"],
        "fine": {k: fine[k] for k in ("fixed_loss", "fixed_status", "ramp_steps", "ramp_loss", "saved_fraction", "evaluated", "solves",
                                      "wall_time_s")},
        "loss_at_steps_exact_modes": None}
    if exact_modes:
        out["loss_at_steps_exact_modes"] = solve(study.spec(phase, Ts, batch_size=S / Ts),
                                                 ramp_options(T0, modes="exact"),
                                                 controls=study.batch_controls()).final_loss
    out["wall_time_s"] = time.perf_counter() - t0
    if progress:
        print(f"check {phase} T0={T0}: K = {K}: {fine['ramp_steps']} steps ({100 * fine['saved_fraction']:.1f}% saved) "
              f"against {Ts} ({100 * rec['saved_fraction']:.1f}%) [{out['wall_time_s']:.0f} s]",
              file=sys.stderr, flush=True)
    return out


# The points whose grid and spectrum convergence :func:`run_ramp_horizons` checks: one per
# phase (the hard phase's at the longest horizon, where its short final decay is finest).
RAMP_CHECKS = (("easy", 1024, True), ("hard", 4096, False))  # phase, T0, all modes at T* too


def run_ramp_horizons(out: Path, *, study: ControlStudy | None = None,
                      horizons: tuple[int, ...] = RAMP_HORIZONS, progress: bool = True,
                      compute: bool = True, checks: tuple[tuple[str, int, bool], ...] = RAMP_CHECKS) -> dict[str, Any]:
    """:func:`ramp_steps` for each phase of ``study`` and each horizon, resumably (one
    JSON per point under ``out/ramp``; a horizon where the full study
    (:func:`run_batch_study`) ran is taken from its record); ``ramp_horizons.json`` /
    ``.md`` and ``ramp_horizons.png`` in ``out``. Each horizon's search starts from the
    saved fraction of the phase's previous one. ``checks``: the ``(phase, T0, exact_modes)``
    points whose grid (and spectrum) convergence :func:`ramp_check` measures
    (``ramp/check-*.json``).
    With ``compute=False`` only the finished points are reported (the rest are listed as
    missing)."""
    study = load_control_study() if study is None else study
    pts = out / "ramp"
    pts.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"loss_rtol": study.loss_rtol, "mean_batch": study.mean_batch,
                               "m_bounds": [study.m_min, study.m_max], "horizons": list(horizons),
                               "phases": {}, "checks": []}
    recs_of: dict[str, list[dict[str, Any]]] = {p: [] for p in study.models}
    missing_of: dict[str, list[int]] = {p: [] for p in study.models}
    for T0 in horizons:  # horizon by horizon, so that both phases advance together
        for phase in study.models:
            recs, missing = recs_of[phase], missing_of[phase]
            path, full = pts / f"{phase}-T{T0}.json", out / f"{phase}-T{T0}.json"
            if full.exists():
                f = read_json(full)
                rec = {"T0": T0, "fixed_loss": f["degeneracy"]["fixed_loss"], "grid": "per-step",
                       "search": "bisection", "ramp_steps": f["fewest_steps_ramp"]["steps"],
                       "ramp_loss": f["fewest_steps_ramp"]["loss"],
                       "steps_saved": T0 - f["fewest_steps_ramp"]["steps"],
                       "saved_fraction": (T0 - f["fewest_steps_ramp"]["steps"]) / T0, "from": full.name}
            elif path.exists():
                rec = read_json(path)
            elif compute:
                guess = recs[-1]["saved_fraction"] if recs else RAMP_FIRST_GUESS
                rec = ramp_steps(study, phase, T0, progress=progress, guess=guess)
                write_json(path, rec)
            else:
                missing.append(T0)
                continue
            earlier = pts / f"{phase}-T{T0}-bisection.json"
            if earlier.exists():  # the same point by the earlier method, for its cost
                e = read_json(earlier)
                rec["before"] = {k: e.get(k) for k in ("ramp_steps", "wall_time_s", "grid")}
                rec["before"]["solves"] = len(e.get("evaluated", {}))
            recs.append(rec)
    for phase, T0, exact in checks:
        cpath = pts / f"check-{phase}-T{T0}.json"
        done = {r["T0"]: r for r in recs_of.get(phase, [])}
        if cpath.exists():
            summary["checks"].append(read_json(cpath))
        elif compute and T0 in done:
            c = ramp_check(study, phase, done[T0], exact_modes=exact, progress=progress)
            write_json(cpath, c)
            summary["checks"].append(c)
    for phase in study.models:
        summary["phases"][phase] = {**study.models[phase], "points": recs_of[phase],
                                    "missing": missing_of[phase]}
    write_json(out / "ramp_horizons.json", summary)
    plots.save(plots.plot_ramp_savings(summary), out / "ramp_horizons.png")
    write_text_atomic(out / "ramp_horizons.md", ramp_report(summary))
    return summary


def ramp_report(summary: dict[str, Any]) -> str:
    """Markdown: per phase and horizon, the reference loss, the ramp's steps and loss, the
    search's solves and time; the convergence check; how the saving moves with ``T0``."""
    m_lo, m_hi = summary["m_bounds"]
    lines = ["# Serial steps saved by a batch ramp, against the horizon", "",
             f"Sample budget S = T0 × {summary['mean_batch']:g}; reference: the fixed-batch optimum "
             f"(m = {summary['mean_batch']:g}); ramp: the fewest steps T' whose joint (η, m) optimum "
             f"(m_t ∈ [{m_lo:g}, {m_hi:g}], same S samples) reaches the reference's L_T within "
             f"{100 * summary['loss_rtol']:.1f}% (IPOPT; every loss an exact per-step replay with all N modes). "
             f"Up to T0 = {RAMP_BLOCK_T}: per-step grid, all modes, bisection over T'. Past it: a refined grid "
             f"of {RAMP_BLOCK_K} blocks for every solve (the reference included), the exact step recursion "
             "on the Gauss-grouped spectrum, and an interpolating search over T' (regula falsi on log L "
             "against log T', first probe at the previous horizon's saving, each solve warm-started from "
             "the nearest T' solved). *solves*: joint solves the search ran (the point's time includes "
             "the reference). Written by `python benchmarks/bench_controls.py --only ramps` "
             "(or `optctl reproduce --full`); resumable, one JSON per point under `ramp/`.", ""]
    for phase, ph in summary["phases"].items():
        lines += [f"## {phase} phase (a = {ph['a']}, b = {ph['b']}, N = {ph['N']})", "",
                  "| T0 | reference L_T | ramp steps | saved | ramp L_T | grid | solves | time |",
                  "|---:|---:|---:|---:|---:|---|---:|---:|"]
        for r in ph["points"]:
            n = len(r["evaluated"]) if "evaluated" in r else None
            wall = r.get("wall_time_s")
            lines.append(f"| {r['T0']} | {r['fixed_loss']:.6g} | {r['ramp_steps']} | "
                         f"{100 * r['saved_fraction']:.1f}% | {r['ramp_loss']:.6g} | {r['grid']} | "
                         f"{'—' if n is None else n} | {'—' if wall is None else f'{wall:.0f} s'} |")
        before = [r for r in ph["points"] if "before" in r]
        for r in before:
            e = r["before"]
            lines.append(f"\nThe earlier method at T0 = {r['T0']} ({e['grid']}, all N modes in the NLP, bisection): "
                         f"{e['ramp_steps']} steps, {e['solves']} solves, {e['wall_time_s']:.0f} s; this one: "
                         f"{r['ramp_steps']} steps, {len(r['evaluated'])} solves, {r['wall_time_s']:.0f} s "
                         "(both on a loaded shared machine).")
        if ph["missing"]:
            lines.append(f"\nNot computed yet: T0 = {ph['missing']} (`python benchmarks/bench_controls.py "
                         "--only ramps` computes them).")
        lines.append("")
    for c in summary.get("checks", []):
        f = c["fine"]
        lines += [f"## Convergence check ({c['phase']}, T0 = {c['T0']})", "",
                  "| grid | reference L_T | ramp steps | saved | ramp L_T | solves | time |",
                  "|---|---:|---:|---:|---:|---:|---:|",
                  f"| refined K = {RAMP_BLOCK_K} (the study's) | {c['fixed_loss']:.7g} | {c['ramp_steps']} | "
                  f"{100 * c['saved_fraction']:.1f}% | {c['loss_at_steps']:.7g} | | |",
                  f"| refined K = {c['K']} | {f['fixed_loss']:.7g} | {f['ramp_steps']} | "
                  f"{100 * f['saved_fraction']:.1f}% | {f['ramp_loss']:.7g} | {len(f['evaluated'])} | "
                  f"{f['wall_time_s']:.0f} s |", ""]
        if c.get("loss_at_steps_exact_modes") is not None:
            lines += [f"All N modes in the NLP (K = {RAMP_BLOCK_K}) at T' = {c['ramp_steps']}: replayed L_T "
                      f"{c['loss_at_steps_exact_modes']:.10g} against {c['loss_at_steps']:.10g} with the grouped "
                      "spectrum.", ""]
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
