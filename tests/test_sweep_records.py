"""A sweep folder's records.csv, and JSON files without bare NaN or Infinity."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optctl.io.files import write_json
from optctl.io.sweepconfig import load_sweep_config
from optctl.studies.sweep import load_sweep, records_rows, run_sweep, write_records_csv

TINY = """schema_version: 1
name: tiny
kind: horizons
model: {a: 2.5, b: 1.5, N: 24, sigma: 0.5}
training: {batch_size: 4, eta_max: 1.0}
solver: {grid: refined, K: 12, polish: false}
baselines: [constant, linear_decay]
sweep:
  axes:
    b: [1.5, 3.5]
  horizons: [60, 120]
  workers: 1
"""


def _strict(text: str) -> Any:
    """json.loads that refuses NaN, Infinity and -Infinity (as strict JSON readers do)."""
    def refuse(name: str) -> None:
        raise ValueError(f"bare {name} in JSON")
    return json.loads(text, parse_constant=refuse)


@pytest.fixture(scope="module")
def sweep_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("sweep")
    (tmp / "sweep.yaml").write_text(TINY)
    out = tmp / "out"
    run_sweep(load_sweep_config(tmp / "sweep.yaml"), out, progress=False)
    return out


def test_records_csv_has_one_row_per_record_with_the_saved_values(sweep_out: Path) -> None:
    with open(sweep_out / "records.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["point", "b", "T", "final_loss", "loss_constant", "loss_linear_decay",
                             "best_baseline", "gain", "success", "status", "iterations", "wall_time"]
    data = load_sweep(sweep_out)
    assert len(rows) == sum(len(r) for r in data.records.values()) == 4
    for row in rows:
        rec = data.records[row["point"]][int(row["T"])]
        assert float(row["b"]) == rec["values"]["b"]
        assert float(row["final_loss"]) == rec["final_loss"]  # written to round-trip exactly
        losses = {n: rec["baselines"][n]["final_loss"] for n in ("constant", "linear_decay")}
        assert float(row["loss_constant"]) == losses["constant"]
        assert float(row["loss_linear_decay"]) == losses["linear_decay"]
        best = min(losses, key=losses.__getitem__)
        assert row["best_baseline"] == best
        assert float(row["gain"]) == losses[best] / rec["final_loss"] - 1  # the same arithmetic
        assert row["status"] == rec["status"] and row["success"] == str(rec["success"])


def test_every_json_file_of_a_sweep_is_strict_json(sweep_out: Path) -> None:
    files = sorted(sweep_out.rglob("*.json"))
    assert len(files) >= 5
    for path in files:
        _strict(path.read_text())


def test_non_finite_values_are_written_as_strings(tmp_path: Path) -> None:
    data = {"a": math.nan, "b": np.float64("inf"), "c": np.array([1.0, np.nan, -np.inf]),
            "d": [np.float32("nan"), {"e": -math.inf}], "f": 1.5}
    write_json(tmp_path / "x.json", data)
    back = _strict((tmp_path / "x.json").read_text())
    assert back == {"a": "nan", "b": "inf", "c": [1.0, "nan", "-inf"], "d": ["nan", {"e": "-inf"}], "f": 1.5}
    assert math.isnan(float(back["c"][1]))  # float() reads them back


def test_a_nan_baseline_is_kept_in_the_csv_and_never_best(sweep_out: Path, tmp_path: Path) -> None:
    data = load_sweep(sweep_out)
    key = sorted(data.records)[0]
    T = min(data.records[key])
    rec = data.records[key][T]
    rec["baselines"]["constant"]["final_loss"] = "nan"  # as a NaN loss reads back from JSON
    row = next(r for r in records_rows(data) if r["point"] == key and r["T"] == T)
    assert row["loss_constant"] == "nan" and row["best_baseline"] == "linear_decay"
    write_records_csv(type(data)(sweep=data.sweep, out=tmp_path, records=data.records))
    text = (tmp_path / "records.csv").read_text()
    assert ",nan," in text


def test_readers_take_a_nan_saved_as_a_string(sweep_out: Path) -> None:
    """A non-finite loss comes back from strict JSON as "nan": the sweep's readers accept it."""
    from optctl.studies.sweep import summary_table

    data = load_sweep(sweep_out)
    key = sorted(data.records)[0]
    rec = data.records[key][min(data.records[key])]
    rec["final_loss"] = "nan"
    rec["baselines"]["constant"]["final_loss"] = "inf"
    table = summary_table(data)
    assert "nan" in table and "inf" in table
    row = next(r for r in records_rows(data) if r["point"] == key)
    assert row["gain"] == "" and row["best_baseline"] == "linear_decay"


def test_a_point_that_fails_gets_a_row_with_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import optctl.studies.sweep as sweep_mod

    (tmp_path / "sweep.yaml").write_text(TINY.replace("    b: [1.5, 3.5]", "    b: [1.5]"))
    boom = RuntimeError("the solver broke")

    def fail(task: Any) -> Any:
        raise boom

    monkeypatch.setattr(sweep_mod, "run_point", fail)
    run = run_sweep(load_sweep_config(tmp_path / "sweep.yaml"), tmp_path / "out", progress=False)
    assert run.failed
    with open(tmp_path / "out" / "records.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 1
    assert rows[0]["point"] == "b1.5" and rows[0]["success"] == "False" and rows[0]["T"] == ""
    assert rows[0]["status"] == "RuntimeError: the solver broke"


def test_a_sweep_with_a_baseline_that_has_no_theory_exponent_draws_its_report(tmp_path: Path) -> None:
    """cosine has no theory exponent: the exponent figure's label once formatted None."""
    from optctl.cli.main import main

    (tmp_path / "sweep.yaml").write_text(TINY.replace("[constant, linear_decay]", "[constant, cosine]")
                                         .replace("    b: [1.5, 3.5]", "    b: [1.5]"))
    assert main(["sweep", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    assert list((tmp_path / "out" / "figures").glob("*_exponents.png"))
