"""Piecewise-constant schedules on a control grid: one value per block, or per update.

A grid is an increasing integer array of block boundaries ``0 = s_0 < ... < s_K = T``;
value ``j`` holds for the updates ``s_j <= t < s_{j+1}``. The grids themselves are made
by :mod:`optctl.solver.grid`; this module needs numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optctl.errors import SpecError


@dataclass(frozen=True)
class BlockSchedule:
    """A piecewise-constant schedule: ``values[j]`` on updates ``grid[j] <= t < grid[j+1]``."""

    grid: np.ndarray
    values: np.ndarray

    @property
    def T(self) -> int:
        return int(self.grid[-1])

    @property
    def per_step(self) -> np.ndarray:
        """One value per update."""
        return expand(self.values, self.grid)

    @classmethod
    def from_per_step(cls, eta: np.ndarray) -> BlockSchedule:
        """Merge runs of equal rates into blocks (exactly recovers a block solve)."""
        e = np.asarray(eta, dtype=float)
        if e.ndim != 1 or e.size < 1:
            raise SpecError("eta", e.shape, "a schedule is a 1-d array of per-update rates")
        change = np.flatnonzero(np.diff(e) != 0.0) + 1
        grid = np.concatenate([[0], change, [e.size]]).astype(np.int64)
        return cls(grid=grid, values=e[grid[:-1]])

    def at(self, u: np.ndarray) -> np.ndarray:
        """The schedule as a function of ``u = t/T``, interpolated between block midpoints
        (how one horizon's solution warm-starts another's)."""
        g = np.asarray(self.grid, dtype=float)
        return np.interp(u, 0.5 * (g[:-1] + g[1:]) / g[-1], self.values)


def expand(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Per-update array from one value per block."""
    return np.repeat(np.asarray(values, dtype=float), np.diff(grid))


def block_means(per_step: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Average of a per-update array over each block."""
    sums = np.add.reduceat(np.asarray(per_step, dtype=float), grid[:-1])
    return sums / np.diff(grid)
