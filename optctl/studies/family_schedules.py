"""Optimally scheduled families: solved DANA schedules and Schedule-Free ``γ(t)`` per horizon.

For each model and horizon of the families study (``optctl/data/study_families.yaml``) this
solves, with :func:`optctl.solver.family.solve_family`, the optimal ``(γ₂(t), γ₃(t))`` of
DANA (``γ₁ = 1``, ``Δ(t) = δ/(δ + t)``) and the optimal ``γ(t)`` of Schedule-Free SGD (its
``β`` the tuned one), twice: unbounded (the box of
:data:`~optctl.solver.controls.FAMILY_BOX`) and with the effective step bounded by optimal
SGD's ``η_max`` (docs/momentum_families.md §7). Beside them, the families tuned under the
same bound (:func:`~optctl.baselines.momentum_tune.tune_family` with ``eta_max``). Starts:
the tuned families' schedules, and the previous horizon's answer stretched to the new
horizon (in ``t/T``). Every answer is replayed by the family's exact recursion.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from optctl.baselines.momentum_tune import tune_family
from optctl.io.files import read_json, write_json
from optctl.model import families as F
from optctl.solver.controls import DanaSchedule, ScheduleFreeLR
from optctl.solver.family import FamilySolve, solve_family
from optctl.solver.piecewise import expand
from optctl.solver.solve import solve
from optctl.spec import ProblemSpec, SolverOptions
from optctl.studies.families import study_spec


def _stretch(values: np.ndarray, T: int) -> np.ndarray:
    """A per-step schedule of another horizon, read at the same ``t/T``."""
    u = (np.arange(T) + 0.5) / T
    src = (np.arange(values.size) + 0.5) / values.size
    return np.interp(u, src, values)


def _load() -> float:
    return float(os.getloadavg()[0]) if hasattr(os, "getloadavg") else float("nan")


def _record(res: FamilySolve, **extra: Any) -> dict[str, Any]:
    eff = F.effective_step(res.optimizer)
    return {"loss": res.final_loss, "objective": res.objective, "replay_gap": res.replay_gap,
            "attempts": res.info.get("attempts", []),
            "start_loss": res.start_loss, "start": res.start, "success": res.success,
            "propagator": res.info.get("propagator"), "n_subblocks": res.info.get("n_subblocks"),
            "n_modes": res.info.get("n_modes"), "lbfgs_history": res.info.get("lbfgs_history"),
            "status": res.status, "iterations": res.iterations, "seconds": res.wall_time,
            "load_1min": _load(), "at_box": res.at_box, "max_effective_step": float(np.max(eff)),
            "grid": res.grid.tolist(), "schedules": {k: v[res.grid[:-1]].tolist() for k, v in res.schedules.items()},
            **extra}


def _dana_start(opt: F.LinearOptimizer, T: int, eta_max: float | None) -> tuple[np.ndarray, np.ndarray]:
    g2 = np.broadcast_to(np.asarray(opt.params["_g2"], dtype=float), (T,)).copy()
    g3 = np.broadcast_to(np.asarray(opt.params["_g3"], dtype=float), (T,)).copy()
    if eta_max is not None:  # shrink where the start's effective step exceeds the bound
        shrink = np.minimum(1.0, 0.99 * eta_max / F.effective_step(opt))
        g2, g3 = g2 * shrink, g3 * shrink
    return g2, g3


def _seed(path: Path, below: int) -> dict[str, dict[str, np.ndarray]]:
    """The per-step schedules solved at the longest horizon below ``below`` in a record."""
    rows = [r for r in read_json(path)["rows"] if int(r["T"]) < below] if path.exists() else []
    if not rows:
        return {}
    r = max(rows, key=lambda r: int(r["T"]))
    out = {}
    for tag in ("unbounded", "bounded"):
        for fam, key in (("sf", "schedule-free_solved_"), ("dana", "dana_solved_")):
            if key + tag in r:
                v = r[key + tag]
                out[f"{fam}-{tag}"] = {k: expand(np.asarray(b, dtype=float), np.asarray(v["grid"]))
                                       for k, b in v["schedules"].items()}
    return out


def run_schedules(out: Path, cfg: dict[str, Any], case: str, horizons: list[int], *, K: int = 48,
                  max_iter: int = 3000, progress: Callable[[str], None] = print,
                  seed: Path | None = None, record: Path | None = None,
                  redo: tuple[str, ...] = (), bounds: tuple[str, ...] = ("unbounded", "bounded"),
                  second_start_T: tuple[int, ...] = (),
                  families: tuple[str, ...] = ("schedule-free", "dana"),
                  attempts: int | None = None) -> dict[str, Any]:
    """Solve and record every horizon of ``case`` into ``out/<case>_scheduled.json`` (or
    ``record``; resumable: finished entries are kept, those named in ``redo`` recomputed,
    e.g. ``dana_solved_bounded``; ``bounds`` chooses the unbounded and/or bounded solves). Needs the tuned families of ``out/<case>.json``.
    ``seed``: a record whose longest shorter horizon's answers are stretched into starts of
    the first horizon (each later horizon starts from the one before it anyway).
    ``second_start_T``: at these horizons every solve is repeated from its best-ranked other
    start (:func:`_two_starts`); the lower answer is kept and both are recorded. ``families``:
    the scheduled families to solve (``"schedule-free"``, ``"dana"``). ``attempts``: starts
    solved in rank order until one succeeds (default: all of them)."""
    model = cfg["models"][case]
    eta_max = float(cfg["sgd"]["eta_max"])
    tuned = {int(r["T"]): r for r in read_json(out / f"{case}.json")["rows"]}
    path = out / f"{case}_scheduled.json" if record is None else record
    rec: dict[str, Any] = read_json(path) if path.exists() else {"model": model, "eta_max": eta_max, "K": K,
                                                                   "rows": []}
    old = {int(r["T"]): r for r in rec["rows"]}
    prev: dict[str, dict[str, np.ndarray]] = {} if seed is None else _seed(seed, min(horizons))
    options = SolverOptions(K=K, max_iter=max_iter)
    delta = 4.0 + float(model["a"]) / float(model["b"])
    for T in horizons:
        if T not in tuned:
            progress(f"{case} T={T}: no tuned families in {case}.json; skipped")
            continue
        spec = study_spec(model, T)
        row: dict[str, Any] = dict(old.get(T, {"T": T, "sgd_loss": float(tuned[T]["sgd"]["loss"])}))

        def todo(key: str, row: dict[str, Any] = row) -> bool:
            return key not in row or key in redo

        for fam in ("schedule-free", "dana-decaying"):
            if "bounded" not in bounds or not todo(f"{fam}_bounded_tuned"):
                continue
            t0 = time.perf_counter()
            p = tuned[T][fam]["params"]
            base = (np.log10(min(p["lr"], eta_max)), np.log10(1 - p["beta"])) if fam == "schedule-free" else \
                (np.log10(min(p["gamma2"], 0.5 * eta_max)),
                 np.log10(p["gamma3"] * min(1.0, eta_max / float(np.max(F.effective_step(
                     F.dana(spec, T, p["gamma2"], p["gamma3"])))))))
            tb = tune_family(spec, fam, T, start=(float(base[0]), float(base[1])), coarse=True, eta_max=eta_max)
            row[f"{fam}_bounded_tuned"] = {"loss": tb.loss, "params": tb.params, "on_edge": tb.on_edge,
                                           "seconds": time.perf_counter() - t0, "load_1min": _load()}
            progress(f"{case} T={T}: {fam} tuned with effective step <= {eta_max:g}: L_T = {tb.loss:.6g} "
                     f"{tb.params} ({time.perf_counter() - t0:.0f} s)")
        for bound in (None, eta_max):
            tag = "unbounded" if bound is None else "bounded"
            if tag not in bounds:
                continue
            key = f"schedule-free_solved_{tag}"
            if "schedule-free" in families and todo(key):
                src = tuned[T]["schedule-free"] if bound is None else row["schedule-free_bounded_tuned"]
                beta, lr = float(src["params"]["beta"]), float(src["params"]["lr"])
                starts = [(np.full(T, lr),), *_more_starts(row.get(key), prev.get(f"sf-{tag}"), T, ("lr",))]
                res = solve_family(spec, ScheduleFreeLR(beta, bound), starts, options,
                                   attempts=attempts or len(starts))
                row[key] = _record(res, beta=beta)
                if T in second_start_T:
                    row[key] = _two_starts(spec, ScheduleFreeLR(beta, bound), starts, options, res, row[key],
                                           progress, beta=beta)
                progress(f"{case} T={T}: Schedule-Free γ(t) {tag}: L_T = {res.final_loss:.6g} ({res.status}, "
                         f"{res.iterations} it, {res.wall_time:.0f} s, gap {res.replay_gap:.1e}, load {_load():.1f})")
            if key in row:
                prev[f"sf-{tag}"] = _per_step(row[key])
            key = f"dana_solved_{tag}"
            if "dana" in families and todo(key):
                if bound is None:
                    pd, pc = tuned[T]["dana-decaying"]["params"], tuned[T]["dana-constant"]["params"]
                    opts = [F.dana(spec, T, pd["gamma2"], pd["gamma3"]),
                            F.dana(spec, T, pc["gamma2"], pc["gamma3"], decaying=False)]
                else:
                    pb = row["dana-decaying_bounded_tuned"]["params"]
                    opts = [F.dana(spec, T, pb["gamma2"], pb["gamma3"])]
                dstarts = [*(_dana_start(o, T, bound) for o in opts),
                           *_more_starts(row.get(key), prev.get(f"dana-{tag}"), T, ("gamma2", "gamma3"))]
                res = solve_family(spec, DanaSchedule(delta, bound), dstarts, options,
                                   attempts=attempts or len(dstarts))
                row[key] = _record(res, delta=delta)
                if T in second_start_T:
                    row[key] = _two_starts(spec, DanaSchedule(delta, bound), dstarts, options, res, row[key],
                                           progress, delta=delta)
                progress(f"{case} T={T}: DANA (γ₂, γ₃)(t) {tag}: L_T = {res.final_loss:.6g} ({res.status}, "
                         f"{res.iterations} it, {res.wall_time:.0f} s, gap {res.replay_gap:.1e}, load {_load():.1f})")
            if key in row:
                prev[f"dana-{tag}"] = _per_step(row[key])
            old[T] = row
            rec["rows"] = [old[t] for t in sorted(old)]
            write_json(path, rec)
    return rec


def _two_starts(spec: ProblemSpec, cs: Any, starts: list[tuple[np.ndarray, ...]], options: SolverOptions,
                first: FamilySolve, record: dict[str, Any], progress: Callable[[str], None],
                **extra: Any) -> dict[str, Any]:
    """The same problem solved again from the best-ranked start other than the one ``first``
    came from (one attempt). Returns the record of the lower of the two answers with the other
    under ``"second_start"`` and their relative difference in the exactly replayed ``L_T``."""
    scores = first.info["start_scores"]
    others = [i for i in np.argsort(np.where(np.isfinite(scores), scores, np.inf)) if i != first.start
              and np.isfinite(scores[i])]
    if not others:
        return {**record, "second_start": None}
    i = int(others[0])
    res = solve_family(spec, cs, [starts[i]], options)
    other = _record(res, **extra)
    diff = abs(res.final_loss - first.final_loss) / min(res.final_loss, first.final_loss)
    progress(f"{spec.T}: second start {i} (first {first.start}): L_T = {res.final_loss:.6g} ({res.status}, "
             f"{res.iterations} it, {res.wall_time:.0f} s); relative difference {diff:.1e}")
    first_kept = first.final_loss <= res.final_loss
    keep, alt = (record, other) if first_kept else (other, record)
    alt = {k: v for k, v in alt.items() if k not in ("grid", "schedules", "second_start")}
    keep = {**keep, "start": first.start if first_kept else i}
    return {**keep, "second_start": {**alt, "start": i if first_kept else first.start},
            "starts_relative_difference": diff}


def sgd_same_grid(out: Path, cfg: dict[str, Any], case: str, progress: Callable[[str], None] = print) -> None:
    """Optimal SGD on the families' own refined grid (``K`` blocks of ``<case>_scheduled.json``)
    at every horizon there that lacks it, stored under ``"sgd_same_grid"`` (loss, status,
    seconds, load): the like-for-like reference for the scheduled families, whose ``K`` blocks
    are coarser than SGD's default grid (per step to ``T = 500``, then 100 refined blocks)."""
    model = cfg["models"][case]
    path = out / f"{case}_scheduled.json"
    rec = read_json(path)
    for row in rec["rows"]:
        if "sgd_same_grid" in row:
            continue
        T = int(row["T"])
        spec = study_spec(model, T)
        t0 = time.perf_counter()
        res = solve(spec, SolverOptions(grid="refined", K=int(rec["K"])))
        row["sgd_same_grid"] = {"loss": res.final_loss, "status": res.status, "K": int(rec["K"]),
                                "replay_gap": res.replay_gap, "seconds": time.perf_counter() - t0,
                                "load_1min": _load()}
        write_json(path, rec)
        progress(f"{case} T={T}: optimal SGD on {rec['K']} refined blocks: L_T = {res.final_loss:.6g} "
                 f"({res.status}; default grid {row['sgd_loss']:.6g})")


