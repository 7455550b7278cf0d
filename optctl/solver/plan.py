"""The resolved transcription of one solve: where ``auto`` options are decided.

A :class:`Plan` fixes the control grid, the integration sub-blocks, the propagator and
the spectrum (all modes, or the Gauss-grouped tail) that the NLP is built on. Each
control set states its rule for ``auto`` here, in :func:`make_plan`:

- learning rate: ``grid: auto`` is per step up to ``per_step_max_T`` updates, refined
  beyond; ``propagator: auto`` is the exact step on per-step grids, the closed-form block
  propagator otherwise; ``modes: auto`` groups the spectrum for the block propagator
  when ``N > group_min_N``;
- learning rate and batch size: the same, except that ``propagator: auto`` is the exact
  step (with ``m_t`` free, the block closure ``1 − α`` can be driven to its singularity
  by small batches at large ``η``, and IPOPT finds that exploit);
- learning rate and momentum: ``propagator: auto`` as for the learning rate (the exact
  step of the EMA recursion, three moments per mode, on per-step grids; the closed-form
  block propagator of :mod:`optctl.model.blocks` otherwise); ``modes: auto`` groups whenever ``N > group_min_N`` (the per-step chain of
  ``3N`` moments is the cost of every IPOPT iteration; the answer is replayed with all
  modes, and the grouped optimum replays within ~1e-5 of the exact one, docs/controls.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from optctl.errors import SpecError
from optctl.model.spectrum import Spectrum, group_modes, spectrum
from optctl.solver.grid import make_grid, subdivide
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
        """Control blocks ``K`` (each control has one value per block)."""
        return int(self.grid.size - 1)

    def structure(self) -> tuple[object, ...]:
        """What a compiled NLP depends on: propagator, modes, blocks and sub-blocks."""
        return (self.propagator, self.spectrum.n_modes, self.n_controls, self.lengths.tobytes(),
                self.owner.tobytes())

    def describe(self) -> dict[str, object]:
        """The resolved choices, for results and summaries."""
        return {"grid": self.grid_kind, "n_controls": self.n_controls, "propagator": self.propagator,
                "modes": self.modes, "n_modes": self.spectrum.n_modes,
                "n_subblocks": int(self.lengths.size)}


def plan_spectrum(spec: ProblemSpec, modes: str, n_exact: int = GROUP_EXACT) -> Spectrum:
    """All ``N`` modes, or (``modes="grouped"``) the Gauss-grouped tail beyond the first ``n_exact``."""
    sp = spectrum(spec)
    return group_modes(sp, spec, n_exact, GROUP_RATIO, GROUP_NODES) if modes == "grouped" else sp


def resolve_options(options: SolverOptions, second: str | None = None) -> SolverOptions:
    """The options a control set solves with: for ``batch_size``, ``propagator: auto`` is
    the exact step, for the problem and for the learning-rate optimum it starts from."""
    if second == "batch_size" and options.propagator == "auto":
        return replace(options, propagator="step")
    return options


def resolve_modes(spec: ProblemSpec, options: SolverOptions, second: str | None, propagator: str) -> str:
    """``options.modes``, with ``auto`` resolved: grouped modes for a block propagator (or,
    with momentum, always) once ``N`` exceeds ``group_min_N``."""
    if options.modes != "auto":
        return options.modes
    if second == "momentum":
        grouped = spec.N > options.group_min_N
    else:
        grouped = propagator == "block" and spec.N > options.group_min_N
    return "grouped" if grouped else "exact"


def make_plan(spec: ProblemSpec, options: SolverOptions, second: str | None = None) -> Plan:
    """Resolve every ``auto`` choice for the learning rate and the ``second`` control
    (``None``, ``"batch_size"`` or ``"momentum"``); the rules are in the module docstring."""
    options = resolve_options(options, second)
    grid_kind = options.grid
    if grid_kind == "auto":
        grid_kind = "per_step" if spec.T <= options.per_step_max_T else "refined"
    grid = make_grid(grid_kind, spec.T, options.K)
    propagator = options.propagator
    if propagator == "auto":
        propagator = "step" if grid_kind == "per_step" else "block"
    if propagator == "step":
        lengths = np.ones(spec.T, dtype=np.int64)
        owner = np.repeat(np.arange(grid.size - 1), np.diff(grid))
    else:
        lengths, owner = subdivide(grid, SUBBLOCK_REL, SUBBLOCK_RESTART)
    modes = resolve_modes(spec, options, second, propagator)
    return Plan(grid_kind=grid_kind, grid=grid, lengths=lengths, owner=owner, propagator=propagator,
                modes=modes, spectrum=plan_spectrum(spec, modes))


# Branching plans (anytime schedules, :mod:`optctl.solver.branching`): the grids follow the
# solver's own, so that every horizon's schedule in a plan can be that horizon's own
# optimum. Horizon ``i``'s own grid (:func:`own_grid`: the grid ``solve`` would use for
# ``T_i`` with the solver's ``K``) is split at its leave point ``t_i``: the part before
# goes into the trunk (the union over the horizons, with every leave point), the part
# after is branch ``i``'s grid.


def own_grid(T: int, options: SolverOptions) -> np.ndarray:
    """The control grid :func:`make_plan` gives a horizon of ``T`` updates."""
    kind = options.grid
    if kind == "auto":
        kind = "per_step" if T <= options.per_step_max_T else "refined"
    return make_grid(kind, T, options.K)


@dataclass(frozen=True)
class BranchPlan(Plan):
    """The transcription of a branching problem: one trunk and a branch per horizon.

    ``grid``, ``lengths`` and ``owner`` (the :class:`Plan` fields) describe the trunk on
    ``[0, max t_i]``; branch ``i`` leaves the trunk at ``leave[i] = t_i`` and runs on its
    own grid ``branch_grids[i]`` (absolute boundaries ``t_i .. T_i``) with sub-blocks
    ``branch_lengths[i]``/``branch_owner[i]``. ``marks[i]`` is the trunk sub-block that
    ends at ``t_i`` (``-1`` when ``t_i = 0``). ``targets`` are the horizons' lower bounds
    ``L*_{T_i}`` (as reported: the tail included) and ``tail`` the constant the reported
    losses add to the transcribed excess loss; ``objective`` is ``"worst"`` (epigraph) or ``"weighted"`` with
    ``weights``. Targets and tail enter the NLP as constants (part of its structure); the
    weights are a parameter of the compiled NLP (their values here are the defaults of
    :func:`~optctl.solver.transcribe.model_parameters`), so re-weighting re-uses it.
    """

    horizons: tuple[int, ...] = ()
    leave: tuple[int, ...] = ()
    branch_grids: tuple[np.ndarray, ...] = ()
    branch_lengths: tuple[np.ndarray, ...] = ()
    branch_owner: tuple[np.ndarray, ...] = ()
    marks: tuple[int, ...] = ()
    targets: tuple[float, ...] = ()
    tail: float = 0.0
    objective: str = "worst"
    weights: tuple[float, ...] = ()

    @property
    def trunk_blocks(self) -> int:
        return int(self.grid.size - 1)

    @property
    def branch_blocks(self) -> tuple[int, ...]:
        return tuple(int(g.size - 1) for g in self.branch_grids)

    @property
    def n_controls(self) -> int:
        """Decision variables: trunk blocks, every branch's blocks, and (worst) the regret ``r``."""
        return self.trunk_blocks + sum(self.branch_blocks) + (1 if self.objective == "worst" else 0)

    @property
    def exact(self) -> bool:
        return False

    def structure(self) -> tuple[object, ...]:
        return ("branching", self.objective, self.spectrum.n_modes, self.grid.tobytes(), self.lengths.tobytes(),
                tuple(g.tobytes() for g in self.branch_grids),
                tuple(n.tobytes() for n in self.branch_lengths), self.marks, self.targets, self.tail)

    def describe(self) -> dict[str, object]:
        return {"grid": "branching", "trunk_blocks": self.trunk_blocks,
                "branch_blocks": list(self.branch_blocks), "propagator": self.propagator,
                "modes": self.modes, "n_modes": self.spectrum.n_modes,
                "n_subblocks": int(self.lengths.size + sum(n.size for n in self.branch_lengths))}


