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
- learning rate and momentum: always the exact step of the EMA recursion (three moments
  per mode); ``modes: auto`` groups past ``per_step_max_T`` updates when
  ``N > group_min_N``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

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


def plan_spectrum(spec: ProblemSpec, modes: str) -> Spectrum:
    """All ``N`` modes, or (``modes="grouped"``) the Gauss-grouped tail."""
    sp = spectrum(spec)
    return group_modes(sp, spec, GROUP_EXACT, GROUP_RATIO, GROUP_NODES) if modes == "grouped" else sp


def resolve_options(options: SolverOptions, second: str | None = None) -> SolverOptions:
    """The options a control set solves with: for ``batch_size``, ``propagator: auto`` is
    the exact step, for the problem and for the learning-rate optimum it starts from."""
    if second == "batch_size" and options.propagator == "auto":
        return replace(options, propagator="step")
    return options


def resolve_modes(spec: ProblemSpec, options: SolverOptions, second: str | None, propagator: str) -> str:
    """``options.modes``, with ``auto`` resolved: grouped modes for a block propagator (or,
    with momentum, beyond ``per_step_max_T``) once ``N`` exceeds ``group_min_N``."""
    if options.modes != "auto":
        return options.modes
    if second == "momentum":
        grouped = spec.T > options.per_step_max_T and spec.N > options.group_min_N
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
    if second == "momentum":  # no block propagator (ControlSpec.check_options)
        propagator = "step"
    elif propagator == "auto":
        propagator = "step" if grid_kind == "per_step" else "block"
    if propagator == "step":
        lengths = np.ones(spec.T, dtype=np.int64)
        owner = np.repeat(np.arange(grid.size - 1), np.diff(grid))
    else:
        lengths, owner = subdivide(grid, SUBBLOCK_REL, SUBBLOCK_RESTART)
    modes = resolve_modes(spec, options, second, propagator)
    return Plan(grid_kind=grid_kind, grid=grid, lengths=lengths, owner=owner, propagator=propagator,
                modes=modes, spectrum=plan_spectrum(spec, modes))
