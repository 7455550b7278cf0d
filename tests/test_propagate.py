"""Block propagator and control grids against the per-step recursion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import APPROX_GAP, CLOSED_FORM_RTOL

from optctl.model.blocks import NUMPY, Z_FLUSH, block_weights, block_weights_numpy, propagate_block
from optctl.model.replay import loss_curve
from optctl.model.spectrum import sgd_step, spectrum
from optctl.solver.grid import per_step_grid, refined_grid, subdivide, uniform_grid
from optctl.solver.piecewise import expand
from optctl.spec import ProblemSpec


@pytest.mark.parametrize("x", [-0.9, -0.3, -1e-3, -1e-7, -1e-12, 0.0, 1e-9, 0.05])
@pytest.mark.parametrize("n", [1, 2, 7, 100, 3000])
def test_block_weights_are_the_geometric_sums(x: float, n: int) -> None:
    d = 1.0 + x
    i = np.arange(n, dtype=float)
    P, S, W = block_weights(np.array([x]), float(n), NUMPY)
    # a factor below exp(Z_FLUSH) = 2e-22 is taken as 0 (x = -0.9, n = 100: 1e-100)
    assert P[0] == pytest.approx(d**n, rel=1e-9, abs=np.exp(Z_FLUSH))
    assert (P[0] == 0.0) == (n * np.log1p(x) < Z_FLUSH)
    P2, S2, W2 = block_weights_numpy(np.array([[x]]), np.array([[float(n)]]))
    assert (P2[0, 0], S2[0, 0], W2[0, 0]) == (P[0], S[0], W[0])
    assert S[0] == pytest.approx(np.sum(d**i), rel=1e-9)
    assert W[0] == pytest.approx(np.sum(i / n * d ** (n - 1 - i)), rel=1e-8, abs=1e-300)


def test_one_update_block_is_exact() -> None:
    spec = ProblemSpec(a=3.5, b=2.0, N=30, sigma=0.5, batch_size=5)
    sp = spectrum(spec)
    c1, L1 = propagate_block(sp.c0, 0.8, 5.0, 1.0, sp.lam, sp.lam, sp.sigma2, NUMPY)
    ref = sgd_step(sp.c0, float(sp.lam @ sp.c0), 0.8, 5.0, sp.lam, sp.sigma2)
    np.testing.assert_allclose(c1, ref, rtol=CLOSED_FORM_RTOL)
    assert L1 == pytest.approx(float(sp.lam @ ref), rel=CLOSED_FORM_RTOL)


@pytest.mark.parametrize("b", [2.0, 5.0])
def test_block_propagation_tracks_the_replay(b: float) -> None:
    """A WSD-like schedule on a refined grid: block propagation within APPROX_GAP of replay."""
    T = 20_000
    spec = ProblemSpec(a=3.5, b=b, N=400, sigma=0.5, batch_size=5, T=T)
    sp = spectrum(spec)
    grid = refined_grid(T, 60)
    u = (grid[:-1] + grid[1:]) / (2 * T)
    eta_blocks = np.minimum(1.0, (1 - u) / 0.2)
    lengths, owner = subdivide(grid, 0.1, 4)
    c, loss = sp.c0, 0.0
    for n, j in zip(lengths, owner, strict=False):
        c, loss = propagate_block(c, eta_blocks[j], 5.0, float(n), sp.lam, sp.lam, sp.sigma2, NUMPY)
    exact = loss_curve(spec, expand(eta_blocks, grid))[-1]
    assert abs(loss - exact) / exact < APPROX_GAP / 10


def test_grids() -> None:
    g = uniform_grid(1000, 100)
    idx = np.repeat(np.arange(100), np.diff(g))
    np.testing.assert_array_equal(idx, (np.arange(1000) * 100) // 1000)
    np.testing.assert_array_equal(uniform_grid(50, 100), per_step_grid(50))
    r = refined_grid(10**6, 100)
    assert r[0] == 0 and r[-1] == 10**6
    assert np.all(np.diff(r) > 0)
    assert np.diff(r)[0] == 1 and np.diff(r)[-1] == 1
    assert 90 <= r.size - 1 <= 101
    lengths, owner = subdivide(r, 0.1, 4)
    assert lengths.sum() == 10**6
    np.testing.assert_array_equal(np.bincount(owner, weights=lengths), np.diff(r))
