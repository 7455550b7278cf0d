"""``optctl.schedule``: a config (or a fit folder) to a table in memory, as the CLI would make it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import TABLE_EXACT_RTOL

import optctl
from optctl.cli.main import main
from optctl.errors import ConfigError, SpecError
from optctl.io.tables import load_table

SMALL = """schema_version: 1
name: small
model: {a: 2.5, b: 1.5, N: 30, sigma: 0.5}
training: {T: 300, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 20}
baselines: [constant]
"""


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schedule") / "small.yaml"
    path.write_text(SMALL)
    return path


def test_schedule_equals_solve_then_export_on_the_command_line(config: Path, tmp_path: Path) -> None:
    table = optctl.schedule(config, T=120)
    assert main(["solve", str(config), "--T", "120", "--no-baselines", "--quiet",
                 "--out", str(tmp_path / "run")]) == 0
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "t.npz")]) == 0
    exported = load_table(tmp_path / "t.npz")
    assert table.T == 120 and table.spec["T"] == 120
    assert table.content_hash == exported.content_hash  # same columns, spec, solver, horizon
    np.testing.assert_allclose(table.lr, exported.lr, rtol=TABLE_EXACT_RTOL, atol=0)
    assert table.source["kind"] == "optctl.schedule" and table.source["success"]
    assert optctl.schedule(config, T=120) is table  # made once per process
    assert optctl.schedule(config, T=120, progress=True) is table  # printing changes nothing


def test_schedule_from_a_fit_folder_is_in_real_units(config: Path, tmp_path: Path) -> None:
    folder = tmp_path / "fit"
    folder.mkdir()
    (folder / "config.yaml").write_text(config.read_text())
    (folder / "calibration.json").write_text(json.dumps({"lr_scale": 0.25, "loss_scale": 1.0}))
    model_units = optctl.schedule(config, T=120)
    real = optctl.schedule(folder, 120)
    assert real.lr_scale == 0.25 and real.schema_version == 2
    np.testing.assert_allclose(real.lr, 0.25 * model_units.lr, rtol=TABLE_EXACT_RTOL, atol=0)
    assert real.source["calibration"]["lr_scale"] == 0.25


def test_schedule_errors_name_the_field(config: Path, tmp_path: Path) -> None:
    with pytest.raises(SpecError, match=r"training.T = 0: must be >= 1"):
        optctl.schedule(config, T=0)
    with pytest.raises(ConfigError, match=r"source = 'int'.*YAML run config"):
        optctl.schedule(3)  # type: ignore[arg-type]
    with pytest.raises(optctl.OptctlError, match="not one written by `optctl fit`"):
        optctl.schedule(tmp_path)
    table_file = tmp_path / "table.csv"
    table_file.write_text("step,lr\n" + "".join(f"{t},0.1\n" for t in range(500)))
    with pytest.raises(ConfigError, match="this is a schedule table, not a config") as err:
        optctl.schedule(table_file)
    assert len(str(err.value)) < 300  # the file's content is not quoted
