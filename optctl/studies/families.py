"""The momentum-families study: tuned DANA, log-time momentum and Schedule-Free vs optimal SGD.

Parameters in ``optctl/data/study_families.yaml``. For each model and horizon ``T``:
the optimal SGD schedule (:func:`optctl.solver.solve.solve`, learning rate alone,
``η ≤ eta_max``), and each family of :mod:`optctl.model.families` tuned by
:func:`optctl.baselines.momentum_tune.tune_family` (warm-started from the previous
horizon's optimum). Every loss is the exact per-step recursion's ``L_T``. Results are
written after every horizon (atomically), so an interrupted study keeps what it did.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from optctl.analysis.scaling import local_slopes
from optctl.baselines.momentum_tune import tune_family
from optctl.errors import ConfigError
from optctl.io.config import FamilySpec, RunConfig, dump_config
from optctl.io.files import read_json, staged_dir, write_json, write_text_atomic
from optctl.io.yamlfile import check_keys, check_schema_version, read_config
from optctl.model import families as F
from optctl.model.families import FAMILIES
from optctl.model.spectrum import spectrum
from optctl.solver.controls import DanaSchedule, FamilySchedule, ScheduleFreeLR
from optctl.solver.family import solve_family, start_of
from optctl.solver.solve import solve
from optctl.spec import ProblemSpec, SolverOptions
from optctl.table import FamilyTable
from optctl.theory import zeta_optimal

_TOP = ("schema_version", "name", "models", "horizons", "families", "sgd")


def _study_from_dict(d: Any) -> dict[str, Any]:
    if not isinstance(d, dict):
        raise ConfigError("config", d, f"must be a mapping with keys {', '.join(_TOP)}")
    check_keys("", d, _TOP)
    check_schema_version(d.get("schema_version"))
    for key in _TOP[2:]:
        if key not in d:
            raise ConfigError(key, None, "is required; see optctl/data/study_families.yaml")
    for m in d["models"].values():
        ProblemSpec(T=1, **m)  # checks every value
    for i, f in enumerate(d["families"]):
        if f not in FAMILIES:
            raise ConfigError(f"families[{i}]", f, f"choose from {', '.join(FAMILIES)}")
    if any(not isinstance(T, int) or T < 1 for T in d["horizons"]) or d["horizons"] != sorted(d["horizons"]):
        raise ConfigError("horizons", d["horizons"], "give increasing positive integers")
    return dict(d)


def load_study(path: str | Path | None = None) -> dict[str, Any]:
    """The study's parameters (default: the packaged ``study_families.yaml``)."""
    if path is None:
        path = Path(str(resources.files("optctl") / "data" / "study_families.yaml"))
    return read_config(path, lambda d, _: _study_from_dict(d), kind="study file",
                       example="optctl/data/study_families.yaml")


def study_spec(model: dict[str, Any], T: int) -> ProblemSpec:
    """A study file's model (``a, b, N, sigma, batch_size``) at horizon ``T``."""
    return ProblemSpec(a=float(model["a"]), b=float(model["b"]), N=int(model["N"]), sigma=float(model["sigma"]),
                       batch_size=int(model["batch_size"]), T=int(T))


def dana_exponent(a: float, b: float) -> float:
    """The loss exponent of tuned DANA-decaying as we read arXiv:2505.16098.

    DANA-decaying runs SGD's loss curve in accelerated time ``t^(2 − 1/(2α))``, so the
    SGD exponent ``(a − 1)/b`` is multiplied by ``2 − 1/b`` (``2α = b`` here). This is
    our reading of the paper's summary, not an equation we could check line by line.
    """
    return (a - 1) / b * (2 - 1 / b)


