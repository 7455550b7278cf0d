"""The replay's C kernels (optctl.model.ckernel): stored once, checked on load, rebuilt when
damaged, agreeing with the numpy reference (replay and exact gradient), and the fallback
to numba without a C compiler."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import REPLAY_BACKEND_RTOL

import optctl.model.replay as rp
from optctl.model import ckernel
from optctl.model.spectrum import spectrum
from optctl.spec import ProblemSpec

pytestmark = pytest.mark.skipif(ckernel.compiler() is None, reason="no C compiler")


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """An empty cache folder, and no kernels loaded in this process (before and after)."""
    monkeypatch.setenv(ckernel.CACHE_DIR_ENV, str(tmp_path))
    ckernel._kernels.cache_clear()
    rp._load_c.cache_clear()
    yield tmp_path / "kernels"
    ckernel._kernels.cache_clear()
    rp._load_c.cache_clear()


def _varying(T: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(T)
    return 0.9 * np.cos(np.linspace(0, np.pi / 2, T)) ** 2 + 0.05 * np.sin(t), 1.0 + (t % 7)


def test_the_library_is_stored_with_its_checksum(fresh: Path) -> None:
    assert ckernel.kernels() is not None
    (lib,) = fresh.glob("*.so")
    record = json.loads(lib.with_suffix(".json").read_text())
    assert record["sha256"] == ckernel.sha256_file(lib)
    assert not [p for p in fresh.iterdir() if p.name.startswith(".")]  # no temporary left


def test_a_damaged_library_is_rebuilt(fresh: Path) -> None:
    assert ckernel.kernels() is not None
    (lib,) = fresh.glob("*.so")
    lib.unlink()  # a new file, not the one this process has mapped
    lib.write_bytes(b"not a library")
    ckernel._kernels.cache_clear()
    assert ckernel.kernels() is not None
    assert json.loads(lib.with_suffix(".json").read_text())["sha256"] == ckernel.sha256_file(lib)


@pytest.mark.parametrize("b", [2.0, 5.0])
def test_c_gradient_matches_the_numpy_adjoint(b: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """The exact gradient (the polish's) from C against the numpy loop, varying rates and
    batch sizes, from the spectrum's state and from a given one."""
    spec = ProblemSpec(a=3.5, b=b, N=500, sigma=0.5, batch_size=5, T=2000)
    eta, m = _varying(spec.T)
    c0 = 0.5 * spectrum(spec).c0
    for start in (None, c0):
        got = rp.gradient(spec, eta, m, c0=start)
        monkeypatch.setenv("OPTCTL_REPLAY", "reference")
        want = rp.gradient(spec, eta, m, c0=start)
        monkeypatch.delenv("OPTCTL_REPLAY")
        assert got[0] == pytest.approx(want[0], rel=REPLAY_BACKEND_RTOL)
        np.testing.assert_allclose(got[1], want[1], rtol=0, atol=REPLAY_BACKEND_RTOL * np.abs(want[1]).max())


def test_c_gradient_has_power() -> None:
    """The C gradient against a finite difference of the exact loss: it would fail for a
    gradient with the wrong sign or scale in any step."""
    spec = ProblemSpec(a=2.5, b=1.5, N=64, sigma=0.5, batch_size=4, T=300)
    eta, m = _varying(spec.T)
    eta = 0.5 * eta
    _, grad = rp.gradient(spec, eta, m)
    for t in (0, 150, 299):
        h = 1e-6
        up, down = eta.copy(), eta.copy()
        up[t] += h
        down[t] -= h
        fd = (rp.final_loss(spec, up, m) - rp.final_loss(spec, down, m)) / (2 * h)
        assert grad[t] == pytest.approx(fd, rel=1e-5)


def test_without_a_compiler_the_replay_runs_on_numba(fresh: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No C compiler: no kernels, nothing stored, and the replay (numba, or numpy without
    it) gives the C replay's curve."""
    spec = ProblemSpec(a=3.5, b=5.0, N=300, sigma=0.5, batch_size=5, T=3000)
    eta, m = _varying(spec.T)
    with_c = rp.replay(spec, eta, m)
    monkeypatch.setattr(ckernel, "compiler", lambda: None)
    ckernel._kernels.cache_clear()
    rp._load_c.cache_clear()
    assert ckernel.kernels() is None
    without = rp.replay(spec, eta, m)
    np.testing.assert_allclose(without.bias, with_c.bias, rtol=REPLAY_BACKEND_RTOL)
    np.testing.assert_allclose(without.variance, with_c.variance, rtol=REPLAY_BACKEND_RTOL)


def test_numba_backend_matches_reference(monkeypatch: pytest.MonkeyPatch) -> None:
    """``OPTCTL_REPLAY=numba`` (the fallback without a C compiler) against numpy."""
    pytest.importorskip("numba")
    monkeypatch.setenv("OPTCTL_REPLAY", "numba")
    spec = ProblemSpec(a=3.5, b=2.0, N=400, sigma=0.5, batch_size=5, T=2000)
    eta, m = _varying(spec.T)
    sp = spectrum(spec)
    got = rp.replay(spec, eta, m)
    want = rp._recurse_reference(sp.lam, sp.lam, np.stack([sp.c0, np.zeros_like(sp.c0)]),
                                 np.array([0.0, sp.sigma2]), eta, m)
    np.testing.assert_allclose(got.bias, want[:, 0], rtol=REPLAY_BACKEND_RTOL)
    np.testing.assert_allclose(got.variance, want[:, 1], rtol=REPLAY_BACKEND_RTOL)


def test_no_scratch_folder_while_the_cache_works(fresh: Path) -> None:
    ckernel._scratch_dir.cache_clear()
    assert ckernel.kernels() is not None
    assert ckernel._scratch_dir.cache_info().currsize == 0


def test_an_unwritable_cache_builds_in_a_scratch_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """OPTCTL_CACHE_DIR on a plain file: nothing can be stored, the kernels still load."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv(ckernel.CACHE_DIR_ENV, str(blocker))
    ckernel._kernels.cache_clear()
    try:
        assert ckernel.kernels() is not None
        assert ckernel._scratch_dir.cache_info().currsize == 1
    finally:
        ckernel._kernels.cache_clear()
