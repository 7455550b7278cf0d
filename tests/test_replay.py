"""The exact per-step replay: backends agree, bias + variance = loss."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLOSED_FORM_RTOL, REPLAY_BACKEND_RTOL

import optctl.model.replay as rp
from optctl.model.spectrum import sgd_step, spectrum
from optctl.spec import ProblemSpec


def _naive(spec: ProblemSpec, eta: np.ndarray) -> np.ndarray:
    sp = spectrum(spec)
    c = sp.c0.copy()
    out = [float(sp.lam @ c)]
    for e in eta:
        c = sgd_step(c, float(sp.lam @ c), float(e), spec.batch_size, sp.lam, sp.sigma2)
        out.append(float(sp.lam @ c))
    return np.array(out)


@pytest.fixture
def spec() -> ProblemSpec:
    return ProblemSpec(a=2.5, b=1.5, N=64, sigma=0.5, batch_size=4, T=300)


def test_replay_matches_naive_loop(spec: ProblemSpec) -> None:
    eta = 0.5 * (1 - np.arange(spec.T) / spec.T)
    np.testing.assert_allclose(rp.loss_curve(spec, eta), _naive(spec, eta), rtol=CLOSED_FORM_RTOL)


def test_numpy_and_jax_paths_agree(spec: ProblemSpec, monkeypatch: pytest.MonkeyPatch) -> None:
    eta = 0.6 * np.cos(np.linspace(0, np.pi / 2, spec.T))
    monkeypatch.setattr(rp, "_fused", lambda: None)
    numpy_curve = rp.loss_curve(spec, eta)
    monkeypatch.setattr(rp, "NUMPY_MAX_T", 0)
    jax_curve = rp.loss_curve(spec, eta)
    assert jax_curve.shape == (spec.T + 1,)
    np.testing.assert_allclose(jax_curve, numpy_curve, rtol=REPLAY_BACKEND_RTOL)


def _reference(spec: ProblemSpec, eta: np.ndarray, m: np.ndarray) -> np.ndarray:
    sp = spectrum(spec)
    return rp._recurse_reference(sp.lam, sp.lam, np.stack([sp.c0, np.zeros_like(sp.c0)]),
                                 np.array([0.0, sp.sigma2]), eta, m)


@pytest.mark.parametrize("phase_b", [2.0, 5.0])
def test_fused_replay_matches_reference_backend(phase_b: float) -> None:
    """The numba loop against the numpy loop (the reference), N = 1000, a varying
    schedule and batch size: bias, variance and the one-state curve to 1e-12."""
    if rp._fused() is None:
        pytest.skip("numba is not installed")
    spec = ProblemSpec(a=3.5, b=phase_b, N=1000, sigma=0.5, batch_size=5, T=5000)
    t = np.arange(spec.T)
    eta = 0.9 * np.cos(np.linspace(0, np.pi / 2, spec.T)) ** 2 + 0.05 * np.sin(t)
    m = 1.0 + (t % 7)
    ref = _reference(spec, eta, m)
    r = rp.replay(spec, eta, m)
    np.testing.assert_allclose(r.bias, ref[:, 0], rtol=REPLAY_BACKEND_RTOL)
    np.testing.assert_allclose(r.variance, ref[:, 1], rtol=REPLAY_BACKEND_RTOL, atol=0)
    np.testing.assert_allclose(rp.loss_curve(spec, eta, m), ref.sum(axis=1), rtol=REPLAY_BACKEND_RTOL)


def test_fused_replay_keeps_an_unstable_schedule_infinite() -> None:
    """Past the stability limit the state overflows: inf (or NaN), never a finite loss."""
    spec = ProblemSpec(a=2.0, b=1.5, N=50, sigma=0.5, batch_size=1, T=3000)
    assert not np.isfinite(rp.final_loss(spec, 1.99))
    assert np.isfinite(rp.final_loss(spec, 0.5))


def test_three_states_run_as_a_pair_and_a_single(spec: ProblemSpec) -> None:
    sp = spectrum(spec)
    eta, m = np.full(spec.T, 0.3), np.full(spec.T, 4.0)
    c0 = np.stack([sp.c0, 0.5 * sp.c0, np.zeros_like(sp.c0)])
    s2 = np.array([0.0, 0.1, sp.sigma2])
    got = rp._recurse(sp.lam, sp.lam, c0, s2, eta, m)
    want = rp._recurse_reference(sp.lam, sp.lam, c0, s2, eta, m)
    np.testing.assert_allclose(got, want, rtol=REPLAY_BACKEND_RTOL)


@pytest.mark.slow
def test_fused_replay_matches_jax_at_a_million_updates() -> None:
    if rp._fused() is None:
        pytest.skip("numba is not installed")
    spec = ProblemSpec(a=3.5, b=5.0, N=1000, sigma=0.5, batch_size=5, T=10**6)
    eta = 0.8 * np.cos(np.linspace(0, np.pi / 2, spec.T)) ** 2
    ref = _reference(spec, eta, np.full(spec.T, 5.0))
    r = rp.replay(spec, eta)
    np.testing.assert_allclose(r.bias, ref[:, 0], rtol=REPLAY_BACKEND_RTOL)
    np.testing.assert_allclose(r.variance, ref[:, 1], rtol=REPLAY_BACKEND_RTOL)


def test_bias_variance_split(spec: ProblemSpec) -> None:
    eta = np.full(spec.T, 0.3)
    r = rp.replay(spec, eta)
    np.testing.assert_allclose(r.bias + r.variance, rp.loss_curve(spec, eta), rtol=CLOSED_FORM_RTOL)
    assert r.variance[0] == 0.0
    assert r.bias[-1] < r.bias[0]


def test_tail_is_added_to_reported_loss() -> None:
    spec = ProblemSpec(a=2.0, b=1.5, N=50, sigma=0.5, batch_size=4, T=100, tail=True)
    r = rp.replay(spec, 0.2)
    assert r.final == pytest.approx(rp.final_loss(spec, 0.2), rel=CLOSED_FORM_RTOL)
    assert r.loss[0] - (r.bias[0] + r.variance[0]) == pytest.approx(spectrum(spec).tail)


def test_bad_schedule_shape(spec: ProblemSpec) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        rp.loss_curve(spec, np.ones(spec.T), batch_size=np.ones(3))
