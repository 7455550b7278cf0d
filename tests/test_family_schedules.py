"""Solved family schedules (optctl.solver.family, docs/momentum_families.md §7).

The solved schedules are checked by the family's own exact replay, not by the solver:
the transcribed objective equals the replayed loss, the answer is no worse than its start,
and no random perturbation of the solved block values lowers the replayed loss (a local
optimum of the exact problem). With ``eta_max`` the effective step stays below the bound.
"""

from __future__ import annotations

import numpy as np
import pytest

from optctl.errors import SpecError
from optctl.model import families as F
from optctl.solver.controls import DanaSchedule, ScheduleFreeLR
from optctl.solver.family import optimizer_of, solve_family
from optctl.solver.piecewise import expand
from optctl.spec import ProblemSpec, SolverOptions

SPEC = ProblemSpec(a=1.6, b=1.4, N=24, sigma=0.5, batch_size=4, T=80)
OPTIONS = SolverOptions(K=10, modes="exact")


def _perturbed_never_better(res, cs, rng: np.random.Generator) -> None:
    grid = res.grid
    blocks = {k: v[grid[:-1]] for k, v in res.schedules.items()}
    for _ in range(12):
        trial = {k: expand(np.maximum(v * (1 + 0.02 * rng.standard_normal(v.size)), 0.0), grid)
                 for k, v in blocks.items()}
        loss = float(F.family_loss(SPEC, optimizer_of(cs, SPEC.T, trial)))
        assert loss >= res.final_loss * (1 - 1e-9)


def test_schedule_free_gamma_solve_replays_and_is_locally_optimal() -> None:
    cs = ScheduleFreeLR(0.8)
    start = float(F.family_loss(SPEC, F.schedule_free(SPEC.T, 1.0, 0.8)))
    res = solve_family(SPEC, cs, [(np.full(SPEC.T, 1.0),)], OPTIONS)
    assert res.success, res.message
    assert abs(res.replay_gap) < 1e-9          # all modes, per step: the transcription is exact
    assert res.final_loss < start
    _perturbed_never_better(res, cs, np.random.default_rng(0))


def test_dana_schedule_solve_replays_and_is_locally_optimal() -> None:
    cs = DanaSchedule(4 + SPEC.a / SPEC.b)
    tuned = F.dana(SPEC, SPEC.T, 0.3, 0.1)
    g2, g3 = (np.broadcast_to(tuned.params[k], (SPEC.T,)).copy() for k in ("_g2", "_g3"))
    res = solve_family(SPEC, cs, [(g2, g3)], OPTIONS)
    assert res.success, res.message
    assert abs(res.replay_gap) < 1e-9
    assert res.final_loss < float(F.family_loss(SPEC, tuned))
    _perturbed_never_better(res, cs, np.random.default_rng(1))


def test_bounded_dana_keeps_its_effective_step() -> None:
    cs = DanaSchedule(4 + SPEC.a / SPEC.b, eta_max=0.5)
    start = (np.full(SPEC.T, 0.2), np.full(SPEC.T, 0.01))
    res = solve_family(SPEC, cs, [start], OPTIONS)
    free = solve_family(SPEC, DanaSchedule(4 + SPEC.a / SPEC.b), [start], OPTIONS)
    assert np.max(F.effective_step(res.optimizer)) <= 0.5 * (1 + 1e-6)
    assert np.max(F.effective_step(free.optimizer)) > 0.5      # the bound binds
    assert res.final_loss > free.final_loss


def test_bad_family_arguments_are_named() -> None:
    with pytest.raises(SpecError, match="beta"):
        ScheduleFreeLR(1.5)
    with pytest.raises(SpecError, match="eta_max"):
        DanaSchedule(4.0, eta_max=-1.0)
    with pytest.raises(SpecError, match="init"):
        solve_family(SPEC, ScheduleFreeLR(0.5), [], OPTIONS)


@pytest.mark.parametrize("family", ["dana-decaying", "schedule-free"])
def test_tuning_under_a_step_bound(family: str) -> None:
    """``eta_max`` keeps the tuned family's effective step below the bound at every update."""
    from optctl.baselines.momentum_tune import build, tune_family

    free = tune_family(SPEC, family, SPEC.T)
    bounded = tune_family(SPEC, family, SPEC.T, eta_max=0.3)
    steps = F.effective_step(build(SPEC, family, SPEC.T, np.asarray(bounded.coords)))
    assert np.max(steps) <= 0.3 * (1 + 1e-9)
    assert np.max(F.effective_step(build(SPEC, family, SPEC.T, np.asarray(free.coords)))) > 0.3
    assert bounded.loss >= free.loss


