"""The (η, β) schedules stored with the solver's benchmark (results/momentum_solver/stored/,
written by ``python benchmarks/bench_momentum_solver.py --out results/momentum_solver/stored``)
replay to the losses recorded next to them, through a per-step recursion written here
(MODEL.md §3, every mode), not the package's; and the solves' replay gaps are ≤ 1e-3."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from optctl.model.spectrum import spectrum
from optctl.spec import ProblemSpec

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from bench_momentum_solver import stored_records  # noqa: E402  (which records name a stored schedule)

STORED = Path(__file__).resolve().parents[1] / "results" / "momentum_solver" / "stored"
REPLAY_RTOL = 1e-9  # the recorded L_T is itself an exact replay: only rounding may differ
GAP_MAX = 1e-3  # the replay-gap claim (NLP objective against the replay)
SLOW_T = 10_000  # longer schedules take seconds in this plain loop


def ema_final_loss(spec: ProblemSpec, eta: np.ndarray, beta: np.ndarray, init: str) -> float:
    """``L_T`` of EMA momentum SGD: per mode ``C = E Δ²``, ``R = E Δ v``, ``V = E v²``;
    ``Δ ← Δ − η v``, ``v ← (1 − β) v + β g`` with ``E g² = (1 + 1/m) λ² C + λ (L + σ²)/m``."""
    sp = spectrum(spec)
    lam, w, m, s2 = sp.lam, sp.weight * sp.lam, spec.batch_size, sp.sigma2
    C = sp.c0.copy()
    L = float(w @ C)
    v0 = beta[0] if init == "model" else eta[-1] if init == "notebook" else 0.0
    R = v0 * lam * C
    V = v0**2 * ((1 + 1 / m) * lam**2 * C + lam * (L + s2) / m)
    for e, b in zip(eta, beta, strict=True):
        C_new = C - 2 * e * R + e * e * V
        L = float(w @ C_new)
        gd = lam * C_new  # E[Δ' g'] per mode: the new gradient against the new position
        Rv = R - e * V  # E[Δ' v]
        R = (1 - b) * Rv + b * gd
        V = (1 - b) ** 2 * V + 2 * b * (1 - b) * lam * Rv + b * b * ((1 + 1 / m) * lam**2 * C_new
                                                                    + lam * (L + s2) / m)
        C = C_new
    return L + sp.tail


def _records() -> list[dict[str, Any]]:
    return stored_records(json.loads((STORED / "summary.json").read_text()))


def _params() -> list[Any]:
    recs = _records() if (STORED / "summary.json").exists() else []
    return [pytest.param(r, id=r["schedule"], marks=[pytest.mark.slow] if r["spec"]["T"] > SLOW_T else [])
            for r in recs]


def test_every_stored_schedule_is_recorded() -> None:
    recs = _records()
    assert recs, "no stored schedule: run benchmarks/bench_momentum_solver.py --out results/momentum_solver/stored"
    with np.load(STORED / "schedules.npz") as arrays:
        for r in recs:
            assert arrays[f"{r['schedule']}__eta"].shape == arrays[f"{r['schedule']}__beta"].shape == (r["spec"]["T"],)


@pytest.mark.parametrize("rec", _params())
def test_a_stored_schedule_replays_to_its_recorded_loss(rec: dict[str, Any]) -> None:
    spec = ProblemSpec(**rec["spec"])
    with np.load(STORED / "schedules.npz") as arrays:
        eta, beta = arrays[f"{rec['schedule']}__eta"], arrays[f"{rec['schedule']}__beta"]
    assert np.all((eta >= 0) & (eta <= spec.eta_max)) and np.all((beta >= 0) & (beta <= 1))
    L = ema_final_loss(spec, eta, beta, rec.get("momentum_init") or "model")
    assert L == pytest.approx(rec["loss"], rel=REPLAY_RTOL)
    assert abs(rec["replay_gap"]) <= GAP_MAX
    # power: the schedule matters at this tolerance (a 1% change of η moves L_T far more)
    assert abs(ema_final_loss(spec, 0.99 * eta, beta, rec.get("momentum_init") or "model") - L) > 1e3 * REPLAY_RTOL * L
