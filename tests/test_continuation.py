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


def test_move_to_end_moves_the_anneal_and_keeps_the_start() -> None:
    from optctl.solver.continuation import anneal_block, move_to_end

    T = 200
    eta = np.where(np.arange(T) < 150, 1.0, np.linspace(1.0, 0.1, T))  # anneal over the last 50 updates
    beta = np.where(np.arange(T) < 150, 0.01, 0.8)
    beta[:3] = 1.0  # a start the move must keep
    e, b = move_to_end(eta, beta, 50, 50)
    assert np.allclose(e, eta) and np.allclose(b, beta)  # no move, same schedule
    e, b = move_to_end(eta, beta, 50, 30)  # the anneal moved 20 updates later
    assert np.all(e[:169] == 1.0) and np.all(e[171:] < 1.0) and np.all(b[172:] == 0.8)
    assert e[-1] == pytest.approx(eta[-1], abs=0.02) and np.all(b[:3] == 1.0)
    e, b = move_to_end(eta, beta, 50, 80)  # 30 updates earlier
    assert np.all(e[:119] == 1.0) and np.all(e[121:] < 1.0) and np.all(b[122:] == 0.8) and b[0] == 1.0
    with pytest.raises(SpecError, match="steps to the end"):
        move_to_end(eta, beta, 50, 200)
    assert anneal_block(np.array([1.0, 1.0, 0.5, 0.2]), 1.0) == 2
    assert anneal_block(np.array([0.5, 0.5, 0.2]), 1.0) is None
    assert anneal_block(np.array([1.0, 1.0, 1.0]), 1.0) is None


def test_smooth_plateau_fills_a_dip_and_keeps_monotone_runs_and_the_anneal() -> None:
    from optctl.solver.continuation import smooth_plateau

    grid = np.arange(13) * 10  # 12 blocks of 10 updates
    blocks = np.array([1.0, 0.3, 0.1, 0.03, 0.01, 1e-3, 1e-3, 2e-4, 8e-3, 7e-3, 0.5, 0.9])  # a dip at block 7
    beta = np.repeat(blocks, 10)
    out = smooth_plateau(np.ones(120), beta, grid, end=10)[grid[:-1]]
    assert np.allclose(out[:5], blocks[:5])  # the monotone start is kept
    assert 1e-3 <= out[7] <= 8e-3  # the dip is filled from its neighbours
    assert np.allclose(out[10:], blocks[10:])  # the anneal is not touched


def test_escape_walks_the_anneal_to_the_best_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """The search over the anneal's block, on a stand-in solver whose local optimum is the
    block where the start's anneal begins (loss lowest at block 14): from either side it
    walks block by block to 14, and stops after one move that does not help."""
    import types

    import optctl.solver.continuation as cont

    T, K = 200, 20
    grid = np.arange(K + 1) * (T // K)

    def fake_solve(spec: ProblemSpec, options: object = None, *, controls: object = None, init: object = None,
                   start_from: str = "best") -> types.SimpleNamespace:
        if init is None:
            j = 18 if spec.a > 1.3 else 10  # the default start's local optimum
        else:
            eta = np.asarray(init[0])  # type: ignore[index]
            j = int(np.rint(np.flatnonzero(eta < 0.999)[0] / (T // K)))
        eta_blocks = np.where(np.arange(K) < j, 1.0, 0.3)
        eta = np.repeat(eta_blocks, T // K)
        return types.SimpleNamespace(eta_blocks=eta_blocks, grid=grid, eta=eta, beta=np.full(T, 0.01),
                                     final_loss=1.0 + (j - 14) ** 2, status="Solve_Succeeded", success=True,
                                     iterations=10, replay_gap=0.0)

    monkeypatch.setattr(cont, "solve", fake_solve)
    esc = cont.solve_escape(ProblemSpec(a=1.3, b=2.75, N=40, sigma=0.7, batch_size=4, T=T), controls=CS)
    assert esc.result.final_loss == 1.0  # the last solve: the plateau β smoothed, which changes nothing here
    assert [s["anneal_start"] for s in esc.solves] == [100, 110, 120, 130, 140, 150, 140]
    assert esc.solves[-1]["start"] == "plateau β smoothed"
    esc = cont.solve_escape(ProblemSpec(a=1.4, b=2.75, N=40, sigma=0.7, batch_size=4, T=T), controls=CS)
    assert esc.result.final_loss == 1.0
    assert [s["anneal_start"] for s in esc.solves] == [180, 190, 170, 160, 150, 140, 130, 140]
    esc = cont.solve_escape(ProblemSpec(a=1.4, b=2.75, N=40, sigma=0.7, batch_size=4, T=T), controls=CS,
                            max_moves=2, smooth=False)
    assert [s["anneal_start"] for s in esc.solves] == [180, 190, 170] and esc.result.final_loss == 10.0
    with pytest.raises(SpecError, match="momentum"):
        cont.solve_escape(SPEC, controls=ControlSpec())


@pytest.mark.slow
def test_study_start_with_the_anneal_search_records_every_solve_and_keeps_the_lowest() -> None:
    import dataclasses

    from optctl.io.studyconfig import load_control_study
    from optctl.studies.momentum import solve_point

    study = dataclasses.replace(load_control_study(), models={"hard": {"a": 1.3, "b": 2.75, "N": 40,
                                                                     "sigma": 0.7, "batch_size": 4}},
                                solver=SolverOptions(grid="refined", K=16, max_iter=400))
    rec = solve_point(study, "hard", 200, eta_max=1.0, beta_min=0.0, escape=True)
    (start,) = rec["momentum_starts"]
    solves = start["escape"]
    assert len(solves) >= 2 and start["first_loss"] == solves[0]["loss"]
    assert start["loss"] == rec["momentum_loss"] <= start["first_loss"]
    assert start["loss"] <= min(s["loss"] for s in solves) * (1 + 1e-7)  # a move lower by less than rtol is not taken
    spec = ProblemSpec(**rec["spec"])
    exact = momentum_curve(spec, np.asarray(rec["eta"]), np.asarray(rec["beta"]))[-1]
    assert rec["momentum_loss"] == pytest.approx(exact, rel=1e-9)
