"""The solver against the per-step replay, the paper's regression value and the baselines."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from conftest import APPROX_GAP, EXACT_GAP, PREFIX_TAIL_ATOL, REGRESSION_RTOL, REPLAY_BACKEND_RTOL

from optctl import ProblemSpec, SolverOptions, solve
from optctl.baselines.tune import tune_baselines
from optctl.errors import SpecError
from optctl.model.replay import final_loss
from optctl.solver.piecewise import expand


@pytest.fixture(scope="module")
def regression():
    """MODEL.md §5: N=500, a=1.5, b=1.25, σ=0.5, m=1, T=500, η ∈ [0, 2], per-step controls."""
    spec = ProblemSpec(a=1.5, b=1.25, N=500, sigma=0.5, batch_size=1, T=500, eta_max=2.0)
    return solve(spec, SolverOptions(grid="per_step"))


def test_public_regression_value(regression) -> None:
    assert regression.success, regression.message
    assert regression.final_loss == pytest.approx(0.22306, rel=REGRESSION_RTOL)
    np.testing.assert_allclose(regression.eta[:3], [0.163, 0.171, 0.178], atol=1e-3)
    np.testing.assert_allclose(regression.eta[-3:], [0.0200, 0.0197, 0.0194], atol=1e-4)


def test_exact_transcription_equals_replay(regression) -> None:
    assert regression.exact
    assert abs(regression.replay_gap) <= EXACT_GAP
    assert regression.final_loss == pytest.approx(final_loss(regression.spec, regression.eta), rel=1e-14)
    assert regression.loss.shape == (501,)
    assert np.all((regression.eta >= 0) & (regression.eta <= 2.0))


def test_solution_is_a_local_minimum_of_the_replay(regression) -> None:
    """Perturbing the schedule in any of a few directions never lowers the *replayed* loss."""
    rng = np.random.default_rng(0)
    base = regression.final_loss
    for _ in range(5):
        direction = rng.standard_normal(regression.spec.T)
        for eps in (1e-3, -1e-3):
            eta = np.clip(regression.eta * (1 + eps * direction), 0.0, 2.0)
            assert final_loss(regression.spec, eta) >= base * (1 - 1e-9)


@pytest.mark.parametrize("b", [2.0, 5.0])
def test_reference_cases_beat_every_tuned_baseline(b: float) -> None:
    spec = ProblemSpec(a=3.5, b=b, N=1000, sigma=0.5, batch_size=5, T=1000, eta_max=1.0)
    result = solve(spec, SolverOptions(grid="uniform", K=100))
    assert result.success, result.message
    assert not result.exact
    assert abs(result.replay_gap) <= APPROX_GAP
    assert result.final_loss == pytest.approx(final_loss(spec, expand(result.eta_blocks, result.grid)))
    baselines = tune_baselines(spec)
    for name, bl in baselines.items():
        assert result.final_loss < bl.final_loss, name


def test_long_horizon_refined_grid() -> None:
    spec = ProblemSpec(a=3.5, b=5.0, N=300, sigma=0.5, batch_size=5, T=100_000)
    result = solve(spec, SolverOptions(grid="refined", K=60))
    assert result.success, result.message
    assert abs(result.replay_gap) <= APPROX_GAP
    assert result.eta.shape == (100_000,)
    # hard phase: the schedule sits at eta_max for most of training, then anneals
    assert np.median(result.eta) == pytest.approx(1.0, rel=1e-3)
    assert result.eta[-1] < 0.5


def test_warm_start_from_another_horizon() -> None:
    spec = ProblemSpec(a=3.5, b=2.0, N=200, sigma=0.5, batch_size=5, T=400)
    first = solve(spec, SolverOptions(grid="uniform", K=40))
    u = np.arange(first.spec.T) / first.spec.T

    def init(v: np.ndarray) -> np.ndarray:
        return np.interp(v, u, first.eta)

    second = solve(ProblemSpec(a=3.5, b=2.0, N=200, sigma=0.5, batch_size=5, T=800),
                   SolverOptions(grid="uniform", K=40), init=init)
    assert second.success
    assert second.final_loss < first.final_loss


def _warm_case() -> tuple[ProblemSpec, SolverOptions, Any]:
    """A sweep's second horizon: T = 3000 started from the T = 1000 optimum in t/T."""
    options = SolverOptions(grid="refined", K=40, polish=False, tol=1e-8)
    first = solve(ProblemSpec(a=3.5, b=2.0, N=200, sigma=0.5, batch_size=5, T=1000), options)
    u = np.arange(first.spec.T) / first.spec.T

    def init(v: np.ndarray) -> np.ndarray:
        return np.interp(v, u, first.eta)

    return ProblemSpec(a=3.5, b=2.0, N=200, sigma=0.5, batch_size=5, T=3000), options, init


