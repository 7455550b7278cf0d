"""The command line's fast paths give what the plain paths give, bit for bit.

- the figures drawn by the helper processes are the same PNG files as those drawn in the
  command's own process, the helpers run at a lower priority, and a helper that is missing
  or dies leaves no figure out;
- the curvature probes evaluated in one threaded call equal one call per probe;
- the vectorised approximate evaluator equals the block propagator run block by block;
- arrays stored without compression (smooth curves) read back exactly.
"""

from __future__ import annotations

import importlib.util
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import optctl.solver.ipopt as ip
from optctl.io.drawing import FigureWorker, draw
from optctl.io.files import read_arrays, write_arrays
from optctl.model import ckernel
from optctl.model.blocks import NUMPY, propagate_block
from optctl.solver import evaluate as evaluate_module
from optctl.solver.controls import control_set
from optctl.solver.evaluate import approximate_evaluator
from optctl.solver.piecewise import block_means
from optctl.solver.plan import make_plan, resolve_options
from optctl.solver.transcribe import model_parameters
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions


def _figures() -> dict[str, tuple[str, tuple[object, ...], dict[str, object]]]:
    T = 500
    t = np.arange(T)
    eta = 0.5 * (1 - t / T) ** 2
    loss = 1.0 / (1.0 + t) ** 0.7
    return {"schedule.png": ("plot_schedule", (eta, {"constant": np.full(T, 0.2)}), {"title": "x"}),
            "loss.png": ("plot_loss", (np.append(loss, loss[-1]), {}), {"title": "y"})}


@pytest.mark.parametrize("helpers", [1, 2, 3])
def test_the_helpers_draw_the_same_files_as_the_process(tmp_path: Path, helpers: int) -> None:
    """One helper, two sharing the figures, or more helpers than figures (one idle)."""
    here, there = tmp_path / "here", tmp_path / "there"
    draw(here, _figures())
    with FigureWorker(helpers) as worker:
        assert len(worker._procs) == helpers
        there.mkdir()
        worker.submit(there, _figures())
        files = worker.wait()
    assert [f.name for f in files] == ["schedule.png", "loss.png"]
    for name in ("schedule.png", "loss.png"):
        assert (there / name).read_bytes() == (here / name).read_bytes()


@pytest.mark.parametrize("failure", ["no_process", "dies", "one_dies"])
def test_a_failed_helper_leaves_no_figure_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              failure: str) -> None:
    if failure == "no_process":
        monkeypatch.setattr(sys, "executable", str(tmp_path / "no-such-python"))
    worker = FigureWorker()
    if failure in ("dies", "one_dies"):
        for proc in worker._procs[:1] if failure == "one_dies" else worker._procs:
            assert proc is not None
            proc.kill()
            proc.wait()
    worker.submit(tmp_path, _figures())
    worker.wait()
    assert (tmp_path / "schedule.png").stat().st_size > 1000
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_the_helpers_run_below_the_commands_priority(tmp_path: Path) -> None:
    """Their matplotlib imports must not take a core from the solve: each helper lowers its
    own priority by HELPER_NICE, and still draws its figures."""
    import os
    import time

    from optctl.io.drawing import HELPER_NICE

    mine = os.getpriority(os.PRIO_PROCESS, 0)
    with FigureWorker(2) as worker:
        pids = [p.pid for p in worker._procs if p is not None]
        assert len(pids) == 2
        deadline = time.monotonic() + 20
        seen = [mine] * 2
        while time.monotonic() < deadline and seen != [min(19, mine + HELPER_NICE)] * 2:
            seen = [os.getpriority(os.PRIO_PROCESS, pid) for pid in pids]
            time.sleep(0.01)
        assert seen == [min(19, mine + HELPER_NICE)] * 2
        worker.submit(tmp_path, _figures())
        worker.wait()
    assert (tmp_path / "schedule.png").stat().st_size > 1000
    assert (tmp_path / "loss.png").stat().st_size > 1000


def test_a_helper_ended_before_its_job_draws_nothing(tmp_path: Path) -> None:
    with FigureWorker() as worker:
        procs = list(worker._procs)
    assert procs and all(p is not None and p.returncode is not None for p in procs)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(ip.compiler() is None, reason="no C compiler")
