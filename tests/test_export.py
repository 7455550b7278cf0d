"""Schedule tables: solve → export → load round trips, validation errors, horizons, lookups."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPLAY_BACKEND_RTOL, RESCALE_RTOL, TABLE_EXACT_RTOL

from optctl import ExportError, OptctlError, ProblemSpec, ScheduleTable, SolverOptions
from optctl.cli.main import main
from optctl.errors import HorizonWarning
from optctl.io.tables import FORMATS, SUFFIXES, as_table, export_table, load_table, table_from_run
from optctl.model.replay import final_loss
from optctl.solver.horizon import resolve_table
from optctl.table import momentum_from_beta

SMALL = """schema_version: 1
name: small
model: {a: 2.5, b: 1.5, N: 60, sigma: 0.5}
training: {T: 300, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 30}
baselines: []
"""


def _ramp_table() -> ScheduleTable:
    """A hand-made table with a batch ramp 2, 2, 4, 4, 4, 8 and a momentum column."""
    return ScheduleTable(lr=[0.1, 0.2, 0.3, 0.3, 0.2, 0.1], batch_size=[2, 2, 4, 4, 4, 8],
                         momentum=[0.0, 0.5, 0.9, 0.9, 0.9, 0.5])


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("run")
    cfg = root / "small.yaml"
    cfg.write_text(SMALL)
    out = root / "run"
    assert main(["solve", str(cfg), "--out", str(out), "--quiet", "--no-baselines"]) == 0
    return out


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_solve_export_load_round_trip(small_result, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"table{SUFFIXES[fmt]}"
    written = export_table(small_result, path)
    table = load_table(path)
    np.testing.assert_allclose(table.lr, small_result.eta, rtol=TABLE_EXACT_RTOL, atol=0)
    np.testing.assert_allclose(table.batch_size, small_result.batch_size, rtol=TABLE_EXACT_RTOL, atol=0)
    assert table.momentum is None
    assert table.T == small_result.spec.T == 300
    assert table.columns == ("step", "lr", "batch_size")
    assert table.spec_hash == small_result.spec.digest()
    assert table.spec == small_result.spec.to_dict()
    assert table.solver["K"] == 30 and table.solver_hash is not None
    assert table.horizon == {"mode": "solved"} and table.units == "per_step"
    assert table.source["final_loss"] == small_result.final_loss
    assert table.content_hash == written.content_hash


def test_formats_agree_and_header_is_self_describing(small_result, tmp_path: Path) -> None:
    hashes = {fmt: export_table(small_result, tmp_path / f"t{SUFFIXES[fmt]}").content_hash
              for fmt in FORMATS}
    assert len(set(hashes.values())) == 1
    header = json.loads((tmp_path / "t.json").read_text())["header"]
    for key in ("schema", "schema_version", "T", "units", "columns", "spec", "spec_hash",
                "solver", "solver_hash", "horizon", "source", "content_hash"):
        assert key in header
    assert header["spec"]["a"] == 2.5 and header["spec"]["b"] == 1.5 and header["spec"]["N"] == 60
    lines = (tmp_path / "t.csv").read_text().splitlines()
    assert lines[0].startswith("# optctl.schedule_table") and lines[2] == "step,lr,batch_size"
    assert len(lines) == 3 + 300
    assert oct((tmp_path / "t.npz").stat().st_mode & 0o777) == oct(0o644)


def test_momentum_column_round_trips(tmp_path: Path) -> None:
    table = _ramp_table()
    for fmt in FORMATS:
        path = tmp_path / f"m{SUFFIXES[fmt]}"
        export_table(table, path)
        back = load_table(path)
        np.testing.assert_array_equal(back.momentum, table.momentum)
        assert back.columns == ("step", "lr", "momentum", "batch_size")
        assert back.content_hash == table.content_hash


def test_cli_export_from_run_folder(run_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    eta = np.load(run_dir / "arrays.npz")["eta"]
    for fmt in FORMATS:
        assert main(["export", str(run_dir), "--format", fmt]) == 0
        table = load_table(run_dir / f"table{SUFFIXES[fmt]}")
        np.testing.assert_array_equal(table.lr, eta)
        assert table.source["kind"] == "run" and table.source["name"] == "small"
        assert table.spec_hash == ProblemSpec(a=2.5, b=1.5, N=60, sigma=0.5, batch_size=4, T=300).digest()
    assert "content hash" in capsys.readouterr().out


def test_table_does_not_depend_on_whether_the_solve_printed_progress(
        run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "small.yaml"
    cfg.write_text(SMALL)
    loud = tmp_path / "loud"
    assert main(["solve", str(cfg), "--out", str(loud), "--no-baselines"]) == 0  # prints progress
    capsys.readouterr()
    assert "progress: true" in (loud / "config.yaml").read_text()
    assert "progress: false" in (run_dir / "config.yaml").read_text()  # run_dir was solved --quiet
    quiet_table, loud_table = table_from_run(run_dir), table_from_run(loud)
    np.testing.assert_array_equal(loud_table.lr, quiet_table.lr)
    assert loud_table.content_hash == quiet_table.content_hash
    assert loud_table.solver_hash == quiet_table.solver_hash
    assert "progress" not in loud_table.solver


def test_only_options_that_change_the_schedule_enter_the_hash() -> None:
    def table(**solver: object) -> ScheduleTable:
        options = {**SolverOptions(grid="uniform", K=30).to_dict(), **solver}
        return ScheduleTable(lr=[0.3, 0.2, 0.1], solver=options)

    base = table()
    cosmetic = [table(progress=True), table(ipopt={"print_level": 5, "sb": "no"}),
                table(ipopt={"output_file": "ipopt.log", "file_print_level": 8})]
    assert {t.content_hash for t in cosmetic} == {base.content_hash}
    assert {t.solver_hash for t in cosmetic} == {base.solver_hash}
    answer_changing = [table(K=31), table(tol=1e-8), table(ipopt={"mu_strategy": "monotone"}),
                       table(ipopt={"print_level": 5, "max_cpu_time": 10.0})]
    hashes = {t.content_hash for t in answer_changing}
    assert len(hashes) == len(answer_changing) and base.content_hash not in hashes


def test_cli_export_format_follows_out_suffix(run_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    eta = np.load(run_dir / "arrays.npz")["eta"]
    for fmt in FORMATS:
        out = tmp_path / f"t{SUFFIXES[fmt]}"
        assert main(["export", str(run_dir), "--out", str(out)]) == 0
        np.testing.assert_array_equal(load_table(out).lr, eta)
    assert json.loads((tmp_path / "t.json").read_text())["header"]["T"] == 300  # JSON, not a zip
    assert (tmp_path / "t.csv").read_text().startswith("# optctl.schedule_table")
    # an explicit --format for a path without a table suffix is allowed
    assert main(["export", str(run_dir), "--format", "json", "--out", str(tmp_path / "t.txt")]) == 0
    assert load_table(tmp_path / "t.txt", format="json").T == 300
    capsys.readouterr()


@pytest.mark.parametrize(("args", "match"), [
    (["--format", "npz", "--out", "x.csv"], "--format npz clashes with --out .*x.csv"),
    (["--format", "csv", "--out", "x.json"], "--format csv clashes with --out .*x.json"),
    (["--out", "x.bin"], "cannot tell the table format from the suffix '.bin'"),
])
def test_cli_export_format_clash_is_one_line_exit_2(run_dir: Path, tmp_path: Path, args: list[str],
                                                    match: str, capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(tmp_path / a) if a.startswith("x.") else a for a in args]
    assert main(["export", str(run_dir), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: ") and "\n" not in err
    assert re.search(match, err)
    assert list(tmp_path.iterdir()) == []


def test_export_table_refuses_a_format_that_contradicts_the_suffix(small_result, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="format = 'npz' but the suffix '.csv' names csv"):
        export_table(small_result, tmp_path / "t.csv", "npz")
    export_table(small_result, tmp_path / "t.csv", "csv")
    with pytest.raises(ExportError, match="names csv"):
        load_table(tmp_path / "t.csv", format="json")


def test_cli_export_converts_a_table_file(run_dir: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "t.npz"
    assert main(["export", str(run_dir), "--out", str(src)]) == 0
    original = load_table(src)
    # no --out: beside the input with the new suffix
    assert main(["export", str(src), "--format", "csv"]) == 0
    assert load_table(tmp_path / "t.csv").content_hash == original.content_hash
    assert main(["export", str(src), "--out", str(tmp_path / "u.json")]) == 0
    assert load_table(tmp_path / "u.json").content_hash == original.content_hash
    capsys.readouterr()
    # never onto the input itself
    before = src.read_bytes()
    for args in ([], ["--overwrite"], ["--out", str(src), "--overwrite"]):
        assert main(["export", str(src), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("optctl: error: ") and "\n" not in err and str(src) in err
    assert src.read_bytes() == before


def test_cli_export_errors_are_one_line_exit_2(run_dir: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.csv"
    assert main(["export", str(run_dir), "--format", "csv", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["export", str(run_dir), "--format", "csv", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    for args in ([], ["--out", str(tmp_path / "x.npz")]):
        assert main(["export", str(tmp_path / "runs" / "nope"), *args]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("optctl: error: ") and "\n" not in err
        assert "nope does not exist" in err and "optctl solve" in err and "table file" in err
        assert "suffix" not in err
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("optctl: error: ") and "\n" not in err
    assert "lacks config.yaml, arrays.npz, summary.json" in err
    assert f"optctl solve CONFIG --out {tmp_path / 'empty'}" in err and "configs/" not in err
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["export", str(tmp_path / "notes.txt"), "--out", str(tmp_path / "x.npz")]) == 2
    assert "neither a run folder nor a table file" in capsys.readouterr().err
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "runs").exists()
    with pytest.raises(SystemExit):
        main(["export", str(run_dir), "--format", "pickle"])


def test_importing_optctl_does_not_import_torch() -> None:
    code = "import sys, optctl, optctl.io.tables, optctl.table; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_optctl_torch_without_torch_says_how_to_install_it() -> None:
    code = ("import sys\nsys.modules['torch'] = None  # as if torch were not installed\n"
            "try:\n    import optctl.torch\nexcept ImportError as err:\n    print(type(err).__name__, err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("ImportError optctl.torch needs PyTorch")
    assert "pip install 'optctl[torch]'" in out.stdout


# --- corrupt, truncated, mismatched --------------------------------------------------------


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file_is_a_clear_error(small_result, tmp_path: Path, fmt: str) -> None:
    path = tmp_path / f"t{SUFFIXES[fmt]}"
    export_table(small_result, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ExportError, match=r"truncated|corrupt") as info:
        load_table(path)
    assert str(path) in str(info.value)


def test_truncated_csv_rows(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    export_table(small_result, path)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:-100]) + "\n")
    with pytest.raises(ExportError, match=r"shape \(200,\), header says T = 300.*truncated"):
        load_table(path)
    path.write_text("\n".join(lines[:-1] + [lines[-1].split(",")[0]]) + "\n")
    with pytest.raises(ExportError, match="row 299 has 1 fields"):
        load_table(path)


def test_edited_value_fails_the_content_hash(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    export_table(small_result, path)
    lines = path.read_text().splitlines()
    step, lr, m = lines[10].split(",")
    lines[10] = ",".join([step, repr(float(lr) * 1.001), m])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportError, match="content hash mismatch"):
        load_table(path)


def test_edited_header_fails_the_content_hash(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    export_table(small_result, path)
    body = json.loads(path.read_text())
    body["header"]["spec"]["sigma"] = 0.1
    path.write_text(json.dumps(body))
    with pytest.raises(ExportError, match="content hash mismatch"):
        load_table(path)


def test_npz_with_swapped_column_fails_the_hash(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    export_table(small_result, path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    arrays["lr"] = arrays["lr"][::-1].copy()
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(buf.getvalue())
    with pytest.raises(ExportError, match="content hash mismatch"):
        load_table(path)


def test_schema_and_shape_errors(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    export_table(small_result, path)
    good = json.loads(path.read_text())

    def load_edited(edit) -> None:
        body = json.loads(json.dumps(good))
        edit(body)
        path.write_text(json.dumps(body))
        load_table(path)

    with pytest.raises(ExportError, match="schema version 3 is not supported"):
        load_edited(lambda b: b["header"].update(schema_version=3))
    with pytest.raises(ExportError, match="version 2 table needs lr_scale"):
        load_edited(lambda b: b["header"].update(schema_version=2))
    with pytest.raises(ExportError, match="not an optctl schedule table"):
        load_edited(lambda b: b["header"].update(schema="something.else"))
    with pytest.raises(ExportError, match="lacks 'content_hash'"):
        load_edited(lambda b: b["header"].pop("content_hash"))
    with pytest.raises(ExportError, match="holds columns"):
        load_edited(lambda b: b["columns"].pop("batch_size"))
    with pytest.raises(ExportError, match="'step' is not 0..299"):
        load_edited(lambda b: b["columns"]["step"].reverse())
    with pytest.raises(ExportError, match=r"lr\[3\] = -0.5: learning rates must be >= 0; .*re-export "
                                          r"the table from its run with `optctl export RUN`"):
        load_edited(lambda b: b["columns"]["lr"].__setitem__(3, -0.5))
    with pytest.raises(ExportError, match=r"header T = 300.0: must be a positive integer .*re-export"):
        load_edited(lambda b: b["header"].update(T=300.0))


def test_non_finite_values_are_rejected(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    export_table(small_result, path)
    lines = path.read_text().splitlines()
    step, _, m = lines[7].split(",")
    lines[7] = ",".join([step, "nan", m])
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportError, match=r"lr\[4\] = nan: values must be finite"):
        load_table(path)


def test_not_a_table_and_missing_files(tmp_path: Path) -> None:
    np.savez(tmp_path / "other.npz", x=np.arange(3))
    with pytest.raises(ExportError, match="no 'header' entry"):
        load_table(tmp_path / "other.npz")
    with pytest.raises(ExportError, match="no such table file"):
        load_table(tmp_path / "missing.npz")
    with pytest.raises(ExportError, match="needs the path of a table file, got None"):
        load_table(None)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match=r"missing does not exist; pass a run folder .* or a table file"):
        as_table(tmp_path / "missing")
    with pytest.raises(ExportError, match="cannot tell the table format"):
        load_table(tmp_path / "table.txt")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ExportError, match="corrupt or truncated"):
        load_table(tmp_path / "junk.safetensors")


def test_mismatched_spec_or_horizon(small_result, tmp_path: Path) -> None:
    path = tmp_path / "t.npz"
    export_table(small_result, path)
    assert load_table(path, expect_spec_hash=small_result.spec.digest(), expect_T=300).T == 300
    other = ProblemSpec(a=2.5, b=1.5, N=60, sigma=0.5, batch_size=8, T=300)
    with pytest.raises(ExportError, match=f"solved for spec {small_result.spec.digest()}, not {other.digest()}"):
        load_table(path, expect_spec_hash=other.digest())
    with pytest.raises(ExportError, match=r"covers T = 300 updates, not 1000.*--T 1000"):
        load_table(path, expect_T=1000)


def test_export_error_kinds_and_overwrite(small_result, tmp_path: Path) -> None:
    assert issubclass(ExportError, OptctlError) and issubclass(ExportError, ValueError)
    path = tmp_path / "t.npz"
    export_table(small_result, path)
    with pytest.raises(ExportError, match="already exists"):
        export_table(small_result, path)
    export_table(small_result, path, overwrite=True)
    with pytest.raises(ExportError, match="choose one of npz"):
        export_table(small_result, tmp_path / "t.bin", "pickle")  # type: ignore[arg-type]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.npz"]  # no temporary left behind


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"lr": [0.1, np.inf]}, r"lr\[1\] = inf"),
    ({"lr": [[0.1, 0.2]]}, "shape"),
    ({"lr": []}, "shape"),
    ({"lr": [0.1, 0.2], "batch_size": [4]}, "has 1 values but lr has 2"),
    ({"lr": [0.1, 0.2], "batch_size": [4, 0]}, r"batch_size\[1\] = 0.0: batch sizes must be >= 1"),
    ({"lr": [0.1, 0.2], "momentum": [0.5, 1.0]}, r"momentum\[1\] = 1.0"),
    ({"lr": [0.1], "units": "per_sample"}, "per_step"),
    ({"lr": [0.1], "horizon": {"mode": "solved"}, "spec": {"T": 5}}, "T = 1 updates but its spec says T = 5"),
])
def test_table_validates_itself(kwargs: dict, match: str) -> None:
    with pytest.raises(ExportError, match=match):
        ScheduleTable(**kwargs)


# --- lookups, samples, batch ramps ---------------------------------------------------------


def test_schedule_callable_and_past_end(small_result) -> None:
    table = small_result.to_table()
    sched = table.schedule()
    steps = np.arange(table.T)
    np.testing.assert_array_equal(sched(steps), table.lr)
    assert all(sched(int(t)) == table.lr[t] for t in (0, 1, 150, 299))
    assert sched(10_000) == table.lr[-1]
    with pytest.raises(ExportError, match="past the end of the table"):
        table.schedule(past_end="error")(300)
    with pytest.raises(ExportError, match="count updates from 0"):
        sched(-1)
    with pytest.raises(ExportError, match="no 'momentum' column"):
        table.schedule("momentum")
    assert table.batch_size_at(5) == 4 and isinstance(table.batch_size_at(5), int)


def test_consumed_samples_and_megatron_ramp() -> None:
    table = _ramp_table()
    np.testing.assert_array_equal(table.consumed_samples, [0, 2, 4, 8, 12, 16, 24])
    assert [table.step_at_samples(n) for n in (0, 1, 2, 3, 4, 7, 8, 23, 24, 99)] == \
           [0, 0, 1, 1, 2, 2, 3, 5, 6, 6]
    assert table.batch_ramp() == "0:2 4:4 16:8"
    assert table.batch_ramp("steps") == "0:2 2:4 5:8"
    with pytest.raises(ExportError, match="fractional"):
        ScheduleTable(lr=[0.1, 0.1], batch_size=[2.5, 3]).batch_ramp()
    with pytest.raises(ExportError, match="no batch_size column"):
        ScheduleTable(lr=[0.1]).batch_size_at(0)


def test_momentum_from_beta_shifts_by_one_update() -> None:
    beta = np.array([0.1, 0.2, 0.3, 0.4])
    np.testing.assert_allclose(momentum_from_beta(beta), [0.9, 0.9, 0.8, 0.7], rtol=RESCALE_RTOL)


# --- horizons --------------------------------------------------------------------------------


def test_horizon_change_must_be_explicit(small_result) -> None:
    table = small_result.to_table()
    assert table.for_horizon(300, mode="rescale") is table
    with pytest.raises(TypeError):
        table.for_horizon(600)  # type: ignore[call-arg]
    with pytest.raises(ExportError, match="choose 'rescale'"):
        table.for_horizon(600, mode="stretch")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="no model parameters"):
        ScheduleTable(lr=[0.1, 0.2]).for_horizon(4, mode="rescale")


def test_rescale_easy_phase_follows_the_peak_law(small_result, tmp_path: Path) -> None:
    table = small_result.to_table()  # a = 2.5, b = 1.5: easy, ξ = 1 − b/a = 0.4
    with pytest.warns(HorizonWarning, match=r"easy phase.*xi = 1 - b/a = 0.4.*optctl solve CONFIG --T 3000"):
        longer = table.for_horizon(3000, mode="rescale")
    factor = 10.0 ** -0.4
    assert longer.T == 3000 and longer.horizon["mode"] == "rescale" and longer.horizon["from_T"] == 300
    # every old update becomes 10 new ones with the old rate times the factor
    np.testing.assert_allclose(longer.lr, np.repeat(table.lr, 10) * factor, rtol=RESCALE_RTOL)
    np.testing.assert_array_equal(longer.batch_size, np.full(3000, 4.0))
    export_table(longer, tmp_path / "r.npz")
    back = load_table(tmp_path / "r.npz")
    assert back.content_hash == longer.content_hash and back.horizon == longer.horizon
    assert back.content_hash != table.content_hash


def test_rescale_hard_phase_keeps_the_plateau_and_the_mean_in_t_over_T() -> None:
    spec = ProblemSpec(a=1.5, b=2.0, N=50, T=8, eta_max=1.0).to_dict()
    lr = [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.1]
    table = ScheduleTable(lr=lr, spec=spec, horizon={"mode": "solved"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        shorter = table.for_horizon(4, mode="rescale")
        longer = table.for_horizon(12, mode="rescale")
    assert all(issubclass(w.category, HorizonWarning) for w in caught) and len(caught) == 2
    assert "hard phase" in str(caught[0].message) and "plateau height kept" in str(caught[0].message)
    np.testing.assert_allclose(shorter.lr, [1.0, 1.0, 1.0, 0.3], rtol=RESCALE_RTOL)
    assert longer.lr.max() == 1.0
    np.testing.assert_allclose(longer.lr.mean(), np.mean(lr), rtol=RESCALE_RTOL)


def test_resolve_runs_the_solver_for_the_new_horizon(small_result) -> None:
    table = small_result.to_table()
    with pytest.warns(HorizonWarning, match="re-solved the schedule for T = 150"):
        new = resolve_table(table, 150)
    assert new.T == 150 and new.spec["T"] == 150 and new.horizon == {"mode": "solved"}
    assert new.source["resolved_from_T"] == 300
    spec = ProblemSpec(**new.spec)
    assert new.source["final_loss"] == pytest.approx(final_loss(spec, new.lr), rel=REPLAY_BACKEND_RTOL)


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "csv", "json"])
def test_real_lr_tables_record_their_scale(small_result, tmp_path: Path, fmt: str) -> None:

    model = small_result.to_table()
    assert model.schema_version == 1 and "lr_scale" not in model.header()
    real = model.with_lr_scale(0.25, calibration={"fit": "somewhere"})
    np.testing.assert_array_equal(real.lr, 0.25 * model.lr)
    assert real.schema_version == 2 and real.header()["lr_scale"] == 0.25
    assert real.content_hash != model.content_hash
    path = tmp_path / f"t.{fmt}"
    export_table(real, path)
    back = load_table(path)
    assert back.lr_scale == 0.25 and back.content_hash == real.content_hash
    np.testing.assert_array_equal(back.lr, real.lr)
    with pytest.raises(ExportError, match="already in real units"):
        real.with_lr_scale(2.0)
    with pytest.raises(ExportError, match="lr_scale"):
        model.with_lr_scale(-1.0)


def test_rescaled_real_lr_table_clips_at_the_scaled_bound(small_result) -> None:

    real = small_result.to_table().with_lr_scale(0.1)
    with pytest.warns(HorizonWarning):
        longer = real.for_horizon(3 * real.T, mode="rescale")
    assert longer.lr_scale == 0.1
    assert longer.lr.max() <= 0.1 * small_result.spec.eta_max
