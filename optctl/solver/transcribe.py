"""Spec + plan + control set → a CasADi NLP. Builds the problem; never solves it.

One builder for every control set (:mod:`optctl.solver.controls`). The decision
variables are the controls of the blocks, scaled by a reference schedule
(``u_j = s_j y_j``) so that a limited-memory Hessian sees a well-conditioned problem even
where the schedule spans decades. The dynamics are chained with ``mapaccum`` (single
shooting) over integration sub-blocks. The model enters as parameters, so one compiled
problem serves every spec with the same plan and number of modes.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from typing import Any

import casadi as ca
import numpy as np

from optctl.solver.controls import LearningRate, Model
from optctl.solver.plan import BranchPlan, Plan
from optctl.spec import ProblemSpec


@dataclass(frozen=True)
class NLP:
    """A built problem: CasADi expressions plus what is needed to read the answer.

    ``x`` are the scaled controls ``y`` (each control's ``K`` block values in turn);
    ``p`` stacks the per-variable scale ``s``, a gradient correction ``g`` and the model
    data ``(λ, wλ, c_0, σ², m̄)``. Control ``u = s ⊙ y``; the objective is the control
    set's ``L_T`` (plus its penalty) ``+ g · y`` (``g = 0`` except when polishing an
    approximate transcription against the exact gradient); ``g_c`` are the control set's
    constraints (none, or the sample budget).
    """

    plan: Plan
    x: ca.MX
    p: ca.MX
    f: ca.MX
    g_c: ca.MX


def transcribe(plan: Plan, controls: LearningRate, kappa: float = 0.0) -> NLP:
    """Single-shooting NLP ``min_y f(s ⊙ y) + g · y`` for ``controls`` on ``plan``."""
    n, K = plan.spectrum.n_modes, plan.n_controls
    size = controls.size(K)
    y, s, g = ca.MX.sym("y", size), ca.MX.sym("s", size), ca.MX.sym("g", size)
    model = Model(lam=ca.MX.sym("lam", n), lam_w=ca.MX.sym("lw", n), c0=ca.MX.sym("c0", n),
                  sigma2=ca.MX.sym("sigma2"), m=ca.MX.sym("m"), weights=_weight_symbols(plan))
    u = y * s
    f, g_c = controls.dynamics(plan, [u[i * K:(i + 1) * K] for i in range(size // K)], model, kappa)
    return NLP(plan=plan, x=y, p=ca.vertcat(s, g, model.lam, model.lam_w, model.c0, model.sigma2,
                                            model.m, *([] if model.weights is None else [model.weights])),
               f=f + ca.dot(g, y), g_c=g_c)


def transcribed_loss(plan: Plan, controls: LearningRate, spec: ProblemSpec, u: np.ndarray) -> float:
    """The NLP's objective (tail included) at the decision vector ``u`` of ``controls`` (scale
    ``s = u``, ``y = 1``, no gradient term): what a solve on ``plan`` optimises, to check a plan
    against the exact replay without compiling it."""
    u = np.asarray(u, dtype=float)
    nlp = transcribe(plan, controls)
    f = ca.Function("f", [nlp.x, nlp.p], [nlp.f])
    return float(f(np.ones(u.size), np.concatenate([u, np.zeros(u.size), model_parameters(plan, spec)]))) \
        + plan.spectrum.tail


def model_parameters(plan: Plan, spec: ProblemSpec, c0: np.ndarray | None = None) -> np.ndarray:
    """The model part of the NLP parameters: ``(λ, wλ, c_0, σ², m̄)`` of the plan's modes,
    starting from ``c0`` (a state of those modes) instead of the spectrum's when given."""
    sp = plan.spectrum
    start = sp.c0 if c0 is None else c0
    out = np.concatenate([sp.lam, sp.weight * sp.lam, start, [sp.sigma2, spec.batch_size]])
    if isinstance(plan, BranchPlan) and plan.objective == "weighted":
        n = len(plan.horizons)
        out = np.concatenate([out, np.asarray(plan.weights or (1.0 / n,) * n, dtype=float)])
    return out


def _weight_symbols(plan: Plan) -> ca.MX | None:
    """The weights parameter of a weighted branching objective (none for other plans)."""
    if isinstance(plan, BranchPlan) and plan.objective == "weighted":
        return ca.MX.sym("w", len(plan.horizons))
    return None


def jit_options() -> dict[str, Any]:
    """Compile the NLP functions with the system C compiler when one is present."""
    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return {}
    # CasADi would delete its files when the solver is destroyed, at interpreter exit;
    # optctl removes its scratch folder itself instead.
    return {"jit": True, "compiler": "shell", "jit_cleanup": False,
            "jit_options": {"flags": ["-O1"], "verbose": False, "cleanup": False}}
