"""The anytime study: the optimal branching plan against the schedules people use.

For one model and horizons ``T_1 < … < T_n`` it solves each horizon's own optimum (the
lower bound), the optimal branching plan (:func:`optctl.solver.branching.solve_branching`),
and tunes WSD-S and SGDR (:mod:`optctl.baselines.anytime`); it also reads the longest
horizon's optimum stopped early at each ``T_i``. Every schedule's loss at every ``T_i``
is replayed step by step; the table reports the regret ``L_{T_i}/L*_{T_i} − 1``, its
worst and mean over the horizons. Schedule-Free is evaluated under its exact recursion
(:mod:`optctl.model.families`): one run, its averaged iterate read at every ``T_i``, its
rate and ``β`` tuned once for the worst regret. Regrets are against each horizon's lower
bound on the branching plan's grids (:func:`optctl.solver.branching.lower_bounds`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from optctl.baselines.anytime import SF_LR_GRID, tune_schedule_free, tune_sgdr, tune_wsd_s
from optctl.io.anytime import write_anytime, write_anytime_run
from optctl.io.config import RunConfig
from optctl.model.replay import replay
from optctl.solver.branching import SOLVED, BranchingResult, horizon_optima, solve_branching
from optctl.solver.evaluate import approximate_evaluator
from optctl.spec import ProblemSpec, SolverOptions
from optctl.validate import check_horizons

METHODS = ("optimum per horizon", "branching optimum (worst regret)", "longest optimum stopped early",
           "WSD-S (tuned)", "SGDR (tuned)", "Schedule-Free (tuned)")


@dataclass(frozen=True)
class MethodRow:
    """One method's replayed losses at every horizon (``None``: not available)."""

    method: str
    losses: np.ndarray | None
    regret: np.ndarray | None
    params: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    @property
    def worst(self) -> float | None:
        return None if self.regret is None else float(np.max(self.regret))

    @property
    def mean(self) -> float | None:
        return None if self.regret is None else float(np.mean(self.regret))