def test_effective_step_of_each_family() -> None:
    """The definitions of docs/momentum_families.md §7, on hand-computed coefficients."""
    sf = F.schedule_free(5, np.array([0.1, 0.2, 0.3, 0.4, 0.5]), 0.9)
    np.testing.assert_allclose(F.effective_step(sf), [0.1, 0.2, 0.3, 0.4, 0.5])
    gm = F.generalized_momentum(3, 1.0, 0.2, 0.05, np.array([1.0, 0.5, 0.25]))
    np.testing.assert_allclose(F.effective_step(gm), [0.25, 0.3, 0.4])
    ema = F.generalized_momentum(3, 0.1, 0.0, 0.7, 0.1)   # MODEL.md §3 with β = 0.1, η = 0.7
    np.testing.assert_allclose(F.effective_step(ema), [0.7, 0.7, 0.7])


def test_dana_first_update_depends_on_the_sum_and_is_pinned() -> None:
    """At t = 0 the velocity is the fresh gradient, so only γ₂ + γ₃ of block 0 matters: moving
    γ₃ into γ₂ there leaves the exact L_T unchanged (moving it in block 1 does not), and the
    solve's bounds hold block 0's γ₃ at 0 with γ₂'s box doubled."""
    from optctl.solver.controls import FAMILY_BOX
    from optctl.solver.family import family_plan

    cs = DanaSchedule(4 + SPEC.a / SPEC.b)
    plan = family_plan(SPEC, OPTIONS)
    K = plan.n_controls
    rng = np.random.default_rng(5)
    u = np.concatenate([rng.uniform(0.1, 0.4, K), rng.uniform(0.01, 0.1, K)])

    def loss(v: np.ndarray) -> float:
        sched = {"gamma2": expand(v[:K], plan.grid), "gamma3": expand(v[K:], plan.grid)}
        return float(F.family_loss(SPEC, optimizer_of(cs, SPEC.T, sched)))

    can = cs.canonical(plan, u)
    assert can[K] == 0.0 and can[0] == pytest.approx(u[0] + u[K])
    assert loss(can) == pytest.approx(loss(u), rel=1e-13)
    moved = u.copy()
    moved[1] += moved[K + 1]
    moved[K + 1] = 0.0
    assert abs(loss(moved) / loss(u) - 1) > 1e-6  # block 1 is not degenerate: the check has power
    lo, hi = cs.plan_bounds(SPEC, plan)
    assert hi[K] == 0.0 and hi[0] == 2 * FAMILY_BOX and np.all(hi[K + 1:] == FAMILY_BOX)


def test_dana_two_starts_agree_on_a_small_model() -> None:
    """The tuned-constant and tuned-decaying starts end at the same replayed L_T."""
    cs = DanaSchedule(4 + SPEC.a / SPEC.b)
    starts = [tuple(np.broadcast_to(o.params[k], (SPEC.T,)).copy() for k in ("_g2", "_g3"))
              for o in (F.dana(SPEC, SPEC.T, 0.3, 0.1), F.dana(SPEC, SPEC.T, 0.3, 0.02, decaying=False))]
    a, b = (solve_family(SPEC, cs, [s], OPTIONS) for s in starts)
    assert a.success and b.success
    assert a.final_loss == pytest.approx(b.final_loss, rel=1e-6)


def test_failed_attempts_try_the_next_start_and_keep_the_lowest() -> None:
    cs = ScheduleFreeLR(0.8)
    starts = [(np.full(SPEC.T, 1.0),), (np.full(SPEC.T, 0.5),)]
    res = solve_family(SPEC, cs, starts, SolverOptions(K=10, modes="exact", max_iter=2), attempts=2)
    tried = res.info["attempts"]
    assert len(tried) == 2 and not any(t["success"] for t in tried)
    assert res.final_loss == min(t["loss"] for t in tried) and not res.success
    ok = solve_family(SPEC, cs, starts, OPTIONS, attempts=2)
    assert ok.success and len(ok.info["attempts"]) == 1  # the first start succeeded: no second attempt