def test_a_warm_solve_reaches_the_cold_optimum_in_fewer_iterations() -> None:
    spec, options, init = _warm_case()
    cold = solve(spec, options, init=init)
    warm = solve(spec, options, init=init, warm=True)
    assert warm.success and warm.transcription["warm"] == "warm"
    assert "warm" not in cold.transcription
    assert warm.iterations < cold.iterations
    # both are exact replays of their schedules; the warm one is no worse than the cold one
    assert warm.final_loss <= cold.final_loss * (1 + 1e-7)
    assert warm.final_loss == pytest.approx(final_loss(spec, warm.eta), rel=REPLAY_BACKEND_RTOL)


def test_a_warm_solve_that_does_not_converge_is_followed_by_the_cold_solve(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import optctl.solver.solve as solve_module

    spec, options, init = _warm_case()
    cold = solve(spec, options, init=init)
    real = solve_module._warm_rounds

    def failing(*args: Any, **kwargs: Any) -> Any:
        run = real(*args, **kwargs)
        run.stats = {**run.stats, "success": False, "return_status": "Maximum_Iterations_Exceeded"}
        return run

    monkeypatch.setattr(solve_module, "_warm_rounds", failing)
    guarded = solve(spec, options, init=init, warm=True)
    assert guarded.transcription["warm"].startswith("warm, then cold")
    assert guarded.iterations > cold.iterations  # the warm run's and the cold run's
    assert guarded.final_loss <= cold.final_loss * (1 + 1e-7)


def test_ill_conditioned_solve_is_no_worse_than_the_best_constant() -> None:
    """Finite-N regime (b = 1, η_max T λ_N = 100): IPOPT stops on max_iter far from
    convergence, and its last iterate used to be 15 times worse than its start. The
    solver keeps the better point, so it still beats the best constant schedule,
    found here by a bounded search on the exact replay."""
    from scipy.optimize import minimize_scalar

    spec = ProblemSpec(a=4.55, b=1.0, N=1000, sigma=0.5, batch_size=5, T=100_000)
    r = solve(spec, SolverOptions(grid="refined", K=100, polish=False, tol=1e-8, max_iter=200))
    best = minimize_scalar(lambda lg: np.log(final_loss(spec, np.full(spec.T, 10.0**lg))),
                           bounds=(-5.0, 0.0), method="bounded", options={"xatol": 1e-3})
    assert r.final_loss <= np.exp(best.fun)
    assert r.objective <= r.transcription["initial_objective"]


def test_a_prefix_solve_keeps_the_optimal_tail() -> None:
    """Bellman's principle on the exact per-step transcription: given the first t updates
    of the optimum, the best remainder is the optimum's own tail."""
    spec = ProblemSpec(a=2.5, b=1.5, N=100, sigma=0.5, batch_size=4, T=300)
    full = solve(spec, SolverOptions(grid="per_step"))
    for t in (50, 250):
        rest = solve(spec, SolverOptions(grid="per_step"), prefix=full.eta[:t])
        assert rest.eta.shape == (spec.T,) and rest.transcription["prefix_steps"] == t
        np.testing.assert_array_equal(rest.eta[:t], full.eta[:t])
        np.testing.assert_allclose(rest.eta[t:], full.eta[t:], atol=PREFIX_TAIL_ATOL)
        assert rest.final_loss == pytest.approx(final_loss(spec, rest.eta), rel=REPLAY_BACKEND_RTOL)
        assert abs(rest.replay_gap) <= EXACT_GAP


def test_a_prefix_solve_recovers_from_a_bad_start() -> None:
    """After a constant first half, re-solving the rest beats keeping the old optimum's tail."""
    spec = ProblemSpec(a=1.5, b=2.5, N=200, sigma=0.5, batch_size=4, T=4000)
    full = solve(spec)
    done = np.full(2000, 0.3)
    rest = solve(spec, prefix=done)
    assert rest.final_loss < final_loss(spec, np.concatenate([done, full.eta[2000:]]))
    assert abs(rest.replay_gap) <= APPROX_GAP
    with pytest.raises(SpecError, match="prefix"):
        solve(spec, prefix=np.full(spec.T, 0.1))


def test_a_round_that_ends_above_its_start_is_discarded_and_reported() -> None:
    """IPOPT may stop on its round cap at a worse point than it started from: the start
    is kept, and the result must not claim success nor advise raising max_iter."""
    from types import SimpleNamespace

    from optctl.solver.ipopt import message, run_rounds

    class Worse:
        """A one-variable problem f(x) = x² whose 'IPOPT' always walks uphill."""

        def __init__(self) -> None:
            self.last: dict[str, object] = {}

        def __call__(self, x0, p, lbx, ubx):
            self.last = {"return_status": "Maximum_Iterations_Exceeded", "success": False,
                         "iter_count": 200}
            return {"x": np.asarray(x0) + 1.0}

        def stats(self):
            return self.last

    prob = SimpleNamespace(solver=Worse(), monitor=SimpleNamespace(interrupted=False),
                           p=lambda scale, corr=None: scale,
                           f=lambda y, p: [float(np.sum((y * p) ** 2))])
    start = np.array([0.5])
    run = run_rounds(prob, start, np.ones(1), np.zeros(1), (np.zeros(1), np.full(1, 10.0)),
                     np.zeros(1), SolverOptions(), {})
    assert run.discarded and run.rounds == 1 and run.iterations == 200
    np.testing.assert_array_equal(run.u, start)
    text = message(str(run.stats["return_status"]), run.discarded, run.capped)
    assert "discarded" in text and "raise solver.max_iter" not in text
    # The same round cut short by a max_iter below round_iter: there more iterations
    # might help, and the message must say so.
    capped = run_rounds(prob, start, np.ones(1), np.zeros(1), (np.zeros(1), np.full(1, 10.0)),
                        np.zeros(1), SolverOptions(max_iter=20), {})
    assert capped.discarded and capped.capped
    text = message(str(capped.stats["return_status"]), capped.discarded, capped.capped)
    assert "raise solver.max_iter" in text and "does not help" not in text


def test_polish_reaches_the_exact_transcription_optimum_from_a_warm_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """The block propagator's optimum, polished, against the exact per-step transcription on
    the same grid (the per-step recursion itself, ``propagator: step``, all modes): the same
    replayed loss, where the unpolished one is ~4e-8 above. A polish round starts warm from
    the run's bound multipliers, so it takes fewer iterations than the run (a cold restart
    took more: 25 against 20)."""
    import optctl.solver.ipopt as ipopt_module

    spec = ProblemSpec(a=3.5, b=5.0, N=100, sigma=0.5, batch_size=5, T=200, eta_max=1.0)
    exact = solve(spec, SolverOptions(grid="uniform", K=20, propagator="step", modes="exact"))
    polished = solve(spec, SolverOptions(grid="uniform", K=20))
    plain = solve(spec, SolverOptions(grid="uniform", K=20, polish=False))
    assert exact.exact and not polished.exact and exact.success and polished.success
    assert polished.transcription["polish_rounds"] >= 1
    assert plain.final_loss > exact.final_loss * (1 + 1e-8)
    assert polished.final_loss == pytest.approx(exact.final_loss, rel=1e-10)
    monkeypatch.setattr(ipopt_module, "POLISH_ROUNDS", 1)
    one = solve(spec, SolverOptions(grid="uniform", K=20))
    assert one.transcription["polish_rounds"] == 1
    assert one.iterations - plain.iterations < 0.75 * plain.iterations
