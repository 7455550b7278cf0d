"""EMA-momentum dynamics (MODEL.md §3): SGD limit, bias/variance split, Monte-Carlo, solver."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    EXACT_GAP,
    JOINT_NOT_WORSE_RTOL,
    MC_ABS_FLOOR,
    MC_SE_MULTIPLIER,
    MOMENTUM_SGD_RTOL,
)

from optctl import solve
from optctl.errors import SpecError
from optctl.model.momentum import momentum_curve, momentum_replay
from optctl.model.montecarlo import simulate_sgd
from optctl.model.replay import loss_curve, replay
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.studies.momentum import load_points, loss_curves

SPEC_HARD_SMALL = ProblemSpec(a=1.3, b=2.75, N=20, sigma=0.7, batch_size=4, T=8)

MC_SPEC = ProblemSpec(a=2.5, b=1.5, N=100, sigma=0.5, batch_size=4, T=120)
MC_ETA = 1.2 / (1.0 + np.arange(MC_SPEC.T) / 30.0)
MC_BETA = np.linspace(0.15, 0.9, MC_SPEC.T)
MC_CHECKPOINTS = np.array([0, 1, 3, 10, 30, 60, 90, MC_SPEC.T])


@pytest.mark.parametrize("spec", [
    ProblemSpec(a=2.3, b=1.75, N=300, sigma=0.5, batch_size=4, T=200),
    ProblemSpec(a=1.3, b=2.75, N=300, sigma=0.7, batch_size=1, T=150, tail=True),
    ProblemSpec(a=3.5, b=2.0, N=50, sigma=0.0, batch_size=2.5, T=80, normalize_init=True),
])
def test_beta_one_is_sgd(spec: ProblemSpec) -> None:
    rng = np.random.default_rng(0)
    eta = rng.uniform(0.0, 0.9, spec.T)
    mom = momentum_curve(spec, eta, 1.0)
    sgd = loss_curve(spec, eta)
    rel = lambda x, y: np.max(np.abs(x - y) / np.abs(y))  # noqa: E731
    assert rel(mom, sgd) <= MOMENTUM_SGD_RTOL, rel(mom, sgd)
    r = momentum_replay(spec, eta, 1.0)
    loss, bias = r.loss, r.bias
    rp = replay(spec, eta)
    assert rel(loss, rp.loss) <= MOMENTUM_SGD_RTOL
    assert rel(bias, rp.bias) <= MOMENTUM_SGD_RTOL


def test_bias_variance_split_and_momentum_matters() -> None:
    r = momentum_replay(MC_SPEC, MC_ETA, MC_BETA)
    loss, bias, var = r.loss, r.bias, r.variance
    full = momentum_curve(MC_SPEC, MC_ETA, MC_BETA)
    assert np.allclose(bias + var, full, rtol=1e-13, atol=0)
    assert np.array_equal(loss, bias + var)  # no tail in this spec
    # β < 1 is a different optimiser: far from the SGD curve, or the SGD test above is empty.
    assert abs(full[-1] / loss_curve(MC_SPEC, MC_ETA)[-1] - 1) > 0.05


def test_monte_carlo_matches_momentum_recursion() -> None:
    mc = simulate_sgd(MC_SPEC, MC_ETA, beta=MC_BETA, n_runs=2000, seed=3)
    theory = momentum_curve(MC_SPEC, MC_ETA, MC_BETA)
    z = np.abs(mc.loss - theory)[MC_CHECKPOINTS]
    band = (MC_SE_MULTIPLIER * mc.stderr + MC_ABS_FLOOR)[MC_CHECKPOINTS]
    assert np.all(z <= band), f"max |MC - theory| / band = {np.max(z / band):.3g}"
    # The plain-SGD curve with the same η is outside the band: the check has power.
    sgd = loss_curve(MC_SPEC, MC_ETA)[MC_CHECKPOINTS]
    assert np.any(np.abs(mc.loss[MC_CHECKPOINTS] - sgd) > band)


def test_monte_carlo_rejects_bad_beta() -> None:
    with pytest.raises(SpecError, match="beta"):
        simulate_sgd(MC_SPEC, MC_ETA, beta=1.5, n_runs=2)


SMALL = ProblemSpec(a=1.3, b=2.75, N=60, sigma=0.7, batch_size=4, T=48)


@pytest.fixture(scope="module")
def mom_result():  # type: ignore[no-untyped-def]
    return solve(SMALL, SolverOptions(grid="uniform", K=12, max_iter=400),
                 controls=ControlSpec(controls=("lr", "momentum"), beta_min=0.02))


def test_momentum_solve_replays_and_beats_sgd(mom_result) -> None:  # type: ignore[no-untyped-def]
    r = mom_result
    assert r.beta is not None and r.beta.shape == (SMALL.T,)
    assert np.all(r.beta >= 0.02 - 1e-12) and np.all(r.beta <= 1 + 1e-12)
    assert np.all(r.eta >= 0) and np.all(r.eta <= SMALL.eta_max + 1e-12)
    assert abs(r.replay_gap) <= EXACT_GAP
    assert r.final_loss == pytest.approx(momentum_curve(SMALL, r.eta, r.beta)[-1], rel=1e-12)
    assert r.final_loss <= r.transcription["sgd_final_loss"] * (1 + JOINT_NOT_WORSE_RTOL)


def test_kappa_smooths_the_controls(mom_result) -> None:  # type: ignore[no-untyped-def]
    smooth = solve(SMALL, SolverOptions(grid="uniform", K=12, max_iter=400),
                   controls=ControlSpec(controls=("lr", "momentum"), beta_min=0.02, kappa=1.0))
    tv = lambda r: np.sum(np.diff(r.eta_blocks) ** 2) + np.sum(np.diff(r.beta[r.grid[:-1]]) ** 2)  # noqa: E731
    assert tv(smooth) < tv(mom_result)
    assert smooth.final_loss >= mom_result.final_loss * (1 - JOINT_NOT_WORSE_RTOL)


@pytest.mark.parametrize("grid, K", [("per_step", 48), ("uniform", 16)])
def test_kappa_is_the_notebooks_per_step_penalty(grid: str, K: int) -> None:
    """The penalty the solve adds to ``L_T`` is the notebook's ``κ Σ_t (u_{t+1} − u_t)²`` of a
    per-step schedule, computed here in numpy: on the per-step grid that of the answer itself;
    on 16 blocks of 3 updates, that of the schedule running linearly between block midpoints
    (each jump spread over 3 updates costs a third of its square; the unweighted sum of block
    differences, the earlier transcription, is 3× this and fails). ``L_T`` is the replay's."""
    kappa = 1e-2
    spec = replace(SMALL, normalize_init=True)
    r = solve(spec, SolverOptions(grid=grid, K=K, propagator="step", modes="exact", max_iter=60),
              controls=ControlSpec(controls=("lr", "momentum"), kappa=kappa, momentum_init="notebook"))
    assert r.beta is not None and r.grid.size == K + 1
    assert r.final_loss == pytest.approx(momentum_curve(spec, r.eta, r.beta, init="notebook")[-1], rel=1e-12)
    t = np.arange(spec.T)
    mids = 0.5 * (r.grid[:-1] + r.grid[1:] - 1)  # block midpoints, in updates
    per_step = [np.interp(t, mids, u[r.grid[:-1]]) for u in (r.eta, r.beta)]
    penalty = kappa * sum(float(np.sum(np.diff(u) ** 2)) for u in per_step)
    assert penalty > 1e-4 * r.final_loss  # the check has something to compare
    assert r.objective - r.final_loss == pytest.approx(penalty, rel=1e-6)  # the NLP sums L_T to ~1e-10


