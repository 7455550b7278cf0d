"""The batch-ramp study's search over the step count, its trend summary, and the claim
table's evidence (every file a claim cites is in ``results/paper/``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from optctl.studies.batch import RAMP_MAX_PROBES, fewest_steps, fewest_steps_interp, interp_search
from optctl.studies.reproduce import ramp_trend

PAPER = Path(__file__).resolve().parents[1] / "results" / "paper"


def _brute(loss, goal: float, lo_min: int, top: int) -> int:
    return next(T for T in range(lo_min, top + 1) if T == top or loss(T) <= goal)


@pytest.mark.parametrize("s, goal_T, first", [(0.7, 358.4, 384), (0.7, 358.4, 300), (0.2, 421.3, 410),
                                              (1.5, 1700.2, 3500), (0.5, 64.5, 400), (3.0, 900.9, 899)])
def test_interp_search_finds_the_smallest_reaching_step_count(s: float, goal_T: float, first: int) -> None:
    """Against a brute-force scan on a smooth decreasing loss whose crossing is known."""
    probes: list[int] = []

    def loss(T: int) -> float:
        probes.append(T)
        return float(T) ** -s * (1 + 0.01 * np.sin(T / 50.0) ** 2 / T)

    goal, f_top = goal_T ** -s, loss(4096)
    probes.clear()
    got = interp_search(loss, goal, first, 64, 4096, f_top=f_top)
    n_probes = len(probes)
    assert got == _brute(loss, goal, 64, 4096) == int(np.ceil(goal_T))
    assert n_probes <= 7  # bisection over [64, 4096] needs 12


def test_interp_search_is_not_stalled_by_an_outlying_value() -> None:
    """A probe far above the smooth curve (a solve that stopped early) at the bracket's low
    end: regula falsi alone creeps from the other end; bisecting when one end is stuck
    keeps the count of probes near bisection's."""
    probes: list[int] = []

    def loss(T: int) -> float:
        probes.append(T)
        return 10.0 if T == 3635 else float(T) ** -0.3

    got = interp_search(loss, 3641.5 ** -0.3, 3635, 1024, 4096, f_top=4096.0 ** -0.3)
    assert got == 3642
    assert len(probes) <= 12


def test_interp_search_edges() -> None:
    def loss(T: int) -> float:
        return 1.0 / T

    assert interp_search(loss, 1.0, 100, 64, 4096, f_top=loss(4096)) == 64  # everything reaches
    assert interp_search(loss, 1e-9, 100, 64, 4096, f_top=loss(4096)) == 4096  # only the top (by assumption)
    assert interp_search(loss, 1 / 4000.5, 4096, 64, 4096, f_top=loss(4096)) == 4001


def test_interp_search_says_when_it_runs_out_of_probes(monkeypatch: pytest.MonkeyPatch) -> None:
    import optctl.studies.batch as batch

    monkeypatch.setattr(batch, "RAMP_MAX_PROBES", 1)
    with pytest.raises(RuntimeError, match=r"at easy T0 = 4096 did not close its bracket \[\d+, \d+\]"):
        interp_search(lambda T: np.exp(-T / 500.0), np.exp(-1234.5 / 500.0), 100, 64, 4096, f_top=0.0,
                      where="easy T0 = 4096")
    assert RAMP_MAX_PROBES >= 12  # the real limit allows a plain bisection over [64, 4096]


def test_ramp_trend_words() -> None:
    def pts(fr: list[float]) -> list[dict[str, float]]:
        return [{"T0": 512 * 2**i, "saved_fraction": f} for i, f in enumerate(fr)]

    assert ramp_trend(pts([0.10, 0.20, 0.25, 0.30])).startswith("grows: +5.0 points per doubling over T0 = 1024")
    assert ramp_trend(pts([0.30, 0.25, 0.20])).startswith("shrinks: -5.0")
    assert ramp_trend(pts([0.20, 0.21, 0.20])).startswith("levels off")
    assert ramp_trend(pts([0.2])) == "one horizon"


def test_every_claim_cites_evidence_in_results_paper() -> None:
    """Each claim row of the committed claim table names at least one figure or table,
    every file it names under results/paper/ exists, and it says which command made it."""
    claims = json.loads((PAPER / "report.json").read_text())["claims"]
    assert claims
    for row in claims:
        files = re.findall(r"[\w/]+\.(?:png|md|json)", row["evidence"])
        local = [f for f in files if not f.startswith("docs/")]
        assert local, row["claim"]
        for f in local:
            assert (PAPER / f).is_file(), (row["claim"], f)
        assert "optctl reproduce" in row["source"], row["claim"]
        for cell in row.values():  # a bare | would split the markdown row into more cells
            assert "|" not in str(cell), (row["claim"], cell)


@pytest.mark.slow
def test_interp_search_agrees_with_bisection_on_real_solves() -> None:
    """The study's two searches over T' (per-step joint solves, T0 = 32) give the same count."""
    from optctl.io.studyconfig import load_control_study
    from optctl.solver.solve import solve

    study = load_control_study()
    T0 = 32
    target = solve(study.spec("easy", T0, batch_size=study.mean_batch)).final_loss
    bis = fewest_steps(study, "easy", target, ramp=True, cache={f"ramp-{T0}": target}, T0=T0)
    itp = fewest_steps_interp(study, "easy", target, T0=T0, options=None, guess=0.1)
    assert itp["steps"] == bis["steps"]
    assert len(itp["solves"]) <= len(bis["evaluated"])
