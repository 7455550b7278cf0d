"""Monte-Carlo SGD on sampled Gaussian features against the exact recursion (MODEL.md §2)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import MC_ABS_FLOOR, MC_SE_MULTIPLIER

from optctl.errors import SpecError
from optctl.model.montecarlo import MonteCarloResult, simulate_sgd
from optctl.model.replay import loss_curve, replay
from optctl.model.spectrum import spectrum
from optctl.spec import ProblemSpec

# The setting MODEL.md §2 reports as checked: a = 2.5, b = 1.5, N = 100, m = 4, σ = 0.5.
SPEC = ProblemSpec(a=2.5, b=1.5, N=100, sigma=0.5, batch_size=4, T=200)
ETA = 0.8 / (1.0 + np.arange(SPEC.T) / 40.0)  # a simple 1/t-type decay from 0.8
N_RUNS = 4000
CHECKPOINTS = np.array([0, 1, 5, 20, 50, 100, 150, SPEC.T])


def _band(mc: MonteCarloResult) -> np.ndarray:
    # The recursion is exact in expectation for Gaussian features, so the only
    # discrepancy is sampling error of the mean; see the constants in conftest.py.
    return MC_SE_MULTIPLIER * mc.stderr + MC_ABS_FLOOR


@pytest.fixture(scope="module")
def mc() -> MonteCarloResult:
    return simulate_sgd(SPEC, ETA, n_runs=N_RUNS, seed=0)


def test_shapes_and_start(mc: MonteCarloResult) -> None:
    sp = spectrum(SPEC)
    assert mc.loss.shape == mc.stderr.shape == (SPEC.T + 1,)
    assert mc.n_runs == N_RUNS
    assert np.all(mc.stderr >= 0)
    assert abs(mc.loss[0] - float(sp.lam @ sp.c0)) <= MC_ABS_FLOOR


def test_mean_matches_recursion(mc: MonteCarloResult) -> None:
    theory = loss_curve(SPEC, ETA)
    z = np.abs(mc.loss - theory)[CHECKPOINTS]
    band = _band(mc)[CHECKPOINTS]
    assert np.all(z <= band), (
        f"max |MC - theory| / band = {np.max(z / band):.3g} at t = "
        f"{CHECKPOINTS[np.argmax(z / band)]}")


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_wrong_learning_rate_is_rejected(mc: MonteCarloResult, factor: float) -> None:
    # A theory evaluated with a 10% different learning rate must leave the band, at the
    # final step (the control objective L_T) in particular: the check has power.
    wrong = loss_curve(SPEC, factor * ETA)
    assert abs(mc.loss[-1] - wrong[-1]) > _band(mc)[-1]


def test_tail_and_per_step_batch_sizes() -> None:
    # Tail on (extra label noise, reported offset) and an integer batch ramp 2 -> 5.
    # m_t >= 2 at η = 0.4 keeps the fourth moment of Δ contracting; with m = 1 at
    # η = 0.5 it grows (E(1 − η g²)⁴ ≈ 2.5), the per-run loss turns heavy-tailed
    # and the sample standard error stops describing the error of the mean.
    spec = ProblemSpec(a=2.5, b=1.5, N=20, sigma=0.5, batch_size=2, T=80, tail=True)
    m = np.repeat([2, 3, 4, 5], spec.T // 4)
    eta = np.full(spec.T, 0.4)
    mc = simulate_sgd(spec, eta, m, n_runs=3000, seed=1)
    theory = replay(spec, eta, m).loss
    assert mc.tail == pytest.approx(spectrum(spec).tail) and mc.tail > 0
    idx = np.array([0, 10, 20, 40, 60, spec.T])
    assert np.all(np.abs(mc.loss - theory)[idx] <= _band(mc)[idx])


def test_seed_reproducible() -> None:
    spec = ProblemSpec(a=2.5, b=1.5, N=10, sigma=0.5, batch_size=2, T=5)
    r1 = simulate_sgd(spec, 0.5, n_runs=10, seed=3, chunk=4)
    r2 = simulate_sgd(spec, 0.5, n_runs=10, seed=3, chunk=4)
    r3 = simulate_sgd(spec, 0.5, n_runs=10, seed=4, chunk=4)
    np.testing.assert_array_equal(r1.loss, r2.loss)
    assert not np.array_equal(r1.loss[1:], r3.loss[1:])


SMALL = ProblemSpec(a=2.5, b=1.5, N=5, sigma=0.5, batch_size=2, T=4)


@pytest.mark.parametrize(
    ("batch_size", "match"),
    [
        (2.5, r"batch_size\[0\].*integer"),
        ([2, 2, 3.5, 2], r"batch_size\[2\] = 3.5.*integer"),
        ([2, np.nan, 2, 2], r"batch_size\[1\]"),
        (0, r"batch_size\[0\].*>= 1"),
        ([2, 2, 2], r"shape \(4,\)"),
        ("4", r"integer"),
        (True, r"integer"),
    ],
)
def test_batch_size_validation(batch_size: object, match: str) -> None:
    with pytest.raises(SpecError, match=match):
        simulate_sgd(SMALL, 0.5, batch_size, n_runs=2)  # type: ignore[arg-type]


def test_fractional_spec_batch_size_rejected() -> None:
    spec = ProblemSpec(a=2.5, b=1.5, N=5, sigma=0.5, batch_size=1.5, T=4)
    with pytest.raises(ValueError, match="integer"):
        simulate_sgd(spec, 0.5, n_runs=2)


def test_integer_valued_floats_accepted() -> None:
    r = simulate_sgd(SMALL, 0.5, np.array([1.0, 2.0, 3.0, 4.0]), n_runs=2)
    assert r.loss.shape == (SMALL.T + 1,)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"n_runs": 1}, "n_runs"),
    ({"n_runs": 4, "chunk": 0}, "chunk"),
])
def test_run_count_validation(kwargs: dict[str, int], match: str) -> None:
    with pytest.raises(SpecError, match=match):
        simulate_sgd(SMALL, 0.5, **kwargs)


def test_eta_validation() -> None:
    with pytest.raises(SpecError, match="eta"):
        simulate_sgd(SMALL, np.array([0.5, np.inf, 0.5, 0.5]), n_runs=2)