def _per_step(record: dict[str, Any]) -> dict[str, np.ndarray]:
    """A stored solve's schedules, per update (expanded from its block grid)."""
    grid = np.asarray(record["grid"])
    return {k: expand(np.asarray(v, dtype=float), grid) for k, v in record["schedules"].items()}


def _more_starts(redo: dict[str, Any] | None, previous: dict[str, np.ndarray] | None, T: int,
                 names: tuple[str, ...]) -> list[tuple[np.ndarray, ...]]:
    """Further starts of a scheduled-family solve: the stored answer a redo replaces, and the
    previous horizon's answer stretched to ``T`` in ``t/T`` (``names``: the schedules, in order)."""
    out = []
    if redo is not None:
        steps = _per_step(redo)
        out.append(tuple(steps[k] for k in names))
    if previous is not None:
        out.append(tuple(_stretch(previous[k], T) for k in names))
    return out


def two_starts(spec: ProblemSpec, tuned_row: dict[str, Any], K: int = 48) -> dict[str, Any]:
    """DANA solved from the tuned decaying and from the tuned constant schedules separately:
    their relative difference in the replayed ``L_T``."""
    delta = 4.0 + spec.a / spec.b
    pd, pc = tuned_row["dana-decaying"]["params"], tuned_row["dana-constant"]["params"]
    T = spec.T
    losses: list[dict[str, Any]] = []
    for opt in (F.dana(spec, T, pd["gamma2"], pd["gamma3"]),
                F.dana(spec, T, pc["gamma2"], pc["gamma3"], decaying=False)):
        res = solve_family(spec, DanaSchedule(delta), [_dana_start(opt, T, None)], SolverOptions(K=K))
        losses.append({"loss": res.final_loss, "status": res.status, "iterations": res.iterations,
                       "seconds": res.wall_time, "load_1min": _load()})
    a, b = float(losses[0]["loss"]), float(losses[1]["loss"])
    return {"T": T, "starts": losses, "relative_difference": abs(a - b) / min(a, b)}


