"""Spec + model → a CasADi NLP on a control grid. Builds the problem; never solves it.

The decision variables are the learning rates of the control blocks, scaled by a
reference schedule (``η_j = s_j y_j``) so that a limited-memory Hessian sees a
well-conditioned problem even where the schedule spans decades. The dynamics are
chained with ``mapaccum`` (single shooting) over integration sub-blocks; each
sub-block maps a scalar per-mode kernel over the modes, so the generated code is a
pair of small loops whatever ``N``, ``T`` and the grid are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import casadi as ca
import numpy as np

from optctl.grid import block_means, make_grid, subdivide
from optctl.model import Spectrum, group_modes, sgd_step, spectrum
from optctl.propagate import CASADI, NUMPY, block_weights, propagate_block
from optctl.spec import ProblemSpec, SolverOptions

# Integration sub-blocks of the block propagator: at most this fraction of the
# distance to either end of training, restarting at 1, 4, 16, ... updates after every
# control change. Replay gaps measured with these are ~1e-5 relative (docs/solver.md).
SUBBLOCK_REL = 0.1
SUBBLOCK_RESTART = 4
# Mode grouping: modes up to GROUP_EXACT stay, the rest become 3-point Gauss bins
# whose edges grow by GROUP_RATIO (49 modes stand for N = 1000).
GROUP_EXACT = 16
GROUP_RATIO = 1.5
GROUP_NODES = 3


@dataclass(frozen=True)
class Plan:
    """The resolved transcription choices for one solve."""

    grid_kind: str
    grid: np.ndarray
    lengths: np.ndarray
    owner: np.ndarray
    propagator: str
    modes: str
    spectrum: Spectrum

    @property
    def exact(self) -> bool:
        """True when the transcription is the per-step recursion itself."""
        return self.propagator == "step" and self.modes == "exact"

    @property
    def n_controls(self) -> int:
        return int(self.grid.size - 1)


def control_grid(spec: ProblemSpec, options: SolverOptions) -> tuple[str, np.ndarray]:
    """The control grid's kind (``auto``: per step up to ``per_step_max_T``, else refined)
    and its block boundaries."""
    grid_kind = options.grid
    if grid_kind == "auto":
        grid_kind = "per_step" if spec.T <= options.per_step_max_T else "refined"
    return grid_kind, make_grid(grid_kind, spec.T, options.K)


def plan_spectrum(spec: ProblemSpec, modes: str) -> Spectrum:
    """All ``N`` modes, or (``modes="grouped"``) the Gauss-grouped tail."""
    sp = spectrum(spec)
    return group_modes(sp, spec, GROUP_EXACT, GROUP_RATIO, GROUP_NODES) if modes == "grouped" else sp


def plan(spec: ProblemSpec, options: SolverOptions) -> Plan:
    """Resolve ``auto`` choices: grid, propagator, modes, sub-blocks."""
    grid_kind, grid = control_grid(spec, options)
    propagator = options.propagator
    if propagator == "auto":
        propagator = "step" if grid_kind == "per_step" else "block"
    if propagator == "step":
        lengths = np.ones(spec.T, dtype=np.int64)
        owner = np.repeat(np.arange(grid.size - 1), np.diff(grid))
    else:
        lengths, owner = subdivide(grid, SUBBLOCK_REL, SUBBLOCK_RESTART)
    modes = options.modes
    if modes == "auto":
        modes = "grouped" if propagator == "block" and spec.N > options.group_min_N else "exact"
    return Plan(grid_kind=grid_kind, grid=grid, lengths=lengths, owner=owner, propagator=propagator,
                modes=modes, spectrum=plan_spectrum(spec, modes))


def _step_function(n_modes: int, propagator: str) -> ca.Function:
    """One integration sub-block as a CasADi Function.

    Inputs ``(c, η, m, n, λ, wλ, σ²)``, outputs ``(c_next, L_next)``. The per-mode
    arithmetic is a scalar SX kernel mapped over the modes; the dot products that
    couple the modes stay outside it.
    """
    lam, c, e, m, n, u0 = (ca.SX.sym(s) for s in ("lam", "c", "eta", "m", "n", "u0"))
    if propagator == "step":
        kernel = ca.Function("sgd_step", [lam, c, e, m, n, u0],
                             [sgd_step(c, u0, e, m, lam, 0.0), ca.SX(0)])
    else:
        x = e * lam * (-2 + (1 + 1 / m) * e * lam)
        P, S, W = block_weights(x, n, CASADI)
        q = e * e / m * lam
        kernel = ca.Function("block_kernel", [lam, c, e, m, n, u0], [P * c + q * S * u0, q * W])
    kmap = kernel.map(n_modes)

    cM, lamM, lwM = ca.MX.sym("c", n_modes), ca.MX.sym("lam", n_modes), ca.MX.sym("lw", n_modes)
    eM, mM, nM, s2M = ca.MX.sym("eta"), ca.MX.sym("m"), ca.MX.sym("n"), ca.MX.sym("s2")
    u0M = ca.dot(lwM, cM) + s2M
    free, qW = kmap(lamM.T, cM.T, eM, mM, nM, u0M)
    free, qW = free.T, qW.T
    if propagator == "step":
        c_next = free
        loss_next = ca.dot(lwM, c_next)
    else:
        alpha = ca.dot(lwM, qW)
        u_end = (ca.dot(lwM, free) - alpha * u0M + s2M) / (1 - alpha)
        c_next = free + qW * (u_end - u0M)
        loss_next = u_end - s2M
    return ca.Function("subblock", [cM, eM, mM, nM, lamM, lwM, s2M], [c_next, loss_next])


@dataclass(frozen=True)
class NLP:
    """A built problem: CasADi expressions plus what is needed to read the answer.

    ``x`` are the scaled controls ``y``; ``p`` stacks the per-block scale ``s``, a
    gradient correction ``g`` and the model data ``(λ, wλ, c_0, σ², m)``. The
    learning rate of block ``j`` is ``η_j = s_j y_j`` and the objective is
    ``L_T + g · y`` (``g = 0`` except when polishing an approximate transcription
    against the exact gradient). Because the model enters as parameters, one compiled
    problem serves every spec with the same grid and number of modes.
    """

    plan: Plan
    x: ca.MX
    p: ca.MX
    f: ca.MX


def model_parameters(pl: Plan, spec: ProblemSpec) -> np.ndarray:
    """The model part of the NLP parameters: ``(λ, wλ, c_0, σ², m)`` of the plan's modes."""
    sp = pl.spectrum
    return np.concatenate([sp.lam, sp.weight * sp.lam, sp.c0, [sp.sigma2, spec.batch_size]])


