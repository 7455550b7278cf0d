"""Sweep configs, the sweep engine (resume, kill, local processes, Dask), reports and CLI."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from conftest import BASELINE_REPLAY_RTOL

from optctl.baselines.families import rates
from optctl.cli.main import main
from optctl.errors import AssumptionWarning, SpecError, SpecTypeError, SweepError
from optctl.io.config import ConfigError
from optctl.io.sweepconfig import load_sweep_config, load_sweep_dict, point_key
from optctl.model.momentum import momentum_curve
from optctl.model.replay import final_loss
from optctl.studies.horizons import horizon_study
from optctl.studies.sweep import Progress, load_sweep, record_path, run_sweep

REPO = Path(__file__).resolve().parents[1]

TINY = """schema_version: 1
name: tiny
kind: horizons
model: {a: 2.5, b: 1.5, N: 40, sigma: 0.5}
training: {batch_size: 4, eta_max: 1.0}
solver: {grid: refined, K: 16, polish: false}
baselines: [constant]
sweep:
  axes:
    b: [1.5, 3.5]
  horizons: [100, 300, 1000]
  workers: 1
"""


def _cfg(tmp_path: Path, text: str = TINY, name: str = "sweep.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _records(out: Path) -> dict[str, tuple[float, str]]:
    """Every saved record: relative path -> (mtime, content)."""
    return {str(p.relative_to(out)): (p.stat().st_mtime_ns, p.read_text())
            for p in sorted((out / "points").rglob("T*.json"))}


# --- config ------------------------------------------------------------------------


def test_config_expands_axes_and_horizons(tmp_path: Path) -> None:
    s = load_sweep_dict({
        "schema_version": 1, "name": "x", "kind": "phase_diagram",
        "model": {"N": 100}, "training": {"batch_size": 5},
        "sweep": {"axes": {"a": {"linspace": [1.25, 1.85, 3]}, "b": [2.0, 3.0]},
                  "horizons": {"logspace": [2, 3, 3]}}})
    assert s.axes["a"] == (1.25, 1.55, 1.85)  # rounded, not 1.5500000000000003
    assert s.horizons == (100, 316, 1000)
    assert len(s.points()) == 6
    assert point_key({"a": 1.55, "b": 2.0}) == "a1.55_b2"
    assert s.spec(s.points()[0], 316).T == 316
    # workers and scheduler do not change results, so they do not change the digest.
    import dataclasses
    assert dataclasses.replace(s, workers=7, scheduler="tcp://x:1").digest() == s.digest()
    assert dataclasses.replace(s, horizons=(100, 1000)).digest() != s.digest()


@pytest.mark.parametrize(("patch", "field", "exc"), [
    ({"training": {"T": 100}}, "training.T", ConfigError),
    ({"sweep": {"axes": {"c": [1.0]}, "horizons": [10]}}, "sweep.axes.c", ConfigError),
    ({"sweep": {"axes": {"a": [2.0, 0.5]}, "horizons": [10]}}, "sweep.axes.a = 0.5", ConfigError),
    ({"model": {"a": 0.5, "b": 1.5}}, "model.a", SpecError),
    ({"sweep": {"axes": {"a": {"linspace": [1, 2]}}, "horizons": [10]}}, "sweep.axes.a", ConfigError),
    ({"sweep": {"horizons": [10], "workers": 0}}, "sweep.workers = 0: must be a positive", ConfigError),
    ({"sweep": {"horizons": [10], "workers": "2"}}, "sweep.workers", SpecTypeError),
    ({"sweep": {"horizons": [10], "baseline_horizons": [20]}}, "sweep.baseline_horizons", ConfigError),
    ({"kind": "compute_optimal", "sweep": {"axes": {"N": [10, 20]}, "horizons": [10]}}, "model.tail", ConfigError),
    ({"kind": "phase_diagram", "sweep": {"axes": {"a": [2.0]}, "horizons": [10]}}, "sweep.axes", ConfigError),
    ({"kind": "horizons", "sweep": {"horizons": [10]}}, "sweep.horizons", ConfigError),
])
def test_bad_configs_name_the_field(patch: dict[str, Any], field: str, exc: type[Exception]) -> None:
    d: dict[str, Any] = {"schema_version": 1, "name": "x", "kind": "grid", "model": {"a": 2.0, "b": 1.5},
                         "sweep": {"horizons": [10]}}
    d.update(patch)
    with pytest.raises(exc) as info:
        load_sweep_dict(d)
    assert field in str(info.value)


def test_packaged_sweeps_match_the_configs_folder() -> None:
    for name in ("horizons", "compute_easy", "compute_hard", "boundary"):
        packaged = (REPO / "optctl" / "data" / f"sweep_{name}.yaml").read_text()
        assert packaged == (REPO / "configs" / f"sweep_{name}.yaml").read_text(), name
    for p in sorted((REPO / "configs").glob("sweep_*.yaml")):
        if p.name == "sweep_phase_diagram.yaml":  # its b axis reaches 1.0: a finite-N regime, named
            with pytest.warns(AssumptionWarning, match=r"sweep\.axes\.b .*\[1\.0\]"):
                load_sweep_config(p)
        else:
            load_sweep_config(p)


def test_sweep_values_of_b_at_or_below_one_are_named_in_a_warning() -> None:
    d = yaml.safe_load(TINY)
    d["sweep"]["axes"]["b"] = [0.8, 1.0, 1.5]
    with pytest.warns(AssumptionWarning, match=r"sweep\.axes\.b: 2 value\(s\) \[0\.8, 1\.0\]") as rec:
        load_sweep_dict(d)
    assert "finite-N" in str(rec[0].message)
    d["sweep"]["axes"]["b"] = [1.05, 3.5]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AssumptionWarning)
        load_sweep_dict(d)


# --- engine ------------------------------------------------------------------------


def test_sweep_saves_every_horizon_and_resume_skips_everything(tmp_path: Path) -> None:
    sweep = load_sweep_config(_cfg(tmp_path))
    out = tmp_path / "out"
    buf = io.StringIO()
    run = run_sweep(sweep, out, stream=buf)
    assert (run.total, run.skipped, run.ran, run.failed) == (2, 0, 2, {})
    assert "2/2 points (6/6 solves)" in buf.getvalue().splitlines()[-1]  # the last line counts all
    before = _records(out)
    assert len(before) == 2 * 3
    data = load_sweep(out)
    for key, recs in data.records.items():
        for T, rec in recs.items():
            # The saved number is the exact replay of the saved schedule.
            eta = np.repeat(rec["eta_blocks"], np.diff(rec["grid"]))
            spec = data.sweep.spec(rec["values"], T)
            assert rec["final_loss"] == pytest.approx(final_loss(spec, eta), rel=BASELINE_REPLAY_RTOL)
            b = rec["baselines"]["constant"]
            assert b["final_loss"] == pytest.approx(
                final_loss(spec, rates("constant", b["params"], T, spec.eta_max)), rel=BASELINE_REPLAY_RTOL)
            assert rec["key"] == key
    again = run_sweep(sweep, out, progress=False)
    assert (again.skipped, again.ran) == (2, 0)
    assert _records(out) == before


def test_each_horizon_is_warm_started_from_the_previous_one(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import optctl.solver.job

    real = optctl.solver.job.solve
    seen: list[tuple[int, Any]] = []
    warm: list[bool] = []

    def spy(spec: Any, options: Any = None, *, controls: Any = None, init: Any = None,
            **kw: Any) -> Any:
        seen.append((spec.T, init))
        warm.append(kw.get("warm", False))
        return real(spec, options, controls=controls, init=init, **kw)

    monkeypatch.setattr(optctl.solver.job, "solve", spy)
    sweep = load_sweep_config(_cfg(tmp_path, TINY.replace("b: [1.5, 3.5]", "b: [3.5]")))
    run_sweep(sweep, tmp_path / "out", progress=False)
    assert [T for T, _ in seen] == [100, 300, 1000]
    assert seen[0][1] is None
    assert warm == [True, True, True]  # a warm-started sweep asks for the warm solve's short start
    rec = load_sweep(tmp_path / "out").records["b3.5"][100]
    init = seen[1][1]
    # The warm start is the previous horizon's schedule, read at the same t/T.
    mid = 0.5 * (np.array(rec["grid"][:-1]) + np.array(rec["grid"][1:])) / 100
    np.testing.assert_allclose(init(mid), rec["eta_blocks"])


def test_a_folder_of_another_sweep_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run_sweep(load_sweep_config(_cfg(tmp_path, TINY.replace("b: [1.5, 3.5]", "b: [3.5]"))), out,
              progress=False)
    other = load_sweep_config(_cfg(tmp_path, TINY.replace("b: [1.5, 3.5]", "b: [3.5]").replace(
        "K: 16", "K: 17"), name="other.yaml"))
    with pytest.raises(SweepError, match="different sweep"):
        run_sweep(other, out, progress=False)


def test_progress_reports_points_and_time_left() -> None:
    buf = io.StringIO()
    bar = Progress(4, 1, stream=buf)
    bar.update()
    bar.update()
    bar.update()
    lines = buf.getvalue().splitlines()
    assert lines[0].startswith("[") and "1/4 points" in lines[0]
    assert "4/4 points" in lines[-1] and "left ~0m00s" in lines[-1]



def test_progress_counts_solves_between_points(monkeypatch: pytest.MonkeyPatch) -> None:
    class TTY(io.StringIO):
        def isatty(self) -> bool:
            return True

    now = [0.0]
    monkeypatch.setattr("optctl.studies.sweep.time.perf_counter", lambda: now[0])
    buf = TTY()
    bar = Progress(4, 0, stream=buf, solves=(0, 12))  # t0 = 0
    now[0] = 10.0
    bar.set_solves(3)  # 3 solves in 10 s, 9 to go: 30 s left, no point finished yet
    last = buf.getvalue().split("\r")[-1]
    assert "0/4 points (3/12 solves)" in last and "elapsed 0m10s" in last and "left ~0m30s" in last


KILL = TINY.replace("N: 40", "N: 300").replace("K: 16", "K: 40").replace(
    "b: [1.5, 3.5]", "b: [1.5, 1.9, 2.3, 2.7, 3.1, 3.5, 3.9, 4.3]").replace(
    "horizons: [100, 300, 1000]", "horizons: [300, 1000, 3000]").replace("workers: 1", "workers: 2")


def _start_sweep(cfg: Path, out: Path) -> subprocess.Popen[bytes]:
    """`optctl sweep CFG --out OUT` in a new session (its own process group)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "optctl.cli.main", "sweep", str(cfg), "--out", str(out),
                             "--quiet", "--no-plots"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def test_a_killed_sweep_loses_no_finished_point_and_resumes(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, KILL)
    out = tmp_path / "out"
    proc = _start_sweep(cfg, out)
    deadline = time.time() + 120
    try:
        while time.time() < deadline and len(list(out.glob("points/*/T*.json"))) < 6:
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes
        proc.wait()
    saved = _records(out)
    assert 6 <= len(saved) < 24, "kill the sweep halfway: some records, not all"
    for text in (t for _, t in saved.values()):
        json.loads(text)  # every record on disk is complete
    sweep = load_sweep_config(cfg)
    run = run_sweep(sweep, out, workers=2, progress=False)
    assert run.failed == {}
    after = _records(out)
    assert len(after) == 8 * 3
    # Nothing finished before the kill was recomputed.
    assert {k: after[k] for k in saved} == saved
    done_before = {k.split("/")[1] for k in saved if k.endswith("T3000.json")}
    assert run.skipped == len(done_before)


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(c) for c in path.read_text().split()] if path.exists() else []


