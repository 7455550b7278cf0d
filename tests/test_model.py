"""The model: spectrum, initial state, tail, and the per-step recursion."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CLOSED_FORM_RTOL
from scipy.special import zeta

from optctl.model.replay import loss_curve
from optctl.model.spectrum import (
    group_modes,
    sgd_decay,
    sgd_step,
    spectrum,
    stability_limit,
    tail_loss,
)
from optctl.spec import ProblemSpec


def test_spectrum_power_laws() -> None:
    spec = ProblemSpec(a=3.5, b=2.0, N=50)
    sp = spectrum(spec)
    k = np.arange(1, 51.0)
    np.testing.assert_allclose(sp.lam, k**-2.0, rtol=CLOSED_FORM_RTOL)
    np.testing.assert_allclose(sp.lam * sp.c0, k**-3.5, rtol=CLOSED_FORM_RTOL)
    assert sp.sigma2 == pytest.approx(0.25)


def test_normalize_init_and_tail() -> None:
    spec = ProblemSpec(a=2.0, b=1.5, N=100, sigma=0.5, normalize_init=True, tail=True)
    sp = spectrum(spec)
    assert float(sp.lam @ sp.c0) == pytest.approx(1.0, rel=CLOSED_FORM_RTOL)
    assert sp.tail == pytest.approx(zeta(2.0, 101), rel=CLOSED_FORM_RTOL)
    assert tail_loss(2.0, 100) == pytest.approx(np.pi**2 / 6 - np.sum(np.arange(1, 101.0) ** -2))
    assert sp.sigma2 == pytest.approx(0.25 + sp.tail)


def test_step_matches_written_out_formula() -> None:
    lam = np.array([1.0, 0.25])
    c = np.array([0.3, 2.0])
    eta, m, s2 = 0.7, 3.0, 0.1
    L = float(lam @ c)
    d = 1 - 2 * eta * lam + (1 + 1 / m) * eta**2 * lam**2
    expected = d * c + eta**2 / m * lam * (L + s2)
    np.testing.assert_allclose(sgd_step(c, L, eta, m, lam, s2), expected, rtol=CLOSED_FORM_RTOL)


def test_single_mode_closed_form() -> None:
    """With one mode the recursion is affine in c: c_t = r^t c_0 + s (1 - r^t)/(1 - r)."""
    spec = ProblemSpec(a=2.0, b=1.0, N=1, sigma=0.5, batch_size=2.0, T=40)
    eta = 0.3
    r = float(sgd_decay(eta, 2.0, 1.0)) + eta**2 / 2.0
    s = eta**2 / 2.0 * 0.25
    t = np.arange(41)
    closed = r**t * 1.0 + s * (1 - r**t) / (1 - r)
    np.testing.assert_allclose(loss_curve(spec, eta), closed, rtol=CLOSED_FORM_RTOL)


def test_stability_limit() -> None:
    m = 5.0
    lim = stability_limit(m)
    assert float(sgd_decay(lim * 0.999, m, 1.0)) < 1.0
    assert float(sgd_decay(lim * 1.001, m, 1.0)) > 1.0


def test_grouped_modes_keep_mass_and_loss() -> None:
    spec = ProblemSpec(a=3.5, b=2.0, N=1000, sigma=0.5, batch_size=5, T=300)
    sp = spectrum(spec)
    g = group_modes(sp, spec, 16, 1.5, 3)
    assert g.n_modes < 60
    assert g.weight.sum() == pytest.approx(1000.0, rel=1e-12)
    assert g.loss(g.c0) == pytest.approx(sp.loss(sp.c0), rel=1e-6)
    eta = 0.3 * (1 - np.arange(300) / 300) ** 3
    exact = loss_curve(spec, eta, sp=sp)[-1]
    grouped = loss_curve(spec, eta, sp=g)[-1]
    assert grouped == pytest.approx(exact, rel=1e-5)


@pytest.mark.parametrize(("a", "b", "N", "m"), [(1.5, 2.5, 400, 4), (3.5, 2.0, 1000, 5),
                                                (1.5, 1.25, 500, 1), (2.5, 1.5, 40, 4)])
def test_stable_rate_separates_bounded_from_exploding_replays(a: float, b: float, N: int, m: int) -> None:
    """The coupled stability limit, checked on the per-step replay without noise: 2% below
    it the loss decays, 2% above it grows without bound (for these cases it lies below the
    top mode's own limit 2m/(m+1), which alone would let the replay explode)."""
    from optctl.model.spectrum import spectrum, stability_limit, stable_rate

    spec = ProblemSpec(a=a, b=b, N=N, sigma=0.0, batch_size=m, T=20_000, eta_max=10.0)
    eta = stable_rate(spectrum(spec), m)
    assert eta < stability_limit(m)
    below, above = (loss_curve(spec, np.full(spec.T, f * eta)) for f in (0.98, 1.02))
    assert below[-1] < below[0]
    # growing geometrically (or already overflowed): ten times the start, doubling in T/2
    assert not (above[-1] < 10 * above[0] or above[-1] < 2 * above[spec.T // 2])
