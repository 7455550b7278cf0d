"""Conditioning of the DANA schedule solve at its stored optima, in (γ₂, γ₃) and in (a, c) = (γ₂ + γ₃, γ₃).

    python benchmarks/bench_dana_conditioning.py --case hard --T 316 --T 1000

Reads a solved DANA schedule (``dana_solved_unbounded`` of results/momentum_families/<case>_scheduled.json),
compiles the solve's objective on the same plan, and takes the Hessian of ``L_T`` by central
differences of its compiled gradient in the block values. Over the variables off their bounds,
each Hessian is scaled to a unit diagonal (what the solver's curvature scaling does) and its
eigenvalues give the condition number IPOPT's quasi-Newton Hessian must learn; the flattest
direction is listed by its largest components. The same Hessian in ``(a, c)``, the fresh
gradient's step and the velocity's weight, is reported beside it. Writes results/momentum_families/<case>_dana_conditioning.json
(docs/momentum_families.md §7).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from optctl.io.files import read_json, write_json
from optctl.solver.controls import DanaSchedule
from optctl.solver.family import family_plan
from optctl.solver.ipopt import compile_problem
from optctl.solver.transcribe import model_parameters
from optctl.spec import ProblemSpec, SolverOptions
from optctl.studies.families import load_study, study_spec


def _hessian(cs: DanaSchedule, spec: ProblemSpec, options: SolverOptions, u: np.ndarray) -> np.ndarray:
    """∂²L_T/∂(γ₂, γ₃)² of the solve's transcribed objective, by central differences of its gradient."""
    plan = family_plan(spec, options)
    prob = compile_problem(plan, cs, 0.0, options)
    prob.model = model_parameters(plan, spec)
    p = prob.p(np.ones(u.size))

    def grad(v: np.ndarray) -> np.ndarray:
        return np.asarray(prob.grad(v, p)[1]).ravel()

    H = np.zeros((u.size, u.size))
    for i in range(u.size):
        h = 1e-6 * max(abs(u[i]), 1e-3)
        d = np.zeros(u.size)
        d[i] = h
        H[:, i] = (grad(u + d) - grad(u - d)) / (2 * h)
    return 0.5 * (H + H.T)


def _spectrum(H: np.ndarray, free: np.ndarray, names: list[str]) -> dict[str, Any]:
    """Eigenvalues of ``H`` over the ``free`` variables, scaled to a unit diagonal."""
    Hf = H[np.ix_(free, free)]
    d = np.sqrt(np.abs(np.diag(Hf)))
    w, V = np.linalg.eigh(Hf / np.outer(d, d))
    idx = np.flatnonzero(free)
    top = np.argsort(-np.abs(V[:, 0]))[:4]
    return {"eig_min": float(w[0]), "eig_max": float(w[-1]), "condition": float(w[-1] / abs(w[0])),
            "negative": int(np.sum(w < 0)), "smallest": [float(x) for x in w[:6]],
            "flattest_direction": [[names[idx[t]], round(float(V[t, 0]), 3)] for t in top]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/momentum_families")
    p.add_argument("--case", default="hard")
    p.add_argument("--T", type=int, action="append", required=True)
    args = p.parse_args()
    model = load_study()["models"][args.case]
    rec = read_json(Path(args.out) / f"{args.case}_scheduled.json")
    rows = {int(r["T"]): r for r in rec["rows"]}
    results = []
    for T in args.T:
        v = rows[T]["dana_solved_unbounded"]
        t0 = time.perf_counter()
        spec = study_spec(model, T)
        options = SolverOptions(K=int(rec["K"]))
        grid = np.asarray(v["grid"])
        K = grid.size - 1
        g2, g3 = (np.asarray(v["schedules"][k], dtype=float) for k in ("gamma2", "gamma3"))
        out: dict[str, Any] = {"T": T, "loss": v["loss"], "status": v["status"], "iterations": v["iterations"]}
        cs = DanaSchedule(float(v["delta"]))
        plan = family_plan(spec, options)
        assert np.array_equal(plan.grid, grid)
        u = cs.canonical(plan, np.concatenate([g2, g3]))
        hi = cs.plan_bounds(spec, plan)[1]
        free = (u > 1e-7) & (hi > 0)  # off their bounds
        H = _hessian(cs, spec, options, u)
        out["free_variables"] = int(free.sum())
        out["gammas"] = _spectrum(H, free, [f"γ₂[{k}]" for k in range(K)] + [f"γ₃[{k}]" for k in range(K)])
        # the same Hessian in (a, c) = (γ₂ + γ₃, γ₃): γ₂ = a − c, γ₃ = c
        J = np.block([[np.eye(K), -np.eye(K)], [np.zeros((K, K)), np.eye(K)]])
        out["fresh-velocity"] = _spectrum(J.T @ H @ J, free, [f"a[{k}]" for k in range(K)] + [f"c[{k}]" for k in range(K)])
        out["seconds"], out["load_1min"] = time.perf_counter() - t0, os.getloadavg()[0]
        results.append(out)
        print(f"{args.case} T={T}: condition (γ₂, γ₃) {out['gammas']['condition']:.2e}, (a, c) "
              f"{out['fresh-velocity']['condition']:.2e}; flattest (γ₂, γ₃) direction "
              f"{out['gammas']['flattest_direction']}", flush=True)
    path = Path(args.out) / f"{args.case}_dana_conditioning.json"
    old = {int(r["T"]): r for r in read_json(path)["rows"]} if path.exists() else {}
    old.update({r["T"]: r for r in results})
    write_json(path, {"model": model, "rows": [old[T] for T in sorted(old)]})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