@dataclass(frozen=True)
class AnytimeReport:
    """The study's answer: the branching result and one row per method."""

    name: str
    spec: ProblemSpec
    horizons: tuple[int, ...]
    branching: BranchingResult
    rows: tuple[MethodRow, ...]
    schedules: dict[str, tuple[np.ndarray, ...]]
    times: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "spec": self.spec.to_dict(), "horizons": list(self.horizons),
            "branching": self.branching.summary(),
            "methods": [{"method": r.method, "losses": None if r.losses is None else r.losses.tolist(),
                         "regret": None if r.regret is None else r.regret.tolist(), "worst_regret": r.worst,
                         "mean_regret": r.mean, "params": r.params, "note": r.note} for r in self.rows],
            "times_s": self.times,
        }

    def arrays(self) -> dict[str, np.ndarray]:
        """The trunk, the leave points, the horizons and every branch."""
        b = self.branching
        out = {"trunk": b.trunk, "leave": np.asarray(b.leave), "horizons": np.asarray(b.horizons)}
        out.update({f"branch_{i}": br for i, br in enumerate(b.branches)})
        return out

    def draw(self, path: Path) -> None:
        """The figure: trunk and branches over t, regret per horizon for every method."""
        from optctl import plots  # matplotlib, only when drawing

        b = self.branching
        title = f"{self.name}: a = {self.spec.a}, b = {self.spec.b} ({self.spec.phase} phase)"
        warn = []  # an uncertified plan says so in its legend label and the title (a second line)
        if not b.success:
            warn.append(f"branching plan NOT certified ({b.status})")
        if b.unconverged_bounds:
            warn.append("lower bounds not converged at T = " + ", ".join(str(T) for T, _ in b.unconverged_bounds))
        if warn:
            title += "\n" + "; ".join(warn)
        fig = plots.plot_anytime(b.trunk, b.branches, b.leave, self.horizons,
                                 {_label(r.method, b): None if r.regret is None else list(r.regret)
                                  for r in self.rows},
                                 wsd_s=self.schedules.get("WSD-S (tuned)"), title=title,
                                 trunk_label="trunk" if b.success else "trunk (NOT certified)")
        plots.save(fig, path)

    def write(self, folder: Path) -> None:
        """The study's files under ``folder`` (:func:`optctl.io.anytime.write_anytime`)."""
        write_anytime(folder, self.name, self.to_dict(), self.markdown(), self.arrays(), self.draw)

    def write_run(self, out: Path, cfg: RunConfig, *, overwrite: bool = False,
                  source: str | None = None) -> None:
        """The run folder of ``optctl solve`` with ``horizons``."""
        summary = {"name": cfg.name, "config_source": source, **self.to_dict()}
        write_anytime_run(out, cfg, summary, self.markdown(), self.arrays(),
                          self.branching.to_table().to_dict(), self.draw, overwrite=overwrite)

    def markdown(self) -> str:
        """The regret table (percent) with the replayed losses, and the branching plan."""
        hs = self.horizons
        head = "| method | " + " | ".join(f"T = {T}" for T in hs) + " | worst | mean |"
        lines = [f"### {self.name}: a = {self.spec.a}, b = {self.spec.b} ({self.spec.phase} phase), "
                 f"N = {self.spec.N}, m = {self.spec.batch_size}, σ = {self.spec.sigma}", "",
                 "Regret L_T/L*_T − 1 in percent (replayed loss L_T in brackets).", "",
                 head, "|---" * (len(hs) + 3) + "|"]
        for r in self.rows:
            if r.losses is None or r.regret is None:
                lines.append(f"| {r.method} | " + " | ".join("n/a" for _ in hs) + " | n/a | n/a |")
                continue
            cells = [f"{100 * g:.2f} ({L:.5g})" for g, L in zip(r.regret, r.losses, strict=True)]
            lines.append(f"| {r.method} | " + " | ".join(cells) + f" | {100 * (r.worst or 0):.2f} | "
                         f"{100 * (r.mean or 0):.2f} |")
        b = self.branching
        lines += ["", f"Branching plan: leave points t_i = {list(b.leave)} "
                  f"(decay fractions {[round(1 - t / T, 3) for t, T in zip(b.leave, hs, strict=True)]}); "
                  f"replay gap per branch {[f'{g:.1e}' for g in b.replay_gap]}; IPOPT {b.status}, "
                  f"{b.iterations} iterations; branching solves {b.wall_time:.1f} s in all, "
                  f"per-horizon optima {self.times.get('optima', b.optima_time):.1f} s, baselines "
                  f"{self.times.get('baselines', 0.0):.1f} s (wall, see the machine's load).",
                  f"Certificate: {_certificate_line(b)}",
                  *([f"**Lower bounds not converged**: {bounds_warning(b)}"] if b.unconverged_bounds else []),
                  "Leave points tried (common decay fraction; K = the solver's blocks of each solve): " + "; ".join(
                      f"{list(t)} at K = {k}: worst {100 * r:.3f}% in {sec:.1f} s" for t, r, sec, k in b.scan) + ".",
                  f"Trunk: {trunk_shape(b)}"]
        notes = [f"- {r.method}: {r.note}" for r in self.rows if r.note]
        if notes:
            lines += ["", *notes]
        return "\n".join(lines) + "\n"


def _label(method: str, b: BranchingResult) -> str:
    """The figure's legend label of a method: the branching plan's says when it is not certified."""
    if method.startswith("branching") and not b.success:
        return f"{method}, NOT certified ({b.status})"
    return method


def _certificate_line(b: BranchingResult) -> str:
    c = b.certificate
    if c is None:
        return "none (weighted objective)."
    why = ""
    if not c.success:
        why = (": the weighted sum at the final weights was not solved by IPOPT, so its value is only an upper "
               "estimate of its minimum and the gap bounds nothing" if c.status not in SOLVED else
               ": the gap is above the tolerance")
    return (f"worst regret {100 * c.worst:.4f}% (transcribed) − the weighted sum's minimum at the final weights "
            f"{100 * c.dual:.4f}% = gap {c.gap:.2e}, tolerance {c.tolerance:.2e}: "
            f"{'certified' if c.success else 'NOT certified'} ({c.status}{why}); weights "
            f"{[round(float(x), 4) for x in c.weights]}.")


def bounds_warning(b: BranchingResult) -> str:
    """A sentence naming the horizons whose lower bound's solve did not converge (empty
    when every one did)."""
    bad = b.unconverged_bounds
    if not bad:
        return ""
    return ("the lower-bound solve (the per-horizon optimum) did not converge at " + ", ".join(
        f"T = {T} ({st})" for T, st in bad) + ": those bounds may be above the true optima, so the regrets "
        "against them are not trustworthy (they can be below zero); raise solver.max_iter or check the "
        "solver options.")


