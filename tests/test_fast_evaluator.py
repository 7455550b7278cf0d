"""The tuning path's fast pieces against the straightforward computation, float for float.

Tuning scores every candidate baseline with the approximate evaluator: per-step rates,
their sub-block means, the block weights of every sub-block, the loop over sub-blocks.
The fast versions (piecewise family sampling, in-place ramps, the numpy block weights
with the series only where needed) must give the same floats as the plain ones, so the
tuned baselines do not change.
"""

from __future__ import annotations

import numpy as np
import pytest

from optctl import schedules
from optctl.baselines.families import BASELINE_NAMES, family, rates
from optctl.model.blocks import NUMPY, block_weights, block_weights_numpy
from optctl.solver.evaluate import approximate_evaluator, propagate_blocks
from optctl.solver.piecewise import block_means
from optctl.solver.plan import make_plan
from optctl.spec import ProblemSpec, SolverOptions

HORIZONS = (1, 2, 7, 1000, 100_000)


def test_block_weights_numpy_is_block_weights_bit_for_bit() -> None:
    rng = np.random.default_rng(0)
    n_small = 0
    for _ in range(50):
        rows, modes = int(rng.integers(1, 400)), int(rng.integers(1, 60))
        n = rng.integers(1, 5000, size=(rows, 1)).astype(float)
        e = 10 ** rng.uniform(-9, 0, size=(rows, 1))
        lam = 10 ** rng.uniform(-8, 0, size=modes)
        x = e * lam * (-2 + 1.2 * e * lam)
        n_small += int((np.abs(n * np.log1p(x)) < 1e-4).sum())
        for plain, fast in zip(block_weights(x, n, NUMPY), block_weights_numpy(x, n), strict=True):
            assert fast.shape == plain.shape
            assert np.array_equal(fast, plain)
    assert n_small > 1000  # the Taylor branch was exercised


def _params(name: str, T: int, rng: np.random.Generator) -> dict[str, float]:
    fam = family(name)
    x = np.array([rng.uniform(lo, hi) for lo, hi in fam.bounds(T)])
    return fam.coords(x, T, 0.8)


@pytest.mark.parametrize("name", BASELINE_NAMES)
def test_rates_are_the_sampled_schedule(name: str) -> None:
    rng = np.random.default_rng(1)
    for T in HORIZONS:
        for _ in range(4):
            p = _params(name, T, rng)
            plain = np.clip(schedules.sample(family(name).build(p, T), T), 0.0, 0.8)
            assert np.array_equal(rates(name, p, T, 0.8), plain), (T, p)
    for d in (1, 2, 999, 1000):  # WSD at both ends of its decay fraction
        p = {"peak_value": 0.5, "decay_steps": float(d)}
        plain = np.clip(schedules.sample(schedules.warmup_stable_decay(0.5, 0, 1000 - d, d), 1000), 0, 0.8)
        assert np.array_equal(rates("wsd", p, 1000, 0.8), plain)


@pytest.mark.parametrize("shape", ["linear", "cosine", "sqrt"])
def test_ramp_is_the_textbook_formula(shape: str) -> None:
    peak, end, d = 0.7, 0.05, 997
    t = np.arange(1500)
    x = np.minimum(t, d) / d
    w = {"linear": 1.0 - x, "cosine": 0.5 * (1.0 + np.cos(np.pi * x)), "sqrt": 1.0 - np.sqrt(x)}[shape]
    want = np.clip(peak * w + end * (1.0 - w), end, peak)
    got = schedules.sample(schedules.warmup_stable_decay(peak, 0, 0, d, end, shape), 1500)
    assert np.array_equal(got, want)
    assert schedules.warmup_stable_decay(peak, 0, 0, d, end, shape)(5) == want[5]


@pytest.mark.parametrize(("a", "b", "T"), [(3.35, 2.2, 100_000), (2.5, 1.2, 20_000), (1.5, 0.6, 3_000)])
def test_evaluator_is_the_plain_block_recursion(a: float, b: float, T: int) -> None:
    spec = ProblemSpec(a=a, b=b, N=300, sigma=0.5, batch_size=5, T=T, eta_max=1.0)
    evaluate = approximate_evaluator(spec)
    pl = make_plan(spec, SolverOptions(grid="refined", K=100, propagator="block", modes="auto"))
    edges = np.concatenate([[0], np.cumsum(pl.lengths)])
    sp = pl.spectrum
    n = pl.lengths.astype(float)[:, None]
    rng = np.random.default_rng(2)
    for name in BASELINE_NAMES:
        for _ in range(3):
            eta = rates(name, _params(name, T, rng), T, spec.eta_max)
            e = block_means(eta, edges)[:, None]
            P, S, W = block_weights(e * sp.lam * (-2 + (1 + 1 / spec.batch_size) * e * sp.lam), n, NUMPY)
            q = e * e / spec.batch_size * sp.lam
            plain = propagate_blocks(P, q * S, q * W, sp.weight * sp.lam, sp.c0, sp.sigma2) + sp.tail
            assert evaluate(eta) == pytest.approx(plain, rel=1e-12, abs=0)
