"""Fast, converged (η, β) solves: the solver's claims for the momentum control set, measured.

    python benchmarks/bench_momentum_solver.py                 # every check (~10 min idle)
    python benchmarks/bench_momentum_solver.py --only T128     # one check: T128, T4096, T100000

Hard case of the momentum study (a = 1.3, b = 2.75, N = 1500, σ = 0.7, m = 4, η_max = 1,
β ∈ [0, 1]; docs/controls.md):

- T128: the per-step solve (raw and normalised initial loss) against an independent
  optimum, projected L-BFGS-B (scipy) on the exact per-step replay with every mode and
  jax gradients, started from η = 0.9, β = 0.5;
- T4096 (normalised, refined grid K = 48, block propagator): two starts, the default
  candidates and the T = 2048 solution rescaled in t/T;
- T100000 (the same): horizon continuation (optctl.solver.continuation) along the ladder
  4096 → 16384 → 65536 → 10^5, each rung started from the previous optimum rescaled in t/T,
  and the cold start; the claim is that the two agree within
  1e-4 and that the first ladder's total time is under 10 minutes. On 48 blocks these starts
  end at different local optima (up to 2e-3 apart, docs/controls.md); so each is re-solved on
  96 refined blocks, and the claims are checked there: the ×4 ladder then 96 blocks, and the
  cold start (the default candidates at 10^5) then 96 blocks, must agree within 1e-4, and the
  first must take under 10 minutes in all (``--no-cold`` skips the second, and the claim).

Writes results/momentum_solver/summary.json, report.md and schedules.npz (every solved
schedule, ``η_t`` and ``β_t`` per update, named by the ``schedule`` field of its record, so
that a reviewer can replay it); exits 1 if a solve did not reach IPOPT success or two starts
disagree by more than 1e-4.

    python benchmarks/bench_momentum_solver.py --replay        # replay schedules.npz, no solve

``--replay`` runs every stored schedule through the exact per-step recursion (MODEL.md §3,
every mode, ``optctl.model.momentum.momentum_replay``) and checks that it gives the recorded
``L_T`` (relative 1e-9) and that the recorded replay gap (the NLP's objective against this
replay) is at most 1e-3; tests/test_momentum_solver_results.py does the same with its own
recursion.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from optctl import ControlSpec, ProblemSpec, SolverOptions, solve
from optctl.io.files import read_arrays, write_arrays, write_text_atomic
from optctl.model.momentum import momentum_replay
from optctl.solver.continuation import rescaled, solve_continuation

HARD = {"a": 1.3, "b": 2.75, "N": 1500, "sigma": 0.7, "batch_size": 4, "eta_max": 1.0}
AGREE_RTOL = 1e-4
GAP_MAX = 1e-3
WALL_MAX_S = 600.0
LADDERS = {"x4 from 4096": (4096, 16384, 65536, 100_000),
           "x3.16 from 1000": (1000, 3162, 10_000, 31_623, 100_000)}
LADDER = "x4 from 4096"
REFINED_K = 96
MOMENTUM = ControlSpec(controls=("lr", "momentum"))
SCHEDULES = "schedules.npz"
REPLAY_RTOL = 1e-9  # a stored schedule's replay against its recorded L_T (rounding only)
# Solved schedules of this run by name (``<name>__eta``, ``<name>__beta``), written to SCHEDULES.
_ARRAYS: dict[str, np.ndarray] = {}


def _keep(name: str, res: Any, spec: ProblemSpec) -> dict[str, Any]:
    """Keep ``res``'s per-step ``(η, β)`` under ``name``; the fields a record needs to replay it."""
    _ARRAYS[f"{name}__eta"] = np.asarray(res.eta, dtype=float)
    _ARRAYS[f"{name}__beta"] = np.asarray(res.beta, dtype=float)
    return {"schedule": name, "spec": spec.to_dict(), "momentum_init": res.controls.momentum_init}