def bound_check(spec: ProblemSpec, beta: float, eta_max: float, grid: np.ndarray, h: float = 1e-3) -> dict[str, Any]:
    """Is Schedule-Free's ``γ ≡ eta_max`` a KKT point of the bounded ``γ(t)`` problem?

    Lowers ``γ`` by ``h · eta_max`` in one block at a time (the only feasible direction at the
    bound) and replays each schedule exactly (:func:`~optctl.model.families.family_loss`, all
    modes): the one-sided derivative ``∂L_T/∂γ_k ≈ (L(γ) − L(γ − h e_k)) / h`` must be ``≤ 0``
    in every block for the bound to hold with a non-negative multiplier. Returns the
    derivatives and the largest one."""
    K = grid.size - 1
    lr = np.full((spec.T, K + 1), eta_max)
    for k in range(K):
        lr[grid[k]:grid[k + 1], k + 1] -= h * eta_max
    L = np.asarray(F.family_loss(spec, F.schedule_free(spec.T, lr, beta)), dtype=float)
    d = (L[0] - L[1:]) / (h * eta_max)
    return {"loss_at_bound": float(L[0]), "h": h, "derivatives": d.tolist(), "max_derivative": float(d.max()),
            "kkt": bool(np.all(d <= 0.0))}


def _slopes(T: list[int], L: list[float]) -> list[float]:
    lt, ll = np.log(np.asarray(T, float)), np.log(np.asarray(L, float))
    return (-np.diff(ll) / np.diff(lt)).tolist()


