"""`optctl fit` end to end: curves → fit folder → `optctl solve FITDIR` → real-lr table."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import FIT_NOISY_ATOL

from optctl.calibrate import fitting as C
from optctl.cli.main import main
from optctl.io.config import load_config
from optctl.io.curves import write_curve
from optctl.io.tables import load_table
from optctl.model.replay import loss_curve
from optctl.model.spectrum import spectrum, stable_rate
from optctl.spec import ProblemSpec

TRUTH = {"a": 2.5, "b": 1.5, "sigma": 0.5, "lr_scale": 0.1, "loss_scale": 2.0, "loss_offset": 0.3}
N, M, T = 40, 4, 200
FIT_YAML = f"""schema_version: 1
name: tiny
fit: {{N: {N}, starts: 1, bootstrap: 10}}
target: {{T: 600, eta_max_factor: 1.0}}
solver: {{grid: uniform, K: 30}}
baselines: []
"""


def _curves(tmp_path: Path) -> list[str]:
    rng = np.random.default_rng(1)
    steps = C.measurement_steps(T, 30)
    paths = []
    for name, lr in {"c1": np.full(T, 0.03), "c2": np.full(T, 0.08), "c3": np.full(T, 0.15)}.items():
        y = C.predict(TRUTH, lr, M, N)[steps] * np.exp(0.005 * rng.standard_normal(steps.size))
        p = tmp_path / f"{name}.csv"
        write_curve(p, steps, lr, y, batch_size=M)
        paths.append(str(p))
    return paths


def test_fit_solve_export_in_real_units(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(FIT_YAML)
    fit_dir = tmp_path / "fit"
    assert main(["fit", *_curves(tmp_path), "--config", str(cfg), "--out", str(fit_dir), "--quiet"]) == 0
    assert {p.name for p in fit_dir.iterdir()} == {"fit.json", "calibration.json", "config.yaml",
                                                   "arrays.npz", "fit.png"}
    fit = json.loads((fit_dir / "fit.json").read_text())
    for k in ("a", "b"):
        assert fit["params"][k] == pytest.approx(TRUTH[k], abs=FIT_NOISY_ATOL)
        assert fit["intervals"][k][0] <= TRUTH[k] <= fit["intervals"][k][1]
    assert fit["phase"]["label"] == "easy"
    # the linearised sd is reported beside the bootstrap interval (checked in test_calibrate)
    assert all(0 < fit["asymptotic_sd"][k] < 0.1 for k in ("a", "b"))
    run_cfg = load_config(fit_dir / "config.yaml")
    assert run_cfg.problem.T == 600 and run_cfg.problem.batch_size == M and run_cfg.problem.N == N
    scale = fit["params"]["lr_scale"]
    # the schedule's bound: the fastest measured rate in model units, unless that is beyond
    # the fitted model's own stability limit, as here (the 0.15 pilot of the truth explodes)
    fitted = ProblemSpec(**{**run_cfg.problem.to_dict(), "eta_max": 1.0})
    limit = 0.98 * stable_rate(spectrum(fitted), M)
    assert limit < 0.15 / scale
    assert run_cfg.problem.eta_max == pytest.approx(limit, rel=1e-9)
    above = loss_curve(fitted, np.full(600, 1.02 * limit / 0.98))  # just above the limit: explodes
    assert not above[-1] < 1e3 * above[0]
    out = capsys.readouterr().out
    assert "optctl solve" in out and "asymptotic sd" in out

    run = tmp_path / "run"
    assert main(["solve", str(fit_dir), "--out", str(run), "--quiet", "--no-baselines"]) == 0
    assert (run / "calibration.json").exists()
    table_path = tmp_path / "table.csv"
    assert main(["export", str(run), "--calibration", str(run), "--format", "csv",
                 "--out", str(table_path)]) == 0
    table = load_table(table_path)
    eta = np.load(run / "arrays.npz")["eta"]
    assert table.lr_scale == pytest.approx(scale)
    np.testing.assert_allclose(table.lr, scale * eta, rtol=1e-15)
    assert table.lr.max() <= 0.15 * (1 + 1e-9)


def test_bad_curve_exits_2_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("step,lr,loss\n0,0.1,1.0\n5,0.1,0.5\n3,0.1,0.4\n")
    out = tmp_path / "fit"
    assert main(["fit", str(bad), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv, line 4, column 'step'" in err and err.count("\n") == 1
    assert not out.exists() and not list(tmp_path.glob(".fit*"))


@pytest.mark.parametrize(("yaml_text", "expected"), [
    ("schema_version: 1\nfit: {bootstrap: 3}\n", "fit.bootstrap"),
    ("schema_version: 1\nfit: {Nn: 3}\n", "unknown key"),
    ("schema_version: 1\ntarget: {eta_max_factor: -1}\n", "target.eta_max_factor"),
    ("fit: {N: 10}\n", "schema_version"),
])
def test_bad_fit_config_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], yaml_text: str,
                                expected: str) -> None:
    cfg = tmp_path / "fit.yaml"
    cfg.write_text(yaml_text)
    out = tmp_path / "fit"
    assert main(["fit", *_curves(tmp_path), "--config", str(cfg), "--out", str(out), "--quiet"]) == 2
    assert expected in capsys.readouterr().err and not out.exists()


def test_export_scale_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", str(tmp_path), "--lr-scale", "-1"]) == 2
    assert "--lr-scale" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--calibration", str(tmp_path)]) == 2
    assert "calibration.json" in capsys.readouterr().err


def test_shipped_fit_config_loads() -> None:
    from optctl.io.fitconfig import load_fit_config

    cfg = load_fit_config(Path(__file__).parent.parent / "configs" / "fit_pilot.yaml")
    assert cfg.T == 20000 and cfg.options.bootstrap == 30 and cfg.baselines == ("constant", "cosine", "wsd")


def test_solve_on_a_poor_fit_folder_warns(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`optctl solve FIT_FOLDER` repeats the fit-quality gate's warnings on stderr, and says
    nothing of the kind for a fit the gate passed."""
    from optctl.io.fits import fit_warnings

    cfg = tmp_path / "fit.yaml"
    cfg.write_text(FIT_YAML)
    fit_dir = tmp_path / "fit"
    assert main(["fit", *_curves(tmp_path), "--config", str(cfg), "--out", str(fit_dir), "--quiet"]) == 0
    fit = json.loads((fit_dir / "fit.json").read_text())
    assert fit["quality"]["ok"] and fit_warnings(fit_dir) == []
    capsys.readouterr()
    assert main(["solve", str(fit_dir), "--out", str(tmp_path / "good"), "--no-baselines"]) == 0
    assert "poor" not in capsys.readouterr().err
    fit["quality"].update(ok=False, reasons=["the fitted model misses curve 'c1'"], advice="longer pilots")
    (fit_dir / "fit.json").write_text(json.dumps(fit))
    assert main(["solve", str(fit_dir), "--out", str(tmp_path / "poor"), "--no-baselines"]) == 0
    err = capsys.readouterr().err
    assert "warning: the fit in" in err and "misses curve 'c1'" in err and "longer pilots" in err
