"""Bad, extreme and hostile input end in one line and a documented exit code, never a
traceback, a hang or a claim the results do not support (issue: hardening)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from optctl.cli.main import BAD_INPUT, SOLVER_FAILED, build_parser, main
from optctl.errors import ExportError
from optctl.io.tables import load_table

SMALL = """schema_version: 1
name: small
model: {a: 2.5, b: 1.5, N: 60, sigma: 0.5}
training: {T: 300, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 30}
baselines: [constant, wsd]
"""
# A solve that is quick to run to its end (a few blocks, few modes).
TINY = SMALL.replace("N: 60", "N: 20").replace("T: 300", "T: 60").replace("K: 30", "K: 6")
# No message of optctl is longer than this, whatever the size of the input it echoes.
MAX_MESSAGE_CHARS = 1000


def _cfg(tmp_path: Path, text: str, name: str = "cfg.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: "), err
    assert "\n" not in err and "Traceback" not in err
    assert len(err) < MAX_MESSAGE_CHARS
    return err


@pytest.mark.parametrize(("old", "new", "field"), [
    ("eta_max: 1.0", "eta_max: 1e308", "training.eta_max"),   # NaN bounds reached IPOPT
    ("eta_max: 1.0", "eta_max: 1e6", "training.eta_max"),     # Error_In_Step_Computation, exit 0
    ("sigma: 0.5", "sigma: 1e308", "model.sigma"),            # OverflowError in the model
    ("b: 1.5", "b: 400", "model.b"),                          # initial errors overflow
    ("a: 2.5", "a: !!float abc", "cfg.yaml"),                 # ValueError from the YAML loader
    ("N: 60", "N: [1, [2, {3: 4}]]", "model.N"),
    ("K: 30", "K: 1e400", "solver.K"),
])
def test_extreme_values_are_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            old: str, new: str, field: str) -> None:
    out = tmp_path / "run"
    cfg = _cfg(tmp_path, SMALL.replace(old, new))
    assert main(["solve", str(cfg), "--out", str(out), "--quiet"]) == BAD_INPUT
    assert field in _one_line(capsys)
    assert not out.exists()


def test_baselines_that_diverge_are_not_compared(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """eta_max: 1e6 on a small problem: IPOPT finds the optimum, every baseline diverges;
    the run printed "optimum beats the best baseline (constant) by nan%"."""
    out = tmp_path / "run"
    cfg = _cfg(tmp_path, TINY.replace("eta_max: 1.0", "eta_max: 1e6").replace("constant, wsd", "constant"))
    assert main(["solve", str(cfg), "--out", str(out), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "beats" not in captured.out and "nan" not in captured.out
    assert "no baseline reached a finite loss" in captured.err
    assert "gain_over_best_baseline" not in json.loads((out / "summary.json").read_text())


@pytest.mark.parametrize("shape", ["flow", "block"])
def test_deeply_nested_yaml_is_one_line_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               shape: str) -> None:
    depth = 5_000
    if shape == "flow":
        text = SMALL + "extra: " + "[" * depth + "]" * depth + "\n"
    else:
        text = SMALL + "".join(" " * i + "k:\n" for i in range(depth)) + " " * depth + "k: 1\n"
    assert main(["solve", str(_cfg(tmp_path, text)), "--out", str(tmp_path / "r")]) == BAD_INPUT
    assert "nested" in _one_line(capsys) or "YAML" in capsys.readouterr().err


def test_a_huge_value_is_not_echoed_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    grid = "[" + ",".join(["1.0"] * 20_000) + "]"   # a 80 kB value (1 MB in the report)
    cfg = _cfg(tmp_path, SMALL.replace("grid: uniform", f"grid: {grid}"))
    assert main(["solve", str(cfg), "--out", str(tmp_path / "r")]) == BAD_INPUT
    err = _one_line(capsys)
    assert "solver.grid" in err and "20000 items" in err


def test_deeply_nested_json_table_is_an_export_error(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "t.json"
    path.write_text('{"header": ' + "[" * 100_000 + "]" * 100_000 + ', "columns": {}}')
    with pytest.raises(ExportError, match="t.json"):
        load_table(path)
    assert main(["export", str(path), "--out", str(tmp_path / "t.npz")]) == BAD_INPUT
    assert "t.json" in _one_line(capsys)


def test_fit_on_steps_of_10_to_the_12_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """It tried to allocate 14 PiB."""
    curve = tmp_path / "run.csv"
    curve.write_text("step,lr,loss\n0,0.1,1.0\n1000000000000,0.1,0.5\n2000000000000,0.1,0.2\n")
    assert main(["fit", str(curve), "--out", str(tmp_path / "fit"), "--quiet"]) == BAD_INPUT
    err = _one_line(capsys)
    assert "'step'" in err and "2000000000000" in err and "updates" in err


@pytest.mark.parametrize("out", ["/proc/optctl_run", "/sys/optctl_run", "LONG"])
def test_an_unusable_out_is_refused_before_the_solve(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     out: str) -> None:
    target = str(tmp_path / ("x" * 300)) if out == "LONG" else out
    assert main(["solve", str(_cfg(tmp_path, SMALL)), "--out", target]) == BAD_INPUT
    err = _one_line(capsys)
    assert err.startswith("optctl: error: --out")
    assert "solving" not in err


def test_a_300_character_name_with_the_default_out(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cfg = _cfg(tmp_path, SMALL.replace("name: small", "name: " + "n" * 300))
    assert main(["solve", str(cfg)]) == BAD_INPUT
    assert "name" in _one_line(capsys)
    assert not (tmp_path / "results").exists()


def test_a_failed_solve_exits_3_marked_and_claims_nothing(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    """max_iter: 1 printed a warning, then "optimum beats the best baseline by 47.61%", exit 0."""
    out = tmp_path / "run"
    cfg = _cfg(tmp_path, TINY.replace("K: 6}", "K: 6, max_iter: 1, polish: false}"))
    assert main(["solve", str(cfg), "--out", str(out), "--quiet"]) == SOLVER_FAILED
    captured = capsys.readouterr()
    assert "beats" not in captured.out
    assert "did not succeed" in captured.err and "success: false" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["success"] is False and summary["solver"]["success"] is False
    assert "gain_over_best_baseline" in summary  # the numbers are kept, the claim is not made
    # the summary names the problem it solved
    assert summary["T"] == 60 and summary["model"]["N"] == 20 and summary["model"]["a"] == 2.5


def test_exit_codes_and_version_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    text = " ".join(build_parser().format_help().split())
    assert "exit codes: 0 success" in text and f"{SOLVER_FAILED} the solver did not succeed" in text
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert f"| {SOLVER_FAILED} |" in readme and f"| {BAD_INPUT} |" in readme
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("optctl ")


def test_counts_on_the_command_line_read_like_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--T 1e5 was refused although YAML takes 1e5; --K 100000 --T 1000 went silently."""
    out = tmp_path / "run"
    assert main(["solve", str(_cfg(tmp_path, TINY)), "--T", "4e1", "--out", str(out),
                 "--no-baselines"]) == 0
    assert json.loads((out / "summary.json").read_text())["T"] == 40
    # progress lines say why an iterate's value may rise, and give the best so far
    assert "(best so far" in capsys.readouterr().err
    assert main(["solve", str(_cfg(tmp_path, TINY)), "--K", "100000", "--T", "1000",
                 "--out", str(tmp_path / "r2"), "--quiet"]) == BAD_INPUT
    assert "--K = 100000" in _one_line(capsys)
    with pytest.raises(SystemExit) as stop:
        main(["solve", "--T", "1.5"])
    assert stop.value.code == BAD_INPUT and "whole number" in capsys.readouterr().err


