"""`family:` and `controls: [lr, momentum]` in run configs, through `optctl solve` to torch.

End to end: a YAML config → ``optctl solve`` → the written table → a torch optimizer
whose iterates equal the model's update, and whose minibatch runs (a family's) match the
table's exact expected loss within Monte-Carlo error.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from optctl.cli.main import main
from optctl.errors import ConfigError, SpecTypeError
from optctl.io.config import load_config, load_config_dict
from optctl.model import families as F
from optctl.spec import ProblemSpec
from optctl.table import family_table_from_dict

torch = pytest.importorskip("torch")

from optctl.io.tables import load_family_table, load_table  # noqa: E402
from optctl.torch import family_optimizer  # noqa: E402

MODEL = {"a": 2.5, "b": 1.5, "N": 30, "sigma": 0.5}
BASE = {"schema_version": 1, "name": "fam", "model": MODEL, "training": {"T": 60, "batch_size": 4},
        "baselines": []}
F64 = torch.float64


def _run(tmp_path: Path, d: dict, *extra: str) -> Path:  # type: ignore[type-arg]
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(d, allow_unicode=True))
    out = tmp_path / "run"
    assert main(["solve", str(path), "--out", str(out), "--quiet", *extra]) == 0
    return out


def test_family_with_given_hyperparameters_writes_its_table(tmp_path: Path) -> None:
    out = _run(tmp_path, {**BASE, "family": {"name": "dana_decaying", "gamma2": 0.2, "gamma3": 0.15}})
    table = family_table_from_dict(json.loads((out / "family_table.json").read_text()))
    spec = ProblemSpec(**MODEL, T=60, batch_size=4)
    ref = F.dana(spec, 60, 0.2, 0.15)
    for k, v in (("gamma1", ref.params["_g1"]), ("gamma2", ref.params["_g2"]),
                 ("gamma3", ref.params["_g3"]), ("Delta", ref.params["_D"])):
        np.testing.assert_allclose(table.column(k), np.broadcast_to(v, (60,)), rtol=1e-15)
    exact = float(F.family_curve(spec, ref)[-1])  # no tail: tail is False here
    assert table.expected_loss == pytest.approx(exact, rel=1e-12)
    curve = np.loadtxt(out / "loss_curve.csv", delimiter=",", skiprows=1)
    assert curve.shape == (61, 2) and curve[-1, 1] == pytest.approx(exact, rel=1e-12)
    assert load_config(out / "config.yaml").family is not None  # the config round-trips


@pytest.mark.slow
def test_tuned_family_from_yaml_drives_torch_to_its_expected_loss(tmp_path: Path) -> None:
    """`tune: true` → table → ScheduleFreeSGD on real minibatches: the table's expected L_T."""
    out = _run(tmp_path, {**BASE, "family": {"name": "schedule-free", "tune": True}})
    summary = json.loads((out / "summary.json").read_text())
    table = family_table_from_dict(json.loads((out / "family_table.json").read_text()))
    spec = ProblemSpec(**MODEL, T=60, batch_size=4)
    default = float(F.family_loss(spec, F.schedule_free(60, 0.5, 0.9)))
    assert summary["tuned"] and table.expected_loss is not None and table.expected_loss < default
    # minibatch linear regression in torch with the table's optimizer (2000 runs)
    from optctl.model.spectrum import spectrum

    sp, n, m = spectrum(spec), 2000, 4
    g = torch.Generator().manual_seed(7)
    lam = torch.tensor(sp.lam, dtype=F64)
    teacher = (torch.randint(0, 2, (n, spec.N), generator=g, dtype=F64) * 2 - 1) * torch.tensor(
        np.sqrt(sp.c0), dtype=F64)
    w = torch.nn.Parameter(torch.zeros(n, spec.N, dtype=F64))
    opt = family_optimizer([w], table)
    for _ in range(60):
        x = torch.randn(n, m, spec.N, generator=g, dtype=F64) * lam.sqrt()
        y = x @ teacher.unsqueeze(-1) + float(np.sqrt(sp.sigma2)) * torch.randn(n, m, 1, generator=g, dtype=F64)
        opt.zero_grad()
        (0.5 * ((x @ w.unsqueeze(-1) - y) ** 2).mean(dim=(1, 2)).sum()).backward()
        opt.step()
    opt.eval()  # type: ignore[attr-defined]
    losses = (((w.detach() - teacher) ** 2) @ lam).numpy()
    se = losses.std(ddof=1) / np.sqrt(n)
    assert abs(losses.mean() - table.expected_loss) <= 4 * se
    # power: the last iterate z (not the average) is another, higher loss
    assert abs(losses.mean() - default) > 4 * se or default > table.expected_loss