def trunk_grid(end: int, own: tuple[np.ndarray, ...], leave: tuple[int, ...]) -> np.ndarray:
    """Trunk boundaries on ``[0, end]``: every horizon's own grid up to its leave point, and
    every leave point."""
    parts = [g[g <= t] for g, t in zip(own, leave, strict=True)]
    b = np.unique(np.concatenate([[0, end], np.asarray(leave, dtype=np.int64), *parts]).astype(np.int64))
    return b[b <= end]


def make_branch_plan(spec: ProblemSpec, options: SolverOptions, horizons: tuple[int, ...],
                     leave: tuple[int, ...], targets: tuple[float, ...], tail: float,
                     objective: str = "worst", weights: tuple[float, ...] = (),
                     trunk: np.ndarray | None = None,
                     branch_grids: tuple[np.ndarray, ...] | None = None) -> BranchPlan:
    """The branching plan: the block propagator on grouped modes (``modes: auto``), the
    trunk and branch grids cut from every horizon's own grid (:func:`own_grid`, the
    solver's ``K``; :func:`trunk_grid`), the sub-blocks of
    :func:`~optctl.solver.grid.subdivide` (short after every control change, at most
    ``SUBBLOCK_REL`` of the distance to the branch's end). ``trunk`` and ``branch_grids``
    give the boundaries instead."""
    own = tuple(own_grid(int(T), options) for T in horizons)
    end = max(leave)
    grid = trunk_grid(end, own, tuple(leave)) if trunk is None else np.asarray(trunk)
    if int(grid[-1]) != end:
        raise SpecError("trunk", grid.tolist()[-3:], f"the trunk grid must end at the last leave point {end}")
    if end > 0:
        lengths, owner = subdivide(grid, SUBBLOCK_REL, SUBBLOCK_RESTART)
    else:
        lengths, owner = np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lengths)
    marks = tuple(-1 if t == 0 else int(np.flatnonzero(ends == t)[0]) for t in leave)
    bgrids, blens, bowners = [], [], []
    for i, t in enumerate(leave):
        g = np.unique(np.concatenate([[t], own[i][own[i] >= t]])) if branch_grids is None else \
            np.asarray(branch_grids[i])
        n, o = subdivide(g, SUBBLOCK_REL, SUBBLOCK_RESTART)
        bgrids.append(g)
        blens.append(n)
        bowners.append(o)
    modes = resolve_modes(spec, options, None, "block")
    return BranchPlan(grid_kind="branching", grid=grid, lengths=lengths, owner=owner, propagator="block",
                      modes=modes, spectrum=plan_spectrum(spec, modes), horizons=tuple(horizons),
                      leave=tuple(leave), branch_grids=tuple(bgrids), branch_lengths=tuple(blens),
                      branch_owner=tuple(bowners), marks=marks, targets=tuple(targets), tail=float(tail),
                      objective=objective, weights=tuple(weights))