COLUMNS = (  # (title, row key, tuned-family key in <case>.json or None)
    ("DANA-decaying tuned", None, "dana-decaying"),
    ("DANA solved (γ₂, γ₃)(t)", "dana_solved_unbounded", None),
    ("Schedule-Free tuned", None, "schedule-free"),
    ("Schedule-Free solved γ(t)", "schedule-free_solved_unbounded", None),
    ("DANA-decaying tuned, eff ≤ η_max", "dana-decaying_bounded_tuned", None),
    ("DANA solved, eff ≤ η_max", "dana_solved_bounded", None),
    ("Schedule-Free tuned, γ ≤ η_max", "schedule-free_bounded_tuned", None),
    ("Schedule-Free solved γ(t), γ ≤ η_max", "schedule-free_solved_bounded", None),
)


def _verdict(Ts: list[int], cols: dict[str, list[float]], sl: dict[str, list[float]], K: int) -> str:
    """One plain sentence per solved family at the last horizon: its ``L_T`` against optimal SGD on
    the default grid and on the families' ``K`` blocks, and its last local slope against theirs."""
    T, parts = Ts[-1], []
    for title, key, _ in COLUMNS:
        if key is None or "solved" not in key or not np.isfinite(cols[title][-1]):
            continue
        L, s, ref_s, span = cols[title][-1], sl[title][-1], sl["sgd"][-1], ""
        if not np.isfinite(s):  # the horizon before the last is missing: the span from the last one solved
            before = [i for i in range(len(Ts) - 1) if np.isfinite(cols[title][i])]
            if before:
                i = before[-1]
                s = _slopes([Ts[i], T], [cols[title][i], L])[0]
                ref_s = _slopes([Ts[i], T], [cols["sgd"][i], cols["sgd"][-1]])[0]
                span = f" over {Ts[i]}→{T} (SGD's {ref_s:.3f})"
        same = cols["sgd_grid"][-1]
        vs_same = f", {100 * (L / same - 1):+.1f}% against SGD on its {K} blocks" if np.isfinite(same) else ""
        slope = "—" if not np.isfinite(s) else f"{s:.3f}{span}"
        beats = "" if not np.isfinite(s) else (" (a larger slope)" if s > ref_s + 0.01 else
                                                " (a smaller slope)" if s < ref_s - 0.01 else " (within 0.01)")
        parts.append(f"{title}: {100 * (L / cols['sgd'][-1] - 1):+.1f}%{vs_same}; slope {slope}{beats}")
    same_slope = sl["sgd_grid"][-1]
    ref = f"optimal SGD's {sl['sgd'][-1]:.3f}" + (f" ({same_slope:.3f} on its {K} blocks)" if np.isfinite(same_slope) else "")
    return (f"Verdict (scheduled families), as measured at T = {T}, last local slope over {Ts[-2]}→{T} against "
            f"{ref}: " + "; ".join(parts) + ".")


