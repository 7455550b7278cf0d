"""Control grids (where the schedule may change) and integration sub-blocks.

A grid is an increasing integer array of block boundaries ``0 = s_0 < ... < s_K = T``;
control ``j`` holds for the updates ``s_j <= t < s_{j+1}``.
"""

from __future__ import annotations

import numpy as np

from optctl.errors import SpecError


def per_step_grid(T: int) -> np.ndarray:
    """One block per update."""
    return np.arange(T + 1)


def uniform_grid(T: int, K: int) -> np.ndarray:
    """``K`` blocks of (nearly) equal length: update ``t`` uses control ``floor(t K / T)``.

    This is the indexing of the authors' reproduction code (``K = 100`` there).
    """
    if K >= T:
        return per_step_grid(T)
    j = np.arange(K + 1)
    return -((-j * T) // K)  # ceil(j T / K)


def refined_grid(T: int, K: int) -> np.ndarray:
    """``K`` blocks, one update long at both ends of training, growing geometrically inward.

    Half the blocks cover ``[0, T/2]`` with lengths ``r^j`` and the other half mirror
    them onto ``[T/2, T]``; ``r`` is chosen so that the first block is one update.
    The number of blocks needed for a given resolution grows like ``log T``.
    """
    if K >= T or T <= 4:
        return per_step_grid(T)
    half = max(K // 2, 1)
    span = T / 2.0
    if span <= half:
        return per_step_grid(T)

    # (r^half - 1)/(r - 1) = span: geometric lengths 1, r, r^2, ... fill half the horizon.
    def excess(r: float) -> float:
        return float(np.expm1(half * np.log(r)) / (r - 1.0) - span)

    from scipy.optimize import brentq  # heavy (0.4 s); refined grids only

    # the bracket's top stays where r^half is finite (many blocks: a ratio near 1 anyway)
    r = brentq(excess, 1.0 + 1e-12, min(1e3, float(np.exp(700.0 / half))))
    left = np.concatenate([[0.0], np.cumsum(r ** np.arange(half))])
    left = left / left[-1] * span
    edges = np.concatenate([left, T - left[::-1][1:]])
    return _as_boundaries(edges, T)


def _as_boundaries(edges: np.ndarray, T: int) -> np.ndarray:
    b = np.unique(np.clip(np.rint(edges), 0, T).astype(np.int64))
    if b[0] != 0:
        b = np.concatenate([[0], b])
    if b[-1] != T:
        b = np.concatenate([b, [T]])
    return b


def make_grid(kind: str, T: int, K: int) -> np.ndarray:
    """Dispatch on ``kind`` in ``{"per_step", "uniform", "refined"}``."""
    if kind == "per_step":
        return per_step_grid(T)
    if kind == "uniform":
        return uniform_grid(T, K)
    if kind == "refined":
        return refined_grid(T, K)
    raise SpecError("solver.grid", kind, "choose one of per_step, uniform, refined")


def subdivide(grid: np.ndarray, rel: float, restart: int) -> tuple[np.ndarray, np.ndarray]:
    """Integration sub-blocks for the block propagator.

    Each control block is cut into sub-blocks that (i) start short after every
    control change, growing by ``restart``× (1, 2, 4, ... updates) so the fast modes'
    transient is followed, and (ii) never exceed ``rel × min(t, T − t)`` updates, so
    that the loss is close to linear inside each one (it changes like a power of
    ``t`` and of ``T − t``). Returns the sub-block lengths and, for each, the index of
    its control block.
    """
    T = int(grid[-1])
    lengths: list[int] = []
    owner: list[int] = []
    for j in range(grid.size - 1):
        t, end = int(grid[j]), int(grid[j + 1])
        step = 1
        while t < end:
            cap = max(1, int(rel * min(t + 1, T - t)))
            n = min(step, cap, end - t)
            lengths.append(n)
            owner.append(j)
            t += n
            step *= restart
    return np.asarray(lengths, dtype=np.int64), np.asarray(owner, dtype=np.int64)
