"""Run folders are claimed and created exclusively; killed writers leave nothing that lasts.

The claims are tested with real processes: a claim is an operating-system lock, released
when its holder ends, however it ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from optctl.errors import ResultsError
from optctl.io import files
from optctl.io.files import claim, remove_stale_partials, staged_dir, write_text_atomic
from optctl.io.runs import read_run

ROOT = Path(__file__).parents[1]
# A solve that takes a few seconds: long enough for a second job to arrive while it runs.
CONCURRENT = """schema_version: 1
name: concurrent
model: {a: 2.5, b: 1.5, N: 80, sigma: 0.5}
training: {T: 400, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 40}
baselines: [constant, wsd]
"""
# How long a process may take to start and take its claim, under a loaded machine.
START_TIMEOUT_S = 60.0


def _dead_pid() -> int:
    """The id of a process that has ended (and was reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _partial(parent: Path, stem: str, pid: int) -> Path:
    """A temporary folder as a writer with process id ``pid`` on this host names it."""
    path = parent / f".{stem}.abcd1234.{files._HOST_TAG}-{pid}.partial"
    path.mkdir()
    (path / "summary.json").write_text("{}")
    return path


def _leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def _optctl(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "optctl.cli.main", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(path: Path, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while not path.exists():
        assert proc.poll() is None, f"the first job ended before it claimed: {proc.communicate()}"
        assert time.monotonic() < deadline, "the first job never claimed its --out"
        time.sleep(0.02)


def test_two_concurrent_solves_into_one_out_exactly_one_succeeds(tmp_path: Path) -> None:
    """The second job arrives while the first works: it stops at once with one line,
    exit 2, and the first job's folder is complete; nothing else is left."""
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(CONCURRENT)
    out = tmp_path / "run"
    first = _optctl("solve", str(cfg), "--out", str(out), "--quiet")
    _wait_for(tmp_path / ".run.lock", first)
    t0 = time.monotonic()
    second = subprocess.run([sys.executable, "-m", "optctl.cli.main", "solve", str(cfg), "--out",
                             str(out), "--quiet", "--overwrite"], cwd=ROOT, capture_output=True,
                            text=True)
    waited = time.monotonic() - t0
    first_out, first_err = first.communicate(timeout=300)
    assert first.returncode == 0, first_err
    assert second.returncode == 2, second.stderr
    err = second.stderr.strip()
    assert err.startswith("optctl: error: --out") and "being written by another optctl job" in err
    assert "\n" not in err and f"process {first.pid}" in err
    assert first_out.strip().endswith(f"results written to {out}")
    assert first.poll() is not None and waited < START_TIMEOUT_S
    run = read_run(out)  # complete: config, summary, arrays agree
    assert run.name == "concurrent"
    assert {p.name for p in out.iterdir()} >= {"config.yaml", "summary.json", "arrays.npz",
                                               "schedule.png", "loss.png"}
    assert _leftovers(tmp_path) == []  # no lock, no temporary folder


def test_a_claim_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom optctl.io.files import claim\n"
         f"with claim({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(600)"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(ResultsError, match=f"being written by another optctl job \\(process {holder.pid}\\)"), \
                claim(out):
            pass
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with claim(out) as got:  # the lock died with its holder: no stale claim
        assert got == out
    assert _leftovers(tmp_path) == []


def test_a_killed_holders_lock_file_is_removed_by_the_next_claim_in_its_folder(tmp_path: Path) -> None:
    """A killed run leaves its claim file behind; the next job writing beside it (to any
    other folder, as runs with default names do) removes it, and never a live one."""
    script = ("import sys, time\nfrom optctl.io.files import claim\n"
              "with claim(sys.argv[1]):\n    print('held', flush=True)\n    time.sleep(600)")
    dead = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "dead")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    live = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "live")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    try:
        for p in (dead, live):
            assert p.stdout is not None and p.stdout.readline().strip() == "held"
        dead.send_signal(signal.SIGKILL)
        dead.wait()
        assert (tmp_path / ".dead.lock").exists()  # SIGKILL leaves the file
        with claim(tmp_path / "next"):
            assert not (tmp_path / ".dead.lock").exists()
            assert (tmp_path / ".live.lock").exists()  # held: kept
            with pytest.raises(ResultsError, match="being written by another optctl job"), \
                    claim(tmp_path / "live"):
                pass
    finally:
        live.send_signal(signal.SIGKILL)
        live.wait()
        dead.wait()


def test_staged_dir_never_replaces_a_folder_without_overwrite(tmp_path: Path) -> None:
    """The old staging removed an existing final folder even without overwrite."""
    out = tmp_path / "run"
    with staged_dir(out) as tmp:
        write_text_atomic(tmp / "a.txt", "first")
    with pytest.raises(ResultsError, match="already exists"), staged_dir(out) as tmp:
        write_text_atomic(tmp / "a.txt", "second")
    # made by hand while a job runs: the job's folder is not put in its place
    other = tmp_path / "other"
    with pytest.raises(ResultsError, match="created while this job ran"), staged_dir(other) as tmp:
        write_text_atomic(tmp / "a.txt", "job")
        other.mkdir()
        (other / "mine.txt").write_text("hand")
    assert (out / "a.txt").read_text() == "first"
    assert (other / "mine.txt").read_text() == "hand" and not (other / "a.txt").exists()
    with staged_dir(out, overwrite=True) as tmp:
        write_text_atomic(tmp / "a.txt", "third")
    assert (out / "a.txt").read_text() == "third"
    assert _leftovers(tmp_path) == []


def test_stale_partials_of_killed_writers_are_removed_live_ones_kept(tmp_path: Path) -> None:
    """A solve killed during its final write left a hidden temporary folder that later
    runs never removed."""
    dead = _dead_pid()
    stale_own = _partial(tmp_path, "run", dead)           # a killed writer of this --out
    legacy = tmp_path / ".run.xyz98765.partial"           # named before writers were tagged
    legacy.mkdir()
    stale_other = _partial(tmp_path, "other", dead)       # a killed writer of another folder
    live_other = _partial(tmp_path, "other", os.getppid())
    other_host = tmp_path / f".other.abcd1234.ffffff-{dead}.partial"
    other_host.mkdir()
    with staged_dir(tmp_path / "run") as tmp:
        write_text_atomic(tmp / "x.txt", "x")
    assert not stale_own.exists() and not legacy.exists() and not stale_other.exists()
    assert live_other.exists()      # its writer runs: never touched
    assert other_host.exists()      # another machine's writer: cannot tell, kept
    assert (tmp_path / "run" / "x.txt").read_text() == "x"


def test_a_file_writer_removes_its_killed_predecessors_partial(tmp_path: Path) -> None:
    dead = _dead_pid()
    left = tmp_path / f".table.npz.abcd1234.{files._HOST_TAG}-{dead}.partial"
    left.write_bytes(b"half")
    write_text_atomic(tmp_path / "table.npz", "whole")
    assert _leftovers(tmp_path) == []
    # a sweep folder, recursively
    (tmp_path / "points" / "p1").mkdir(parents=True)
    deep = tmp_path / "points" / "p1" / f".T100.json.abcd1234.{files._HOST_TAG}-{dead}.partial"
    deep.write_text("{")
    assert remove_stale_partials(tmp_path, recursive=True) == 1 and not deep.exists()


def test_too_long_names_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ResultsError, match="more than the 255"):
        files.check_new(tmp_path / ("a" * 300), overwrite=False)
    # a name that fits keeps its temporary names within the limit too
    with staged_dir(tmp_path / ("b" * 250)) as tmp:
        assert len(tmp.name) <= files.NAME_MAX