def run_case(name: str, model: dict[str, Any], cfg: dict[str, Any], out: Path,
             progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Run one model over all horizons; writes ``out/<name>.json`` after every horizon."""
    path = out / f"{name}.json"
    rec: dict[str, Any] = read_json(path) if path.exists() else {"model": model, "rows": []}
    done = {int(r["T"]) for r in rec["rows"]}
    starts: dict[str, tuple[float, float] | None] = {f: None for f in cfg["families"]}
    for r in rec["rows"]:
        for f in cfg["families"]:
            if f in r:
                starts[f] = tuple(r[f]["coords"])  # type: ignore[assignment]
    for T in cfg["horizons"]:
        T = int(T)
        if T in done:
            continue
        spec = ProblemSpec(T=T, eta_max=float(cfg["sgd"]["eta_max"]), **model)
        sp = spectrum(spec)
        row: dict[str, Any] = {"T": T}
        t0 = time.perf_counter()
        res = solve(spec, SolverOptions())
        row["sgd"] = {"loss": float(res.final_loss), "success": bool(res.success),
                      "status": res.status, "iterations": int(res.iterations),
                      "seconds": time.perf_counter() - t0}
        progress(f"[{name}] T={T} optimal SGD: L_T = {res.final_loss:.6g} ({res.status}, "
                 f"{time.perf_counter() - t0:.1f} s)")
        for fam in cfg["families"]:
            tun = tune_family(spec, fam, T, start=starts[fam], sp=sp, progress=None)
            starts[fam] = tun.coords
            row[fam] = {"loss": tun.loss, "params": tun.params, "coords": list(tun.coords),
                        "evaluations": tun.evaluations, "seconds": tun.seconds,
                        "on_edge": tun.on_edge}
            progress(f"[{name}] T={T} {fam}: L_T = {tun.loss:.6g} {tun.params} "
                     f"({tun.evaluations} evaluations, {tun.seconds:.1f} s"
                     f"{', on the grid edge' if tun.on_edge else ''})")
        rec["rows"].append(row)
        rec["rows"].sort(key=lambda r: r["T"])
        write_json(path, rec)
    return rec


def summarize(name: str, rec: dict[str, Any], families: list[str]) -> str:
    """A markdown section: the loss table, local slopes and the verdict for one model."""
    m = rec["model"]
    a, b = float(m["a"]), float(m["b"])
    rows = rec["rows"]
    T = np.array([r["T"] for r in rows], dtype=float)
    methods = ["sgd"] + [f for f in families if all(f in r for r in rows)]
    lines = [f"## {name} (a = {a}, b = {b}, N = {m['N']}, σ = {m['sigma']}, m = {m['batch_size']})", "",
             "| T | " + " | ".join("optimal SGD" if k == "sgd" else k for k in methods) + " |",
             "|---|" + "---|" * len(methods)]
    for r in rows:
        cells = []
        for k in methods:
            v = r[k]["loss"]
            extra = "" if k == "sgd" else f" ({100 * (v / r['sgd']['loss'] - 1):+.1f}%)"
            flag = "" if k != "sgd" or r[k]["success"] else f" [{r[k]['status']}]"
            edge = " [edge]" if k != "sgd" and r[k]["on_edge"] else ""
            cells.append(f"{v:.5g}{extra}{flag}{edge}")
        lines.append(f"| {int(r['T'])} | " + " | ".join(cells) + " |")
    lines += ["", "Local slopes −d log L_T / d log T between neighbouring horizons:", "",
              "| T range | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
    slopes = {k: local_slopes(T, [r[k]["loss"] for r in rows])[1] for k in methods}
    for i in range(len(T) - 1):
        lines.append(f"| {int(T[i])}→{int(T[i + 1])} | "
                     + " | ".join(f"{slopes[k][i]:.4f}" for k in methods) + " |")
    lines += ["", f"Theory: optimal SGD ζ = min((a−1)/a, (a−1)/b) = {zeta_optimal(a, b):.4f}; "
              f"(a−1)/b = {(a - 1) / b:.4f}; DANA-decaying (our reading of arXiv:2505.16098) "
              f"(a−1)/b·(2 − 1/b) = {dana_exponent(a, b):.4f}; "
              f"the momentum notebook's 1.5(a−1)/b = {1.5 * (a - 1) / b:.4f}.", ""]
    lines += ["Verdict (as measured):", ""]
    sgd = np.array([r["sgd"]["loss"] for r in rows])
    for k in methods[1:]:
        y = np.array([r[k]["loss"] for r in rows])
        below = np.nonzero(y < sgd)[0]
        first = f"below optimal SGD from T = {int(T[below[0]])}" if below.size else "never below optimal SGD"
        if below.size and not np.all(y[below[0]:] < sgd[below[0]:]):
            first += " (not at every larger T)"
        d = slopes[k][-1] - slopes["sgd"][-1] if len(T) > 1 else float("nan")
        lines.append(f"- {k}: {first}; at T = {int(T[-1])} L_T is {100 * (y[-1] / sgd[-1] - 1):+.1f}% "
                     f"against optimal SGD; last local slope {slopes[k][-1]:.4f} vs SGD "
                     f"{slopes['sgd'][-1]:.4f} ({d:+.4f}).")
    lines.append("")
    return "\n".join(lines)


def run_study(out: Path, cfg: dict[str, Any] | None = None, *, cases: list[str] | None = None,
              progress: Callable[[str], None] = print) -> dict[str, dict[str, Any]]:
    """Run every model of the study (or ``cases``); returns the records by model name."""
    cfg = load_study() if cfg is None else cfg
    out.mkdir(parents=True, exist_ok=True)
    recs = {}
    for name, model in cfg["models"].items():
        if cases is not None and name not in cases:
            continue
        recs[name] = run_case(name, dict(model), cfg, out, progress)
    return recs


def with_horizons(cfg: dict[str, Any], horizons: list[int]) -> dict[str, Any]:
    """A copy of the study's parameters with other horizons."""
    return {**cfg, "horizons": list(horizons)}



def family_optimizer_of(spec: ProblemSpec, fam: FamilySpec) -> F.LinearOptimizer:
    """The optimizer of a config's ``family:`` with the given hyperparameters (no tuning)."""
    p = dict(fam.params)
    T = spec.T
    if fam.name in ("dana-decaying", "dana-constant"):
        return F.dana(spec, T, p["gamma2"], p["gamma3"], delta=p.get("delta"),
                      decaying=fam.name == "dana-decaying", kappa=p.get("kappa"))
    if fam.name == "log-time":
        return F.log_time(spec, T, p["lr"], p["gamma3"], gamma2=p.get("gamma2", 1.0),
                          delta=p.get("delta", 8.0), kappa=p.get("kappa", 1.0))
    return F.schedule_free(T, p["lr"], p["beta"])


def run_family(spec: ProblemSpec, fam: FamilySpec, *, progress: Callable[[str], None] | None = None,
               options: SolverOptions | None = None) -> tuple[FamilyTable, dict[str, Any], np.ndarray]:
    """A config's family at ``spec.T``: tuned (``fam.tune``) or as given, then, with
    ``fam.solve``, its step schedules solved from there (:func:`optctl.solver.family.solve_family`
    on ``options.K`` refined blocks; ``fam.eta_max`` bounds the effective step of both).

    Returns its table (per-step coefficients, :meth:`FamilyTable` with the exact expected
    ``L_T``), a summary and the exact expected loss curve ``L_t``, ``t = 0..T`` (tail included).
    A solve's summary holds IPOPT's status (``success`` false when it did not converge: the
    schedule is then the best point IPOPT reached, or its start).
    """
    t0 = time.perf_counter()
    info: dict[str, Any] = {"family": fam.name, "T": spec.T, "tuned": fam.tune, "solved": fam.solve,
                            "eta_max": fam.eta_max}
    if fam.tune:
        tun = tune_family(spec, fam.name, spec.T, progress=progress, eta_max=fam.eta_max)
        params = dict(tun.params)
        opt = family_optimizer_of(spec, FamilySpec(name=fam.name, params=params))
        info.update(evaluations=tun.evaluations, on_edge=tun.on_edge)
    else:
        opt = family_optimizer_of(spec, fam)
    sp = spectrum(spec)
    if fam.solve:
        opt = _solve_schedule(spec, fam, opt, info, options, progress)
    curve = np.asarray(F.family_curve(spec, opt, sp=sp), dtype=float) + sp.tail
    if not np.all(np.isfinite(curve)) or curve[-1] > curve[0]:
        where = (f"not finite from t = {int(np.argmax(~np.isfinite(curve)))}" if not np.all(np.isfinite(curve))
                 else f"L_T = {curve[-1]:.3g} above L_0 = {curve[0]:.3g}")
        raise ConfigError("family", fam.to_dict(), f"{fam.name} diverges with these hyperparameters "
                          f"(expected loss {where}); lower its step sizes, or write tune: true")
    table = F.to_table(opt, spec, expected_loss=float(curve[-1]),
                       source={"family": fam.to_dict(), "tuned": fam.tune, "solved": fam.solve,
                               **({"status": info["status"]} if fam.solve else {})})
    info.update(params=table.to_dict()["params"], loss=float(curve[-1]), initial_loss=float(curve[0]),
                max_effective_step=float(np.max(F.effective_step(opt))), seconds=time.perf_counter() - t0)
    return table, info, curve


def _solve_schedule(spec: ProblemSpec, fam: FamilySpec, start: F.LinearOptimizer, info: dict[str, Any],
                    options: SolverOptions | None, progress: Callable[[str], None] | None) -> F.LinearOptimizer:
    """The family's step schedules solved from ``start``; IPOPT's account goes into ``info``."""
    if options is not None and options.grid not in ("auto", "refined"):
        raise ConfigError("solver.grid", options.grid, "a family's schedule solve runs on the refined "
                          "grid of solver.K blocks; write grid: refined (or leave it out)")
    cs: FamilySchedule
    if fam.name == "schedule-free":
        cs = ScheduleFreeLR(float(start.params["beta"]), fam.eta_max)
    else:
        cs = DanaSchedule(float(start.params["delta"]), fam.eta_max)
    sp = spectrum(spec)
    start_loss = float(F.family_loss(spec, start, sp=sp))
    if not np.isfinite(start_loss):
        raise ConfigError("family", fam.to_dict(), f"the start of the {fam.name} schedule solve diverges; "
                          "lower its step sizes, or write tune: true")
    if progress is not None:
        progress(f"{fam.name}: solving the step schedule from L_T = {start_loss:.6g}")
    res = solve_family(spec, cs, [start_of(start, fam.eta_max)], options)
    info.update(start_loss=start_loss, success=res.success, status=res.status, message=res.message,
                iterations=res.iterations, replay_gap=res.replay_gap, K=int(res.grid.size - 1),
                solve_seconds=res.wall_time, schedules=list(res.schedules),
                plan={k: res.info[k] for k in ("grid", "propagator", "modes", "n_modes", "n_subblocks")
                      if k in res.info})
    return res.optimizer


def write_family_run(out: Path, cfg: RunConfig, table: FamilyTable, info: dict[str, Any],
                     curve: np.ndarray, *, overwrite: bool = False, source: str | None = None) -> None:
    """A family's run folder, complete or not at all: ``family_table.json`` (for
    :func:`optctl.torch.family_optimizer`), ``summary.json``, ``loss_curve.csv``, ``config.yaml``."""
    with staged_dir(out, overwrite=overwrite) as tmp:
        write_json(tmp / "family_table.json", table.to_dict())
        write_json(tmp / "summary.json", {**info, "source": source})
        write_text_atomic(tmp / "loss_curve.csv", "t,expected_loss\n" + "".join(
            f"{t},{v:.17g}\n" for t, v in enumerate(curve)))
        write_text_atomic(tmp / "config.yaml", dump_config(cfg))
