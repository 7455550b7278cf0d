"""Tuning the momentum families (optctl.baselines.momentum_tune) and the study's config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import FAMILY_REDUCTION_RTOL

from optctl.baselines.momentum_tune import build, tune_family
from optctl.errors import ConfigError, SpecError
from optctl.model import families as F
from optctl.spec import ProblemSpec
from optctl.studies.families import load_study

SPEC = ProblemSpec(a=2.5, b=1.5, N=40, sigma=0.5, batch_size=4, T=300)


def test_compiled_loss_matches_numpy_loop() -> None:
    # family_loss switches to the jax scan (padded with identity steps) for long runs.
    lr, beta = np.meshgrid([0.3, 0.6, 1.2], [0.0, 0.5, 0.9, 0.95])
    opt = F.schedule_free(2000, lr.ravel(), beta.ravel())
    assert opt.T * lr.size > F.NUMPY_MAX_WORK  # the compiled path runs
    fast = F.family_loss(SPEC, opt)
    slow = F.family_curve(SPEC, opt, every=2000)[-1]
    np.testing.assert_allclose(fast, slow, rtol=FAMILY_REDUCTION_RTOL)


@pytest.mark.parametrize("family", ["dana-decaying", "schedule-free"])
def test_tuned_point_beats_an_independent_fine_grid(family: str) -> None:
    # The zooming grid's answer must be at least as good as any point of a brute-force
    # 21 x 21 grid around it (±0.2 decades), evaluated by the numpy loop (family_curve).
    res = tune_family(SPEC, family, SPEC.T)
    assert not res.on_edge
    off = np.linspace(-0.2, 0.2, 21)
    gx, gy = np.meshgrid(res.coords[0] + off, res.coords[1] + off, indexing="ij")
    pts = np.stack([gx.ravel(), gy.ravel()], axis=1)
    brute = F.family_curve(SPEC, build(SPEC, family, SPEC.T, pts), every=SPEC.T)[-1]
    brute = np.where(np.isfinite(brute), brute, np.inf)
    assert res.loss <= brute.min() * (1 + 1e-3), (res.loss, brute.min())
    # and the reported loss is the exact loss of the reported parameters
    again = F.family_curve(SPEC, build(SPEC, family, SPEC.T, np.array(res.coords)), every=SPEC.T)[-1]
    assert float(again) == pytest.approx(res.loss, rel=FAMILY_REDUCTION_RTOL)


def test_unknown_family_is_refused() -> None:
    with pytest.raises(SpecError, match="family"):
        tune_family(SPEC, "adam", 10)


def test_packaged_study_loads() -> None:
    cfg = load_study()
    assert set(cfg["families"]) <= set(F.FAMILIES)
    assert cfg["horizons"] == sorted(cfg["horizons"])


@pytest.mark.parametrize(("text", "match"), [
    ("schema_version: 1\nname: x\nmodels: {h: {a: 1.3, b: 2.75, N: 10, sigma: 0.7, batch_size: 4}}\n"
     "horizons: [10]\nfamilies: [adam]\nsgd: {eta_max: 1.0}\n", "families"),
    ("schema_version: 1\nname: x\nmodels: {h: {a: 1.3, b: 2.75, N: 10, sigma: 0.7, batch_size: 4}}\n"
     "horizons: [100, 10]\nfamilies: [log-time]\nsgd: {eta_max: 1.0}\n", "horizons"),
    ("schema_version: 1\nname: x\nhorizons: [10]\nfamilies: [log-time]\nsgd: {eta_max: 1.0}\n", "models"),
])
def test_bad_study_config(tmp_path: Path, text: str, match: str) -> None:
    p = tmp_path / "study.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_study(p)