def independent_optimum(spec: ProblemSpec, eta0: float = 0.9, beta0: float = 0.5) -> tuple[float, int, float]:
    """L-BFGS-B on the exact per-step recursion (MODEL.md §3, all modes, jax gradients)."""
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    from optctl.model.spectrum import spectrum

    sp = spectrum(spec)
    m, s2, T = spec.batch_size, sp.sigma2, spec.T

    def loss(x: Any) -> Any:
        lam, c0 = jnp.asarray(sp.lam), jnp.asarray(sp.c0)
        eta, beta = x[:T], x[T:]
        L0 = lam @ c0
        R = beta[0] * lam * c0
        V = beta[0] ** 2 * ((1 + 1 / m) * lam**2 * c0 + lam / m * (L0 + s2))

        def step(s: Any, eb: Any) -> Any:
            C, R, V = s
            e, b = eb
            C1 = C - 2 * e * R + e * e * V
            L1 = lam @ C1
            cross = R - e * V
            R1 = (1 - b) * cross + b * lam * C1
            V1 = (1 - b) ** 2 * V + 2 * b * (1 - b) * lam * cross + b * b * (
                (1 + 1 / m) * lam * lam * C1 + lam / m * (L1 + s2))
            return (C1, R1, V1), L1

        _, Ls = jax.lax.scan(step, (c0, R, V), (eta, beta))
        return Ls[-1]

    t0 = time.perf_counter()
    with jax.enable_x64(True):
        fg = jax.jit(jax.value_and_grad(loss))
        x = np.concatenate([np.full(T, eta0), np.full(T, beta0)])
        nit = 0
        for _ in range(3):  # restart until the value stops moving
            r = minimize(lambda v: tuple(np.asarray(a, dtype=float) for a in fg(v)), x, jac=True,
                         method="L-BFGS-B", bounds=[(0.0, spec.eta_max)] * T + [(0.0, 1.0)] * T,
                         options={"maxiter": 20000, "maxfun": 40000, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 50})
            x, nit = r.x, nit + int(r.nit)
    return float(r.fun) + sp.tail, nit, time.perf_counter() - t0


def _record(res: Any, wall: float) -> dict[str, Any]:
    return {"status": res.status, "success": bool(res.success), "iterations": int(res.iterations),
            "loss": float(res.final_loss), "replay_gap": float(res.replay_gap), "wall_s": wall,
            "start": res.transcription.get("start"), "propagator": res.transcription.get("propagator"),
            "modes": res.transcription.get("modes"), "n_subblocks": res.transcription.get("n_subblocks"),
            "sgd_loss": res.transcription.get("sgd_final_loss")}


def _timed_solve(spec: ProblemSpec, options: SolverOptions, init: Any = None,
                 name: str | None = None) -> tuple[Any, dict[str, Any]]:
    """One solve and its record; with ``name`` its schedule is kept for SCHEDULES."""
    t0 = time.perf_counter()
    # a given init is where IPOPT starts (not merely a candidate), so the two starts differ
    res = solve(spec, options, controls=MOMENTUM, init=init, start_from="best" if init is None else "init")
    rec = _record(res, time.perf_counter() - t0)
    if name is not None:
        rec.update(_keep(name, res, spec))
    return res, rec


def _rescaled(res: Any) -> Any:
    n = res.eta.size
    u = (np.arange(n) + 0.5) / n
    eta, beta = np.asarray(res.eta), np.asarray(res.beta)
    return lambda v: (np.interp(v, u, eta), np.interp(v, u, beta))


def check_T128() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for norm in (False, True):
        spec = ProblemSpec(**HARD, T=128, normalize_init=norm)
        _, rec = _timed_solve(spec, SolverOptions(grid="per_step", tol=1e-8),
                              name=f"T128_{'normalised' if norm else 'raw'}")
        ref, nit, t = independent_optimum(spec)
        rec.update(independent=ref, independent_iterations=nit, independent_s=t,
                   above_independent=(rec["loss"] - ref) / ref)
        out["normalised" if norm else "raw"] = rec
        print(f"T=128 {'normalised' if norm else 'raw'}: {rec}", flush=True)
    return out


