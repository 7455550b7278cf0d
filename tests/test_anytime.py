"""Anytime schedules: the branching problem, its table and the torch checkpoint workflow."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from optctl.errors import ConfigError, ExportError, SpecError
from optctl.io.config import load_config_dict
from optctl.table import BranchingTable, branching_from_dict
from optctl.validate import check_horizons
from tests.conftest import ANYTIME_SINGLE_REGRET, APPROX_GAP

BASE = {"schema_version": 1, "name": "any", "model": {"a": 2.5, "b": 1.5, "N": 50, "sigma": 0.5},
        "training": {"batch_size": 4, "eta_max": 1.0}}


@pytest.mark.parametrize("bad, field", [([1000, 100], "horizons"), ([100, 100], "horizons"),
                                        ([100, 1e4], "horizons[1]"), ([100, 250.5], "horizons[1]"),
                                        ([], "horizons"), ([1], "horizons[0]"), ("100", "horizons")])
def test_bad_horizons_are_refused_by_name(bad, field):
    with pytest.raises(SpecError) as err:
        check_horizons(bad)
    assert err.value.field == field
    with pytest.raises(SpecError):
        load_config_dict({**BASE, "horizons": bad})


def test_config_horizons_set_T_and_round_trip():
    cfg = load_config_dict({**BASE, "horizons": [100, 400], "leave": [50, 300]})
    assert cfg.problem.T == 400 and cfg.horizons == (100, 400) and cfg.leave == (50, 300)
    assert load_config_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match="training.T"):
        load_config_dict({**BASE, "training": {**BASE["training"], "T": 300}, "horizons": [100, 400]})
    with pytest.raises(ConfigError, match="leave"):
        load_config_dict({**BASE, "horizons": [100, 400], "leave": [100, 300]})


def test_config_errors_name_the_anytime_fields_as_written():
    """A wrong number of leave points is echoed as the YAML list; a longest horizon above
    the step limit is refused under ``horizons``, not under the ``training.T`` it sets."""
    with pytest.raises(ConfigError) as err:
        load_config_dict({**BASE, "horizons": [100, 400], "leave": [60]})
    assert err.value.field == "leave" and "leave = [60]:" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config_dict({**BASE, "horizons": [100, 1_000_000_000]})
    assert err.value.field == "horizons[1]" and "1000000000" in str(err.value)


def _plan() -> BranchingTable:
    trunk = np.linspace(0.5, 0.4, 12)
    return BranchingTable(trunk=trunk, branches=(np.linspace(0.3, 0.01, 6), np.linspace(0.35, 0.02, 8)),
                          leave=(4, 12), horizons=(10, 20))


def test_branching_table_checks_and_round_trip():
    plan = _plan()
    again = branching_from_dict(plan.to_dict())
    for i in range(2):
        np.testing.assert_array_equal(again.horizon_table(i).lr, plan.horizon_table(i).lr)
        assert plan.horizon_table(i).T == plan.horizons[i]
    with pytest.raises(ExportError, match="branches\\[0\\]"):
        BranchingTable(trunk=np.ones(12), branches=(np.ones(5), np.ones(8)), leave=(4, 12), horizons=(10, 20))
    with pytest.raises(ExportError, match="trunk"):
        BranchingTable(trunk=np.ones(10), branches=(np.ones(6), np.ones(8)), leave=(4, 12), horizons=(10, 20))


def test_torch_checkpoint_and_branch_matches_each_horizon_trained_whole(tmp_path):
    """Train the trunk, checkpoint at each leave point, train every branch from its checkpoint:
    every lr the optimizer sees equals the plan's, and the final weights equal those of a
    run that trains the horizon's whole schedule from scratch (same data)."""
    torch = pytest.importorskip("torch")
    from optctl.torch import TableScheduler, branch_scheduler, trunk_scheduler

    plan = _plan()
    gen = torch.Generator().manual_seed(0)
    X, Y = torch.randn(40, 3, generator=gen), torch.randn(40, 1, generator=gen)

    def net():
        torch.manual_seed(1)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()

    def update(model, opt, t):
        opt.zero_grad()
        xb, yb = X[2 * (t % 20): 2 * (t % 20) + 2].double(), Y[2 * (t % 20): 2 * (t % 20) + 2].double()
        torch.nn.functional.mse_loss(model(xb), yb).backward()
        opt.step()

    model = net()
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = trunk_scheduler(opt, plan)
    seen: list[float] = []
    for t in range(plan.trunk.size + 1):
        if t in plan.leave:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict()},
                       tmp_path / f"ckpt-{t}.pt")
        if t == plan.trunk.size:
            break
        seen.append(opt.param_groups[0]["lr"])
        update(model, opt, t)
        sched.step()
    np.testing.assert_array_equal(seen, plan.trunk)
    for i, (t0, T) in enumerate(zip(plan.leave, plan.horizons, strict=True)):
        ck = torch.load(tmp_path / f"ckpt-{t0}.pt")
        model = net()
        model.load_state_dict(ck["model"])
        opt = torch.optim.SGD(model.parameters(), lr=1.0)
        opt.load_state_dict(ck["opt"])
        sched = branch_scheduler(opt, plan, i)
        lrs = []
        for t in range(t0, T):
            lrs.append(opt.param_groups[0]["lr"])
            update(model, opt, t)
            sched.step()
        np.testing.assert_array_equal(lrs, plan.branches[i])
        whole = net()
        opt_w = torch.optim.SGD(whole.parameters(), lr=1.0)
        sched_w = TableScheduler(opt_w, plan.horizon_table(i))
        for t in range(T):
            update(whole, opt_w, t)
            sched_w.step()
        for p, q in zip(model.parameters(), whole.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=0, atol=0)


