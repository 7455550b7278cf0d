"""The end-to-end examples at reduced size (slow: run with ``pytest -m slow``)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _example(name: str) -> ModuleType:
    pytest.importorskip("torch")
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_random_feature_example_matches_the_prediction_and_beats_cosine(tmp_path: Path) -> None:
    report = _example("random_feature_sgd").main(["--runs", "400", "--T", "300", "--out", str(tmp_path)])
    for name in ("optimal", "cosine"):
        assert report[name]["within_mc_error"], report[name]
    assert report["cosine_minus_optimal"]["optimal_beats_cosine"], report["cosine_minus_optimal"]
    assert (tmp_path / "random_feature_sgd.png").exists()


def test_mlp_example_runs_every_schedule(tmp_path: Path) -> None:
    report = _example("mlp_schedules").main(["--T", "150", "--seeds", "4", "--peaks", "0.1",
                                             "--out", str(tmp_path)])
    row = report["by_peak"]["0.1"]
    assert set(row) == {"optimal", "cosine", "wsd", "constant"}
    assert all(np.isfinite(v["final_excess_loss"]) for v in row.values())
    assert (tmp_path / "mlp_schedules.json").exists()


def test_calibrate_mlp_example_runs_end_to_end(tmp_path: Path) -> None:
    report = _example("calibrate_mlp").main([
        "--pilot-T", "100", "--T", "200", "--peaks", "0.1", "0.3", "--seeds", "2",
        "--eval-seeds", "3", "--bootstrap", "10", "--N", "100", "--out", str(tmp_path)])
    rows = report["evaluation"]
    assert len(rows) == 3 and all(np.isfinite(r["final_test_loss"]) for r in rows.values())
    assert report["table"]["lr_scale"] > 0 and report["table"]["T"] == 200
    assert (tmp_path / "mlp.md").read_text().count("optctl (fitted)") >= 1
    assert (tmp_path / "mlp" / "fit" / "config.yaml").exists()


@pytest.mark.slow
def test_anytime_example_trains_every_branch_from_its_checkpoint(tmp_path: Path) -> None:
    assert _example("anytime_branches").main(["--horizons", "40", "120", "--out", str(tmp_path)]) == 0
    rows = json.loads((tmp_path / "anytime_branches.json").read_text())["rows"]
    assert [r["T"] for r in rows] == [40, 120]
    assert all(np.isfinite(r["test_excess_loss"]) for r in rows)


def test_anytime_example_refuses_an_uncertified_plan(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A plan whose table says ``success: false`` is refused (no training) unless
    ``--allow-uncertified``, which trains from it with a warning."""
    from types import SimpleNamespace

    from optctl.table import BranchingTable

    module = _example("anytime_branches")
    table = BranchingTable(trunk=np.full(12, 0.3), branches=(np.linspace(0.3, 0.01, 6), np.linspace(0.3, 0.02, 8)),
                           leave=(4, 12), horizons=(10, 20),
                           source={"success": False, "status": "Dual_Stalled", "gap": 1e-3})
    fake = SimpleNamespace(to_table=lambda: table, losses=np.array([0.1, 0.05]), regret=np.array([0.01, 0.02]))
    monkeypatch.setattr(module, "solve_branching", lambda *a, **k: fake)
    args = ["--horizons", "10", "20", "--out", str(tmp_path)]
    with pytest.raises(SystemExit, match="not certified .*Dual_Stalled.*--allow-uncertified"):
        module.main(args)
    assert not (tmp_path / "anytime_branches.json").exists()
    assert module.main([*args, "--allow-uncertified"]) == 0
    assert "warning: the branching plan is not certified" in capsys.readouterr().err
    assert (tmp_path / "anytime_branches.json").exists()