def scheduled_section(families_out: Path, case: str) -> list[str]:
    """Markdown lines: the optimally scheduled families of ``case`` beside optimal SGD and the
    tuned families, unbounded and at optimal SGD's ``η_max``, with local slopes (empty when
    ``<case>_scheduled.json`` is absent)."""
    path = families_out / f"{case}_scheduled.json"
    if not path.exists():
        return []
    rec = read_json(path)
    tuned = {int(r["T"]): r for r in read_json(families_out / f"{case}.json")["rows"]}
    rows = [r for r in rec["rows"] if int(r["T"]) in tuned]
    if not rows:
        return []
    eta = rec["eta_max"]
    check = families_out / f"{case}_sf_bound_check.json"
    kkt = {int(r["T"]): bool(r["kkt"] and r["solved_at_bound_everywhere"])
           for r in (read_json(check)["rows"] if check.exists() else [])}
    lines = [f"### {case}: optimally scheduled families (`python benchmarks/bench_family_schedules.py --case {case}`)", "",
             f"IPOPT on {rec['K']} refined blocks on grouped modes, the per-step chain up to T = 1000 (and where "
             "the solve table below says `step`), closed-form sub-blocks beyond (docs/momentum_families.md §7); "
             "every loss is the family's exact replay (all modes). Effective step (docs/momentum_families.md §7): `γ₂ + γ₃/Δ(t)` for DANA, "
             f"`γ(t)` for Schedule-Free; \"≤ η_max\" columns hold it at optimal SGD's η_max = {eta:g}. "
             "Brackets: IPOPT's status when not success (the loss is then an upper bound on the scheduled "
             "optimum); \"start kept\": IPOPT ended above its start, so the (feasible) start is returned; "
             "\"γ = η_max in every block: KKT\": the solved schedule is the bound and every one-sided derivative "
             f"of the exact L_T there is negative (`--bound-check`, {case}_sf_bound_check.json); a replay gap "
             "above 1e-3; a schedule at the box (100); \"—\": not solved.", "",
             f"\"Optimal SGD, {rec['K']} blocks\": optimal SGD on the families' own refined grid "
             "(`--sgd-same-grid`), the like-for-like reference; percentages are against optimal SGD on its "
             "default grid.", "",
             f"| T | optimal SGD | optimal SGD, {rec['K']} blocks | " + " | ".join(c[0] for c in COLUMNS) + " |",
             "|---" * (3 + len(COLUMNS)) + "|"]
    Ts = [int(r["T"]) for r in rows]
    cols: dict[str, list[float]] = {"sgd": [], "sgd_grid": [], **{c[0]: [] for c in COLUMNS}}
    for r in rows:
        T = int(r["T"])
        sgd = float(tuned[T]["sgd"]["loss"])
        cols["sgd"].append(sgd)
        same = r.get("sgd_same_grid")
        cols["sgd_grid"].append(float(same["loss"]) if same else float("nan"))
        cells = [f"{sgd:.5g}", "—" if not same else f"{same['loss']:.5g} ({100 * (same['loss'] / sgd - 1):+.1f}%)"
                 + ("" if same["status"] == "Solve_Succeeded" else f" [{same['status']}]")]
        for title, key, fam in COLUMNS:
            if fam is None and key not in r:
                cols[title].append(float("nan"))
                cells.append("—")
                continue
            v = tuned[T][fam] if fam is not None else r[key]
            loss = float(v["loss"])
            cols[title].append(loss)
            flags = []
            if "status" in v and v["status"] != "Solve_Succeeded":
                flags.append(f"{v['status']}: upper bound")
            elif key == "schedule-free_solved_bounded" and kkt.get(T):
                flags.append("γ = η_max in every block: KKT")  # the bound check: a strict local optimum
            elif "success" in v and not v["success"]:
                flags.append("start kept")  # IPOPT ended above its (feasible) start: the start is returned
            if key is not None and "bounded" in key and "unbounded" not in key and \
                    v.get("max_effective_step", 0.0) > eta * (1 + 1e-6):
                flags.append(f"eff {v['max_effective_step']:.3g} > η_max")
            if abs(v.get("replay_gap", 0.0)) > 1e-3:
                flags.append(f"gap {v['replay_gap']:.1e}")
            d = v.get("starts_relative_difference")
            if d is not None and d > 1e-4:
                flags.append(f"2 starts differ {d:.1e}")
            if v.get("at_box"):
                flags.append("box")
            if v.get("on_edge"):
                flags.append("edge")
            cells.append(f"{loss:.5g} ({100 * (loss / sgd - 1):+.1f}%)" + (f" [{'; '.join(flags)}]" if flags else ""))
        lines.append(f"| {T} | " + " | ".join(cells) + " |")
    if len(Ts) > 1:
        lines += ["", "Local slopes −Δ log L_T / Δ log T:", "",
                  f"| T range | optimal SGD | optimal SGD, {rec['K']} blocks | " + " | ".join(c[0] for c in COLUMNS) + " |",
                  "|---" * (3 + len(COLUMNS)) + "|"]
        sl = {k: _slopes(Ts, v) for k, v in cols.items()}
        for i in range(len(Ts) - 1):
            lines.append(f"| {Ts[i]}→{Ts[i + 1]} | " + " | ".join(
                f"{sl[k][i]:.4f}" if np.isfinite(sl[k][i]) else "—" for k in cols) + " |")
        lines += ["", _verdict(Ts, cols, sl, int(rec["K"]))]
    solved = ("dana_solved_unbounded", "schedule-free_solved_unbounded", "dana_solved_bounded",
              "schedule-free_solved_bounded")
    worst = max(abs(float(r[k]["replay_gap"])) for r in rows for k in solved if k in r)
    lines += ["", f"Largest replay gap of a solved schedule: {worst:.1e}.", ""]
    recent = [(int(r["T"]), k, r[k]) for r in rows for k in solved if k in r and r[k].get("propagator")]
    if recent:
        lines += ["Solves that record their propagator (wall times measured on a shared machine under the load "
                  "shown, not speed claims; \"2nd start\": the same problem from its best-ranked other start, "
                  "the lower answer kept above; modes: the grouped spectrum's size, \"—\" for solves recorded "
                  "before it was, which kept 16 modes exact: 52 for N = 1500 and 2000, 49 for N = 1000):", "",
                  "| T | solve | propagator (sub-blocks) | modes | L-BFGS pairs | status | iterations | seconds "
                  "| load (1 min) | replay gap | 2nd start: L_T, status, iterations, seconds | relative difference |",
                  "|---" * 12 + "|"]
        for T, k, v in recent:
            o = v.get("second_start")
            two = "—" if not o else f"{o['loss']:.6g}, {o['status']}, {o['iterations']}, {o['seconds']:.0f}"
            d = v.get("starts_relative_difference")
            pairs = v.get("lbfgs_history") or 30  # solves recorded before the field: IPOPT's 30
            lines.append(f"| {T} | {k} | {v['propagator']} ({v['n_subblocks']}) | {v.get('n_modes') or '—'} | {pairs} "
                         f"| {v['status']} | {v['iterations']} "
                         f"| {v['seconds']:.0f} | {v['load_1min']:.1f} | {v['replay_gap']:.1e} | {two} | "
                         f"{'—' if d is None else f'{d:.1e}'} |")
        lines.append("")
    return lines
