"""`controls:` in run configs, `optctl solve` with joint controls, and the exported columns."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from optctl import solve
from optctl.cli.main import main
from optctl.errors import HorizonWarning, SpecError, SpecTypeError
from optctl.io.config import dump_config, load_config, load_config_dict
from optctl.io.tables import load_table
from optctl.model.momentum import momentum_curve
from optctl.model.replay import final_loss
from optctl.solver.horizon import resolve_table
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.table import momentum_from_beta
from tests.conftest import APPROX_GAP

BASE = {"schema_version": 1, "name": "c", "model": {"a": 1.3, "b": 2.75, "N": 40, "sigma": 0.7},
        "training": {"T": 40, "batch_size": 4}, "solver": {"grid": "uniform", "K": 8, "max_iter": 200},
        "baselines": []}


def _cfg(controls: list[str] | None = None, **training: object) -> dict:  # type: ignore[type-arg]
    d = {**BASE, "training": {**BASE["training"], **training}}
    if controls is not None:
        d["controls"] = controls
    return d


def test_existing_configs_mean_the_same() -> None:
    cfg = load_config_dict(_cfg())
    assert cfg.controls.controls == ("lr",)
    assert "controls" not in cfg.to_dict()
    assert set(cfg.to_dict()["training"]) == {"T", "batch_size", "eta_max"}


@pytest.mark.parametrize("controls, training", [
    (["lr", "momentum"], {"beta_min": 0.05, "kappa": 0.1}),
    (["momentum", "lr"], {}),
    (["lr", "batch_size"], {"m_min": 1, "m_max": 16}),
])
def test_round_trip(tmp_path: Path, controls: list[str], training: dict) -> None:  # type: ignore[type-arg]
    cfg = load_config_dict(_cfg(controls, **training))
    assert set(cfg.controls.controls) == set(controls)
    assert load_config_dict(cfg.to_dict()) == cfg
    path = tmp_path / "c.yaml"
    path.write_text(dump_config(cfg))
    assert load_config(path) == cfg


@pytest.mark.parametrize("controls, training, field, exc", [
    ("momentum", {}, "controls", SpecTypeError),
    (["lr", "adam"], {}, "controls[1]", SpecError),
    (["momentum"], {}, "controls", SpecError),
    (["lr"], {"beta_min": 0.1}, "training.beta_min", SpecError),
    (["lr", "momentum"], {"beta_min": 1.5}, "training.beta_min", SpecError),
    (["lr", "momentum"], {"kappa": -0.1}, "training.kappa", SpecError),
    (["lr", "batch_size"], {"m_min": 1}, "training.m_max", SpecError),
    (["lr", "batch_size"], {"m_min": 8, "m_max": 16}, "training.batch_size", SpecError),
    (["lr", "momentum"], {"beta_mn": 0.1}, "training.beta_mn", SpecError),
])
def test_bad_controls(controls: object, training: dict, field: str, exc: type) -> None:  # type: ignore[type-arg]
    with pytest.raises(exc) as err:
        load_config_dict(_cfg(controls, **training))  # type: ignore[arg-type]
    assert err.value.field == field


def test_momentum_with_the_block_propagator_loads_and_replays_within_the_block_gap() -> None:
    d = _cfg(["lr", "momentum"])
    d["solver"] = {**d["solver"], "propagator": "block"}
    cfg = load_config_dict(d)
    assert cfg.solver.propagator == "block"
    res = solve(ProblemSpec(a=1.3, b=2.75, N=40, sigma=0.7, batch_size=4, T=400),
                SolverOptions(grid="refined", K=12, propagator="block"),
                controls=ControlSpec(controls=("lr", "momentum")))
    assert res.transcription["propagator"] == "block"
    assert abs(res.replay_gap) <= APPROX_GAP


def test_cli_exit_2_on_bad_controls(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("schema_version: 1\nmodel: {a: 2, b: 1.5}\ntraining: {T: 10, m_min: 1}\n")
    out = tmp_path / "run"
    assert main(["solve", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "training.m_min" in err and "batch_size" in err and not out.exists()


def _solve(tmp_path: Path, d: dict) -> Path:  # type: ignore[type-arg]
    import yaml

    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(d))
    out = tmp_path / "run"
    assert main(["solve", str(path), "--out", str(out), "--quiet", "--no-baselines"]) == 0
    return out


@pytest.fixture(scope="module")
def momentum_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _solve(tmp_path_factory.mktemp("mom"), _cfg(["lr", "momentum"], beta_min=0.05))


@pytest.mark.parametrize("fmt", ["csv", "npz"])
def test_momentum_run_exports_momentum_column(momentum_run: Path, tmp_path: Path, fmt: str) -> None:
    out = momentum_run
    arrays = np.load(out / "arrays.npz")
    assert {"beta", "eta", "batch_size"} <= set(arrays.files)
    assert (out / "controls.png").exists()
    cfg = load_config(out / "config.yaml")
    assert momentum_curve(cfg.problem, arrays["eta"], arrays["beta"])[-1] == pytest.approx(
        float(arrays["loss"][-1]), rel=1e-12)
    table_path = tmp_path / f"t.{fmt}"
    assert main(["export", str(out), "--format", fmt, "--out", str(table_path)]) == 0
    table = load_table(table_path)
    assert table.momentum is not None
    np.testing.assert_array_equal(table.momentum, momentum_from_beta(arrays["beta"]))
    np.testing.assert_array_equal(table.lr, arrays["eta"])


def test_batch_run_exports_batch_column(tmp_path: Path) -> None:
    out = _solve(tmp_path, _cfg(["lr", "batch_size"], m_min=1, m_max=16))
    arrays = np.load(out / "arrays.npz")
    assert "beta" not in arrays.files
    assert not np.allclose(arrays["batch_size"], 4.0)  # the batch really is a schedule
    cfg = load_config(out / "config.yaml")
    assert final_loss(cfg.problem, arrays["eta"], arrays["batch_size"]) == pytest.approx(
        float(arrays["loss"][-1]), rel=1e-12)
    table_path = tmp_path / "t.csv"
    assert main(["export", str(out), "--format", "csv", "--out", str(table_path)]) == 0
    table = load_table(table_path)
    assert table.momentum is None and table.batch_size is not None
    np.testing.assert_array_equal(table.batch_size, arrays["batch_size"])


def test_a_momentum_table_re_solved_for_a_new_horizon_keeps_its_momentum(momentum_run: Path,
                                                                         tmp_path: Path) -> None:
    """The exported table of a momentum run, read back from its file and re-solved for
    T = 60: the momentum column is re-solved too (the controls travel in the header)."""
    assert main(["export", str(momentum_run), "--out", str(tmp_path / "t.npz")]) == 0
    table = load_table(tmp_path / "t.npz")
    assert table.controls == {"controls": ["lr", "momentum"], "beta_min": 0.05, "kappa": 0.0}
    with pytest.warns(HorizonWarning, match="re-solved the schedule for T = 60"):
        longer = resolve_table(table, 60)
    assert longer.T == 60 and longer.momentum is not None and longer.controls == table.controls
    # the columns are the momentum optimum at T = 60, as a direct solve of the same problem gives it
    spec = ProblemSpec(**{**table.spec, "T": 60})
    direct = solve(spec, SolverOptions(**table.solver),
                   controls=ControlSpec(controls=("lr", "momentum"), beta_min=0.05))
    assert direct.beta is not None
    np.testing.assert_array_equal(longer.lr, direct.eta)
    np.testing.assert_array_equal(longer.momentum, momentum_from_beta(direct.beta))
    # and its reported loss is the exact momentum replay of the columns it holds
    beta = 1.0 - np.concatenate([longer.momentum[1:], longer.momentum[-1:]])
    assert momentum_curve(spec, longer.lr, beta)[-1] == pytest.approx(longer.source["final_loss"], rel=1e-12)
    assert np.all(longer.momentum[1:] < 1.0 - 0.05 + 1e-12)
    # the original's provenance travels; the loss and status are the new solve's
    assert {k: longer.source[k] for k in ("name", "run")} == {k: table.source[k] for k in ("name", "run")}
    assert longer.source["resolved_from_T"] == table.T and longer.source["kind"] == "result"
    assert resolve_table(table, np.int64(table.T)) is table  # numpy integers are horizons too


def test_a_batch_table_re_solved_keeps_its_batch_schedule(tmp_path: Path) -> None:
    out = _solve(tmp_path, _cfg(["lr", "batch_size"], m_min=1, m_max=16))
    assert main(["export", str(out), "--out", str(tmp_path / "t.json")]) == 0
    table = load_table(tmp_path / "t.json")
    with pytest.warns(HorizonWarning):
        shorter = resolve_table(table, 30)
    assert shorter.batch_size is not None and not np.allclose(shorter.batch_size, 4.0)
    assert shorter.batch_size.sum() == pytest.approx(30 * 4.0, rel=1e-9)  # the sample budget
    spec = ProblemSpec(**{**table.spec, "T": 30})
    assert final_loss(spec, shorter.lr, shorter.batch_size) == pytest.approx(
        shorter.source["final_loss"], rel=1e-12)