@pytest.mark.slow
def test_single_horizon_plan_is_that_horizons_optimum():
    """One horizon: the branching problem is the plain problem, so its regret against the
    horizon's own optimum (an independent solve, replayed) is ~0, and the branch replays
    within the block transcription's gap."""
    from optctl.solver.branching import solve_branching
    from optctl.spec import ProblemSpec

    spec = ProblemSpec(a=2.5, b=1.5, N=50, sigma=0.5, batch_size=4, T=300, eta_max=1.0)
    res = solve_branching(spec, [300], leave=[200])
    assert abs(res.regret[0]) < ANYTIME_SINGLE_REGRET
    assert np.all(np.abs(res.replay_gap) < APPROX_GAP)


@pytest.mark.slow
def test_two_horizons_beat_the_stopped_longest_optimum_and_replay():
    """Two horizons: every branch's transcribed loss agrees with its exact replay, and the
    plan's worst regret is below that of the longest optimum stopped early (replayed)."""
    from optctl.solver.branching import solve_branching
    from optctl.spec import ProblemSpec

    spec = ProblemSpec(a=2.5, b=1.5, N=50, sigma=0.5, batch_size=4, T=1000, eta_max=1.0)
    res = solve_branching(spec, [250, 1000], fractions=(0.1, 0.4))
    assert np.all(np.abs(res.replay_gap) < APPROX_GAP)
    from optctl.model.replay import replay

    longest = res.optimal_schedules[-1]
    early = replay(replace(spec, T=250), longest[:250]).final / res.optima[0] - 1
    assert res.worst_regret < early
    for i, T in enumerate(res.horizons):
        assert replay(replace(spec, T=T), res.schedule(i)).final == pytest.approx(res.losses[i], rel=1e-12)


ANYTIME_YAML = """schema_version: 1
name: anytime_small
model: {a: 2.5, b: 1.5, N: 50, sigma: 0.5}
training: {batch_size: 4, eta_max: 1.0}
horizons: [100, 400]
leave: [60, 300]
"""


