"""The derivative-free minimisers of optctl.search against closed-form minima."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optctl.search import brent, golden, nelder_mead


class Counted:
    def __init__(self, f):  # type: ignore[no-untyped-def]
        self.f, self.n = f, 0

    def __call__(self, x):  # type: ignore[no-untyped-def]
        self.n += 1
        return self.f(x)


@pytest.mark.parametrize("x_star", [-0.73, 0.0, 0.41, 1.9])
def test_brent_finds_an_interior_minimum_quickly(x_star: float) -> None:
    f = Counted(lambda x: math.cosh(x - x_star) + 0.1 * (x - x_star) ** 4)
    x, fx = brent(f, -2.0, 2.0, 1e-6)
    assert x == pytest.approx(x_star, abs=2e-6)
    assert fx == pytest.approx(1.0, abs=1e-10)
    # parabolic steps: far fewer evaluations than golden section's ~30 for this bracket
    assert f.n < 20


def test_brent_stops_at_a_bound_and_keeps_inf_out() -> None:
    x, _ = brent(lambda x: x if x > -1.0 else math.inf, -1.0, 3.0, 1e-6)
    assert -1.0 < x < -1.0 + 1e-5
    x, _ = brent(lambda x: -x, -1.0, 3.0, 1e-6)
    assert 3.0 - 1e-5 < x < 3.0


def test_golden_matches_brent() -> None:
    f = lambda x: (math.log(x) - 0.2) ** 2 + 0.5  # noqa: E731
    assert golden(f, 0.1, 10.0, 1e-7) == pytest.approx(math.exp(0.2), abs=1e-6)
    assert brent(f, 0.1, 10.0, 1e-7)[0] == pytest.approx(math.exp(0.2), abs=1e-6)


def test_nelder_mead_on_a_rotated_quadratic() -> None:
    centre = np.array([0.3, -0.6])
    A = np.array([[3.0, 1.2], [1.2, 1.0]])
    f = Counted(lambda x: float((x - centre) @ A @ (x - centre)))
    simplex = [np.zeros(2), np.array([0.5, 0.0]), np.array([0.0, 0.5])]
    x, fx = nelder_mead(f, simplex, [(-2, 2), (-2, 2)], maxfev=400, xatol=1e-7, fatol=1e-14)
    np.testing.assert_allclose(x, centre, atol=1e-5)
    assert fx < 1e-10
    assert f.n < 400


def test_nelder_mead_stays_in_the_box_and_finds_the_bound() -> None:
    """The unconstrained minimum (1.5, 0.2) lies outside x <= 1: the answer is on that edge."""
    seen = []

    def f(x: np.ndarray) -> float:
        seen.append(x.copy())
        return float((x[0] - 1.5) ** 2 + (x[1] - 0.2) ** 2)

    simplex = [np.array([0.0, 0.0]), np.array([0.4, 0.0]), np.array([0.0, 0.4])]
    x, _ = nelder_mead(f, simplex, [(-1, 1), (-1, 1)], maxfev=300, xatol=1e-7, fatol=1e-12)
    assert all(np.all(p >= -1) and np.all(p <= 1) for p in seen)
    np.testing.assert_allclose(x, [1.0, 0.2], atol=1e-4)


def test_nelder_mead_respects_its_evaluation_budget() -> None:
    f = Counted(lambda x: float(np.sum((x - 0.1) ** 2)))
    nelder_mead(f, [np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])], [(-5, 5), (-5, 5)],
                maxfev=20, xatol=0.0, fatol=0.0)
    assert f.n <= 20 + 3  # a shrink may take n + 1 = 3 evaluations past the check


def test_nelder_mead_stops_on_a_flat_function() -> None:
    f = Counted(lambda x: 1.0)
    nelder_mead(f, [np.zeros(2), np.array([0.5, 0.0]), np.array([0.0, 0.5])], [(-1, 1), (-1, 1)],
                maxfev=2000, xatol=1e-4, fatol=1e-12)
    assert f.n < 200


def _random_smooth(rng: np.random.Generator):  # type: ignore[no-untyped-def]
    """A smooth function with a minimum (inside [-2, 2] or on its edge)."""
    c, s, q = rng.uniform(-2.5, 2.5), rng.uniform(0.2, 3.0), rng.uniform(-0.3, 0.3)
    return lambda x: s * (x - c) ** 2 + q * (x - c) ** 3 + 0.05 * (x - c) ** 4 + math.sin(3 * x) * 0.01


def test_brent_matches_scipy_fminbound_point_and_evaluations() -> None:
    """The same algorithm as scipy's bounded Brent: the same point (to its tolerance) and the
    same number of evaluations on random smooth functions (an independent implementation)."""
    from scipy.optimize import minimize_scalar

    rng = np.random.default_rng(3)
    for _ in range(40):
        g = _random_smooth(rng)
        mine, theirs = Counted(g), Counted(g)
        x, _ = brent(mine, -2.0, 2.0, 1e-5, 500)
        ref = minimize_scalar(theirs, bounds=(-2.0, 2.0), method="bounded", options={"xatol": 1e-5, "maxiter": 500})
        assert x == pytest.approx(ref.x, abs=1e-7)
        assert mine.n == theirs.n


def test_nelder_mead_matches_scipy_on_rosenbrock() -> None:
    """The same moves as scipy's bounded Nelder-Mead from the same simplex: the same point and
    evaluation count (scipy's adaptive coefficients off, which is the 2-D default)."""
    from scipy.optimize import minimize

    def rosen(x: np.ndarray) -> float:
        return float(100.0 * (x[1] - x[0] ** 2) ** 2 + (1.0 - x[0]) ** 2)

    simplex = np.array([[-1.2, 1.0], [-1.0, 1.0], [-1.2, 1.3]])
    bounds = [(-2.0, 2.0), (-1.0, 3.0)]
    mine, theirs = Counted(rosen), Counted(rosen)
    x, _ = nelder_mead(mine, list(simplex), bounds, maxfev=1000, xatol=1e-6, fatol=1e-10)
    ref = minimize(theirs, simplex[0], method="Nelder-Mead", bounds=bounds,
                   options={"initial_simplex": simplex, "maxfev": 1000, "xatol": 1e-6, "fatol": 1e-10})
    np.testing.assert_allclose(x, ref.x, atol=1e-8)
    assert mine.n == theirs.n