def check_two_starts(T: int, warm_T: int, previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """The default start and the ``warm_T`` optimum rescaled in ``t/T``; with ``previous``
    (an earlier record of this check) its default-start solve is reused."""
    options = SolverOptions(grid="refined", K=48, tol=1e-8)
    warm_spec = ProblemSpec(**HARD, T=warm_T, normalize_init=True)
    warm, warm_rec = _timed_solve(warm_spec, options)
    spec = ProblemSpec(**HARD, T=T, normalize_init=True)
    if previous is not None and "default_start" in previous:
        a = previous["default_start"]
    else:
        _, a = _timed_solve(spec, options, name=f"T{T}_default_start")
    _, b = _timed_solve(spec, options, init=_rescaled(warm), name=f"T{T}_warm_start")
    rel = abs(a["loss"] - b["loss"]) / min(a["loss"], b["loss"])
    print(f"T={T}: default start {a}\n  warm start from T={warm_T} {b}\n  relative difference {rel:.2e}",
          flush=True)
    return {"T": T, "warm_T": warm_T, "warm_solve": warm_rec, "default_start": a, "warm_start": b,
            "relative_difference": rel}


def check_continuation(T: int = 100_000, cold: bool = True) -> dict[str, Any]:
    """Two starts to ``T`` on 48 blocks, each refined to 96 blocks; the first is reached by
    horizon continuation along ``LADDERS[LADDER]``, the second is the default (cold) start."""
    coarse = SolverOptions(grid="refined", K=48, tol=1e-8)
    fine = SolverOptions(grid="refined", K=REFINED_K, tol=1e-8)
    spec = ProblemSpec(**HARD, T=T, normalize_init=True)
    out: dict[str, Any] = {"T": T, "K": REFINED_K, "ladders": {}}

    def refine(name: str, res: Any, rungs: list[dict[str, Any]], t_start: float) -> None:
        t0 = time.perf_counter()
        fin = solve(spec, fine, controls=MOMENTUM, init=rescaled(res), start_from="init")
        rec = _record(fin, time.perf_counter() - t0)
        rec.update(_keep(f"T{T}_{'ladder' if len(out['ladders']) == 0 else 'cold'}", fin, spec))
        rungs.append({"T": T, "K": REFINED_K, "status": fin.status, "success": bool(fin.success),
                      "iterations": int(fin.iterations), "loss": float(fin.final_loss),
                      "replay_gap": float(fin.replay_gap), "seconds": rec["wall_s"]})
        rec.update(rungs=rungs, total_s=time.perf_counter() - t_start)
        out["ladders"][name] = rec
        print(f"T={T} {name}: {_state(rec)} L_T = {rec['loss']:.10g} ({rec['total_s']:.1f} s in all)", flush=True)

    t_all = time.perf_counter()
    c = solve_continuation(spec, coarse, controls=MOMENTUM, rungs=LADDERS[LADDER],
                           progress=lambda line: print(line, flush=True))
    refine(f"{LADDER} on 48 blocks, then {REFINED_K} blocks", c.result,
           [{**r, "K": 48} for r in c.rungs], t_all)
    if cold:
        t_all = time.perf_counter()
        t0 = time.perf_counter()
        res, rec = _timed_solve(spec, coarse)
        first = {"T": T, "K": 48, "status": res.status, "success": bool(res.success),
                 "iterations": int(res.iterations), "loss": float(res.final_loss),
                 "replay_gap": float(res.replay_gap), "seconds": time.perf_counter() - t0}
        print(f"T={T} cold start on 48 blocks: {rec}", flush=True)
        refine(f"cold start on 48 blocks, then {REFINED_K} blocks", res, [first], t_all)
    losses = [r["loss"] for r in out["ladders"].values()]
    out["relative_difference"] = (max(losses) - min(losses)) / min(losses) if len(losses) > 1 else float("nan")
    return out


def _continuation_ok(s: dict[str, Any]) -> bool:
    first = next(iter(s["ladders"].values()))
    rungs_ok = all(r["success"] for r in s["ladders"].values())  # the answers; earlier rungs are starts
    gaps_ok = all(abs(r["replay_gap"]) <= GAP_MAX for r in s["ladders"].values())
    # with one ladder (--no-cold) there is no second start to compare: that claim is not checked
    agree = len(s["ladders"]) < 2 or s["relative_difference"] <= AGREE_RTOL
    return rungs_ok and gaps_ok and agree and first["total_s"] <= WALL_MAX_S


def _state(r: dict[str, Any]) -> str:
    """``ok`` for IPOPT success; a status that says success with ``success`` false means the
    solver's last round ended above its start and was discarded (the round's start is returned)."""
    if r["success"]:
        return "ok"
    return f"{r['status']}, last round discarded" if r["status"] == "Solve_Succeeded" else r["status"]


def _continuation_report(s: dict[str, Any]) -> list[str]:
    lines = [f"## T = {s['T']}: two starts, each refined from 48 to {s.get('K', 48)} blocks (normalised initial loss)", "",
             "Each rung starts from the previous rung's optimum rescaled in t/T "
             "(`optctl.solver.continuation.solve_continuation`); the last rung re-solves the same "
             "horizon on the finer refined grid. \"ok\": IPOPT success; \"last round "
             "discarded\": IPOPT's last round ended (Solve_Succeeded) above the point it started from, "
             "so that start is returned and the solve does not count as a success.", "",
             "| ladder | rungs: status, IPOPT iterations, s | final status | L_T | replay gap | total wall s |",
             "|---|---|---|---|---|---|"]
    for name, r in s["ladders"].items():
        rungs = "; ".join(f"{g['T']} (K = {g.get('K', 48)}): {_state(g)}, {g['iterations']}, {g['seconds']:.0f}"
                          for g in r["rungs"])
        lines.append(f"| {name} | {rungs} | {_state(r)} | {r['loss']:.10g} | {r['replay_gap']:.1e} | "
                     f"{r['total_s']:.1f} |")
    first = next(iter(s["ladders"].values()))
    if len(s["ladders"]) < 2:
        lines += ["", "One start only (`--no-cold`): the two-start claim is not checked here. "
                  f"Replay gap ≤ {GAP_MAX:g}: {'holds' if abs(first['replay_gap']) <= GAP_MAX else 'fails'}; "
                  f"the ladder's total under {WALL_MAX_S:.0f} s: "
                  f"{'holds' if first['total_s'] <= WALL_MAX_S else 'fails'} (see the machine's load above).", ""]
        return lines
    lines += ["", f"Two starts: relative difference {s['relative_difference']:.1e} (claim: ≤ {AGREE_RTOL:g}); "
              f"replay gaps ≤ {GAP_MAX:g}; the first ladder's total under {WALL_MAX_S:.0f} s: "
              f"{'all hold' if _continuation_ok(s) else '**a claim fails**'}.", ""]
    if "cold_start" in s:
        c = s["cold_start"]
        lines += [f"Cold start (the default candidates at T = {s['T']} directly, reported, not claimed): "
                  f"{c['status']}, {c['iterations']} IPOPT iterations, {c['wall_s']:.1f} s, L_T = {c['loss']:.10g}, "
                  f"{c['above_best_ladder']:.1e} above the best ladder: a local optimum.", ""]
    return lines


def stored_records(summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record of ``summary`` that names a stored schedule."""
    found: list[dict[str, Any]] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if "schedule" in node and "spec" in node:
                found.append(node)
            for v in node.values():
                walk(v)

    walk(summary)
    return found


def replay_stored(out: Path, summary: dict[str, Any]) -> dict[str, Any]:
    """Replay every stored schedule (module docstring); one row per schedule and the verdict."""
    arrays = read_arrays(out / SCHEDULES)
    rows = []
    for rec in stored_records(summary):
        name = rec["schedule"]
        spec = ProblemSpec(**rec["spec"])
        eta, beta = arrays[f"{name}__eta"], arrays[f"{name}__beta"]
        L = float(momentum_replay(spec, eta, beta, init=rec.get("momentum_init") or "model").loss[-1])
        rows.append({"schedule": name, "T": spec.T, "recorded": rec["loss"], "replayed": L,
                     "relative": abs(L - rec["loss"]) / rec["loss"], "replay_gap": rec["replay_gap"]})
    ok = bool(rows) and all(r["relative"] <= REPLAY_RTOL and abs(r["replay_gap"]) <= GAP_MAX for r in rows)
    return {"rows": rows, "ok": ok}


def _replay_report(r: dict[str, Any]) -> list[str]:
    lines = ["## The stored schedules, replayed", "",
             f"`python benchmarks/bench_momentum_solver.py --replay`: each schedule of `{SCHEDULES}` "
             "(per-update η and β) through the exact per-step recursion (MODEL.md §3, every mode). "
             f"Claims: the replay gives the recorded L_T (relative ≤ {REPLAY_RTOL:g}) and the solve's "
             f"replay gap (NLP objective against the replay) is ≤ {GAP_MAX:g}.", "",
             "| schedule | T | recorded L_T | replayed L_T | relative difference | replay gap of the solve |",
             "|---|---|---|---|---|---|"]
    for row in r["rows"]:
        lines.append(f"| {row['schedule']} | {row['T']} | {row['recorded']:.10g} | {row['replayed']:.10g} | "
                     f"{row['relative']:.1e} | {row['replay_gap']:.1e} |")
    lines += ["", "All hold." if r["ok"] else "**A claim fails.**", ""]
    return lines


def report(summary: dict[str, Any]) -> str:
    lines = ["# Fast, converged (η, β) solves", "",
             "`python benchmarks/bench_momentum_solver.py`; hard case a = 1.3, b = 2.75, N = 1500, "
             "σ = 0.7, m = 4, η_max = 1, β ∈ [0, 1]. Wall times include the learning-rate solve "
             "that every joint solve starts from, and were taken on the machine named in "
             "`machine` (load noted there).", "", f"Machine: {summary.get('machine', 'not noted')}.", ""]
    if "T128" in summary:
        lines += ["## Per-step solve, T = 128", "",
                  "| initial loss | status | IPOPT iterations | wall s | L_T | independent optimum | above it |",
                  "|---|---|---|---|---|---|---|"]
        for k, r in summary["T128"].items():
            lines.append(f"| {k} | {r['status']} | {r['iterations']} | {r['wall_s']:.1f} | {r['loss']:.10g} | "
                         f"{r['independent']:.10g} | {r['above_independent']:.1e} |")
        lines.append("")
    for key in ("T4096", "T100000"):
        if key not in summary:
            continue
        s = summary[key]
        if "ladders" in s:
            lines += _continuation_report(s)
            continue
        lines += [f"## T = {s['T']} (normalised initial loss, refined grid K = 48)", "",
                  "| start | candidate IPOPT started from | status | IPOPT iterations | wall s | L_T | replay gap |",
                  "|---|---|---|---|---|---|---|"]
        for name in ("default_start", "warm_start"):
            r = s[name]
            lines.append(f"| {name.replace('_', ' ')} | {r['start']} | {r['status']} | {r['iterations']} | "
                         f"{r['wall_s']:.1f} | {r['loss']:.10g} | {r['replay_gap']:.1e} |")
        same = s["default_start"]["start"] == s["warm_start"]["start"]
        if same:
            lines += ["", "**Both solves started from the same candidate: this is not a test of two "
                      "starts** (re-run; the warm start is now forced with `start_from='init'`)."]
        lines += ["", f"Two starts: relative difference {s['relative_difference']:.1e} "
                  f"(claim: ≤ {AGREE_RTOL:g}); the warm start is the T = {s['warm_T']} solution rescaled "
                  f"in t/T (its own solve: {s['warm_solve']['status']}, {s['warm_solve']['wall_s']:.1f} s).", ""]
    if "replay" in summary:
        lines += _replay_report(summary["replay"])
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/momentum_solver")
    p.add_argument("--only", action="append", choices=["T128", "T4096", "T100000"])
    p.add_argument("--machine", default="", help="a note on the machine and its load, for the report")
    p.add_argument("--report-only", action="store_true", help="rewrite report.md from summary.json")
    p.add_argument("--replay", action="store_true", help=f"replay the schedules of {SCHEDULES}, no solve")
    p.add_argument("--no-cold", action="store_true", help="T100000: skip the cold start (reported only)")
    p.add_argument("--reuse-default", action="store_true",
                   help="keep the default-start solves of summary.json, redo the warm starts")
    args = p.parse_args()
    out = Path(args.out)
    path = out / "summary.json"
    summary: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    todo = [] if args.report_only or args.replay else (args.only or ["T128", "T4096", "T100000"])
    if args.machine:
        summary["machine"] = args.machine
    out.mkdir(parents=True, exist_ok=True)
    keep = summary if args.reuse_default else {}
    checks = {"T128": check_T128, "T4096": lambda: check_two_starts(4096, 2048, keep.get("T4096")),
              "T100000": lambda: check_continuation(100_000, cold=not args.no_cold)}
    for key in ("T128", "T4096", "T100000"):
        if key in todo:
            summary[key] = checks[key]()
            summary.pop("replay", None)  # a replay of the schedules this check replaced
            # the schedules first: a record never names a schedule that is not stored
            stored = read_arrays(out / SCHEDULES) if (out / SCHEDULES).exists() else {}
            write_arrays(out / SCHEDULES, {**stored, **_ARRAYS})
            write_text_atomic(path, json.dumps(summary, indent=1) + "\n")  # after every check
            write_text_atomic(out / "report.md", report(summary))
    if args.replay or todo:
        if (out / SCHEDULES).exists() and stored_records(summary):
            summary["replay"] = replay_stored(out, summary)
            for row in summary["replay"]["rows"]:
                print(f"replay {row['schedule']}: recorded {row['recorded']:.10g}, replayed {row['replayed']:.10g} "
                      f"({row['relative']:.1e}), replay gap {row['replay_gap']:.1e}", flush=True)
            write_text_atomic(path, json.dumps(summary, indent=1) + "\n")
        elif args.replay:
            print(f"{out / SCHEDULES} or its records are missing: run the checks first", flush=True)
            return 1
    if args.report_only or args.replay or todo:
        write_text_atomic(out / "report.md", report(summary))
    ok = all(r["success"] for r in summary.get("T128", {}).values())
    if "T100000" in summary and "ladders" in summary["T100000"]:
        ok = ok and _continuation_ok(summary["T100000"])
    for key in ("T4096", "T100000"):
        if key in summary and "ladders" not in summary[key]:
            s = summary[key]
            ok = ok and s["default_start"]["success"] and s["warm_start"]["success"]
            ok = ok and s["relative_difference"] <= AGREE_RTOL
            ok = ok and s["default_start"]["start"] != s["warm_start"]["start"]  # two different starts
    if "replay" in summary:
        ok = ok and summary["replay"]["ok"]
    print(f"wrote {out / 'report.md'}; {'all claims hold' if ok else 'a claim FAILED (see the report)'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