def test_threaded_curvature_probes_equal_one_call_per_probe(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ckernel.CACHE_DIR_ENV, str(tmp_path))
    spec = ProblemSpec(a=2.5, b=1.5, N=60, sigma=0.5, batch_size=4, T=400)
    cs = control_set(ControlSpec())
    options = resolve_options(SolverOptions(grid="uniform", K=80), None)
    plan = make_plan(spec, options, None)
    prob = ip.compile_problem(plan, cs, 0.0, options)
    prob.model = model_parameters(plan, spec)
    u = np.linspace(0.6, 0.01, plan.n_controls)
    scale = np.maximum(u, 1e-3)
    y = u / scale
    got = ip.curvature_scale(prob, y, scale)
    # the plain computation: one gradient call per probe
    p = prob.p(scale)
    g0 = np.asarray(prob.grad(y, p)[1]).ravel()
    probes = np.unique(np.rint(np.linspace(0, y.size - 1, min(y.size, ip.CURVATURE_PROBES))).astype(int))
    assert probes.size == ip.CURVATURE_PROBES < y.size  # interpolation between probes is exercised
    h = 1e-4 * np.maximum(np.abs(y), 1e-2)
    diag = np.empty(probes.size)
    for i, j in enumerate(probes):
        yj = y.copy()
        yj[j] += h[j]
        diag[i] = (float(prob.grad(yj, p)[1][j]) - g0[j]) / h[j]
    curv = np.abs(diag)
    ref = np.median(curv[curv > 0])
    curv = np.exp(np.interp(np.arange(y.size), probes, np.log(np.clip(curv, 1e-8 * ref, None))))
    assert np.array_equal(got, scale * np.sqrt(ref / curv))
    # the candidate starts, scored in one threaded call, as one call each
    cands = [u, 0.5 * u, np.full(u.size, 0.1)]
    plain = [float(prob.f(np.ones(u.size), prob.p(c))[0]) for c in cands]
    assert prob.score(cands) == plain and len(set(plain)) == 3


@pytest.mark.parametrize("backend", ["compiled", "reference"])
@pytest.mark.parametrize(("a", "b", "T"), [(2.0, 1.5, 100_000), (3.5, 5.0, 1000), (1.25, 1.0, 20_000)])
def test_vectorised_evaluator_equals_the_block_propagator(a: float, b: float, T: int, backend: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The numpy loop equals propagate_block block by block exactly; the numba loop sums
    the dot products in another order: equal to 1e-12 relative (a diverging run: both huge)."""
    if backend == "reference":
        monkeypatch.setenv("OPTCTL_REPLAY", "reference")
    elif importlib.util.find_spec("numba") is None:
        pytest.skip("numba is not installed")
    evaluate_module._load_loop.cache_clear()
    try:
        assert (evaluate_module._loop() is evaluate_module.propagate_blocks) == (backend == "reference")
        spec = ProblemSpec(a=a, b=b, N=1000, sigma=0.5, batch_size=5, T=T)
        evaluate = approximate_evaluator(spec)
    finally:
        evaluate_module._load_loop.cache_clear()  # the next test loads its own backend
    plan = make_plan(spec, SolverOptions(grid="refined", K=100, propagator="block", modes="auto"))
    edges = np.concatenate([[0], np.cumsum(plan.lengths)])
    sp = plan.spectrum
    lw = sp.weight * sp.lam
    t = np.arange(T) / T
    for eta in (np.full(T, 0.3), 0.8 * np.minimum(1.0, (1 - t) / 0.2), (1.0 + np.arange(T)) ** -0.4,
                np.full(T, 1.9)):  # the last one diverges
        with np.errstate(all="ignore"):
            c, loss = sp.c0, float(lw @ sp.c0)
            for n, e in zip(plan.lengths, block_means(eta, edges), strict=True):
                c, loss = propagate_block(c, e, spec.batch_size, float(n), sp.lam, lw, sp.sigma2, NUMPY)
            want = float(loss) + sp.tail
            got = evaluate(eta)
        if backend == "reference":
            assert got == want or (np.isnan(got) and np.isnan(want))
        elif not np.isfinite(want) or abs(want) > 1e100:  # diverged
            assert not np.isfinite(got) or abs(got) > 1e100
        else:
            assert got == pytest.approx(want, rel=1e-12, abs=0)


def test_arrays_that_do_not_compress_are_stored_and_read_back_exactly(tmp_path: Path) -> None:
    t = np.arange(200_001.0)
    arrays = {"loss": 0.01 / (1 + t) ** 0.6, "eta": np.repeat(np.linspace(1.0, 0.01, 100), 2000),
              "batch_size": np.full(200_000, 5.0), "grid": np.arange(101)}
    write_arrays(tmp_path / "a.npz", arrays)
    back = read_arrays(tmp_path / "a.npz")
    assert set(back) == set(arrays) and all(np.array_equal(back[k], v) for k, v in arrays.items())
    kinds = {i.filename: i.compress_type for i in zipfile.ZipFile(tmp_path / "a.npz").infolist()}
    assert kinds == {"loss.npy": zipfile.ZIP_STORED, "eta.npy": zipfile.ZIP_DEFLATED,
                     "batch_size.npy": zipfile.ZIP_DEFLATED, "grid.npy": zipfile.ZIP_DEFLATED}
    np.load(tmp_path / "a.npz")  # numpy's own reader takes the mixed archive
