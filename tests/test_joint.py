"""Learning rate and batch size as joint controls (MODEL.md §4.2)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import BUDGET_RTOL, EXACT_GAP, JOINT_NOT_WORSE_RTOL

from optctl import solve
from optctl.errors import SpecError
from optctl.model.replay import final_loss
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions

SPEC = ProblemSpec(a=2.3, b=1.75, N=80, sigma=0.5, batch_size=4, T=60)
CONTROLS = ControlSpec(controls=("lr", "batch_size"), m_min=1, m_max=32)


@pytest.fixture(scope="module")
def result():  # type: ignore[no-untyped-def]
    return solve(SPEC, SolverOptions(grid="uniform", K=15, propagator="step", max_iter=400), controls=CONTROLS)


def test_budget_bounds_and_replay(result) -> None:  # type: ignore[no-untyped-def]
    r = result
    assert abs(r.batch_size.sum() - SPEC.T * SPEC.batch_size) <= BUDGET_RTOL * SPEC.T * SPEC.batch_size
    assert np.all(r.batch_size >= 1 - 1e-9) and np.all(r.batch_size <= 32 + 1e-9)
    assert abs(r.replay_gap) <= EXACT_GAP
    assert r.final_loss == pytest.approx(final_loss(SPEC, r.eta, r.batch_size), rel=1e-12)
    assert r.final_loss <= r.transcription["sgd_final_loss"] * (1 + JOINT_NOT_WORSE_RTOL)
    assert r.beta is None and r.controls == CONTROLS


def test_batch_grows_towards_the_end(result) -> None:  # type: ignore[no-untyped-def]
    # As η anneals, a larger batch costs little per sample: the optimum ramps the batch up.
    m = result.batch_size
    assert m[-1] > m[0]


def test_refined_grid_uses_the_exact_recursion() -> None:
    spec = ProblemSpec(a=1.3, b=2.75, N=80, sigma=0.7, batch_size=4, T=300)
    r = solve(spec, SolverOptions(grid="refined", K=12, max_iter=300),
              controls=ControlSpec(controls=("lr", "batch_size"), m_min=1, m_max=64))
    assert r.transcription["propagator"] == "step" and r.exact
    assert abs(r.replay_gap) <= EXACT_GAP
    assert abs(r.batch_size.sum() - spec.T * spec.batch_size) <= BUDGET_RTOL * spec.T * spec.batch_size
    assert r.final_loss <= r.transcription["sgd_final_loss"] * (1 + JOINT_NOT_WORSE_RTOL)


def test_mean_batch_must_fit_bounds() -> None:
    with pytest.raises(SpecError) as err:
        solve(SPEC, controls=ControlSpec(controls=("lr", "batch_size"), m_min=8, m_max=16))
    assert err.value.field == "training.batch_size"