def test_a_missing_config_names_no_python_function(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(tmp_path / "nope.yaml")]) == BAD_INPUT
    err = _one_line(capsys)
    assert "nope.yaml" in err and "()" not in err


def test_curves_without_decay_are_found(tmp_path: Path) -> None:
    from optctl.calibrate.curves import flat_curves
    from optctl.io.curves import load_curves

    rows = {"flat": [1.0] * 8, "rising": [1.0 + i / 10 for i in range(8)],
            "noisy": [1.0, 1.02, 0.98, 1.01, 0.99, 1.0, 0.97, 1.0], "learns": [1.0 / (1 + i) for i in range(8)]}
    paths = []
    for name, loss in rows.items():
        path = tmp_path / f"{name}.csv"
        path.write_text("step,lr,loss\n" + "".join(f"{10 * i},0.1,{v}\n" for i, v in enumerate(loss)))
        paths.append(str(path))
    assert flat_curves(load_curves(paths)) == ["flat", "rising", "noisy"]


@pytest.mark.slow
def test_fit_warns_when_the_curves_carry_no_decay(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Constant or rising loss was fitted with a confident phase (a full fit: slow)."""
    paths = []
    for name, loss in (("flat", lambda t: 1.0), ("rising", lambda t: 1.0 + t / 1000)):
        path = tmp_path / f"{name}.csv"
        path.write_text("step,lr,loss\n" + "".join(f"{t},0.1,{loss(t)}\n" for t in range(0, 400, 40)))
        paths.append(str(path))
    code = main(["fit", *paths, "--out", str(tmp_path / "fit"), "--quiet", "--bootstrap", "0",
                 "--N", "50"])
    captured = capsys.readouterr()
    assert code == 0
    assert "phase: unsure" in captured.out
    assert "cannot be identified" in captured.err and "warning" in captured.err
    fit = json.loads((tmp_path / "fit" / "fit.json").read_text())
    assert fit["phase"]["label"] == "unsure"


# --- resources: refused before any work, with the estimate, the limit and the fix -------------


@pytest.mark.parametrize(("old", "new", "says"), [
    ("N: 60", "N: 10000000", "model.N = 10000000"),          # was killed at 22.5 GB after 90 s
    ("T: 300", "T: 100000000", "training.T = 100000000"),   # grew past 8.8 GB
])
def test_a_solve_too_large_for_memory_is_refused_before_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
        old: str, new: str, says: str) -> None:
    monkeypatch.setenv("OPTCTL_MEMORY_LIMIT", "16G")
    cfg = _cfg(tmp_path, SMALL.replace("grid: uniform, K: 30", "grid: auto, K: 100").replace(old, new))
    assert main(["solve", str(cfg), "--out", str(tmp_path / "run")]) == BAD_INPUT
    err = _one_line(capsys)
    assert says in err and "GiB" in err and "OPTCTL_MEMORY_LIMIT (16.0 GiB)" in err
    assert "nothing was started" in err and "Try " in err
    assert not (tmp_path / "run").exists()


def test_the_estimate_follows_the_plan() -> None:
    from optctl.solver import ipopt
    from optctl.solver.resources import POLISH_MAX_T, estimate_solve
    from optctl.spec import ProblemSpec, SolverOptions

    assert POLISH_MAX_T == ipopt.POLISH_MAX_T
    spec = ProblemSpec(a=3.5, b=5.0, N=100_000, T=1000, batch_size=5)
    # measured: 0.87 GB peak for this solve; the estimate is within a factor of two
    est = estimate_solve(spec, SolverOptions())
    assert 0.87e9 / 2 < est.total < 2 * 0.87e9
    # the polish's T x N states dominate, and switching it off removes them
    assert est.parts["polish gradient"] > 0.5 * est.total
    assert estimate_solve(spec, SolverOptions(polish=False)).parts["polish gradient"] == 0


def test_a_fit_too_large_for_memory_is_refused_before_work(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTCTL_MEMORY_LIMIT", "1G")
    paths = []
    for i in range(3):
        path = tmp_path / f"run{i}.csv"
        path.write_text(f"step,lr,loss\n0,0.1,1.0\n500000,0.{i + 1},0.5\n1000000,0.1,0.2\n")
        paths.append(str(path))
    assert main(["fit", *paths, "--out", str(tmp_path / "fit"), "--quiet"]) == BAD_INPUT
    err = _one_line(capsys)
    assert "3 curves of up to 1000000 updates" in err and "nothing was started" in err
    assert not (tmp_path / "fit").exists()


def test_equal_baselines_share_one_legend_entry() -> None:
    """When tuned WSD equals linear decay the legend listed a line that could not be seen."""
    import numpy as np

    from optctl import plots

    decay = np.linspace(1.0, 0.0, 50)
    fig = plots.plot_schedule(decay ** 2, {"linear_decay": decay, "cosine": decay ** 0.5,
                                           "wsd": decay.copy()})
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["linear_decay = wsd", "cosine", "optimal"]


def test_a_pipe_given_as_input_is_refused_not_read_for_ever(tmp_path: Path) -> None:
    """Reading a FIFO blocks until a writer appears: every reader refuses one first."""
    import os

    from optctl.errors import ConfigError, CurveError, ExportError
    from optctl.io.config import load_config
    from optctl.io.curves import load_curve
    from optctl.io.tables import load_table

    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    with pytest.raises(ExportError, match="is not a regular file"):
        load_table(fifo)
    with pytest.raises(CurveError, match="is not a regular file"):
        load_curve(fifo)
    with pytest.raises(ConfigError, match="is not a regular file"):
        load_config(fifo)


def test_an_empty_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optctl.cli.main import main

    cfg = tmp_path / "c.yaml"
    cfg.write_text("schema_version: 1\nmodel: {a: 2.5, b: 1.5, N: 20}\ntraining: {T: 50}\n")
    assert main(["solve", str(cfg), "--out", "", "--quiet"]) == 2
    assert "--out = '': is empty" in capsys.readouterr().err