@pytest.mark.parametrize("bad", ["horizons: [400, 100]", "horizons: [100, 100]", "horizons: [100, 4.0e+2]"])
def test_cli_refuses_bad_horizons_with_exit_2_and_no_folder(tmp_path, capsys, bad):
    from optctl.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(ANYTIME_YAML.replace("horizons: [100, 400]", bad).replace("leave: [60, 300]\n", ""))
    out = tmp_path / "run"
    assert main(["solve", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert "horizons" in capsys.readouterr().err and not out.exists()


@pytest.mark.slow
def test_cli_solve_with_horizons_writes_the_plan_and_its_table_drives_torch(tmp_path, capsys):
    """``optctl solve`` on a config with ``horizons`` writes the run folder; its branching
    table, loaded back, gives every horizon the replayed schedule the summary reports."""
    from optctl.cli.main import main
    from optctl.io.config import load_config_dict
    from optctl.io.tables import load_branching_table
    from optctl.model.replay import replay

    cfg = tmp_path / "c.yaml"
    cfg.write_text(ANYTIME_YAML)
    out = tmp_path / "run"
    assert main(["solve", str(cfg), "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"config.yaml", "summary.json", "regret.md", "arrays.npz", "branching.json", "anytime.png"} <= names
    import json

    summary = json.loads((out / "summary.json").read_text())
    plan = load_branching_table(out / "branching.json")
    assert plan.leave == (60, 300) and plan.horizons == (100, 400)
    spec = load_config_dict({**BASE, "horizons": [100, 400]}).problem
    for i, T in enumerate(plan.horizons):
        loss = replay(replace(spec, T=T), plan.horizon_table(i).lr).final
        assert loss == pytest.approx(summary["branching"]["losses"][i], rel=1e-12)
    assert max(abs(g) for g in summary["branching"]["replay_gap"]) < APPROX_GAP


@pytest.fixture(scope="module")
def three_horizons():
    """Three horizons with fixed leave points, their optima and the worst-regret plan."""
    from optctl.solver.branching import horizon_optima, solve_branching
    from optctl.spec import ProblemSpec

    spec = ProblemSpec(a=2.5, b=1.5, N=50, sigma=0.5, batch_size=4, T=1000, eta_max=1.0)
    hs, leave = [100, 250, 1000], [90, 200, 900]
    optima = horizon_optima(spec, hs)
    return spec, hs, leave, optima, solve_branching(spec, hs, leave=leave, optima=optima)


@pytest.mark.slow
def test_worst_regret_converges_with_a_certificate_the_replay_confirms(three_horizons):
    """The worst-regret solve ends in IPOPT success with its gap closed: the horizons that
    carry weight have equal replayed regrets (up to the replay gap), equal weights do worse
    on the worst horizon, and the weighted-sum solve at the returned multipliers, solved
    afresh from its own start, lowers neither the weighted nor the worst regret (replayed)."""
    from optctl.solver.branching import CERTIFIED, MINIMAX_ABS, MINIMAX_TOL, solve_branching

    spec, hs, leave, optima, res = three_horizons
    assert res.success and res.status in CERTIFIED
    assert res.certificate is not None and res.gap == res.certificate.gap
    assert res.gap <= max(MINIMAX_TOL * res.certificate.worst, MINIMAX_ABS)
    assert res.multipliers.sum() == pytest.approx(1.0) and np.all(res.multipliers > 0)
    slack = 2 * np.max(np.abs(res.replay_gap)) * (1 + res.worst_regret) + res.certificate.tolerance
    active = res.multipliers > 0.05
    # gap = Σ w_i (max G − G_i) <= tolerance: an active horizon is within tolerance / w_i of the max
    spread = slack + res.certificate.tolerance / float(np.min(res.multipliers[active]))
    assert active.sum() >= 2 and np.ptp(res.regret[active]) <= spread
    equal = solve_branching(spec, hs, leave=leave, optima=optima, objective="weighted")
    assert res.worst_regret < equal.worst_regret - slack
    again = solve_branching(spec, hs, leave=leave, optima=optima, objective="weighted",
                            weights=res.multipliers)
    assert again.success
    assert res.multipliers @ again.regret >= res.multipliers @ res.regret - slack
    assert again.worst_regret >= res.worst_regret - slack
    assert np.all(np.abs(res.replay_gap) < APPROX_GAP)


@pytest.mark.slow
def test_worst_regret_stopped_early_is_not_reported_as_success(three_horizons):
    """With too few IPOPT iterations the gap cannot close: ``success`` is false."""
    from optctl.solver.branching import solve_branching
    from optctl.spec import SolverOptions

    spec, hs, leave, optima, _ = three_horizons
    res = solve_branching(spec, hs, SolverOptions(max_iter=5, round_iter=5), leave=leave, optima=optima)
    assert not res.success and res.status != "Solve_Succeeded"


@pytest.mark.slow
def test_certificate_refuses_a_bad_plan_and_bad_weights(three_horizons):
    """Weak duality: the gap is the plan's worst regret minus the weighted sum's minimum at
    the weights, solved afresh. The solved plan with its multipliers passes; the same plan
    with all weight on its least-weighted horizon (whose regret alone the weighted sum can
    drive to ~0) fails, and so does a worse plan (the trunk at 70%) with the right weights."""
    from optctl.solver.branching import certify

    _, _, _, _, res = three_horizons
    good = certify(res)
    assert good.success and good.gap == pytest.approx(res.gap, abs=good.tolerance)
    k = int(np.argmin(res.multipliers))
    bad_w = certify(res, weights=np.eye(len(res.horizons))[k])
    assert not bad_w.success and bad_w.gap > 10 * bad_w.tolerance
    bad_x = certify(res, trunk=0.7 * res.trunk)
    assert not bad_x.success and bad_x.worst > good.worst + bad_x.tolerance


@pytest.mark.slow
def test_regrets_are_not_below_the_lower_bounds(three_horizons):
    """Each horizon's lower bound is solved on a grid that holds every schedule the plan can
    give it and the horizon's own optimum: it is not above the own optimum, and no
    horizon's replayed regret is below zero by more than the replay gap."""
    _, _, _, _, res = three_horizons
    tol = 2 * float(np.max(np.abs(res.replay_gap)))
    assert np.all(res.optima <= res.own_optima * (1 + tol))
    assert np.all(res.regret >= -tol)


def test_branching_grids_follow_K_and_hold_every_own_grid():
    """Every horizon's own grid (the one its optimum is solved on) is part of its trunk
    segment plus its branch, for any K; more K, more blocks."""
    from optctl.solver.plan import lower_bound_plan, make_branch_plan, own_grid
    from optctl.spec import ProblemSpec, SolverOptions

    spec = ProblemSpec(a=3.5, b=5.0, N=100, sigma=0.5, batch_size=5, T=100000, eta_max=1.0)
    hs, leave = (1000, 10000, 100000), (900, 8000, 70000)
    sizes = []
    for K in (20, 100):
        opts = SolverOptions(K=K)
        plan = make_branch_plan(spec, opts, hs, leave, (1.0,) * 3, 0.0, "weighted", (1 / 3,) * 3)
        for i, T in enumerate(hs):
            sub = lower_bound_plan(plan, i)
            union = np.union1d(sub.grid, sub.branch_grids[0])
            assert set(own_grid(T, opts).tolist()) <= set(union.tolist())
            assert union[0] == 0 and union[-1] == T and sub.grid[-1] == leave[i]
        sizes.append(plan.n_controls)
    assert sizes[1] > 2 * sizes[0]


@pytest.mark.parametrize("flag, value, field", [("--law", None, "--law"), ("--T", "300", "--T")])
def test_cli_refuses_solve_options_a_branching_config_cannot_take(tmp_path, capsys, flag, value, field):
    from optctl.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text(ANYTIME_YAML)
    out = tmp_path / "run"
    argv = ["solve", str(cfg), "--out", str(out), "--quiet", flag] + ([value] if value else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert field in err and "horizons" in err and not out.exists()


def test_leave_without_horizons_names_the_fix():
    with pytest.raises(ConfigError) as err:
        load_config_dict({**BASE, "leave": [50, 300]})
    assert err.value.field == "leave" and "horizons:" in str(err.value)
    with pytest.raises(ConfigError, match="leave"):  # T given: the same field and fix
        load_config_dict({**BASE, "training": {**BASE["training"], "T": 400}, "leave": [50, 300]})


@pytest.mark.slow
def test_solved_branching_table_drives_torch_through_checkpoints(tmp_path):
    """The documented workflow on a table that ``solve_branching`` produced, exported and
    loaded back: the trunk scheduler up to each leave point, a checkpoint there, each
    branch scheduler from its checkpoint. Every rate the optimizer saw equals the table's,
    which equals the solved plan's schedule for that horizon."""
    torch = pytest.importorskip("torch")
    from optctl.io.tables import export_branching_table, load_branching_table
    from optctl.solver.branching import solve_branching
    from optctl.spec import ProblemSpec
    from optctl.torch import branch_scheduler, trunk_scheduler

    spec = ProblemSpec(a=2.5, b=1.5, N=20, sigma=0.5, batch_size=4, T=60, eta_max=1.0)
    res = solve_branching(spec, [30, 60], leave=[20, 45], objective="weighted")
    export_branching_table(res.to_table(), tmp_path / "branching.json")
    plan = load_branching_table(tmp_path / "branching.json")
    gen = torch.Generator().manual_seed(0)
    X, Y = torch.randn(120, 3, generator=gen).double(), torch.randn(120, 1, generator=gen).double()
    torch.manual_seed(1)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(), torch.nn.Linear(4, 1)).double()

    def update(t):
        opt.zero_grad()
        torch.nn.functional.mse_loss(model(X[2 * t: 2 * t + 2]), Y[2 * t: 2 * t + 2]).backward()
        opt.step()

    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = trunk_scheduler(opt, plan)
    seen = []
    for t in range(plan.trunk.size + 1):
        if t in plan.leave:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, tmp_path / f"trunk-{t}.pt")
        if t == plan.trunk.size:
            break
        seen.append(opt.param_groups[0]["lr"])
        update(t)
        sched.step()
    np.testing.assert_allclose(seen, res.trunk, rtol=1e-15, atol=0)
    for i, (t0, T) in enumerate(zip(plan.leave, plan.horizons, strict=True)):
        ck = torch.load(tmp_path / f"trunk-{t0}.pt")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        sched = branch_scheduler(opt, plan, i)
        lrs = []
        for t in range(t0, T):
            lrs.append(opt.param_groups[0]["lr"])
            update(t)
            sched.step()
        np.testing.assert_allclose(seen[:t0] + lrs, res.schedule(i), rtol=1e-15, atol=0)


MEMORY_FACTOR = 1.5  # the branching estimate against a measured peak, either way

MEASURE = """
import resource, sys
from optctl.solver.branching import solve_branching
from optctl.spec import ProblemSpec, SolverOptions
spec = ProblemSpec(a=3.5, b=5.0, N=1000, sigma=0.5, batch_size=5, T=20000, eta_max=1.0)
solve_branching(spec, [2000, 20000], SolverOptions(K=40), leave=[1600, 16000], objective="weighted")
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
"""


@pytest.mark.slow
def test_branching_memory_estimate_matches_a_measured_peak():
    """The estimate of a branching solve (no baselines) against the peak resident memory of
    the same solve in a fresh process, within MEMORY_FACTOR: N = 1000 modes, a horizon of
    2·10^4 whose own optimum keeps the polish gradient (T × N states), the NLPs cached."""
    import subprocess
    import sys

    from optctl.solver.resources import estimate_branching
    from optctl.spec import ProblemSpec, SolverOptions

    spec = ProblemSpec(a=3.5, b=5.0, N=1000, sigma=0.5, batch_size=5, T=20000, eta_max=1.0)
    est = estimate_branching(spec, (2000, 20000), SolverOptions(K=40), baselines=False)
    done = subprocess.run([sys.executable, "-c", MEASURE], capture_output=True, text=True, check=True)
    peak = float(done.stdout.split()[-1])
    assert 1 / MEMORY_FACTOR <= est.total / peak <= MEMORY_FACTOR, (est.describe(), peak / 2**20)


@pytest.mark.slow
def test_docs_snippets_run_as_written(tmp_path, monkeypatch):
    """Every ```python block of docs/anytime.md, in order in one namespace (they write their
    files into the working folder): the plan solves, its regrets are not below zero beyond
    the replay gap, its certificate is computed, and the torch workflow runs on it."""
    pytest.importorskip("torch")
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[1] / "docs" / "anytime.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) >= 2
    monkeypatch.chdir(tmp_path)
    ns: dict[str, object] = {"__name__": "docs_anytime"}
    for i, block in enumerate(blocks):
        exec(compile(block, f"docs/anytime.md[block {i}]", "exec"), ns)
    res = ns["res"]
    assert np.all(res.regret >= -2 * np.max(np.abs(res.replay_gap)))  # type: ignore[attr-defined]
    assert (tmp_path / "branching.json").exists() and (tmp_path / "trunk-160.pt").exists()


def test_a_stalled_or_unsolved_dual_does_not_certify():
    """The certificate needs the weighted sum at the final weights solved by IPOPT: a gap
    within the tolerance is not enough when that solve stalled or hit its iteration cap."""
    from optctl.solver.branching import Certificate

    def cert(status: str, gap: float) -> Certificate:
        return Certificate(worst=0.01, dual=0.01 - gap, gap=gap, tolerance=1e-4, weights=np.array([0.5, 0.5]),
                           status=status, iterations=10)

    assert cert("Solve_Succeeded", 5e-5).success and not cert("Solve_Succeeded", 2e-4).success
    assert not cert("Dual_Stalled", 5e-5).success
    assert not cert("Maximum_Iterations_Exceeded", 5e-5).success


def _stall_the_dual(monkeypatch):
    """Every round of the certificate's dual solve ends where it started at IPOPT's iteration
    cap (a stall), and no re-weighted solve counts as the dual solve."""
    from optctl.solver import branching
    from optctl.solver.ipopt import Rounds

    real = branching.run_rounds

    def run_rounds(prob, start, scale, corr, bounds, floor, options, constraints, clip=None, lam_x=None):
        if lam_x is None:  # the re-weighting: as it is
            return real(prob, start, scale, corr, bounds, floor, options, constraints)
        return Rounds(u=start, scale=scale, stats={"return_status": "Maximum_Iterations_Exceeded"},
                      iterations=options.max_iter, rounds=1, lam_x=lam_x)

    monkeypatch.setattr(branching, "run_rounds", run_rounds)
    monkeypatch.setattr(branching, "_converged", lambda run: False)


@pytest.mark.slow
def test_a_stalled_dual_solve_fails_in_result_cli_and_table(three_horizons, monkeypatch, tmp_path, capsys):
    """A stalled dual solve: ``success`` false with status ``Dual_Stalled`` and the reason in
    the message, although the gap (the weighted sum not lowered) is the certified plan's;
    ``optctl solve`` exits non-zero with the reason, and the regret table says NOT certified
    and why."""
    import json

    from optctl.cli.main import main
    from optctl.solver.branching import DUAL_STALLED, solve_branching

    spec, hs, leave, optima, good = three_horizons
    assert good.success  # the same solve without the stall is certified
    _stall_the_dual(monkeypatch)
    res = solve_branching(spec, hs, leave=leave, optima=optima)
    assert not res.success and res.status == DUAL_STALLED
    assert res.certificate is not None and res.certificate.status == DUAL_STALLED
    assert res.gap <= res.certificate.tolerance  # the gap alone would have passed
    assert "not solved by IPOPT" in res.message and "Dual_Stalled" in res.message
    cfg = tmp_path / "c.yaml"
    cfg.write_text(ANYTIME_YAML)
    out = tmp_path / "run"
    assert main(["solve", str(cfg), "--out", str(out), "--quiet", "--no-baselines"]) != 0
    captured = capsys.readouterr()
    assert "did not succeed (Dual_Stalled)" in captured.err and "not solved by IPOPT" in captured.err
    table = (out / "regret.md").read_text()
    assert "NOT certified (Dual_Stalled: the weighted sum at the final weights was not solved" in table
    summary = json.loads((out / "summary.json").read_text())
    assert summary["branching"]["solver"]["success"] is False
    assert summary["branching"]["solver"]["certificate"]["status"] == DUAL_STALLED


@pytest.mark.slow
def test_the_reweighting_log_shows_each_try_once(three_horizons, monkeypatch, capsys):
    """Each re-weighted solve is logged once, with the weights tried and its verdict: a step
    forced to be bad (all weight on the first horizon) is logged as rejected, the halved step
    after it with its own weights, and the accepted weights are not printed again."""
    import re

    from optctl.solver import branching

    spec, hs, leave, optima, _ = three_horizons
    real, calls = branching._next_weights, []

    def first_bad(w, G, jac):
        calls.append(1)
        return np.array([1.0 - 2e-4, 1e-4, 1e-4]) if len(calls) == 1 else real(w, G, jac)

    monkeypatch.setattr(branching, "_next_weights", first_bad)
    res = branching.solve_branching(spec, hs, leave=leave, optima=optima, progress=True)
    lines = [ln for ln in capsys.readouterr().err.splitlines() if re.search(r"anytime:\s+(start|try)", ln)]
    weights = [re.search(r"weights (\[[^]]*\])", ln).group(1) for ln in lines]
    assert lines[0].split()[1] == "start" and len(weights) == len(set(weights)) >= 3
    assert "rejected" in lines[1] and "[0.9998, 0.0001, 0.0001]" in lines[1]
    assert all(ln.endswith(("accepted", "halve the step", "stop")) for ln in lines[1:])
    assert sum("accepted" in ln for ln in lines) >= 1
    final = "[" + ", ".join(f"{x:.4f}" for x in res.multipliers) + "]"
    assert weights.count(final) == 1


UNCONVERGED_YAML = """schema_version: 1
name: anytime_capped
model: {a: 2.5, b: 1.5, N: 10, sigma: 0.5}
training: {batch_size: 4, eta_max: 1.0}
solver: {max_iter: 3}
horizons: [30, 60]
leave: [20, 45]
"""


def test_an_uncertified_plan_says_so_in_table_figure_regrets_and_cli(tmp_path, capsys, monkeypatch):
    """IPOPT capped at 3 iterations: neither the lower bounds nor the plan converge. The
    exported branching table carries ``success = false`` (kept on loading), the figure's
    legend and title say NOT certified, and regret.md and the CLI's error output name the
    horizons whose lower bound did not converge (the regrets against them are negative)."""
    import json

    from optctl import plots
    from optctl.cli.main import main
    from optctl.io.tables import load_branching_table

    texts: list[str] = []
    real_save = plots.save

    def save(fig, path):
        texts.extend(t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts())
        texts.append(fig._suptitle.get_text() if fig._suptitle is not None else "")
        real_save(fig, path)

    monkeypatch.setattr(plots, "save", save)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(UNCONVERGED_YAML)
    out = tmp_path / "run"
    assert main(["solve", str(cfg), "--out", str(out), "--quiet", "--no-baselines"]) != 0
    err = capsys.readouterr().err
    raw = json.loads((out / "branching.json").read_text())["source"]
    assert raw["success"] is False and raw["status"] != "Solve_Succeeded" and raw["gap"] is not None
    plan = load_branching_table(out / "branching.json")
    assert plan.source["success"] is False and not plan.certified
    assert plan.source["status"] == raw["status"] and plan.source["gap"] == raw["gap"]
    assert any(t.startswith("trunk (NOT certified)") for t in texts)
    assert any(t.startswith("branching optimum") and "NOT certified" in t for t in texts)
    assert any("branching plan NOT certified" in t for t in texts)
    summary = json.loads((out / "summary.json").read_text())
    assert min(summary["branching"]["regret"]) < 0  # what the warning is for
    assert [b["converged"] for b in summary["branching"]["lower_bounds"]] == [False, False]
    table = (out / "regret.md").read_text()
    for text in (table, err):
        assert "did not converge at T = 30 (Maximum_Iterations_Exceeded), T = 60" in text
        assert "not trustworthy" in text


def test_trunk_line_reports_the_first_rate_and_the_segment_medians():
    """The trunk sentence starts with trunk[0] (not the highest rate of the first 1%) and
    keeps the median of each segment between leave points."""
    from types import SimpleNamespace

    from optctl.studies.anytime import trunk_shape

    trunk = np.concatenate([np.linspace(0.1, 0.2, 10), np.full(190, 0.2), np.full(200, 0.05)])
    line = trunk_shape(SimpleNamespace(trunk=trunk, leave=(200, 400)))  # type: ignore[arg-type]
    assert line.startswith("starts at 0.1 (early level 0.133,")  # max of trunk[:4]
    assert "on [0, 200) median 0.2" in line and "on [200, 400) median 0.05" in line and "decays" in line


def test_the_shipped_anytime_config_is_the_one_the_docs_show():
    """configs/anytime_hard.yaml loads, is an anytime config (horizons, T the longest) and
    equals the YAML block of docs/anytime.md that names it."""
    import re
    from pathlib import Path

    import yaml

    from optctl.io.config import load_config

    root = Path(__file__).resolve().parents[1]
    cfg = load_config(root / "configs" / "anytime_hard.yaml")
    assert cfg.horizons == (1000, 10000, 100000) and cfg.problem.T == 100000 and cfg.leave is None
    assert (cfg.problem.a, cfg.problem.b, cfg.problem.N) == (3.5, 5.0, 1000) and cfg.problem.phase == "hard"
    text = (root / "docs" / "anytime.md").read_text()
    assert "optctl solve configs/anytime_hard.yaml" in text
    (block,) = [b for b in re.findall(r"```yaml\n(.*?)```", text, flags=re.S) if "horizons:" in b]
    assert load_config_dict(yaml.safe_load(block)) == cfg
