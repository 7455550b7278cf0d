"""Property tests: generated malformed input to the config, table and curve loaders ends
in the package's error or a valid result read exactly as written, never in another
exception or a silent misread. Each test counts the inputs it ran and checks the count,
so a run that tried fewer than it claims fails."""

from __future__ import annotations

import math
import tempfile
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from optctl.calibrate.curves import LossCurve
from optctl.errors import OptctlError
from optctl.io.config import RunConfig, load_config
from optctl.io.curves import load_curve
from optctl.io.tables import FORMATS, SUFFIXES, export_table, load_table
from optctl.table import ScheduleTable

# Inputs per test and run (the floor: 300 configs, 300 tables, 200 curve files).
N_CONFIGS = 300
N_TABLES = 300
N_CURVES = 200


def _settings(n: int) -> Callable[[Any], Any]:
    return settings(max_examples=n, deadline=None, database=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _run(check: Callable[[], None], seen: Counter[str], n: int) -> None:
    check()
    print(f"{sum(seen.values())} inputs: {seen['valid']} valid, {seen['error']} refused")  # pytest -s
    assert sum(seen.values()) >= n, seen
    assert seen["valid"] > 0 and seen["error"] > 0, seen  # both ends are exercised


# --- configs ----------------------------------------------------------------------------------

BASE: dict[str, Any] = {
    "schema_version": 1, "name": "prop",
    "model": {"a": 2.5, "b": 1.5, "N": 30, "sigma": 0.5},
    "training": {"T": 200, "batch_size": 4, "eta_max": 1.0},
    "solver": {"grid": "uniform", "K": 20},
    "baselines": ["constant", "wsd"],
}
SECTIONS = {"model": ("a", "b", "N", "sigma", "normalize_init", "tail"),
            "training": ("T", "batch_size", "eta_max", "m_min", "m_max", "beta_min", "kappa"),
            "solver": ("grid", "K", "propagator", "modes", "max_iter", "tol", "ipopt", "polish")}
leaf = st.one_of(
    st.none(), st.booleans(), st.integers(-10**30, 10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
    st.sampled_from(["1e5", "auto", "uniform", "1e-3", ".inf", "~", "yes", "0x10", "1_000"]),
)
value = st.recursive(leaf, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=6)
mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(sorted(SECTIONS)), st.sampled_from(sorted({k for v in SECTIONS.values() for k in v})), value),
    st.tuples(st.just("drop"), st.sampled_from(sorted(SECTIONS)), st.sampled_from(["a", "b", "T", "N"]), st.none()),
    st.tuples(st.just("top"), st.sampled_from(["schema_version", "name", "baselines", "controls", "model",
                                               "bogus", "solver"]), st.just(""), value),
)
text_damage = st.one_of(
    st.none(),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.sampled_from(["\t", ":", "- ", "{", "}", "[", "&a ", "*a",
                                                                   "!!float ", "!!python/object:os.system ",
                                                                   "\x00", "\n  ", "'", "? "])),
)


def _apply(cfg: dict[str, Any], muts: list[tuple[str, str, str, Any]]) -> dict[str, Any]:
    out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in cfg.items()}
    for kind, where, key, val in muts:
        if kind == "set" and isinstance(out.get(where), dict):
            out[where][key] = val
        elif kind == "drop" and isinstance(out.get(where), dict):
            out[where].pop(key, None)
        elif kind == "top":
            out[where] = val
    return out


def _damage(text: str, how: tuple[Any, ...] | None) -> str:
    if how is None:
        return text
    at = int(how[1] * len(text))
    return text[:at] if how[0] == "truncate" else text[:at] + how[2] + text[at:]


def _number(x: Any) -> float | None:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    return float(x)


def test_config_loader_never_raises_a_foreign_exception_or_misreads() -> None:
    seen: Counter[str] = Counter()
    folder = Path(tempfile.mkdtemp(prefix="optctl-prop-"))

    @_settings(N_CONFIGS)
    @given(st.lists(mutation, max_size=4), text_damage)
    def check(muts: list[tuple[str, str, str, Any]], damage: tuple[Any, ...] | None) -> None:
        data = _apply(BASE, muts)
        text = _damage(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), damage)
        path = folder / "cfg.yaml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            cfg = load_config(path)
        except OptctlError:
            seen["error"] += 1
            return
        seen["valid"] += 1
        assert isinstance(cfg, RunConfig)
        if damage is None:  # what was written is what was read
            for sec in ("model", "training"):
                for key, written in data[sec].items():
                    if hasattr(cfg.problem, key) and _number(written) is not None:
                        assert getattr(cfg.problem, key) == _number(written), (sec, key)
            assert cfg.solver.K == int((data.get("solver") or {}).get("K", 100))

    _run(check, seen, N_CONFIGS)


# --- tables -----------------------------------------------------------------------------------

def _table() -> ScheduleTable:
    return ScheduleTable(lr=[0.1, 0.25, 0.3, 0.3, 0.2, 0.05], batch_size=[2, 2, 4, 4, 4, 8],
                         momentum=[0.0, 0.5, 0.9, 0.9, 0.9, 0.5])


