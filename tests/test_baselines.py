"""Tuned baselines on a small easy-phase model: optimality, exact reporting, nesting."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    BASELINE_LOCAL_MIN_RTOL,
    BASELINE_NESTED_RTOL,
    BASELINE_PERTURBATION,
    BASELINE_REPLAY_RTOL,
)

from optctl.baselines.families import BASELINE_NAMES
from optctl.baselines.tune import Baseline, tune_baselines
from optctl.errors import SpecError, SpecTypeError
from optctl.model.replay import final_loss
from optctl.spec import ProblemSpec

SMALL = ProblemSpec(a=2.5, b=1.5, N=200, sigma=0.5, batch_size=4, T=300, eta_max=1.0)


@pytest.fixture(scope="module")
def tuned() -> dict[str, Baseline]:
    return tune_baselines(SMALL)


def test_returns_every_family_in_order(tuned: dict[str, Baseline]) -> None:
    assert tuple(tuned) == BASELINE_NAMES
    for name, b in tuned.items():
        assert b.name == name
        assert b.eta.shape == (SMALL.T,)
        assert np.all(b.eta >= 0) and np.all(b.eta <= SMALL.eta_max)
        assert 0 < b.n_evals <= 250
        assert all(isinstance(v, float) for v in b.params.values())


def test_reported_loss_is_exact_replay(tuned: dict[str, Baseline]) -> None:
    for b in tuned.values():
        assert b.final_loss == pytest.approx(final_loss(SMALL, b.eta), rel=BASELINE_REPLAY_RTOL)


def test_constant_is_local_minimum(tuned: dict[str, Baseline]) -> None:
    eta = tuned["constant"].params["value"]
    best = tuned["constant"].final_loss
    for factor in (1 - BASELINE_PERTURBATION, 1 + BASELINE_PERTURBATION):
        other = min(eta * factor, SMALL.eta_max)
        assert final_loss(SMALL, other) >= best * (1 - BASELINE_LOCAL_MIN_RTOL)


def test_power_law_contains_constant(tuned: dict[str, Baseline]) -> None:
    bound = tuned["constant"].final_loss * (1 + BASELINE_NESTED_RTOL)
    assert tuned["power_law"].final_loss <= bound


def test_wsd_contains_linear_decay(tuned: dict[str, Baseline]) -> None:
    assert tuned["wsd"].final_loss <= tuned["linear_decay"].final_loss * (1 + BASELINE_NESTED_RTOL)


def test_decays_beat_constant_in_easy_phase(tuned: dict[str, Baseline]) -> None:
    assert SMALL.phase == "easy"
    for name in ("linear_decay", "cosine", "wsd"):
        assert tuned[name].final_loss < tuned["constant"].final_loss, name


def test_params_rebuild_the_schedule(tuned: dict[str, Baseline]) -> None:
    T = SMALL.T
    c = tuned["constant"]
    np.testing.assert_array_equal(c.eta, np.full(T, c.params["value"]))
    w = tuned["wsd"].params
    assert w["decay_steps"] + w["stable_steps"] == T
    assert w["decay_fraction"] == pytest.approx(w["decay_steps"] / T)
    assert 0 < w["decay_fraction"] <= 1
    assert 0 <= tuned["power_law"].params["exponent"] <= 1.5


def test_custom_evaluator_is_used_but_loss_is_exact() -> None:
    calls = []

    def scaled(eta: np.ndarray) -> float:
        calls.append(eta.copy())
        return 3.0 * final_loss(SMALL, eta)  # same minimiser, different values

    out = tune_baselines(SMALL, names=("constant",), evaluate=scaled)
    b = out["constant"]
    assert b.n_evals == len(calls)
    assert b.final_loss == pytest.approx(final_loss(SMALL, b.eta), rel=BASELINE_REPLAY_RTOL)


def test_rate_bound_is_respected() -> None:
    """With a tiny η_max every family presses against the bound and stays inside it."""
    spec = ProblemSpec(a=2.5, b=1.5, N=200, sigma=0.5, batch_size=4, T=300, eta_max=0.02)
    out = tune_baselines(spec, names=("constant", "linear_decay"))
    assert out["constant"].params["value"] == spec.eta_max
    for b in out.values():
        assert np.all(b.eta <= spec.eta_max) and np.all(b.eta >= 0)


def test_non_finite_evaluations_are_avoided() -> None:
    def diverging_above_half(eta: np.ndarray) -> float:
        return float("nan") if eta.max() > 0.5 else final_loss(SMALL, eta)

    b = tune_baselines(SMALL, names=("constant",), evaluate=diverging_above_half)["constant"]
    assert b.params["value"] <= 0.5 and np.isfinite(b.final_loss)


def test_unknown_name() -> None:
    with pytest.raises(SpecError) as info:
        tune_baselines(SMALL, names=("constant", "adam"))
    assert info.value.field == "names"
    for name in BASELINE_NAMES:
        assert name in str(info.value)


def test_bad_arguments() -> None:
    with pytest.raises(SpecTypeError):
        tune_baselines(SMALL, names="constant")  # a bare string is not a list of names
    with pytest.raises(SpecTypeError):
        tune_baselines(SMALL, evaluate=1.0)  # type: ignore[arg-type]
    with pytest.raises(SpecTypeError):
        tune_baselines({"a": 2.5}, names=("constant",))  # type: ignore[arg-type]
