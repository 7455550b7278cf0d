"""Horizon continuation (optctl.solver.continuation) and the study's second start."""

from __future__ import annotations

import numpy as np
import pytest

from optctl.errors import SpecError
from optctl.model.momentum import momentum_curve
from optctl.model.spectrum import spectrum
from optctl.solver.continuation import ladder, solve_continuation
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions

SPEC = ProblemSpec(a=1.3, b=2.75, N=40, sigma=0.7, batch_size=4, T=160)
CS = ControlSpec(controls=("lr", "momentum"))


def test_ladder() -> None:
    assert ladder(100_000) == (4096, 16384, 65536, 100_000)
    assert ladder(65536) == (4096, 16384, 65536)
    assert ladder(1000) == (1000,)
    assert ladder(1000, start=10, factor=10) == (10, 100, 1000)
    with pytest.raises(SpecError, match="factor"):
        ladder(100, factor=1.0)


@pytest.mark.slow
def test_continuation_answer_is_its_replay_and_no_worse_than_its_first_rung_rescaled() -> None:
    """Each rung starts where the previous ended (in t/T); the answer is the exact recursion's."""
    opts = SolverOptions(grid="uniform", K=16, max_iter=400)
    c = solve_continuation(SPEC, opts, controls=CS, rungs=(40, 80, 160))
    assert [r["T"] for r in c.rungs] == [40, 80, 160] and c.ladder == (40, 80, 160)
    res = c.result
    assert res.success and res.beta is not None and res.eta.size == 160
    exact = momentum_curve(SPEC, res.eta, res.beta)[-1] + spectrum(SPEC).tail
    assert res.final_loss == pytest.approx(exact, rel=1e-12)
    with pytest.raises(SpecError, match="increasing horizons ending at T = 160"):
        solve_continuation(SPEC, opts, controls=CS, rungs=(80, 40, 160))
    with pytest.raises(SpecError, match="ending at"):
        solve_continuation(SPEC, opts, controls=CS, rungs=(40, 80))


@pytest.mark.slow
def test_study_point_with_a_second_start_keeps_the_lower_and_reports_the_spread() -> None:
    import dataclasses

    from optctl.io.studyconfig import load_control_study
    from optctl.studies.momentum import solve_point

    study = dataclasses.replace(load_control_study(), models={"hard": {"a": 1.3, "b": 2.75, "N": 40,
                                                                     "sigma": 0.7, "batch_size": 4}},
                                solver=SolverOptions(grid="uniform", K=12, max_iter=300))
    first = solve_point(study, "hard", 48, eta_max=1.0, beta_min=0.0)
    assert first["starts_spread"] is None and len(first["momentum_starts"]) == 1
    rec = solve_point(study, "hard", 96, eta_max=1.0, beta_min=0.0, prev=first, second_start=True)
    starts = rec["momentum_starts"]
    assert [s["start"] for s in starts] == ["continuation", "default"]
    losses = [s["loss"] for s in starts]
    assert rec["momentum_loss"] == min(losses)
    assert rec["starts_spread"] == pytest.approx((max(losses) - min(losses)) / min(losses))
    spec = ProblemSpec(**rec["spec"])
    exact = momentum_curve(spec, np.asarray(rec["eta"]), np.asarray(rec["beta"]))[-1]
    assert rec["momentum_loss"] == pytest.approx(exact, rel=1e-9)