def _still_running(pids: list[int], timeout: float) -> list[int]:
    """The processes of ``pids`` still running (not gone, not zombies) after ``timeout`` s."""
    deadline = time.time() + timeout
    alive = pids
    while alive and time.time() < deadline:
        time.sleep(0.1)
        alive = [p for p in pids if Path(f"/proc/{p}").exists()
                 and "Z" not in Path(f"/proc/{p}/stat").read_text().split()[2]]
    return alive


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_worker_processes_end_with_the_driver(tmp_path: Path, sig: signal.Signals) -> None:
    """`kill PID` / `kill -9 PID` on the driver alone: its workers must not go on solving
    and writing records (SIGTERM stops them at once; after SIGKILL they notice)."""
    if not Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children").exists():
        pytest.skip("needs Linux /proc/<pid>/task/<tid>/children")
    cfg = _cfg(tmp_path, KILL)
    out = tmp_path / "out"
    proc = _start_sweep(cfg, out)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(list(out.glob("points/*/T*.json"))) < 2:
            time.sleep(0.05)
        workers = _children(proc.pid)
        assert workers, "the sweep should run on worker processes"
        proc.send_signal(sig)
        # SIGTERM is turned into a clean exit (status 143); SIGKILL cannot be caught.
        assert proc.wait(timeout=60) == (128 + sig if sig == signal.SIGTERM else -sig)
        alive = _still_running(workers, timeout=30)
        assert not alive, f"worker processes {alive} outlived the driver"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_dask_cluster_runs_the_same_sweep(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    sweep = load_sweep_config(_cfg(tmp_path))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        run = run_sweep(sweep, tmp_path / "dask", scheduler=cluster.scheduler_address, progress=False)
    assert (run.ran, run.failed) == (2, {})
    run_sweep(sweep, tmp_path / "local", progress=False)
    dk, lc = load_sweep(tmp_path / "dask"), load_sweep(tmp_path / "local")
    for key in lc.records:
        for T in sweep.horizons:
            # Same model, same deterministic solver: the same schedule and loss.
            assert dk.records[key][T]["final_loss"] == pytest.approx(lc.records[key][T]["final_loss"],
                                                                    rel=BASELINE_REPLAY_RTOL)


def test_unreachable_scheduler_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("distributed")
    import optctl.studies.sweep

    monkeypatch.setattr(optctl.studies.sweep, "DASK_CONNECT_TIMEOUT", 1.0)
    sweep = load_sweep_config(_cfg(tmp_path))
    with pytest.raises(SweepError, match="Dask scheduler"):
        run_sweep(sweep, tmp_path / "out", scheduler="tcp://127.0.0.1:9", progress=False)


# --- analysis, report, CLI ----------------------------------------------------------


def test_horizon_study_attaches_theory_and_local_slopes(tmp_path: Path) -> None:
    sweep = load_sweep_config(_cfg(tmp_path))
    run_sweep(sweep, tmp_path / "out", progress=False)
    st = horizon_study(load_sweep(tmp_path / "out"), "b1.5")
    assert set(st.fits) == {"optimal", "constant"}
    # a = 2.5, b = 1.5: ζ* = min(1.5/2.5, 1.5/1.5) = 0.6, ζ_const = 1.5/3 = 0.5 (MODEL.md §5).
    assert st.fits["optimal"].theory == pytest.approx(0.6)
    assert st.fits["constant"].theory == pytest.approx(0.5)
    assert st.fits["optimal"].local_slopes.size == 2
    # The optimum beats the best constant at every horizon.
    assert np.all(st.losses["optimal"] < st.losses["constant"])


def test_cli_sweep_then_plot_writes_report_and_figures(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path)
    out = tmp_path / "out"
    assert main(["sweep", str(cfg), "--out", str(out), "--quiet"]) == 0
    figs = {p.name for p in (out / "figures").iterdir()}
    assert {"b1.5_schedules.png", "b1.5_losses.png", "b1.5_exponents.png"} <= figs
    report = json.loads((out / "report.json").read_text())
    assert set(report["points"]) == {"b1.5", "b3.5"}
    (out / "figures" / "b1.5_exponents.png").unlink()
    assert main(["plot", str(out)]) == 0
    assert (out / "figures" / "b1.5_exponents.png").exists()
    assert record_path(out, "b1.5", 1000).exists()


def test_cli_errors_are_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _cfg(tmp_path, TINY.replace("horizons: [100, 300, 1000]", "horizons: [100]\n  T: 5"))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: sweep.T") and "\n" not in err
    assert not (tmp_path / "x").exists()
    (tmp_path / "empty").mkdir()
    assert main(["plot", str(tmp_path / "empty")]) == 2
    assert "not a results folder" in capsys.readouterr().err
    assert main(["plot", str(tmp_path / "missing")]) == 2
    assert "missing: no such folder" in capsys.readouterr().err


def test_cli_plot_redraws_a_solve_folder(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, """schema_version: 1
name: small
model: {a: 2.5, b: 1.5, N: 40, sigma: 0.5}
training: {T: 200, batch_size: 4}
solver: {grid: uniform, K: 20}
baselines: [constant]
""", name="run.yaml")
    run = tmp_path / "run"
    assert main(["solve", str(cfg), "--out", str(run), "--quiet"]) == 0
    (run / "schedule.png").unlink()
    (run / "loss.png").unlink()
    assert main(["plot", str(run)]) == 0
    assert (run / "schedule.png").exists() and (run / "loss.png").exists()


@pytest.mark.slow
def test_reproduce_quick_writes_every_figure(tmp_path: Path) -> None:
    out = tmp_path / "paper"
    assert main(["reproduce", "--out", str(out), "--quick", "--quiet"]) == 0
    names = {p.name for p in out.glob("*.png")}
    assert names == {"fig2_schedules_easy.png", "fig2_schedules_hard.png", "fig2_losses_easy.png",
                     "fig2_losses_hard.png", "fig2cf_exponents_easy.png", "fig2cf_exponents_hard.png",
                     "fig3_bias_variance.png", "fig4_compute_frontier.png", "fig1b_constant_rates_easy.png",
                     "fig1b_constant_rates_hard.png", "fig_decay_window_hard.png", "fig4_frontier_law.png",
                     "fig5_momentum_easy.png", "fig5_momentum_hard.png", "fig_boundary_window.png"}
    report = (out / "report.md").read_text()
    assert "Loss and learning-rate exponents" in report and "The paper's claims" in report
    not_in_paper = {"fig_decay_window_hard.png", "fig_boundary_window.png"}
    assert all(f"| `{name}` | paper's figure" in report or name in not_in_paper for name in names)
    for sub, extra in (("momentum", set()), ("batch", {"ramp_horizons.png"})):
        assert {p.name for p in (out / sub).glob("*.png")} == {f"{sub}_easy.png", f"{sub}_hard.png", *extra}
        assert (out / sub / "report.md").exists()
    assert (out / "boundary.md").exists() and (out / "frontier_law.md").exists()
    claims = json.loads((out / "report.json").read_text())["claims"]
    assert any(c["claim"].startswith("momentum, hard") for c in claims)
    assert any("batch ramps" in c["claim"] for c in claims)


def test_phase_diagram_sweep_writes_its_maps(tmp_path: Path) -> None:
    """A 2 x 2 phase diagram end to end: the maps, the agreement counts, the figure."""
    text = (TINY.replace("kind: horizons", "kind: phase_diagram")
            .replace("    b: [1.5, 3.5]", "    a: [2.0, 3.0]\n    b: [1.5, 3.5]")
            .replace("[100, 300, 1000]", "[100, 300]"))
    out = tmp_path / "out"
    assert main(["sweep", str(_cfg(tmp_path, text)), "--out", str(out), "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    maps = report["maps"]
    assert maps["a"] == [2.0, 3.0] and maps["b"] == [1.5, 3.5]
    assert np.array(maps["label"]).shape == (2, 2)
    ag = report["agreement"]
    assert ag["far"]["points"] + ag["near"]["points"] == 4
    assert ag["far"]["agree"] + ag["far"]["unsure"] + ag["far"]["wrong"] == ag["far"]["points"]
    # the best baseline's gain at the largest baseline horizon is filled in at every point
    assert np.all(np.isfinite(np.array(maps["gain"], dtype=float)))
    assert (out / "figures" / "phase_diagram.png").exists()


def test_a_sweep_solves_every_control_of_its_config(tmp_path: Path) -> None:
    """``controls: [lr, momentum]`` in a sweep: each record holds β per block, the next
    horizon starts from both controls, and the replay of the record is its loss."""
    text = (TINY.replace("baselines: [constant]", "baselines: []\ncontrols: [lr, momentum]")
            .replace("training: {batch_size: 4, eta_max: 1.0}",
                     "training: {batch_size: 4, eta_max: 1.0, beta_min: 0.1}")
            .replace("    b: [1.5, 3.5]", "    b: [1.5]").replace("[100, 300, 1000]", "[40, 80]")
            .replace("K: 16, polish: false", "K: 8, polish: false, max_iter: 300"))
    sweep = load_sweep_config(_cfg(tmp_path, text))
    assert sweep.controls.controls == ("lr", "momentum") and sweep.controls.beta_min == 0.1
    assert sweep.to_dict()["controls"] == ["lr", "momentum"]
    run_sweep(sweep, tmp_path / "out", progress=False)
    recs = load_sweep(tmp_path / "out").records["b1.5"]
    for T, rec in recs.items():
        assert rec["controls"]["controls"] == ["lr", "momentum"]
        beta = np.repeat(rec["second_blocks"], np.diff(rec["grid"]))
        assert np.all(beta >= 0.1 - 1e-12) and np.all(beta <= 1 + 1e-12)
        eta = np.repeat(rec["eta_blocks"], np.diff(rec["grid"]))
        spec = sweep.spec({"b": 1.5}, T)
        # the record's last β block is reported as its neighbour's (it does not act on L_T)
        assert momentum_curve(spec, eta, beta)[-1] == pytest.approx(rec["final_loss"], rel=1e-12)