def test_schedule_free_bound_check_tells_an_active_bound_from_an_inactive_one() -> None:
    """γ ≡ eta_max is a KKT point when the optimum's steps exceed the bound (every one-sided
    derivative ≤ 0); with a bound far above the unbounded optimum's steps it is not."""
    from optctl.solver.family import family_plan
    from optctl.studies.family_schedules import bound_check

    grid = family_plan(SPEC, OPTIONS).grid
    free = solve_family(SPEC, ScheduleFreeLR(0.8), [(np.full(SPEC.T, 1.0),)], OPTIONS)
    top = float(np.max(free.schedules["lr"]))
    low = bound_check(SPEC, 0.8, 0.2 * float(np.min(free.schedules["lr"][:-1])), grid)
    high = bound_check(SPEC, 0.8, 3.0 * top, grid)
    assert low["kkt"] and low["max_derivative"] < 0
    assert not high["kkt"] and high["max_derivative"] > 0


def test_scheduled_study_records_a_second_start_and_keeps_the_lower(tmp_path) -> None:
    from optctl.io.files import read_json, write_json
    from optctl.studies.family_schedules import run_schedules, scheduled_section, sgd_same_grid

    model = {"a": SPEC.a, "b": SPEC.b, "N": SPEC.N, "sigma": SPEC.sigma, "batch_size": SPEC.batch_size}
    cfg = {"models": {"tiny": model}, "sgd": {"eta_max": 1.0}}
    losses = {}
    for fam, opt in (("dana-decaying", F.dana(SPEC, SPEC.T, 0.2, 0.1)),
                     ("dana-constant", F.dana(SPEC, SPEC.T, 0.1, 0.02, decaying=False)),
                     ("schedule-free", F.schedule_free(SPEC.T, 0.5, 0.9))):
        losses[fam] = {"loss": float(F.family_loss(SPEC, opt)),
                       "params": {k: float(v) for k, v in opt.params.items() if not k.startswith("_") and
                                  np.ndim(v) == 0}}
    write_json(tmp_path / "tiny.json", {"rows": [{"T": SPEC.T, "sgd": {"loss": 1.0}, **losses}]})
    rec = run_schedules(tmp_path, cfg, "tiny", [SPEC.T], K=10, progress=lambda s: None,
                        bounds=("unbounded",), second_start_T=(SPEC.T,))
    # DANA starts from the tuned decaying and constant schedules: two starts; Schedule-Free has one
    assert rec["rows"][0]["schedule-free_solved_unbounded"]["second_start"] is None
    for key in ("dana_solved_unbounded",):
        v = rec["rows"][0][key]
        other = v["second_start"]
        assert other["start"] != v["start"]
        assert v["loss"] <= other["loss"]
        assert v["starts_relative_difference"] == pytest.approx((other["loss"] - v["loss"]) / v["loss"])
    assert read_json(tmp_path / "tiny_scheduled.json")["rows"][0]["T"] == SPEC.T
    text = "\n".join(scheduled_section(tmp_path, "tiny"))
    assert f"| 80 | dana_solved_unbounded | step (80) | {SPEC.N} |" in text
    assert rec["rows"][0]["dana_solved_unbounded"]["n_modes"] == SPEC.N
    sgd_same_grid(tmp_path, cfg, "tiny", progress=lambda s: None)  # the table's like-for-like column
    same = read_json(tmp_path / "tiny_scheduled.json")["rows"][0]["sgd_same_grid"]["loss"]
    assert f"| {SPEC.T} | 1 | {same:.5g} ({100 * (same - 1):+.1f}%) |" in "\n".join(scheduled_section(tmp_path, "tiny"))