def structure_key(pl: Plan) -> tuple[object, ...]:
    """What the compiled NLP depends on: the grid, the sub-blocks and the number of modes."""
    return (pl.propagator, pl.spectrum.n_modes, pl.n_controls, pl.lengths.tobytes(),
            pl.owner.tobytes())


def transcribe(pl: Plan) -> NLP:
    """Single-shooting NLP ``min_y L_T(s ⊙ y) + g · y`` subject to ``0 ≤ s ⊙ y ≤ η_max``."""
    n = pl.spectrum.n_modes
    K = pl.n_controls
    n_sub = int(pl.lengths.size)
    F = _step_function(n, pl.propagator)
    chain = F.mapaccum("chain", n_sub)
    y, s, g = ca.MX.sym("y", K), ca.MX.sym("s", K), ca.MX.sym("g", K)
    lam, lw, c0 = ca.MX.sym("lam", n), ca.MX.sym("lw", n), ca.MX.sym("c0", n)
    sigma2, m = ca.MX.sym("sigma2"), ca.MX.sym("m")
    select = ca.DM(ca.Sparsity.triplet(n_sub, K, list(range(n_sub)), [int(j) for j in pl.owner]), 1.0)
    eta_seq = ca.mtimes(select, y * s).T
    m_seq = ca.repmat(m, 1, n_sub)
    _, losses = chain(c0, eta_seq, m_seq, ca.DM(pl.lengths.astype(float)).T, lam, lw, sigma2)
    return NLP(plan=pl, x=y, p=ca.vertcat(s, g, lam, lw, c0, sigma2, m),
               f=losses[-1] + ca.dot(g, y))


def jit_options() -> dict[str, Any]:
    """Compile the NLP functions with the system C compiler when one is present."""
    import shutil

    if shutil.which("gcc") is None and shutil.which("cc") is None:
        return {}
    # CasADi would delete its files when the solver is destroyed, at interpreter exit;
    # optctl removes its scratch folder itself instead.
    return {"jit": True, "compiler": "shell", "jit_cleanup": False,
            "jit_options": {"flags": ["-O1"], "verbose": False, "cleanup": False}}


def approximate_evaluator(spec: ProblemSpec, K: int = 200) -> Callable[[np.ndarray], float]:
    """A fast, approximate ``L_T`` (tail included) of any per-step schedule.

    The schedule is averaged over the integration sub-blocks of a refined grid and
    propagated with the block propagator on grouped modes, in numpy: the cost does
    not depend on ``T``. Meant for tuning baselines at long horizons; the schedule
    it picks is then replayed exactly.
    """
    pl = plan(spec, SolverOptions(grid="refined", K=K, propagator="block", modes="auto"))
    edges = np.concatenate([[0], np.cumsum(pl.lengths)])
    sp = pl.spectrum
    lw = sp.weight * sp.lam
    tail = spectrum(spec).tail

    def evaluate(eta: np.ndarray) -> float:
        eta_sub = block_means(np.asarray(eta, dtype=float), edges)
        c, loss = sp.c0, float(lw @ sp.c0)
        for n, e in zip(pl.lengths, eta_sub, strict=False):
            c, loss = propagate_block(c, e, spec.batch_size, float(n), sp.lam, lw, sp.sigma2, NUMPY)
        return float(loss) + tail

    return evaluate
