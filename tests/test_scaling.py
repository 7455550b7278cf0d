"""Power-law fits, local slopes, theory exponents (MODEL.md §5) and compute frontiers."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    BOUNDARY_LIMIT_ATOL,
    FRONTIER_EXPONENT_ATOL,
    LOCAL_SLOPE_MIDPOINT_ATOL,
    POWER_LAW_FIT_ATOL,
)

from optctl import theory
from optctl.analysis.scaling import (
    compute_frontier,
    decade_slopes,
    fit_power_law,
    local_slopes,
)
from optctl.errors import SpecError
from optctl.studies.boundary import asymptotic_p


def test_fit_recovers_an_exact_power_law() -> None:
    T = np.geomspace(1e2, 1e6, 9)
    f = fit_power_law(T, 3.0 * T ** -0.7, n_fit=4, theory=0.7)
    assert f.exponent == pytest.approx(0.7, abs=POWER_LAW_FIT_ATOL)
    assert f.prefactor == pytest.approx(3.0, rel=POWER_LAW_FIT_ATOL)
    assert f.fit_range == (pytest.approx(10 ** 4.5), pytest.approx(1e6))  # the last 4 of 9
    np.testing.assert_allclose(f.local_slopes, 0.7, atol=POWER_LAW_FIT_ATOL)
    assert abs(f.deviation) < POWER_LAW_FIT_ATOL
    assert f.drift == pytest.approx(0.0, abs=POWER_LAW_FIT_ATOL)


def test_local_slopes_show_the_crossover_of_two_power_laws() -> None:
    # L = T^-1 + T^-0.5: the exponent drifts from ~1 (small T) to 0.5 (large T).
    T = np.geomspace(1e-2, 1e6, 17)
    L = T ** -1.0 + T ** -0.5
    mid, s = local_slopes(T, L)
    assert np.all(np.diff(s) < 0)
    assert s[0] > 0.9 and s[-1] < 0.51
    # Closed form of the local exponent at the geometric midpoint, -dlogL/dlogT,
    # agrees with the finite difference to second order in the log spacing.
    exact = (mid ** -1.0 + 0.5 * mid ** -0.5) / (mid ** -1.0 + mid ** -0.5)
    np.testing.assert_allclose(s, exact, atol=LOCAL_SLOPE_MIDPOINT_ATOL)
    f = fit_power_law(T, L, n_fit=3)
    assert f.drift < -0.4


@pytest.mark.parametrize(("a", "b", "optimal", "baseline", "xi"), [
    (3.5, 5.0, 0.5, 1.0 / 3.0, 0.0),          # hard reference case
    (3.5, 2.0, 5.0 / 7.0, 5.0 / 9.0, 3.0 / 7.0),  # easy reference case
])
def test_theory_exponents_are_those_of_model_md(a: float, b: float, optimal: float,
                                                baseline: float, xi: float) -> None:
    th = theory.exponents(a, b)
    assert th["optimal"] == pytest.approx(optimal)
    assert th["constant"] == pytest.approx(baseline)
    assert th["power_law"] == pytest.approx(baseline)
    assert th["peak_lr"] == pytest.approx(xi)
    assert th["decay_power"] == pytest.approx(2 * b - 1)


def test_compute_exponent_balance() -> None:
    # ν = (a−1)ζ/(a−1+ζ): easy a=2, b=1.5 → ζ = 1/2, ν = 1/3; hard a=1.5, b=2 → ζ = 1/4, ν = 1/6.
    assert theory.compute_exponent(2.0, 1.5) == pytest.approx(1.0 / 3.0)
    assert theory.compute_exponent(1.5, 2.0) == pytest.approx(1.0 / 6.0)


def test_frontier_of_a_two_term_law_has_the_balance_exponent() -> None:
    # L(N, T) = N^-α + T^-β: min over N at fixed C = N T is exactly ∝ C^(-αβ/(α+β)).
    alpha, beta = 1.0, 0.5
    Ns = 2.0 ** np.arange(2, 13)
    Ts = np.geomspace(1e1, 1e7, 13)
    N, T = (x.ravel() for x in np.meshgrid(Ns, Ts, indexing="ij"))
    fr = compute_frontier(N, T, N ** -alpha + T ** -beta, theory=1.0 / 3.0)
    assert fr.fit is not None
    assert fr.fit.exponent == pytest.approx(alpha * beta / (alpha + beta), abs=FRONTIER_EXPONENT_ATOL)
    # The frontier never lies above any single run at the same compute.
    for n in Ns:
        sel = N == n
        inside = (fr.compute >= (n * T[sel]).min()) & (fr.compute <= (n * T[sel]).max())
        run = np.interp(np.log(fr.compute[inside]), np.log(n * T[sel]), np.log(N[sel] ** -alpha + T[sel] ** -beta))
        assert np.all(np.log(fr.loss[inside]) <= run + POWER_LAW_FIT_ATOL)
    # The best N grows with compute.
    assert np.all(np.diff(fr.best_N[fr.interior]) >= 0)


def test_bad_data_is_an_error_naming_the_problem() -> None:
    with pytest.raises(SpecError, match="positive"):
        fit_power_law([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(SpecError, match="n_fit"):
        fit_power_law([1.0, 2.0, 3.0], [1.0, 0.5, 0.3], n_fit=5)
    with pytest.raises(SpecError, match="two model sizes"):
        compute_frontier([10, 10], [100, 1000], [0.1, 0.05])


def test_decade_slopes_recover_a_power_law_and_see_a_change_of_slope() -> None:
    C = np.geomspace(1e3, 1e9, 61)
    x, s = decade_slopes(C, 5.0 * C ** -0.3)
    assert x.size == 6 and np.allclose(s, 0.3, atol=POWER_LAW_FIT_ATOL)
    bent = np.where(C < 1e6, C ** -0.3, 1e6 ** -0.3 * (C / 1e6) ** -0.5)
    _, s2 = decade_slopes(C, bent)
    assert np.allclose(s2[:3], 0.3, atol=POWER_LAW_FIT_ATOL) and np.allclose(s2[3:], 0.5, atol=POWER_LAW_FIT_ATOL)


def test_boundary_window_exponent_meets_one_from_both_sides() -> None:
    """The asymptotic decay-window exponent: (a+b−1)/(2b−1) < 1 (hard), 1 + ξ/δ > 1 (easy)."""
    a = 3.5
    hard = [asymptotic_p(a, b) for b in (3.8, 3.6, 3.51)]
    easy = [asymptotic_p(a, b) for b in (3.2, 3.4, 3.49)]
    assert all(p < 1 for p in hard) and all(p > 1 for p in easy)
    assert hard == sorted(hard) and easy == sorted(easy, reverse=True)  # monotone towards 1
    for b in (a + 1e-6, a - 1e-6):
        assert asymptotic_p(a, b) == pytest.approx(1.0, abs=BOUNDARY_LIMIT_ATOL)
    assert asymptotic_p(a, 5.0) == theory.window_exponent(a, 5.0)