def test_sgd_on_the_families_blocks_is_a_restriction_of_the_per_step_optimum(tmp_path) -> None:
    """The like-for-like reference: optimal SGD on the families' K refined blocks is never below
    optimal SGD per step (a restriction of it), and is what the scheduled table prints."""
    from optctl import solve
    from optctl.io.files import read_json, write_json
    from optctl.model.replay import replay
    from optctl.studies.family_schedules import sgd_same_grid

    model = {"a": SPEC.a, "b": SPEC.b, "N": SPEC.N, "sigma": SPEC.sigma, "batch_size": SPEC.batch_size}
    per_step = solve(SPEC)
    write_json(tmp_path / "tiny.json", {"rows": [{"T": SPEC.T, "sgd": {"loss": per_step.final_loss}}]})
    write_json(tmp_path / "tiny_scheduled.json", {"model": model, "eta_max": 1.0, "K": 6,
                                                  "rows": [{"T": SPEC.T, "sgd_loss": per_step.final_loss}]})
    sgd_same_grid(tmp_path, {"models": {"tiny": model}}, "tiny", progress=lambda s: None)
    same = read_json(tmp_path / "tiny_scheduled.json")["rows"][0]["sgd_same_grid"]
    assert same["status"] == "Solve_Succeeded" and same["K"] == 6
    assert same["loss"] > per_step.final_loss * (1 + 1e-6)  # 6 blocks cost something at T = 80
    coarse = solve(SPEC, SolverOptions(grid="refined", K=6))
    assert float(replay(SPEC, coarse.eta).loss[-1]) == pytest.approx(same["loss"], rel=1e-9)


def test_scheduled_verdict_compares_with_sgd_on_both_grids() -> None:
    from optctl.studies.family_schedules import COLUMNS, _slopes, _verdict

    Ts = [1000, 10000]
    cols = {"sgd": [1.0, 0.5], "sgd_grid": [1.02, 0.52], **{c[0]: [float("nan")] * 2 for c in COLUMNS}}
    cols["DANA solved (γ₂, γ₃)(t)"] = [0.9, 0.4]
    sl = {k: _slopes(Ts, v) for k, v in cols.items()}
    text = _verdict(Ts, cols, sl, 48)
    assert "at T = 10000" in text and "DANA solved (γ₂, γ₃)(t): -20.0%, -23.1% against SGD on its 48 blocks" in text
    assert "slope 0.352 (a larger slope)" in text and "Schedule-Free" not in text
    # a column missing the horizon before the last: its slope over the span it has, against SGD's there
    Ts3 = [1000, 3162, 10000]
    cols3 = {"sgd": [1.0, 0.7, 0.5], "sgd_grid": [1.0, 0.7, 0.5], **{c[0]: [float("nan")] * 3 for c in COLUMNS}}
    cols3["Schedule-Free solved γ(t)"] = [0.9, float("nan"), 0.4]
    text3 = _verdict(Ts3, cols3, {k: _slopes(Ts3, v) for k, v in cols3.items()}, 48)
    assert "slope 0.352 over 1000→10000 (SGD's 0.301) (a larger slope)" in text3


def test_dana_solve_with_a_long_quasi_newton_memory_converges_where_30_pairs_crawl() -> None:
    """A hard-phase model on which the DANA solve with IPOPT's 30-pair limited-memory Hessian
    (the earlier formulation) needs 334 iterations (measured) converges in at most 150 with
    3 pairs per decision variable (DanaSchedule.solve_ipopt), to the same exact L_T (the
    per-step transcription on all modes is exact: replay gaps ~1e-16; docs/momentum_families.md §7)."""
    spec = ProblemSpec(a=1.3, b=2.75, N=40, sigma=0.5, batch_size=4, T=200)
    cs = DanaSchedule(4 + spec.a / spec.b)
    tuned = F.dana(spec, spec.T, 0.3, 0.02, decaying=False)
    start = tuple(np.broadcast_to(tuned.params[k], (spec.T,)).copy() for k in ("_g2", "_g3"))
    new = solve_family(spec, cs, [start], SolverOptions(K=16, modes="exact"))
    old = solve_family(spec, cs, [start], SolverOptions(K=16, modes="exact", ipopt={"limited_memory_max_history": 30}))
    assert new.info["lbfgs_history"] == 96 and old.info["lbfgs_history"] == 30
    assert new.success and old.success, (new.message, old.message)
    assert new.iterations <= 150 < old.iterations       # the old formulation fails the bound
    assert abs(new.replay_gap) < 1e-12 and abs(old.replay_gap) < 1e-12
    assert new.final_loss == pytest.approx(old.final_loss, rel=1e-9)
    assert new.final_loss < float(F.family_loss(spec, tuned))