@pytest.fixture(scope="module")
def table_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    root = tmp_path_factory.mktemp("tables")
    out = {}
    for fmt in FORMATS:
        path = root / f"t{SUFFIXES[fmt]}"
        export_table(_table(), path)
        out[fmt] = path.read_bytes()
    return out


corruption = st.lists(st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1), st.binary(max_size=0)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.binary(min_size=1, max_size=4)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.one_of(
        st.binary(min_size=1, max_size=8),
        st.sampled_from([b"[" * 3000, b"{", b"NaN", b"-1", b"1e999", b",", b"\n", b'"', b"\x00\xff"]))),
    st.tuples(st.just("delete"), st.floats(0, 1), st.binary(max_size=0)),
), min_size=1, max_size=3)


def _corrupt(data: bytes, ops: list[tuple[str, float, bytes]]) -> bytes:
    for kind, where, blob in ops:
        at = min(int(where * len(data)), max(len(data) - 1, 0))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip":
            data = data[:at] + bytes(b ^ 0xA5 for b in blob[:len(data) - at]) + data[at + len(blob):]
        elif kind == "insert":
            data = data[:at] + blob + data[at:]
        else:
            data = data[:at] + data[at + 1:]
    return data


def test_table_loader_never_raises_a_foreign_exception_or_misreads(table_files: dict[str, bytes]) -> None:
    seen: Counter[str] = Counter()
    folder = Path(tempfile.mkdtemp(prefix="optctl-prop-"))
    truth = _table()

    @_settings(N_TABLES)
    @given(st.sampled_from(FORMATS), corruption)
    def check(fmt: str, ops: list[tuple[str, float, bytes]]) -> None:
        path = folder / f"t{SUFFIXES[fmt]}"
        path.write_bytes(_corrupt(table_files[fmt], ops))
        try:
            got = load_table(path)
        except OptctlError:
            seen["error"] += 1
            return
        seen["valid"] += 1
        # a table that loads holds exactly the values written: the content hash guards them
        assert got.content_hash == truth.content_hash
        np.testing.assert_array_equal(got.lr, truth.lr)
        np.testing.assert_array_equal(got.batch_size, truth.batch_size)
        np.testing.assert_array_equal(got.momentum, truth.momentum)

    _run(check, seen, N_TABLES)


# --- curves -----------------------------------------------------------------------------------

cell = st.one_of(
    st.integers(-5, 10**13).map(str), st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.sampled_from(["", " ", "nan", "inf", "-0", "1e400", "abc", "0x1", "1,2", '"1"', "１", "\x00"]),
    st.floats(1e-6, 10).map(lambda x: f"{x:.6g}"),
)
header = st.one_of(
    st.just(["step", "lr", "loss"]),
    st.permutations(["step", "lr", "loss", "batch_size"]),
    st.lists(st.sampled_from(["step", "lr", "loss", "batch_size", "momentum", "Loss", "", "step "]),
             max_size=6),
)


@st.composite
def curve_text(draw: st.DrawFn) -> tuple[str, bool]:
    names = draw(header)
    clean = draw(st.booleans())
    n = draw(st.integers(0, 12))
    rows = []
    step = 0
    for _ in range(n):
        if clean:  # a valid row: increasing steps from 0, positive loss
            values = {"step": str(step), "lr": draw(st.floats(0.01, 2).map(repr)),
                      "loss": draw(st.floats(1e-6, 10).map(repr)), "batch_size": "4", "momentum": "0"}
            step += draw(st.integers(1, 50))
            rows.append([values.get(c.strip(), "1") for c in names])
        else:
            rows.append([draw(cell) for _ in range(draw(st.integers(0, len(names) + 1)))])
    text = "\n".join([",".join(names)] + [",".join(r) for r in rows]) + "\n"
    if draw(st.booleans()):
        text = draw(st.sampled_from(["\ufeff", "# comment\n", "", "\x00"])) + text
    return text, clean


def test_curve_loader_never_raises_a_foreign_exception_or_misreads() -> None:
    seen: Counter[str] = Counter()
    folder = Path(tempfile.mkdtemp(prefix="optctl-prop-"))

    @_settings(N_CURVES)
    @given(curve_text())
    def check(case: tuple[str, bool]) -> None:
        text, _ = case
        path = folder / "run.csv"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            curve = load_curve(path)
        except OptctlError:
            seen["error"] += 1
            return
        seen["valid"] += 1
        assert isinstance(curve, LossCurve)
        # read exactly as written: the file's own numbers, in its own order
        lines = [ln for ln in text.lstrip("\ufeff").splitlines() if ln and not ln.startswith("#")]
        names = [h.strip() for h in lines[0].split(",")]
        rows = [dict(zip(names, ln.split(","), strict=True)) for ln in lines[1:]]
        assert [int(float(r["step"])) for r in rows] == curve.steps.tolist()
        assert [float(r["loss"]) for r in rows] == curve.loss.tolist()
        assert curve.steps[0] == 0 and np.all(np.diff(curve.steps) > 0)
        assert np.all(np.isfinite(curve.loss)) and np.all(curve.loss > 0)
        assert curve.lr.size == curve.T and all(math.isfinite(x) for x in curve.lr)

    _run(check, seen, N_CURVES)