@pytest.mark.parametrize("kw, field", [
    ({"controls": ("momentum",)}, "controls"),
    ({"controls": ("lr", "sgd")}, "controls[1]"),
    ({"controls": ("lr", "lr")}, "controls"),
    ({"controls": ("lr", "batch_size", "momentum"), "m_min": 1, "m_max": 8}, "controls"),
    ({"controls": ("lr", "momentum"), "beta_min": 1.0}, "training.beta_min"),
    ({"controls": ("lr", "momentum"), "kappa": -1}, "training.kappa"),
    ({"controls": ("lr",), "beta_min": 0.1}, "training.beta_min"),
    ({"controls": ("lr", "batch_size"), "m_min": 1}, "training.m_max"),
    ({"controls": ("lr", "batch_size"), "m_min": 8, "m_max": 2}, "training.m_min"),
    ({"controls": ("lr", "batch_size"), "m_min": 0.5, "m_max": 2}, "training.m_min"),
])
def test_control_spec_errors(kw: dict, field: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(SpecError) as err:
        ControlSpec(**kw)
    assert err.value.field == field


@pytest.mark.slow
def test_momentum_study_claims(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Figure 5 at short horizons: same easy exponent (±0.05), hard-phase momentum wins."""
    from optctl.studies.momentum import run_momentum_study

    s = run_momentum_study(tmp_path, horizons={"easy": (32, 64, 128), "hard": (32, 64, 128)},
                           progress=False)["phases"]
    assert abs(s["easy"]["momentum_exponent"] - s["easy"]["sgd_exponent"]) <= 0.05
    assert s["hard"]["beats_sgd_everywhere"]
    assert (tmp_path / "momentum_hard.png").exists() and (tmp_path / "report.md").exists()


def test_the_study_file_holds_the_studies_parameters(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from optctl.errors import ConfigError
    from optctl.io.studyconfig import load_control_study, packaged_study_path

    study = load_control_study()
    assert set(study.models) == {"easy", "hard"} and study.horizons["hard"][-1] == 4096
    assert study.solver == SolverOptions(grid="refined", K=48, tol=1e-8, max_iter=4000)
    assert study.spec("hard", 256) == ProblemSpec(a=1.3, b=2.75, N=1500, sigma=0.7, batch_size=4, T=256)
    data = yaml.safe_load(packaged_study_path().read_text())
    data["batch"]["m_max"] = 2  # the mean batch 4 no longer fits the batch bounds
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(SpecError, match="training.batch_size"):
        load_control_study(tmp_path / "bad.yaml")
    data["batch"]["m_max"] = 64
    data["momentum"]["solvr"] = {}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="momentum.solvr.*did you mean 'solver'"):
        load_control_study(tmp_path / "bad.yaml")


def test_figure_5_curves_end_at_the_recorded_losses_of_each_control_set() -> None:
    """The committed figure-5 records: each curve starts at the initial loss and ends at
    the loss its own solve recorded (momentum curve from (η, β), SGD curve from SGD's η)."""
    recs = load_points(Path(__file__).resolve().parents[1] / "results" / "paper" / "momentum")
    assert set(recs) == {"easy", "hard"} and all(r == sorted(r, key=lambda x: x["T"]) for r in recs.values())
    for rec in (recs["easy"][0], recs["hard"][0]):
        mom, sgd = loss_curves(rec)
        T = rec["T"]
        assert mom.shape == sgd.shape == (T + 1,) and mom[0] == pytest.approx(sgd[0], rel=MOMENTUM_SGD_RTOL)
        assert mom[-1] == pytest.approx(rec["momentum_loss"], rel=MOMENTUM_SGD_RTOL)
        assert sgd[-1] == pytest.approx(rec["sgd_loss"], rel=MOMENTUM_SGD_RTOL)
        assert mom[-1] < sgd[-1]  # the (η, β) optimum beats SGD at every recorded horizon


def test_figure5_marks_the_solves_that_stopped_at_the_iteration_cap() -> None:
    from optctl import plots

    Ts = [32, 64]
    curves = [np.linspace(1.0, 0.1, T) for T in Ts]
    fig = plots.plot_momentum_curves(Ts, curves, curves, [np.full(T, 0.5) for T in Ts], [np.full(T, 0.9) for T in Ts],
                                     momentum_capped=[False, True], sgd_capped=[False, False])
    ax0, ax1, ax2 = fig.axes[:3]
    styles = {ln.get_label(): ln.get_linestyle() for ln in ax0.get_lines()}
    assert styles["T = 32"] == "-" and styles["T = 64 (iteration cap)"] == ":"
    assert [ln.get_linestyle() for ln in ax1.get_lines()] == ["-", ":"]
    assert [ln.get_linestyle() for ln in ax2.get_lines()] == ["-", ":"]
    assert any("iteration cap" in t.get_text() for t in fig.legends[0].get_texts())
    plain = plots.plot_momentum_curves(Ts, curves, curves, [np.full(T, 0.5) for T in Ts], [np.full(T, 0.9) for T in Ts])
    assert not any("iteration cap" in t.get_text() for t in plain.legends[0].get_texts())


def test_add_start_records_every_start_and_keeps_the_lowest() -> None:
    """A third start (a longer horizon's optimum, or the default candidates) is solved and
    recorded; the spread covers every start and the kept answer is the lowest, replayed."""
    from dataclasses import replace as _replace

    from optctl.io.studyconfig import load_control_study
    from optctl.model.momentum import momentum_replay
    from optctl.studies.momentum import STARTS_RTOL, add_start, solve_point

    base = load_control_study()
    study = _replace(base, solver=SolverOptions(grid="uniform", K=6, tol=1e-8, max_iter=400))
    longer = solve_point(study, "hard", 32, eta_max=1.0, beta_min=0.0)
    rec = solve_point(study, "hard", 16, eta_max=1.0, beta_min=0.0)
    # a worse recorded answer, so that the new start must replace it
    worse = {**rec, "momentum_loss": 2 * rec["momentum_loss"],
             "momentum_starts": [{**rec["momentum_starts"][0], "loss": 2 * rec["momentum_loss"],
                                  "penalised": 2 * rec["momentum_loss"]}]}  # κ = 0: the same
    out = add_start(study, worse, "from above", init=longer)
    assert [st["start"] for st in out["momentum_starts"]] == ["default", "from above"]
    losses = [st["loss"] for st in out["momentum_starts"]]
    assert out["starts_spread"] == pytest.approx((max(losses) - min(losses)) / min(losses))
    assert out["starts_disagree"] == (out["starts_spread"] > STARTS_RTOL)
    assert out["momentum_loss"] == min(losses) < worse["momentum_loss"]
    spec = ProblemSpec(**out["spec"])
    L = momentum_replay(spec, np.asarray(out["eta"]), np.asarray(out["beta"])).loss[-1]
    assert L == pytest.approx(out["momentum_loss"], rel=1e-10)
    # the recorded answer is kept unless the new start is lower
    again = add_start(study, out, "default")
    assert again["momentum_loss"] == min(out["momentum_loss"], again["momentum_starts"][-1]["loss"])
    assert len(again["momentum_starts"]) == 3


def test_restart_capped_replaces_a_capped_answer_by_the_converged_one() -> None:
    """A point whose (η, β) solve stopped at the iteration cap is re-solved from its own answer
    in one long round: the converged answer replaces it (replayed), the capped one is recorded,
    and a converged point is left as it is."""
    from dataclasses import replace as _replace

    from optctl.io.studyconfig import load_control_study
    from optctl.studies.momentum import restart_capped, solve_point

    base = load_control_study()
    study = _replace(base, solver=SolverOptions(grid="uniform", K=6, tol=1e-8, max_iter=400))
    capped = solve_point(_replace(study, solver=_replace(study.solver, max_iter=4, round_iter=4)),
                         "hard", 16, eta_max=1.0, beta_min=0.0)
    assert capped["momentum_status"] == "Maximum_Iterations_Exceeded"
    out = restart_capped(study, capped)
    assert out["momentum_status"] == "Solve_Succeeded"
    assert [st["start"] for st in out["momentum_starts"]] == ["default", "restart"]
    assert out["capped_answer"]["loss"] == capped["momentum_loss"]
    assert out["momentum_loss"] <= capped["momentum_loss"] * (1 + 1e-4)
    spec = ProblemSpec(**out["spec"])
    L = momentum_replay(spec, np.asarray(out["eta"]), np.asarray(out["beta"])).loss[-1]
    assert L == pytest.approx(out["momentum_loss"], rel=1e-10)
    assert restart_capped(study, out) is out


def test_restart_capped_keeps_a_converged_restart_a_hair_above_the_capped_answer(monkeypatch) -> None:
    """The case restart_capped exists for: IPOPT converges (Solve_Succeeded) 1e-10 above the capped
    answer, so merge_start alone would keep the capped one; the converged one must be kept. One
    that ends 1e-3 above is not."""
    import types

    from optctl.studies import momentum as M

    capped = {"momentum_status": "Maximum_Iterations_Exceeded", "momentum_loss": 1.0, "momentum_penalty": 0.0,
              "momentum_iterations": 4000, "sgd_loss": 1.1, "spec": SPEC_HARD_SMALL.to_dict(), "setting": "project",
              "beta_min": 0.0, "eta": [0.5] * 8, "beta": [0.9] * 8,
              "momentum_starts": [{"start": "continuation", "loss": 1.0, "penalised": 1.0}]}
    for above, kept in ((1e-10, True), (1e-3, False)):
        res = types.SimpleNamespace(final_loss=1.0 + above, status="Solve_Succeeded", success=False,
                                    replay_gap=0.0, iterations=7, transcription="exact",
                                    eta=np.full(8, 0.4), beta=np.full(8, 0.8))
        entry = {"start": "restart", "loss": 1.0 + above, "status": "Solve_Succeeded", "penalty": 0.0,
                 "penalised": 1.0 + above}
        monkeypatch.setattr(M, "_solve_momentum", lambda *a, res=res, entry=entry: (res, dict(entry)))
        out = M.restart_capped(M.load_control_study(), capped)
        assert [st["start"] for st in out["momentum_starts"]] == ["continuation", "restart"]
        if kept:
            assert out["momentum_status"] == "Solve_Succeeded" and out["momentum_loss"] == 1.0 + above
            assert out["capped_answer"]["loss"] == 1.0
        else:
            assert out["momentum_status"] == "Maximum_Iterations_Exceeded" and out["momentum_loss"] == 1.0


@pytest.mark.filterwarnings("ignore:Polyfit may be poorly conditioned")  # one horizon: no exponent to fit
def test_notebook_point_records_its_penalty_and_the_same_grid_sgd() -> None:
    """A study point in the notebook setting records the penalty its answer carries (the
    notebook's per-step sum of the linear interpolation between block midpoints, computed
    here) and its report compares L_T with optimal SGD on the same grid and shows κP / L_T."""
    from dataclasses import replace as _replace

    from optctl.io.studyconfig import load_control_study
    from optctl.studies.momentum import momentum_report, solve_point, summarize

    base = load_control_study()
    study = _replace(base, models={"easy": {"a": 2.3, "b": 1.75, "N": 60, "sigma": 0.5, "batch_size": 4}},
                     solver=SolverOptions(grid="uniform", K=8, tol=1e-8, max_iter=300))
    rec = solve_point(study, "easy", 40, eta_max=1.0, beta_min=0.0, setting="notebook")
    kappa = study.setting("notebook")["kappa"]
    grid = np.arange(0, 41, 5)  # 8 blocks of 5 updates
    t = np.arange(40)
    mids = 0.5 * (grid[:-1] + grid[1:] - 1)
    per_step = [np.interp(t, mids, np.asarray(rec[k])[grid[:-1]]) for k in ("eta", "beta")]
    penalty = kappa * sum(float(np.sum(np.diff(u) ** 2)) for u in per_step)
    assert penalty > 0 and rec["momentum_penalty"] == pytest.approx(penalty, rel=1e-9)
    assert rec["momentum_starts"][0]["penalty"] == rec["momentum_penalty"]
    spec = ProblemSpec(**rec["spec"])
    L = momentum_curve(spec, np.asarray(rec["eta"]), np.asarray(rec["beta"]), init="notebook")[-1]
    assert rec["momentum_loss"] == pytest.approx(L, rel=1e-10)
    same = rec["momentum_transcription"]["sgd_final_loss"]
    s = summarize([rec])
    assert s["sgd_same_grid_loss"] == [same] and s["blocks"] == [8]
    text = momentum_report({"eta_max": 1.0, "beta_min": 0.0, "setting": "notebook",
                            "setting_values": study.setting("notebook"), "phases": {"easy": s}})
    row = next(ln for ln in text.splitlines() if ln.startswith("| 40 |"))
    assert f"{100 * (L / same - 1):+.2f}%" in row and f"{penalty / L:.1e}" in row
    assert "penalty κ = 0.01" in text


def test_starts_are_ranked_by_what_the_solve_minimises() -> None:
    """With a penalty the kept start is the one with the lower L_T + κP (the objective), even
    when its L_T is higher; the spread is taken over that; without ``penalised`` (κ = 0), L_T."""
    from types import SimpleNamespace

    from optctl.studies.momentum import merge_start

    rec = {"momentum_starts": [{"start": "continuation", "loss": 1.0, "penalty": 0.3, "penalised": 1.3}],
           "momentum_loss": 1.0, "momentum_penalty": 0.3, "sgd_loss": 2.0}
    res = SimpleNamespace(final_loss=1.1, status="Solve_Succeeded", replay_gap=0.0, iterations=7,
                          transcription={}, eta=np.zeros(3), beta=np.ones(3))
    out = merge_start(rec, res, {"start": "default", "loss": 1.1, "penalty": 0.05, "penalised": 1.15})  # type: ignore[arg-type]
    assert out["momentum_loss"] == 1.1 and out["momentum_penalty"] == 0.05
    assert out["starts_spread"] == pytest.approx(0.15 / 1.15) and out["starts_disagree"]
    plain = {"momentum_starts": [{"start": "continuation", "loss": 1.0}], "momentum_loss": 1.0, "sgd_loss": 2.0}
    kept = merge_start(plain, res, {"start": "default", "loss": 1.1})  # type: ignore[arg-type]
    assert kept["momentum_loss"] == 1.0 and kept["starts_spread"] == pytest.approx(0.1)
