"""The claim table's rules for figure 3 (bias and variance) and the hard-phase momentum
row, on the committed sweep and momentum data, and `optctl reproduce --workers` checks."""

from __future__ import annotations

from pathlib import Path

import pytest

from optctl.io.files import read_json
from optctl.solver.result import record_schedule, record_spec
from optctl.studies.reproduce import (
    BIAS_VARIANCE_T,
    ETA_MAX_HELD,
    _pow10,
    bias_variance_claim,
    bias_variance_parts,
    momentum_hard_verdict,
)
from optctl.studies.sweep import load_sweep

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"


def _finals(parts):  # type: ignore[no-untyped-def]
    return {"T": BIAS_VARIANCE_T, **{n: (float(b[-1]), float(v[-1])) for n, (b, v) in parts.items()}}


def test_figure_3_claims_hold_on_the_committed_optima_replayed() -> None:
    data = load_sweep(PAPER / "sweeps" / "horizons")
    seen = set()
    for recs in data.records.values():
        rec = recs[BIAS_VARIANCE_T]
        phase = record_spec(rec).phase
        parts = bias_variance_parts(rec, record_schedule(rec).per_step, phase)
        assert (ETA_MAX_HELD in parts) == (phase == "hard")
        bv = _finals(parts)
        claim, measured, verdict = bias_variance_claim(phase, bv)
        assert verdict == "agree", (phase, measured)
        assert f"T = {BIAS_VARIANCE_T:,}" in measured and "figure 3" in claim
        seen.add(phase)
    assert seen == {"easy", "hard"}


def test_figure_3_rules_can_fail() -> None:
    easy = {"T": 3162, "optimal": (2e-4, 4e-4), "constant": (8e-4, 9e-4), "power_law": (6e-4, 7e-4)}
    assert bias_variance_claim("easy", easy)[2] == "agree"
    assert bias_variance_claim("easy", {**easy, "constant": (8e-4, 3e-4)})[2] == "partly"  # variance not lower
    assert bias_variance_claim("easy", {**easy, "optimal": (9e-4, 9.5e-4)})[2] == "disagree"
    hard = {"T": 3162, "optimal": (4.8e-3, 5e-4), "constant": (1.1e-2, 4.7e-3), ETA_MAX_HELD: (6e-3, 8.5e-2)}
    assert bias_variance_claim("hard", hard)[2] == "agree"
    assert bias_variance_claim("hard", {**hard, "optimal": (8e-3, 5e-4)})[2] == "partly"  # bias above the plateau's
    assert bias_variance_claim("hard", {**hard, "optimal": (4.8e-3, 2e-2)})[2] == "partly"  # little variance removed
    assert bias_variance_claim("hard", {**hard, "optimal": (8e-3, 2e-2)})[2] == "disagree"


def test_momentum_hard_row_needs_a_better_exponent_not_a_lower_loss() -> None:
    s = read_json(PAPER / "momentum" / "summary.json")["phases"]["hard"]
    assert s["beats_sgd_everywhere"]  # a lower loss at every T …
    assert momentum_hard_verdict(s) == "disagree"  # … at SGD's exponent (0.162 vs 0.161)
    better = {**s, "momentum_exponent": s["sgd_exponent"] + 0.05,
              "momentum_local_slopes": [x + 0.05 for x in s["sgd_local_slopes"]]}
    assert momentum_hard_verdict(better) == "agree"
    assert momentum_hard_verdict({**better, "momentum_local_slopes": s["sgd_local_slopes"]}) == "partly"


def test_horizons_print_as_powers_of_ten() -> None:
    assert [_pow10(T) for T in (10_000, 1_000_000, 3162)] == ["10^4", "10^6", "3,162"]


@pytest.mark.parametrize("workers", ["0", "-1"])
def test_reproduce_refuses_a_non_positive_worker_count(tmp_path: Path, workers: str, capsys) -> None:  # type: ignore[no-untyped-def]
    from optctl.cli.main import main

    assert main(["reproduce", "--out", str(tmp_path / "out"), "--workers", workers, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"--workers {workers}" in err and "positive" in err
    assert not (tmp_path / "out").exists()
