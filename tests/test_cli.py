"""`optctl solve`: the results folder on success; one line, exit 2 and nothing written on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from optctl.cli.main import main
from optctl.model.replay import final_loss
from optctl.spec import ProblemSpec

SMALL = """schema_version: 1
name: small
model: {a: 2.5, b: 1.5, N: 60, sigma: 0.5}
training: {T: 300, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 30}
baselines: [constant, wsd]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


def test_solve_writes_a_complete_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    assert main(["solve", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 0
    names = {p.name for p in out.iterdir()}
    assert names == {"config.yaml", "summary.json", "arrays.npz", "schedule.png", "loss.png"}
    summary = json.loads((out / "summary.json").read_text())
    arrays = np.load(out / "arrays.npz")
    spec = ProblemSpec(a=2.5, b=1.5, N=60, sigma=0.5, batch_size=4, T=300)
    # The summary's number is the replay of the stored schedule, not the NLP's claim.
    assert summary["final_loss"] == pytest.approx(final_loss(spec, arrays["eta"]), rel=1e-12)
    assert set(summary["baselines"]) == {"constant", "wsd"}
    assert summary["final_loss"] < min(b["final_loss"] for b in summary["baselines"].values())
    assert summary["gain_over_best_baseline"]["loss_ratio"] > 1
    assert summary["solver"]["iterations"] > 0 and "casadi" in summary["versions"]
    assert arrays["loss"].shape == (301,)
    assert "optimal" in capsys.readouterr().out
    # --T overrides the horizon and the folder refuses to be overwritten silently
    assert main(["solve", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 2


@pytest.mark.parametrize(("bad", "field"), [
    ("a: 2.5", "a: 0.5"),
    ("N: 60", "N: -3"),
    ("sigma: 0.5}", "sigma: .nan}"),
    ("T: 300", "T: 0"),
    ("eta_max: 1.0", "eta_max: 0"),
    ("N: 60", "N: 60, M: 3"),
])
def test_bad_config_one_line_exit_2_no_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                              bad: str, field: str) -> None:
    out = tmp_path / "run"
    code = main(["solve", str(_write(tmp_path, SMALL.replace(bad, field))), "--out", str(out), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("optctl: error: ") and "\n" not in err
    key = field.split(",")[-1].split(":")[0].strip()
    assert key in err
    assert not out.exists()
    assert [p for p in tmp_path.iterdir() if p.name != "cfg.yaml"] == []


def test_bad_override_and_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["solve", str(_write(tmp_path, SMALL)), "--T", "0", "--out", str(tmp_path / "r")]) == 2
    assert "T" in capsys.readouterr().err
    assert main(["solve", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "r")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", [
    ["solve", "CFG", "--out", "OUT"],
    ["sweep", "configs/sweep_horizons.yaml", "--out", "OUT"],
    ["export", "configs/easy_phase.yaml", "--out", "OUT/t.npz"],
    ["fit", "CURVE", "--out", "OUT"],
])
def test_an_unwritable_out_is_refused_before_any_work(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      command: list[str]) -> None:
    """--out below a file: one line, exit 2, before anything is solved (no progress lines)."""
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    root = Path(__file__).parents[1]
    cfg = _write(tmp_path, SMALL)
    curve = tmp_path / "run.csv"
    curve.write_text("step,lr,loss\n" + "".join(f"{t},0.1,{1 / (1 + t)}\n" for t in range(0, 400, 20)))
    files = {"CFG": str(cfg), "CURVE": str(curve)}
    argv = [files.get(a, a.replace("OUT", str(blocker / "x"))) for a in command]
    argv = [str(root / a) if a.startswith("configs/") else a for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: --out") and "a_file is a file" in err and "\n" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a_file", "cfg.yaml", "run.csv"]


@pytest.mark.parametrize(("ipopt", "says"), [
    ("{bogus_option: 1}", "No such IPOPT option: bogus_option"),
    ("{max_iter: abc}", "type mismatch"),
    ("{linear_solver: ma57}", "Invalid_Option"),
])
def test_ipopt_that_cannot_run_is_a_solver_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 ipopt: str, says: str) -> None:
    """IPOPT refusing its options is a SolverError: one line, exit 2, nothing written."""
    out = tmp_path / "run"
    cfg = SMALL.replace("K: 30}", f"K: 30, ipopt: {ipopt}}}")
    assert main(["solve", str(_write(tmp_path, cfg)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: IPOPT") and says in err and "\n" not in err
    assert not out.exists()


def test_solver_error_from_python() -> None:
    from optctl import SolverError, SolverOptions, solve

    with pytest.raises(SolverError, match="bogus_option"):
        solve(ProblemSpec(a=2.5, b=1.5, N=30, T=40), SolverOptions(ipopt={"bogus_option": 1}))


def test_an_assumption_breach_is_one_line_on_the_command_line_and_in_the_summary(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "flat.yaml"
    cfg.write_text("schema_version: 1\nname: flat\nmodel: {a: 2.0, b: 0.9, N: 64, sigma: 0.5}\n"
                   "training: {T: 200, batch_size: 5, eta_max: 0.5}\n")
    out = tmp_path / "run"
    assert main(["solve", str(cfg), "--law", "--no-baselines", "--quiet", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "model.b" in ln]
    assert len(lines) == 1 and lines[0].startswith("optctl: warning: model.b")
    assert "b = 0.9 <= 1 is outside the model's assumptions" in lines[0]
    # Python's own rendering names the file, the line and the warning's class: none of it here.
    assert "AssumptionWarning" not in err and "warnings.warn" not in err and ".py:" not in err
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["assumptions"]) == 1 and "b = 0.9 <= 1" in summary["assumptions"][0]
    # Within the theory's assumptions: no warning and no note.
    cfg.write_text(cfg.read_text().replace("b: 0.9", "b: 1.5"))
    assert main(["solve", str(cfg), "--law", "--no-baselines", "--quiet", "--out", str(tmp_path / "ok")]) == 0
    assert "warning" not in capsys.readouterr().err
    assert "assumptions" not in json.loads((tmp_path / "ok" / "summary.json").read_text())


@pytest.mark.parametrize("value", ["two", "1.5", "-1"])
def test_a_bad_thread_count_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    """OPTCTL_THREADS that is not a whole number ≥ 0: the variable, its value and the fix on
    one line, exit 2, nothing written (it was a bare ValueError at import)."""
    import subprocess
    import sys

    from optctl.errors import ConfigError
    from optctl.solver.ipopt import threads

    monkeypatch.setenv("OPTCTL_THREADS", value)
    # importing the solver no longer fails; the value is reported where it is used
    done = subprocess.run([sys.executable, "-c", "import optctl.solver.ipopt"], capture_output=True,
                          text=True, env={**__import__("os").environ, "OPTCTL_THREADS": value})
    assert done.returncode == 0, done.stderr
    with pytest.raises(ConfigError, match=f"OPTCTL_THREADS = '{value}'.*whole number.*OPTCTL_THREADS=1"):
        threads()
    out = tmp_path / "run"
    assert main(["solve", str(_write(tmp_path, SMALL)), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: OPTCTL_THREADS") and value in err and "\n" not in err
    assert not out.exists()


def test_a_good_thread_count_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    from optctl.solver.ipopt import MAX_THREADS, threads

    monkeypatch.setenv("OPTCTL_THREADS", " 3 ")
    assert threads() == 3
    monkeypatch.setenv("OPTCTL_THREADS", "0")
    assert 1 <= threads() <= MAX_THREADS
    monkeypatch.delenv("OPTCTL_THREADS")
    assert 1 <= threads() <= MAX_THREADS


def test_the_program_exits_quickly_with_its_code_output_and_cleanup(tmp_path: Path) -> None:
    """``python -m optctl.cli.main`` (the ``optctl`` program) skips the interpreter's teardown:
    its output still arrives whole through a pipe, the exit code is the command's, and the
    exit handlers still run (the compiler's scratch folder is removed)."""
    import os
    import subprocess
    import sys

    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "OPTCTL_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("OPTCTL_NLP_CACHE", None)
    out = tmp_path / "run"
    cfg = _write(tmp_path, SMALL)
    done = subprocess.run([sys.executable, "-m", "optctl.cli.main", "solve", str(cfg), "--out", str(out),
                           "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("schedule") and done.stdout.rstrip().endswith(
        f"results written to {out}")
    assert {p.name for p in out.iterdir()} == {"config.yaml", "summary.json", "arrays.npz",
                                               "schedule.png", "loss.png"}
    assert json.loads((out / "summary.json").read_text())["solver"]["compile_cache"] == "built"
    assert list(scratch.iterdir()) == []  # the NLP was compiled in there, and removed at exit
    bad = _write(tmp_path, SMALL.replace("N: 60", "N: -3"))
    done = subprocess.run([sys.executable, "-m", "optctl.cli.main", "solve", str(bad), "--out",
                           str(tmp_path / "bad"), "--quiet"], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and done.stderr.startswith("optctl: error: ") and "N" in done.stderr


def test_a_solve_stopped_at_its_iteration_cap_is_not_printed_or_drawn_as_optimal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from optctl.io.runs import read_run, run_figures

    out = tmp_path / "run"
    capped = SMALL.replace("solver: {grid: uniform, K: 30}", "solver: {grid: uniform, K: 30, max_iter: 2}")
    assert main(["solve", str(_write(tmp_path, capped)), "--out", str(out), "--quiet"]) != 0
    printed = capsys.readouterr().out
    label = "optimum (not converged: Maximum_Iterations_Exceeded)"
    assert label in printed
    assert not any(line.startswith("optimal") for line in printed.splitlines())
    report = read_run(out).report
    assert report.result.label == label
    figures = run_figures(report, "capped")
    assert {f[2]["label"] for f in figures.values()} == {label}
    from optctl import plots

    fig = plots.plot_loss(report.result.loss, {}, title="capped", label=label)
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert any(t.startswith(label) for t in legend) and not any(t.startswith("optimal") for t in legend)