@pytest.mark.slow
def test_momentum_controls_from_yaml_to_torch_sgd(tmp_path: Path, sgd_on_quadratic, ema_on_quadratic) -> None:  # type: ignore[no-untyped-def]
    """`controls: [lr, momentum]` → optctl solve → export → torch SGD runs MODEL.md §3's update."""
    d = {**BASE, "model": {"a": 1.3, "b": 2.75, "N": 40, "sigma": 0.7},
         "training": {"T": 40, "batch_size": 4, "beta_min": 0.05},
         "solver": {"grid": "uniform", "K": 8, "max_iter": 200}, "controls": ["lr", "momentum"]}
    out = _run(tmp_path, d, "--no-baselines")
    arrays = np.load(out / "arrays.npz")
    eta, beta = arrays["eta"], arrays["beta"]
    assert main(["export", str(out), "--out", str(tmp_path / "t.npz")]) == 0
    table = load_table(tmp_path / "t.npz")
    lam = 0.9
    expected = ema_on_quadratic(eta[:40], beta[:40], lam)

    def check(t: int, group: dict) -> None:  # type: ignore[type-arg]
        assert group["lr"] == table.lr[t]
        assert group["momentum"] == group["dampening"] == (table.momentum[t] or 1e-300)

    got = sgd_on_quadratic(table, lam, 40, check)
    np.testing.assert_allclose(got, expected, rtol=1e-10)


@pytest.mark.parametrize(("family", "field", "exc"), [
    ({"name": "adam"}, "family.name", ConfigError),
    ({"name": "schedule-free", "lr": 0.5}, "family.beta", ConfigError),
    ({"name": "schedule-free", "tune": True, "lr": 0.5}, "family.lr", ConfigError),
    ({"name": "log-time", "lr": 0.3, "gamma3": 1.0, "beta": 0.9}, "family.beta", ConfigError),
    ({"name": "dana-constant", "gamma2": "big", "gamma3": 0.1}, "family.gamma2", SpecTypeError),
    ({"tune": True}, "family.name", ConfigError),
    ({"name": "dana-decaying", "gamma2": 0.2, "gamma3": 0.15, "kappa": -0.05}, "family.kappa", ConfigError),
    ({"name": "dana-constant", "gamma2": -0.2, "gamma3": 0.1}, "family.gamma2", ConfigError),
    ({"name": "log-time", "lr": 0.3, "gamma3": 1.0, "gamma2": -1.0}, "family.gamma2", ConfigError),
    ({"name": "schedule-free", "lr": 0.5, "beta": 1.5}, "family.beta", ConfigError),
    ({"name": "dana-constant", "gamma2": 0.2, "gamma3": 0.1, "delta": 0.0}, "family.delta", ConfigError),
])
def test_bad_family(family: dict, field: str, exc: type) -> None:  # type: ignore[type-arg]
    with pytest.raises(exc, match=field.replace(".", r"\.")):
        load_config_dict({**BASE, "family": family})


