"""``kill -9`` at random points of a solve, an export and a sweep (real processes, 20 kills
each): what is on disk after each kill is complete or absent, a re-run succeeds, and no
temporary file or folder survives the re-run. Slow: about a minute per command."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from optctl.io.runs import read_run
from optctl.io.tables import load_table

pytestmark = pytest.mark.slow

ROOT = Path(__file__).parents[1]
KILLS = 20
SOLVE = """schema_version: 1
name: killed
model: {a: 2.5, b: 1.5, N: 40, sigma: 0.5}
training: {T: 200, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 20}
baselines: [constant]
"""
SWEEP = """schema_version: 1
name: killed
kind: horizons
model: {a: 2.5, b: 1.5, N: 40, sigma: 0.5}
training: {batch_size: 4, eta_max: 1.0}
solver: {grid: refined, K: 16, polish: false}
baselines: [constant]
sweep:
  axes:
    b: [1.5, 3.5]
  horizons: [100, 300]
  workers: 1
"""


def _start(*args: str) -> subprocess.Popen[bytes]:
    # its own process group, so that the kill reaches a sweep's workers too
    return subprocess.Popen([sys.executable, "-m", "optctl.cli.main", *args], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def _timed(*args: str) -> float:
    t0 = time.monotonic()
    proc = _start(*args)
    assert proc.wait(timeout=600) == 0, args
    return time.monotonic() - t0


def _kill_at_random(args: list[str], duration: float, rng: random.Random,
                    after_each: Callable[[], None], restart: Path | None = None) -> int:
    """Start ``args`` KILLS times, each killed with SIGKILL after a random share of
    ``duration``; ``after_each()`` checks the disk after every kill. Returns how many
    runs were killed (not finished before the kill). ``restart``: a folder removed when
    a run finished before its kill (a resumed sweep has less left to do each time)."""
    killed = 0
    for _ in range(KILLS):
        proc = _start(*args)
        time.sleep(rng.uniform(0.05, 1.0) * duration)
        finished = proc.poll() is not None
        killed += not finished
        with contextlib.suppress(ProcessLookupError):  # a group already gone
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        after_each()
        if finished and restart is not None:
            shutil.rmtree(restart)
    print(f"{args[0]}: {KILLS} kills, {killed} of them before the run finished")  # pytest -s
    return killed


def _temporaries(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith((".partial", ".lock"))]


def test_kill_9_during_solve(tmp_path: Path) -> None:
    rng = random.Random(14)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(SOLVE)
    out = tmp_path / "run"
    duration = _timed("solve", str(cfg), "--out", str(tmp_path / "first"), "--quiet")

    def check() -> None:
        if out.exists():
            read_run(out)  # complete: every file there and consistent

    args = ["solve", str(cfg), "--out", str(out), "--quiet", "--overwrite"]
    killed = _kill_at_random(args, duration, rng, check)
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} runs were killed before they finished"
    assert _timed(*args) > 0  # the re-run succeeds (exit 0)
    assert read_run(out).name == "killed"
    assert _temporaries(tmp_path) == []


def test_kill_9_during_export(tmp_path: Path) -> None:
    rng = random.Random(15)
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(SOLVE)
    run = tmp_path / "run"
    _timed("solve", str(cfg), "--out", str(run), "--quiet", "--no-baselines")
    table = tmp_path / "table.csv"
    args = ["export", str(run), "--out", str(table), "--overwrite"]
    duration = _timed(*args)
    table.unlink()

    def check() -> None:
        if table.exists():
            load_table(table)  # complete: the content hash matches

    killed = _kill_at_random(args, duration, rng, check)
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} runs were killed before they finished"
    _timed(*args)
    assert load_table(table).T == 200
    assert _temporaries(tmp_path) == []


def test_kill_9_during_sweep(tmp_path: Path) -> None:
    rng = random.Random(16)
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(SWEEP)
    out = tmp_path / "out"
    args = ["sweep", str(cfg), "--out", str(out), "--quiet", "--no-plots"]
    duration = _timed("sweep", str(cfg), "--out", str(tmp_path / "first"), "--quiet", "--no-plots")

    def check() -> None:
        for path in out.rglob("*.json"):
            json.loads(path.read_text())  # every record on disk is complete

    killed = _kill_at_random(args, duration, rng, check, restart=out)
    assert killed >= KILLS // 2, f"only {killed} of {KILLS} runs were killed before they finished"
    _timed(*args)
    assert len(list((out / "points").rglob("T*.json"))) == 2 * 2
    assert _temporaries(out) == []
