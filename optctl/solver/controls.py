"""The control sets of MODEL.md §4: what each adds to the learning rate.

A control set states its decision variables (one value per control block for each
control), their bounds, its dynamics and constraints as CasADi expressions, the
candidate starts IPOPT chooses from, and how its answer is replayed step by step. The
transcription (:mod:`optctl.solver.transcribe`) and the IPOPT driver
(:mod:`optctl.solver.ipopt`) are the same for all of them, so a new control adds a class
here (and its auto rules in :mod:`optctl.solver.plan`), not a pipeline.

- :class:`LearningRate` (``controls: [lr]``, MODEL.md §4.1): ``η_j ∈ [0, η_max]``;
- :class:`WithBatchSize` (``[lr, batch_size]``, §4.2): also ``m_j ∈ [m_min, m_max]``,
  under the sample budget ``Σ_j n_j m_j = T m̄`` (an IPOPT equality constraint);
- :class:`WithMomentum` (``[lr, momentum]``, §4.3): also the EMA weight
  ``β_j ∈ [β_min, 1]`` of MODEL.md §3, with the optional penalty
  ``κ Σ_j ‖u_{j+1} − u_j‖²`` on the block controls ``u = (η, β)``;
- :class:`Branching` (anytime schedules, :mod:`optctl.solver.branching`): one shared
  trunk and a branch per horizon ``T_i`` leaving it at ``t_i``; the objective is the
  worst regret ``max_i L_{T_i}/L*_{T_i} − 1`` (epigraph form) or a weighted sum of the
  regrets.

Bordelon & Mori, arXiv:2602.04774.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar

import casadi as ca
import numpy as np

from optctl.errors import SpecError
from optctl.model.blocks import bits_of
from optctl.model.families import dana_delta, held_keep
from optctl.model.momentum import momentum_replay, momentum_start, start_weight
from optctl.model.replay import Replay, replay
from optctl.solver.dynamics import (
    family_step,
    family_subblock,
    momentum_subblock,
    momentum_update,
    sgd_subblock,
)
from optctl.solver.piecewise import block_means, expand
from optctl.solver.plan import BranchPlan, Plan
from optctl.spec import ControlSpec, ProblemSpec

# A start: the per-step learning rate (or, with a second control, a pair of per-step
# arrays), or a function of u = t/T returning it.
Init = (np.ndarray | tuple[np.ndarray, np.ndarray]
        | Callable[[np.ndarray], np.ndarray | tuple[np.ndarray, np.ndarray]] | None)

# Starting momenta tried besides plain SGD (β = 1), at the SGD optimum's learning rates.
BETA_STARTS = (0.5, 0.2, 0.1, 0.05)
# Plateau momenta of the two-level starts: β on the blocks where the SGD optimum holds
# η ≥ PLATEAU_FRACTION η_max, β = 1 elsewhere. The optimal plateau β falls with T (hard
# phase: about 0.02 at T = 256, 1e-3 at T = 4096), so long horizons need these starts.
PLATEAU_BETAS = (0.02, 0.005, 0.002, 1e-3, 3e-4)
PLATEAU_FRACTION = 0.5
# Below these fractions of the upper bound a control is not used as its own scale.
LR_SCALE_FLOOR = 1e-3
SECOND_SCALE_FLOOR = 1e-3


@dataclass(frozen=True)
class Model:
    """The model data of the NLP, as CasADi parameters: ``λ``, ``wλ``, ``c_0``, ``σ²``, ``m̄``
    and, for a weighted branching objective, the horizons' weights (a parameter, so that
    new weights re-use the compiled problem)."""

    lam: ca.MX
    lam_w: ca.MX
    c0: ca.MX
    sigma2: ca.MX
    m: ca.MX
    weights: ca.MX | None = None


@dataclass(frozen=True)
class Answer:
    """A solved schedule, per update, with its exact replay."""

    eta: np.ndarray
    batch_size: np.ndarray
    beta: np.ndarray | None
    replay: Replay


def per_step_start(init: Init, spec: ProblemSpec, n: int) -> list[np.ndarray] | None:
    """``init`` as ``n`` per-step arrays (checked), or ``None``."""
    if init is None:
        return None
    value = init(np.arange(spec.T) / spec.T) if callable(init) else init
    arrays = [value] if n == 1 else list(value) if isinstance(value, (tuple, list)) else []
    if len(arrays) != n:
        raise SpecError("init", type(value).__name__,
                        f"give {'a per-step learning rate' if n == 1 else 'a pair (eta, second control)'}"
                        " of per-step arrays, or a function of u = t/T returning it")
    out = [np.asarray(a, dtype=float) for a in arrays]
    for a in out:
        if a.shape != (spec.T,):
            raise SpecError("init", f"array of shape {a.shape}",
                            f"pass one value per update, shape ({spec.T},), or a function of t/T")
    return out


class LearningRate:
    """The learning rate alone (MODEL.md §4.1)."""

    second: ClassVar[str | None] = None
    # Clip of the curvature scaling (:func:`optctl.solver.ipopt.curvature_scale`).
    curvature_clip: ClassVar[float] = 1e-8
    # IPOPT options this set needs (``solver.ipopt`` in a config still overrides them).
    ipopt_defaults: ClassVar[dict[str, Any]] = {}

    def identity(self) -> tuple[object, ...]:
        """What distinguishes this set's compiled NLPs (with the plan and IPOPT options)."""
        return (type(self).__name__,)

    def size(self, K: int) -> int:
        """Decision variables of a grid of ``K`` blocks."""
        return K if self.second is None else 2 * K

    def bounds(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> tuple[np.ndarray, np.ndarray]:
        return np.zeros(K), np.full(K, spec.eta_max)

    def floor(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> np.ndarray:
        """Smallest per-variable scale (a control near zero is scaled by this instead)."""
        return np.full(K, LR_SCALE_FLOOR * spec.eta_max)

    def dynamics(self, plan: Plan, u: Sequence[ca.MX], model: Model, kappa: float) -> tuple[ca.MX, ca.MX]:
        """``(L_T, constraints)`` of the block controls ``u`` (one MX per control)."""
        losses = self._sgd_losses(plan, u[0], ca.repmat(model.m, 1, int(plan.lengths.size)), model)
        return losses[-1], ca.MX(0, 1)

    def constraint_bounds(self, spec: ProblemSpec, plan: Plan) -> dict[str, float]:
        """``lbg``/``ubg`` for IPOPT (empty without constraints)."""
        return {}

    def candidates(self, spec: ProblemSpec, controls: ControlSpec, plan: Plan, init: Init,
                   start: np.ndarray | None) -> list[np.ndarray]:
        """Start vectors to rank: polynomial decays ``p (1 − u)^δ`` (``δ = 1`` and the
        theory's ``2b − 1``), plateaus with a final linear decay, and constants, at
        several heights; plus ``init``. ``start`` is unused (no inner solve)."""
        grid = plan.grid
        u = (grid[:-1] + grid[1:]) / (2.0 * spec.T)
        eta_max = spec.eta_max
        # Down to 1e-4 η_max: with a flat spectrum (b near 1) and long horizons the best
        # constant can sit below 1e-3 η_max.
        heights = eta_max * np.logspace(-4, 0, 17)
        cands = [np.full(u.size, h) for h in heights]
        for delta in sorted({1.0, float(np.clip(2 * spec.b - 1, 1.0, 9.0))}):
            cands += [h * (1 - u) ** delta for h in heights]
        for frac in (0.02, 0.05, 0.1, 0.2, 0.4):
            cands += [h * np.minimum(1.0, (1 - u) / frac) for h in eta_max * np.array([1.0, 0.5, 0.25])]
        given = per_step_start(init, spec, 1)
        if given is not None:
            cands.append(np.clip(block_means(given[0], grid), 0.0, eta_max))
        return cands

    def answer(self, spec: ProblemSpec, plan: Plan, u: np.ndarray,
               prefix: np.ndarray | None = None) -> Answer:
        """The schedule per update and its exact replay; with a ``prefix`` (the updates
        already run before this problem's horizon) the whole schedule is replayed."""
        eta = expand(u[: plan.n_controls], plan.grid)
        if prefix is not None:
            eta = np.concatenate([prefix, eta])
            spec = replace(spec, T=eta.size)
        return Answer(eta=eta, batch_size=np.full(spec.T, spec.batch_size), beta=None,
                      replay=replay(spec, eta))

    @staticmethod
    def _sgd_losses(plan: Plan, eta: ca.MX, m_seq: ca.MX, model: Model) -> ca.MX:
        n_sub = int(plan.lengths.size)
        chain = sgd_subblock(plan.spectrum.n_modes, plan.propagator).mapaccum("chain", n_sub)
        _, losses = chain(model.c0, ca.mtimes(_select(plan), eta).T, m_seq,
                          ca.DM(plan.lengths.astype(float)).T, model.lam, model.lam_w, model.sigma2)
        return losses


def penalty_weights(grid: np.ndarray) -> np.ndarray:
    """Weights ``1/d_k`` of the smoothness penalty ``κ Σ_k (u_{k+1} − u_k)² / d_k`` on block
    controls, ``d_k = (n_k + n_{k+1})/2`` the updates between the midpoints of blocks ``k`` and
    ``k + 1``. This is the per-step penalty ``κ Σ_t (u_{t+1} − u_t)²`` of the authors' notebook
    (docs/controls.md, "The notebook's setting") counted on the per-step schedule that runs
    linearly from one block's value to the next between their midpoints: a jump ``Δ`` spread
    over ``d`` updates costs ``Δ²/d``. On the per-step grid every ``d_k = 1``, the notebook's
    own sum; counted on the block values unweighted, a 48-block grid at ``T = 3162`` charged
    each change about 66× what the notebook charges a schedule that changes smoothly."""
    n = np.diff(np.asarray(grid, dtype=float))
    return 2.0 / (n[:-1] + n[1:])


def smoothness_penalty(grid: np.ndarray, *blocks: np.ndarray) -> float:
    """``Σ_k (u_{k+1} − u_k)² / d_k`` summed over the controls ``blocks`` (one value per
    block of ``grid``), the penalty :meth:`WithMomentum.dynamics` multiplies by ``κ``
    (:func:`penalty_weights`)."""
    w = penalty_weights(grid)
    return float(sum(w @ np.diff(np.asarray(u, dtype=float)) ** 2 for u in blocks))


def _select(plan: Plan) -> ca.DM:
    """The 0/1 matrix that maps block controls to integration sub-blocks."""
    return _selector(plan.owner, plan.n_controls)


def _selector(owner: np.ndarray, K: int) -> ca.DM:
    n_sub = int(owner.size)
    return ca.DM(ca.Sparsity.triplet(n_sub, K, list(range(n_sub)), [int(j) for j in owner]), 1.0)


class _Joint(LearningRate):
    """Shared by the two-control sets: starts built on the learning-rate optimum."""

    def floor(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> np.ndarray:
        lo = self.bounds(spec, controls, K)[0][K]
        return np.concatenate([super().floor(spec, controls, K), np.full(K, max(lo, SECOND_SCALE_FLOOR))])

    @abstractmethod
    def second_starts(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> list[float]:
        """Constant values of the second control to start from."""

    def onto_constraint(self, spec: ProblemSpec, plan: Plan, other: np.ndarray) -> np.ndarray:
        return other

    def candidates(self, spec: ProblemSpec, controls: ControlSpec, plan: Plan, init: Init,
                   start: np.ndarray | None) -> list[np.ndarray]:
        """The learning-rate optimum ``start`` (per step, at the mean batch and ``β = 1``)
        with each of :meth:`second_starts`, plus ``init``, clipped to the bounds."""
        if start is None:
            raise SpecError("start", None, "a joint solve starts from the learning-rate optimum")
        K = plan.n_controls
        lo, hi = self.bounds(spec, controls, K)
        eta0 = np.clip(block_means(start, plan.grid), 0.0, spec.eta_max)
        cands = [np.concatenate([eta0, np.full(K, v)]) for v in self.second_starts(spec, controls, K)]
        given = per_step_start(init, spec, 2)
        if given is not None:
            other = np.clip(block_means(given[1], plan.grid), lo[K], hi[K])
            cands.append(np.concatenate([np.clip(block_means(given[0], plan.grid), 0.0, spec.eta_max),
                                         self.onto_constraint(spec, plan, other)]))
        return cands


class WithBatchSize(_Joint):
    """Learning rate and batch size under the sample budget ``Σ_t m_t = T m̄`` (MODEL.md §4.2)."""

    second: ClassVar[str | None] = "batch_size"

    def bounds(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = float(controls.m_min or 1.0), float(controls.m_max or 1.0)
        return (np.concatenate([np.zeros(K), np.full(K, lo)]),
                np.concatenate([np.full(K, spec.eta_max), np.full(K, hi)]))

    def dynamics(self, plan: Plan, u: Sequence[ca.MX], model: Model, kappa: float) -> tuple[ca.MX, ca.MX]:
        losses = self._sgd_losses(plan, u[0], ca.mtimes(_select(plan), u[1]).T, model)
        return losses[-1], ca.dot(ca.DM(np.diff(plan.grid).astype(float)), u[1])

    def constraint_bounds(self, spec: ProblemSpec, plan: Plan) -> dict[str, float]:
        budget = spec.T * spec.batch_size
        return {"lbg": budget, "ubg": budget}

    def second_starts(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> list[float]:
        return [spec.batch_size]

    def onto_constraint(self, spec: ProblemSpec, plan: Plan, other: np.ndarray) -> np.ndarray:
        widths = np.diff(plan.grid).astype(float)
        return other * (spec.T * spec.batch_size / float(widths @ other))

    def answer(self, spec: ProblemSpec, plan: Plan, u: np.ndarray,
               prefix: np.ndarray | None = None) -> Answer:
        K = plan.n_controls
        eta, m = expand(u[:K], plan.grid), expand(u[K:], plan.grid)
        return Answer(eta=eta, batch_size=m, beta=None, replay=replay(spec, eta, m))


class WithMomentum(_Joint):
    """Learning rate and EMA momentum ``β`` (MODEL.md §3, §4.3), optional smoothness penalty.

    The curvature scaling is clipped to four decades either side of the median
    (``curvature_clip = 1e-4``): the momentum weights of the first and last updates barely
    move ``L_T`` (``β_{T−1}`` not at all), and with the learning rate's clip (1e-8) their
    scales grew up to 10⁴× the others', so IPOPT's first quasi-Newton steps (identity
    Hessian in the scaled variables) threw them across the box, the iterates rose and the
    rounds ended on the iteration cap (docs/controls.md, "How it is solved").
    """

    second: ClassVar[str | None] = "momentum"
    curvature_clip: ClassVar[float] = 1e-4
    # IPOPT's adaptive barrier parameter (its choice with the limited-memory Hessian) and its
    # default bound multipliers (z = 1) start μ near 0.1 and raise it again when progress
    # stalls; the optimal β sits at 1e-3..1e-2, a few μ from its bound 0, so every round
    # first pushed β (and η off η_max) inward, L_T rose and rounds were discarded. A
    # monotone μ from 1e-6 with small multipliers never pushes the start away.
    ipopt_defaults: ClassVar[dict[str, Any]] = {"mu_strategy": "monotone", "mu_init": 1e-6,
                                                "bound_mult_init_val": 1e-6}

    def __init__(self, init: str = "model") -> None:
        self.init = init  # the velocity's start (ControlSpec.momentum_init)

    def identity(self) -> tuple[object, ...]:
        return (type(self).__name__, self.init)

    def bounds(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> tuple[np.ndarray, np.ndarray]:
        lo = float(controls.beta_min or 0.0)
        return (np.concatenate([np.zeros(K), np.full(K, lo)]),
                np.concatenate([np.full(K, spec.eta_max), np.ones(K)]))

    def dynamics(self, plan: Plan, u: Sequence[ca.MX], model: Model, kappa: float) -> tuple[ca.MX, ca.MX]:
        eta, beta = u
        L0 = ca.dot(model.lam_w, model.c0)
        w0 = start_weight(self.init, eta, beta, int(plan.n_controls) - 1)
        R0, V0 = momentum_start(model.c0, L0, w0, model.m, model.lam, model.sigma2)
        select = _select(plan)
        n_sub = int(plan.lengths.size)
        x0 = ca.vertcat(model.c0, R0, V0)
        if plan.propagator == "block":
            n_bits = max(int(plan.lengths.max()).bit_length(), 1)
            bits = ca.DM(np.array([bits_of(int(n), n_bits) for n in plan.lengths]).T)
            chain = momentum_subblock(plan.spectrum.n_modes, n_bits).mapaccum("chain", n_sub)
            _, losses = chain(x0, ca.mtimes(select, eta).T, ca.mtimes(select, beta).T, model.m,
                              ca.DM(plan.lengths.astype(float)).T, bits, model.lam, model.lam_w, model.sigma2)
        else:
            chain = momentum_update(plan.spectrum.n_modes).mapaccum("chain", n_sub)
            _, losses = chain(x0, ca.mtimes(select, eta).T, ca.mtimes(select, beta).T, model.m,
                              model.lam, model.lam_w, model.sigma2)
        f = losses[-1]
        if kappa > 0 and plan.n_controls > 1:
            w = ca.DM(penalty_weights(plan.grid))
            f = f + kappa * (ca.dot(w, ca.diff(eta) ** 2) + ca.dot(w, ca.diff(beta) ** 2))
        return f, ca.MX(0, 1)

    def second_starts(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> list[float]:
        lo = float(controls.beta_min or 0.0)
        return [b for b in (1.0, *BETA_STARTS) if b >= lo]

    def candidates(self, spec: ProblemSpec, controls: ControlSpec, plan: Plan, init: Init,
                   start: np.ndarray | None) -> list[np.ndarray]:
        """The joint starts of :class:`_Joint` (constant ``β``), then two-level ones:
        ``β = β_p`` on the SGD optimum's plateau and 1 elsewhere, ``β_p`` from
        :data:`PLATEAU_BETAS` (``init``, when given, stays the last candidate)."""
        cands = super().candidates(spec, controls, plan, init, start)
        K = plan.n_controls
        lo = float(controls.beta_min or 0.0)
        eta0 = cands[0][:K]
        plateau = eta0 >= PLATEAU_FRACTION * spec.eta_max
        if not plateau.any() or plateau.all():
            return cands
        two_level = [np.concatenate([eta0, np.where(plateau, b, 1.0)]) for b in PLATEAU_BETAS if b >= lo]
        given = per_step_start(init, spec, 2) is not None
        return [*cands[:-1], *two_level, cands[-1]] if given else [*cands, *two_level]

    def answer(self, spec: ProblemSpec, plan: Plan, u: np.ndarray,
               prefix: np.ndarray | None = None) -> Answer:
        K = plan.n_controls
        beta_blocks = u[K:].copy()
        if K > 1 and plan.grid[-1] - plan.grid[-2] == 1:
            # β_{T−1} only shapes v_T, which no update uses: report the neighbouring value.
            beta_blocks[-1] = beta_blocks[-2]
        eta, beta = expand(u[:K], plan.grid), expand(beta_blocks, plan.grid)
        return Answer(eta=eta, batch_size=np.full(spec.T, spec.batch_size), beta=beta,
                      replay=momentum_replay(spec, eta, beta, self.init))


class Branching(LearningRate):
    """The learning rate of an anytime plan on a :class:`~optctl.solver.plan.BranchPlan`.

    Decision variables: the trunk's block rates, each branch's block rates and, for the
    worst-regret objective, the regret bound ``r``. The trunk is chained from ``c_0``
    with the same sub-block dynamics as :class:`LearningRate`; branch ``i`` is chained
    from the trunk's state at ``t_i`` to ``T_i``. Objective ``"worst"``: minimise ``r``
    subject to ``(L_{T_i} + tail)/L*_{T_i} − 1 − r ≤ 0`` for every ``i`` (the epigraph
    form of the max); ``"weighted"``: minimise ``Σ_i w_i ((L_{T_i} + tail)/L*_{T_i} − 1)``
    (the weights ``w`` an NLP parameter).
    """

    def size(self, K: int) -> int:
        return K  # the plan's n_controls already counts every block and r

    def bounds(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = np.zeros(K), np.full(K, spec.eta_max)
        return lo, hi

    @staticmethod
    def split(plan: BranchPlan, u: Any) -> tuple[Any, list[Any]]:
        """The trunk's block values and each branch's (``r`` left out)."""
        k = plan.trunk_blocks
        trunk, branches = u[:k], []
        for nb in plan.branch_blocks:
            branches.append(u[k:k + nb])
            k += nb
        return trunk, branches

    def losses(self, plan: BranchPlan, x: ca.MX, model: Model) -> list[ca.MX]:
        """``L_{T_i}`` (excess, tail excluded) of every horizon as CasADi expressions."""
        trunk, branches = self.split(plan, x)
        step = sgd_subblock(plan.spectrum.n_modes, plan.propagator)
        states = None
        if plan.lengths.size:
            chain = step.mapaccum("trunk", int(plan.lengths.size))
            states, _ = chain(model.c0, ca.mtimes(_selector(plan.owner, plan.trunk_blocks), trunk).T,
                              ca.repmat(model.m, 1, int(plan.lengths.size)),
                              ca.DM(plan.lengths.astype(float)).T, model.lam, model.lam_w, model.sigma2)
        out = []
        for i, branch in enumerate(branches):
            n_sub = int(plan.branch_lengths[i].size)
            start = model.c0 if plan.marks[i] < 0 or states is None else states[:, plan.marks[i]]
            sel = _selector(plan.branch_owner[i], plan.branch_blocks[i])
            chain = step.mapaccum(f"branch{i}", n_sub)
            _, losses = chain(start, ca.mtimes(sel, branch).T, ca.repmat(model.m, 1, n_sub),
                              ca.DM(plan.branch_lengths[i].astype(float)).T, model.lam, model.lam_w,
                              model.sigma2)
            out.append(losses[-1])
        return out

    def dynamics(self, plan: Plan, u: Sequence[ca.MX], model: Model, kappa: float) -> tuple[ca.MX, ca.MX]:
        if not isinstance(plan, BranchPlan):
            raise SpecError("plan", type(plan).__name__, "a branching control set needs a BranchPlan")
        x = u[0]
        regret = [(L + plan.tail) / L_star - 1.0
                  for L, L_star in zip(self.losses(plan, x, model), plan.targets, strict=True)]
        if plan.objective == "worst":
            r = x[plan.n_controls - 1]
            return r, ca.vertcat(*[g - r for g in regret])
        if model.weights is not None:
            return ca.dot(model.weights, ca.vertcat(*regret)), ca.MX(0, 1)
        w = plan.weights or tuple(1.0 / len(regret) for _ in regret)
        return sum((wi * g for wi, g in zip(w, regret, strict=True)), ca.MX(0)), ca.MX(0, 1)

    def constraint_bounds(self, spec: ProblemSpec, plan: Plan) -> dict[str, float]:
        if isinstance(plan, BranchPlan) and plan.objective == "worst":
            return {"lbg": -np.inf, "ubg": 0.0}
        return {}


# Box of the "unbounded" family schedules (no η_max): far above every tuned value
# (docs/momentum_families.md §7 reports when a solved schedule reaches it).
FAMILY_BOX = 100.0
# DANA's limited-memory Hessian: pairs kept per decision variable (DanaSchedule.solve_ipopt).
DANA_HISTORY = 3


class FamilySchedule(LearningRate):
    """The step schedules of a linear momentum family (:mod:`optctl.model.families`).

    The decision variables are block values of the family's schedules; the dynamics are
    the family's exact per-mode second-moment recursion, one update at a time
    (:func:`~optctl.solver.dynamics.family_step`, a per-step chain) or, on a plan with
    ``propagator == "block"``, in closed-form sub-blocks on which the one step-dependent
    factor (:meth:`keep`) is held (:func:`~optctl.solver.dynamics.family_subblock`). ``eta_max`` bounds
    the family's *effective step* (the total displacement that one unit gradient causes
    with the coefficients held, docs/momentum_families.md §7); ``None`` leaves the
    schedules in the box ``[0, FAMILY_BOX]``. Subclasses state the coefficients.
    """

    curvature_clip: ClassVar[float] = 1e-4
    readout: ClassVar[int] = 0
    copy_start: ClassVar[bool] = False

    def __init__(self, eta_max: float | None = None) -> None:
        if eta_max is not None and not (np.isfinite(eta_max) and eta_max > 0):
            raise SpecError("eta_max", eta_max, "bound the effective step by a finite value > 0, or pass None")
        self.eta_max = None if eta_max is None else float(eta_max)

    def identity(self) -> tuple[object, ...]:
        return (type(self).__name__, self.eta_max, *self.fixed())

    @abstractmethod
    def fixed(self) -> tuple[float, ...]:
        """The family's fixed hyperparameters (part of the compiled problem)."""

    @abstractmethod
    def keep(self, T: int) -> np.ndarray:
        """The step-dependent factor of the updates ``t < T``, in ``[0, 1]``: DANA's ``1 − Δ(t)``,
        Schedule-Free's ``1 − c_t`` (every other coefficient is constant inside a block)."""

    @abstractmethod
    def coefficients(self, keep: np.ndarray, u: Sequence[Any]) -> list[Any]:
        """The eight rows ``(A₀₀, A₀₁, A₁₀, A₁₁, b₀, b₁, u₀, u₁)`` of the chain (each ``1 × n``
        or a scalar) from :meth:`keep` (``1 × n``: per update, or held per sub-block) and the
        schedules ``u`` (``1 × n`` each)."""

    def floor(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> np.ndarray:
        return np.full(self.size(K), 1e-6)

    def dynamics(self, plan: Plan, u: Sequence[ca.MX], model: Model, kappa: float) -> tuple[ca.MX, ca.MX]:
        """``L_T`` by the per-step chain (``plan.propagator == "step"``, exact) or by closed-form
        sub-blocks (``"block"``): :meth:`keep` held at its geometric mean over each sub-block
        (:func:`~optctl.model.families.held_keep`), the other coefficients constant there."""
        T = int(plan.grid[-1])
        n, n_sub = plan.spectrum.n_modes, int(plan.lengths.size)
        block = plan.propagator == "block"
        keep = held_keep(self.keep(T), plan.lengths) if block else self.keep(T)
        rows = self.coefficients(keep[None, :], [ca.mtimes(_select(plan), v).T for v in u])
        coef = ca.vertcat(*[r if isinstance(r, ca.MX) else ca.MX(ca.DM(np.broadcast_to(r, (1, n_sub))))
                            for r in rows])
        zero = ca.MX.zeros(n)
        x0 = ca.vertcat(model.c0, model.c0, model.c0) if self.copy_start else ca.vertcat(model.c0, zero, zero)
        if block:
            # Each sub-block's doubling runs over its own length's bits (a kernel per bit
            # width): at T = 10^5 that is 2413 bits in all instead of 483 × 12.
            kernels: dict[int, ca.Function] = {}
            last = x0
            for i, k in enumerate(int(v) for v in plan.lengths):
                width = k.bit_length()
                if width not in kernels:
                    kernels[width] = family_subblock(n, width)
                last = kernels[width](last, coef[:, i], model.m, float(k), ca.DM(bits_of(k, width)), model.lam,
                                      model.lam_w, model.sigma2)
        else:
            chain = family_step(n).mapaccum("chain", n_sub)
            last = chain(x0, coef, model.m, model.lam, model.lam_w, model.sigma2)[:, -1]
        S = last[:n] if self.readout == 0 else last[2 * n:]
        return ca.dot(model.lam_w, S), self.step_constraints(plan, u)

    def step_constraints(self, plan: Plan, u: Sequence[ca.MX]) -> ca.MX:
        """Constraints that keep the effective step below ``eta_max`` (none by default)."""
        return ca.MX(0, 1)

    def feasible(self, plan: Plan, u: np.ndarray) -> np.ndarray:
        """A start moved onto the constraints. Needed: the driver keeps a round only if it
        ends below its start, and an infeasible start can be lower than every feasible point
        (measured: the bounded DANA solve then returned its infeasible start)."""
        return u

    def plan_bounds(self, spec: ProblemSpec, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """The decision vector's bounds on this plan's blocks (:meth:`bounds` by default)."""
        return self.bounds(spec, ControlSpec(), plan.n_controls)

    def canonical(self, plan: Plan, u: np.ndarray) -> np.ndarray:
        """The same schedules written in the decision vector's canonical form (unchanged by default)."""
        return u

    def solve_ipopt(self, plan: Plan) -> dict[str, Any]:
        """IPOPT options of this family's solves on ``plan`` (none by default), on top of the
        compiled problem's; ``solver.ipopt`` still overrides them."""
        return {}

    def starts(self, spec: ProblemSpec, plan: Plan, given_starts: Sequence[Sequence[np.ndarray]]
               ) -> list[np.ndarray]:
        """The per-step starts given (one tuple of per-step schedules per start, ordered as
        the decision vector), as block means in canonical form clipped to the bounds."""
        lo, hi = self.plan_bounds(spec, plan)
        out = []
        for given in given_starts:
            arrays = [np.asarray(a, dtype=float) for a in given]
            if len(arrays) != self.size(1) or any(a.shape != (spec.T,) for a in arrays):
                raise SpecError("init", [a.shape for a in arrays],
                                f"give {self.size(1)} per-step arrays of length T = {spec.T} per start")
            u = self.canonical(plan, np.concatenate([block_means(a, plan.grid) for a in arrays]))
            out.append(self.feasible(plan, np.clip(u, lo, hi)))
        if not out:
            raise SpecError("init", None, "a family schedule solve needs at least one start")
        return out

    def bounds(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> tuple[np.ndarray, np.ndarray]:
        hi = FAMILY_BOX if self.eta_max is None else self.eta_max
        return np.zeros(self.size(K)), np.full(self.size(K), hi)


class DanaSchedule(FamilySchedule):
    """DANA with solved step schedules: Gen-Mom-SGD (arXiv:2505.16098) with ``γ₁ = 1`` and
    the paper's momentum rate ``Δ(t) = δ/(δ + t)`` fixed, ``γ₂(t)`` and ``γ₃(t)`` free per
    block (``second = "gamma3"``: a two-block decision vector ``(γ₂, γ₃)``).

    Effective step (docs/momentum_families.md §7): ``γ₂ + γ₁ γ₃ / Δ(t)``; with ``eta_max``
    it is held below the bound at the last update of each block (where ``1/Δ`` is largest).
    """

    second: ClassVar[str | None] = "gamma3"

    def __init__(self, delta: float, eta_max: float | None = None) -> None:
        super().__init__(eta_max)
        if not (np.isfinite(delta) and delta > 0):
            raise SpecError("delta", delta, "pass a finite δ > 0")
        self.delta = float(delta)

    def fixed(self) -> tuple[float, ...]:
        return (self.delta,)

    def momentum_rate(self, T: int) -> np.ndarray:
        """``Δ(t)`` for the 0-based updates ``t < T``."""
        return dana_delta(np.arange(T, dtype=float), self.delta)

    def keep(self, T: int) -> np.ndarray:
        return 1.0 - self.momentum_rate(T)

    def solve_ipopt(self, plan: Plan) -> dict[str, Any]:
        """A limited-memory Hessian of :data:`DANA_HISTORY` pairs per decision variable instead
        of IPOPT's 30 in all. The DANA problem has a nearly flat direction (at the stored hard-model
        optima, ``γ₂ − γ₃`` of one early block at a fixed sum: a condition number of 1e7–1e8 after
        the diagonal scaling) that 30 pairs for 96 variables do not hold: those solves took
        1000+ iterations, most of them with the loss already converged (docs/momentum_families.md §7)."""
        return {"limited_memory_max_history": DANA_HISTORY * self.size(plan.n_controls)}

    def coefficients(self, keep: np.ndarray, u: Sequence[Any]) -> list[Any]:
        g2, g3 = u
        return [1.0, -g3 * ca.DM(keep), 0.0, keep, -(g2 + g3), 1.0, 1.0, 0.0]

    def step_constraints(self, plan: Plan, u: Sequence[ca.MX]) -> ca.MX:
        if self.eta_max is None:
            return ca.MX(0, 1)
        g2, g3 = u
        last = plan.grid[1:] - 1
        return g2 + g3 * ca.DM(1.0 / self.momentum_rate(int(plan.grid[-1]))[last])

    def constraint_bounds(self, spec: ProblemSpec, plan: Plan) -> dict[str, float]:
        return {} if self.eta_max is None else {"lbg": -np.inf, "ubg": self.eta_max}

    def feasible(self, plan: Plan, u: np.ndarray) -> np.ndarray:
        """Shrink ``(γ₂, γ₃)`` of every block whose effective step exceeds ``eta_max``."""
        if self.eta_max is None:
            return u
        K = plan.n_controls
        step = u[:K] + u[K:] / self.momentum_rate(int(plan.grid[-1]))[plan.grid[1:] - 1]
        shrink = np.minimum(1.0, (1.0 - 1e-9) * self.eta_max / np.maximum(step, 1e-300))
        return np.concatenate([u[:K] * shrink, u[K:] * shrink])

    def bounds(self, spec: ProblemSpec, controls: ControlSpec, K: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = super().bounds(spec, controls, K)
        if self.eta_max is not None:  # γ₃ alone may not exceed η_max Δ(0) = η_max
            hi[K:] = self.eta_max
        return lo, hi

    def plan_bounds(self, spec: ProblemSpec, plan: Plan) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`bounds`, with ``γ₃`` of a first block that is the single update ``t = 0``
        held at 0 and its ``γ₂`` box doubled. At ``t = 0`` the velocity is the fresh gradient
        (``y₀ = γ₁ g₀``, ``Δ(0) = 1``), so that update depends on ``γ₂ + γ₃`` alone: the
        difference is a direction in which ``L_T`` is exactly flat, which IPOPT's Newton steps
        cannot resolve (docs/momentum_families.md §7). The feasible set of schedules is the same."""
        K = plan.n_controls
        lo, hi = self.bounds(spec, ControlSpec(), K)
        if int(plan.grid[1]) == 1:
            hi[K] = 0.0
            if self.eta_max is None:
                hi[0] = 2.0 * FAMILY_BOX
        return lo, hi

    def canonical(self, plan: Plan, u: np.ndarray) -> np.ndarray:
        """Block 0's ``γ₃`` moved into its ``γ₂`` when block 0 is the update ``t = 0`` alone
        (the same update, :meth:`plan_bounds`)."""
        K = plan.n_controls
        if int(plan.grid[1]) != 1:
            return u
        out = np.array(u, dtype=float)
        out[0] += out[K]
        out[K] = 0.0
        return out


class ScheduleFreeLR(FamilySchedule):
    """Schedule-Free SGD (Defazio et al. 2024) with a solved ``γ(t)``: ``β`` fixed, the
    uniform average ``c_{t+1} = 1/(t+1)``, loss read at the average ``x``.

    Effective step (docs/momentum_families.md §7): ``γ_t``, the step of ``z`` (which ``x``
    and ``y`` follow); with ``eta_max`` it is the upper bound of every block.
    """

    readout: ClassVar[int] = 1
    copy_start: ClassVar[bool] = True

    def __init__(self, beta: float, eta_max: float | None = None) -> None:
        super().__init__(eta_max)
        if not (np.isfinite(beta) and 0.0 <= beta <= 1.0):
            raise SpecError("beta", beta, "β must lie in [0, 1]")
        self.beta = float(beta)

    def fixed(self) -> tuple[float, ...]:
        return (self.beta,)

    def keep(self, T: int) -> np.ndarray:
        return 1.0 - 1.0 / (np.arange(T, dtype=float) + 2.0)

    def coefficients(self, keep: np.ndarray, u: Sequence[Any]) -> list[Any]:
        (g,) = u
        c = 1.0 - keep
        return [1.0, 0.0, c, keep, -g, -g * ca.DM(c), 1.0 - self.beta, self.beta]


_SETS: dict[tuple[str, ...], type[LearningRate]] = {
    ("lr",): LearningRate, ("lr", "batch_size"): WithBatchSize, ("lr", "momentum"): WithMomentum,
}


def control_set(controls: ControlSpec) -> LearningRate:
    """The control set of a :class:`~optctl.spec.ControlSpec`."""
    if controls.controls == ("lr", "momentum"):
        return WithMomentum(controls.momentum_init or "model")
    return _SETS[controls.controls]()