def test_family_refuses_controls_and_cli_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ConfigError, match="drop the config's controls"):
        load_config_dict({**BASE, "controls": ["lr", "momentum"], "family": {"name": "schedule-free", "tune": True}})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({**BASE, "family": {"name": "dana", "gamma2": 1}}))
    assert main(["solve", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "family.name" in capsys.readouterr().err and not (tmp_path / "r").exists()


def test_diverging_family_is_an_error_and_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "div.yaml"
    path.write_text(yaml.safe_dump({**BASE, "family": {"name": "schedule-free", "lr": 50.0, "beta": 0.9}}))
    assert main(["solve", str(path), "--out", str(tmp_path / "r"), "--quiet"]) != 0
    assert not (tmp_path / "r").exists()


# --- solved family schedules: `solve: true` → optctl solve → optctl export → torch ------------


def _minibatch_losses(table, spec: ProblemSpec, n: int, seed: int) -> np.ndarray:  # type: ignore[no-untyped-def]
    """``L_T`` of ``n`` torch runs of linear regression driven by the table's optimizer."""
    from optctl.model.spectrum import spectrum

    sp, m, T = spectrum(spec), int(spec.batch_size), table.T
    g = torch.Generator().manual_seed(seed)
    lam = torch.tensor(sp.lam, dtype=F64)
    teacher = (torch.randint(0, 2, (n, spec.N), generator=g, dtype=F64) * 2 - 1) * torch.tensor(
        np.sqrt(sp.c0), dtype=F64)
    w = torch.nn.Parameter(torch.zeros(n, spec.N, dtype=F64))
    opt = family_optimizer([w], table)
    for _ in range(T):
        x = torch.randn(n, m, spec.N, generator=g, dtype=F64) * lam.sqrt()
        y = x @ teacher.unsqueeze(-1) + float(np.sqrt(sp.sigma2)) * torch.randn(n, m, 1, generator=g, dtype=F64)
        opt.zero_grad()
        (0.5 * ((x @ w.unsqueeze(-1) - y) ** 2).mean(dim=(1, 2)).sum()).backward()
        opt.step()
    if hasattr(opt, "eval"):
        opt.eval()  # Schedule-Free: the trained model is the average x
    return (((w.detach() - teacher) ** 2) @ lam).numpy()  # type: ignore[no-any-return]


def test_solved_dana_schedule_from_yaml_exports_a_table_torch_runs(tmp_path: Path) -> None:
    """`family: {solve: true}` solves DANA's (γ₂, γ₃)(t); `optctl export` writes the table; the
    table's own coefficients replayed exactly give its L_T, and torch minibatch runs match it."""
    spec = ProblemSpec(**MODEL, T=60, batch_size=4)
    start = float(F.family_loss(spec, F.dana(spec, 60, 0.2, 0.15)))
    out = _run(tmp_path, {**BASE, "solver": {"K": 8},
                          "family": {"name": "dana-decaying", "gamma2": 0.2, "gamma3": 0.15, "solve": True}})
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] and summary["status"] == "Solve_Succeeded" and summary["K"] == 8
    assert main(["export", str(out), "--out", str(tmp_path / "dana.csv")]) == 0
    table = load_family_table(tmp_path / "dana.csv")
    assert table.family == "dana-scheduled" and table.kind == "gen-mom"
    g2, g3 = table.column("gamma2"), table.column("gamma3")
    assert np.ptp(g2) > 1e-3 and np.ptp(g3) > 1e-3  # a schedule, not the constant start
    np.testing.assert_array_equal(table.column("gamma1"), 1.0)
    np.testing.assert_allclose(table.column("Delta"), 5.666666666666667 / (5.666666666666667 + np.arange(60)),
                               rtol=1e-14)
    # the exported coefficients, replayed by the exact recursion, give the table's L_T, below the start's
    replay = F.generalized_momentum(60, table.column("gamma1"), g2, g3, table.column("Delta"))
    exact = float(F.family_loss(spec, replay))
    assert table.expected_loss == pytest.approx(exact, rel=1e-12) and exact < 0.9 * start
    assert load_family_table(out / "family_table.json").expected_loss == table.expected_loss
    losses = _minibatch_losses(table, spec, 2000, seed=11)
    se = losses.std(ddof=1) / np.sqrt(losses.size)
    assert abs(losses.mean() - exact) <= 4 * se
    assert abs(losses.mean() - start) > 4 * se  # power: the tuned start's loss is told apart


def test_solved_schedule_free_with_a_step_bound_drives_torch(tmp_path: Path) -> None:
    """Schedule-Free γ(t) solved with `eta_max`: every step within the bound, the exported json
    drives ScheduleFreeSGD to the table's expected L_T."""
    spec = ProblemSpec(**MODEL, T=60, batch_size=4)
    out = _run(tmp_path, {**BASE, "solver": {"K": 8},
                          "family": {"name": "schedule-free", "lr": 0.3, "beta": 0.9, "solve": True, "eta_max": 0.6}})
    assert main(["export", str(out)]) == 0  # RUN/table.json
    table = load_family_table(out / "table.json")
    assert table.family == "schedule-free" and table.source["solved"]
    lr = table.column("lr")
    assert lr.max() <= 0.6 * (1 + 1e-9) and np.ptp(lr) > 1e-3
    exact = float(F.family_loss(spec, F.schedule_free(60, lr, 0.9)))
    assert table.expected_loss == pytest.approx(exact, rel=1e-12)
    assert exact < float(F.family_loss(spec, F.schedule_free(60, 0.3, 0.9)))
    losses = _minibatch_losses(table, spec, 2000, seed=12)
    assert abs(losses.mean() - exact) <= 4 * losses.std(ddof=1) / np.sqrt(losses.size)


def test_unconverged_family_solve_exits_3_and_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**BASE, "solver": {"K": 8, "max_iter": 2},
                                    "family": {"name": "dana-constant", "gamma2": 0.2, "gamma3": 0.05,
                                               "solve": True}}))
    assert main(["solve", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 3
    cap = capsys.readouterr()
    assert "did not succeed" in cap.err and "solver did not succeed" in cap.out
    summary = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert not summary["success"] and summary["status"] == "Maximum_Iterations_Exceeded"


def test_family_solve_refuses_another_grid_and_records_its_plan(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    fam = {"name": "dana-constant", "gamma2": 0.2, "gamma3": 0.05, "solve": True}
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({**BASE, "solver": {"grid": "uniform", "K": 8}, "family": fam}))
    assert main(["solve", str(path), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    assert "solver.grid" in capsys.readouterr().err and not (tmp_path / "r").exists()
    path.write_text(yaml.safe_dump({**BASE, "solver": {"K": 8, "max_iter": 2}, "family": fam}))
    main(["solve", str(path), "--out", str(tmp_path / "r"), "--quiet"])
    plan = json.loads((tmp_path / "r" / "summary.json").read_text())["plan"]
    assert plan["grid"] == "refined" and plan["propagator"] in ("step", "block")


@pytest.mark.parametrize(("family", "field", "exc"), [
    ({"name": "log-time", "lr": 0.3, "gamma3": 1.0, "solve": True}, "family.solve", ConfigError),
    ({"name": "schedule-free", "lr": 0.3, "beta": 0.9, "solve": "yes"}, "family.solve", SpecTypeError),
    ({"name": "schedule-free", "lr": 0.3, "beta": 0.9, "eta_max": 0.5}, "family.eta_max", ConfigError),
    ({"name": "schedule-free", "tune": True, "eta_max": -1.0}, "family.eta_max", ConfigError),
    ({"name": "dana-decaying", "solve": True}, "family.gamma2", ConfigError),
])
def test_bad_family_solve(family: dict, field: str, exc: type) -> None:  # type: ignore[type-arg]
    with pytest.raises(exc, match=field.replace(".", r"\.")):
        load_config_dict({**BASE, "family": family})


def test_family_solve_config_round_trips_and_export_refuses_binary_formats(tmp_path: Path) -> None:
    cfg = load_config_dict({**BASE, "family": {"name": "schedule_free", "tune": True, "solve": True, "eta_max": 0.5}})
    assert cfg.family is not None and cfg.family.solve and cfg.family.eta_max == 0.5
    assert load_config_dict(cfg.to_dict()) == cfg
    out = _run(tmp_path, {**BASE, "family": {"name": "schedule-free", "lr": 0.3, "beta": 0.9}})
    assert main(["export", str(out), "--format", "npz"]) == 2
    assert main(["export", str(out), "--lr-scale", "2"]) == 2
    assert not (out / "table.npz").exists()
