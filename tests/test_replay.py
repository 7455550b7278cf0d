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
    numpy_curve = rp.loss_curve(spec, eta)
    monkeypatch.setattr(rp, "NUMPY_MAX_T", 0)
    jax_curve = rp.loss_curve(spec, eta)
    assert jax_curve.shape == (spec.T + 1,)
    np.testing.assert_allclose(jax_curve, numpy_curve, rtol=REPLAY_BACKEND_RTOL)


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