def lower_bound_plan(plan: BranchPlan, i: int) -> BranchPlan:
    """Horizon ``i`` of ``plan`` alone, on the union of its trunk part (the trunk's
    boundaries up to ``t_i``) and its branch: every schedule horizon ``i`` can follow in
    ``plan`` is a schedule of this single-horizon problem, and so is the horizon's own
    optimum (its grid is part of both), so this problem's optimum is a lower bound of
    horizon ``i``'s loss in any plan on these grids and is not above its own optimum.
    Solved with the weighted objective (one weight) and the plan's target for scaling."""
    t = plan.leave[i]
    trunk = plan.grid[plan.grid <= t] if t > 0 else np.zeros(1, dtype=np.int64)
    lengths, owner = (subdivide(trunk, SUBBLOCK_REL, SUBBLOCK_RESTART) if t > 0 else
                      (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)))
    ends = np.cumsum(lengths)
    mark = -1 if t == 0 else int(np.flatnonzero(ends == t)[0])
    return replace(plan, grid=trunk, lengths=lengths, owner=owner, horizons=(plan.horizons[i],), leave=(t,),
                   branch_grids=(plan.branch_grids[i],), branch_lengths=(plan.branch_lengths[i],),
                   branch_owner=(plan.branch_owner[i],), marks=(mark,), targets=(plan.targets[i],),
                   objective="weighted", weights=(1.0,))
