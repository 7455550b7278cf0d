"""The on-disk cache of compiled NLPs: a second process of the same shape skips the
build, gets the same answer, and a damaged or concurrent cache never breaks a solve."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import optctl.solver.ipopt as ip
from optctl.errors import SolverError
from optctl.model import ckernel
from optctl.model.replay import final_loss
from optctl.solver.solve import solve
from optctl.spec import ProblemSpec, SolverOptions

SPEC = ProblemSpec(a=2.5, b=1.5, N=60, sigma=0.5, batch_size=4, T=400)
OPTIONS = SolverOptions(grid="uniform", K=20)

pytestmark = pytest.mark.skipif(ip.compiler() is None, reason="no C compiler")


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(ckernel.CACHE_DIR_ENV, str(tmp_path))
    monkeypatch.delenv(ip.CACHE_ENV, raising=False)
    monkeypatch.setattr(ip, "_CACHE", type(ip._CACHE)())  # a fresh process's memory
    return tmp_path / "nlp"


def _forget() -> None:
    ip._CACHE.clear()


def test_second_solve_loads_the_library_and_agrees(cache: Path) -> None:
    first = solve(SPEC, OPTIONS)
    assert first.transcription["compile_cache"] == "built"
    libs = sorted(cache.glob("*.so"))
    assert len(libs) == 1 and libs[0].with_suffix(".json").is_file()
    assert not [p for p in cache.iterdir() if p.name.startswith(".")]  # no temporary left
    _forget()
    second = solve(SPEC, OPTIONS)
    assert second.transcription["compile_cache"] == "disk"
    assert second.transcription["compile_time_s"] < first.transcription["compile_time_s"]
    # the same compiled problem: identical iterates, and the answer is the replay's
    assert second.iterations == first.iterations
    assert second.final_loss == first.final_loss
    assert second.final_loss == pytest.approx(final_loss(SPEC, second.eta), rel=1e-14)
    third = solve(SPEC, OPTIONS)
    assert third.transcription["compile_cache"] == "memory"


def test_another_shape_is_another_entry(cache: Path) -> None:
    solve(SPEC, OPTIONS)
    _forget()
    other = solve(SPEC, SolverOptions(grid="uniform", K=25))
    assert other.transcription["compile_cache"] == "built"
    assert len(list(cache.glob("*.so"))) == 2


@pytest.mark.parametrize("damage", ["garbage", "truncate", "record"])
def test_a_damaged_entry_is_rebuilt(cache: Path, damage: str) -> None:
    first = solve(SPEC, OPTIONS)
    lib = next(cache.glob("*.so"))
    # Damage as a new file in place of the old (the library is mapped into this process;
    # writing into the mapped file itself would crash it, as it would any program).
    target, text = (lib.with_suffix(".json"), b"{") if damage == "record" else (
        lib, b"not a library" if damage == "garbage" else lib.read_bytes()[:1000])
    tmp = target.with_name("damaged")
    tmp.write_bytes(text)
    os.replace(tmp, target)
    _forget()
    again = solve(SPEC, OPTIONS)
    assert again.transcription["compile_cache"] == "built"
    assert again.final_loss == first.final_loss
    assert json.loads(lib.with_suffix(".json").read_text())["sha256"] == ckernel.sha256_file(lib)


def test_cache_off_stores_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ip.CACHE_ENV, "off")
    assert ip.nlp_cache_dir() is None
    r = solve(SPEC, OPTIONS)
    assert r.transcription["compile_cache"] == "built"
    assert not cache.exists()


def test_xdg_cache_home_is_honoured(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(ckernel.CACHE_DIR_ENV, raising=False)
    monkeypatch.delenv(ip.CACHE_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert ip.nlp_cache_dir() == tmp_path / "optctl" / "nlp"


@pytest.mark.slow
def test_concurrent_processes_share_the_cache(tmp_path: Path) -> None:
    """Two processes building the same shape at once: both solve, one valid entry stays."""
    code = ("from optctl.solver.solve import solve; from optctl.spec import ProblemSpec, SolverOptions; "
            "r = solve(ProblemSpec(a=2.5, b=1.5, N=60, sigma=0.5, batch_size=4, T=400), "
            "SolverOptions(grid='uniform', K=20)); print(repr(r.final_loss), r.iterations)")
    env = {**os.environ, ckernel.CACHE_DIR_ENV: str(tmp_path)}
    env.pop(ip.CACHE_ENV, None)
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert outs[0] == outs[1]
    libs = list((tmp_path / "nlp").glob("*.so"))
    assert len(libs) == 1 and ckernel.stored(libs[0])
    assert not [p for p in (tmp_path / "nlp").iterdir() if p.name.startswith(".")]


def test_second_command_skips_the_build_and_says_so(cache: Path, tmp_path: Path) -> None:
    """`optctl solve` twice on one shape (the process's memory forgotten in between, as in a
    new process): the second loads the library, its summary says so, the answers agree."""
    from optctl.cli.main import main

    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("schema_version: 1\nname: small\nmodel: {a: 2.5, b: 1.5, N: 60, sigma: 0.5}\n"
                   "training: {T: 300, batch_size: 4, eta_max: 1.0}\nsolver: {grid: uniform, K: 30}\n"
                   "baselines: [constant]\n")
    summaries = []
    for k in range(2):
        _forget()
        assert main(["solve", str(cfg), "--out", str(tmp_path / f"r{k}"), "--quiet"]) == 0
        summaries.append(json.loads((tmp_path / f"r{k}" / "summary.json").read_text()))
    first, second = (s["solver"] for s in summaries)
    assert (first["compile_cache"], second["compile_cache"]) == ("built", "disk")
    assert second["compile_time_s"] < first["compile_time_s"]
    assert summaries[1]["final_loss"] == summaries[0]["final_loss"]
    for s in summaries:  # every stage of the command is recorded
        assert {"prepare_s", "imports_s", "job_s", "write_s", "write_arrays_s",
                "figures_s", "job_cpu_main_thread_s", "job_cpu_process_s"} <= set(s["timings"])
        assert 0 < s["timings"]["job_cpu_main_thread_s"] <= s["timings"]["job_cpu_process_s"]


def test_a_failing_compiler_is_a_solver_error_and_stores_nothing(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` program")
    monkeypatch.setattr(ip, "compiler", lambda: false)
    with pytest.raises(SolverError, match="could not compile the NLP"):
        solve(SPEC, OPTIONS)
    assert not cache.exists() or not list(cache.iterdir())