def trunk_shape(b: BranchingResult) -> str:
    """A sentence on the trunk: its first rate, its median level between consecutive leave
    points (relative to its early level, the highest rate of its first 1%) and its lowest
    value in the last tenth before each leave point."""
    t = b.trunk
    if t.size == 0:
        return "empty (every branch leaves at t = 0)."
    ref = float(np.max(t[: max(1, t.size // 100)]))
    points = sorted(set(p for p in b.leave if p > 0))
    parts, levels = [], []
    lo = 0
    for p in points:
        seg = t[lo:p]
        med = float(np.median(seg))
        dip = float(np.min(t[max(lo, p - max(1, (p - lo) // 10)):p]))
        levels.append(med)
        parts.append(f"on [{lo}, {p}) median {med:.3g}, lowest {dip:.3g} in the last tenth before {p}")
        lo = p
    flat = all(v >= 0.9 * ref for v in levels)
    verdict = ("stays flat between leave points (every segment's median within 10% of the early level)"
               if flat else "decays (a segment's median is more than 10% below the early level)")
    return (f"starts at {float(t[0]):.3g} (early level {ref:.3g}, the highest rate of its first 1%); "
            + "; ".join(parts) + f"; it {verdict}.")


def run_anytime(spec: ProblemSpec, horizons: Sequence[int], options: SolverOptions | None = None, *,
                name: str = "anytime", leave: Sequence[int] | None = None,
                fractions: Sequence[float] | None = None, baselines: bool = True,
                progress: bool = False) -> AnytimeReport:
    """Solve, tune and replay every method of :data:`METHODS` at ``horizons``
    (``baselines=False``: the branching plan, the per-horizon optima and the longest
    optimum stopped early only)."""
    hs = check_horizons(list(horizons))
    options = SolverOptions() if options is None else options
    times: dict[str, float] = {}
    t0 = time.perf_counter()
    optima = horizon_optima(spec, hs, options, progress=progress)
    times["optima"] = time.perf_counter() - t0
    kw: dict[str, Any] = {} if fractions is None else {"fractions": tuple(fractions)}
    t0 = time.perf_counter()
    br = solve_branching(spec, hs, options, leave=leave, optima=optima, progress=progress, **kw)
    times["branching"] = time.perf_counter() - t0
    # Every regret is against the lower bound on the branching plan's grids (never above
    # the horizon's own optimum; docs/anytime.md).
    star = br.optima
    own = br.own_optima
    rows = [MethodRow("optimum per horizon", star, star / star - 1.0, note="the lower bound; each "
                      "horizon's own optimum on the branching plan's grids (a separate run per horizon); "
                      "own optima on the solver's grid: " + ", ".join(f"{x:.6g}" for x in own)),
            MethodRow("branching optimum (worst regret)", br.losses, br.regret,
                      params={"leave": list(br.leave)})]
    schedules: dict[str, tuple[np.ndarray, ...]] = {
        "branching optimum (worst regret)": tuple(br.schedule(i) for i in range(len(hs)))}
    longest = optima[-1]
    early = np.array([float(longest.loss[T]) for T in hs])
    rows.append(MethodRow("longest optimum stopped early", early, early / star - 1.0))
    schedules["longest optimum stopped early"] = tuple(np.asarray(longest.eta[:T]) for T in hs)
    if baselines:
        _log("anytime: tuning WSD-S, SGDR and Schedule-Free", progress)
        t0 = time.perf_counter()
        evaluators = [approximate_evaluator(replace(spec, T=T)) for T in hs]
        for label, tune in (("WSD-S (tuned)", tune_wsd_s), ("SGDR (tuned)", tune_sgdr)):
            base = tune(hs, star, evaluators, spec.eta_max)
            losses = np.array([replay(replace(spec, T=T), s).final
                               for T, s in zip(hs, base.schedules, strict=True)])
            rows.append(MethodRow(label, losses, losses / star - 1.0, params=base.params))
            schedules[label] = base.schedules
        sf = tune_schedule_free(spec, hs, star, spec.eta_max)
        rows.append(MethodRow("Schedule-Free (tuned)", sf.tuned_losses, sf.tuned_losses / star - 1.0,
                              params={"lr": sf.params["lr"], "beta": sf.params["beta"]},
                              note=f"one run, averaged iterate read at every T_i (exact recursion); constant "
                                   f"rate {sf.params['lr']:.3g} and beta {sf.params['beta']:g} tuned once for "
                                   f"the worst regret over {SF_LR_GRID} rates in "
                                   f"[1e-3, 1] eta_max x beta in {sf.params['betas']}"))
        times["baselines"] = time.perf_counter() - t0
    return AnytimeReport(name=name, spec=spec, horizons=hs, branching=br, rows=tuple(rows),
                         schedules=schedules, times=times)


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(msg, file=sys.stderr, flush=True)
