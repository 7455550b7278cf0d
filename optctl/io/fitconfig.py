"""YAML configs of ``optctl fit``: how to fit, and the training job to solve for afterwards.

A fit config (schema version 1) looks like::

    schema_version: 1
    name: pilot                 # optional; run-name stem
    fit: {N: 1000, tail: false, modes: auto, starts: 4, bootstrap: 30,
          bootstrap_method: auto, block: 1, level: 0.95, seed: 0}
    target: {T: 20000, batch_size: 8, eta_max_factor: 1.0}   # or lr_max: 0.4 (real units)
    solver: {grid: auto, K: 100}                 # optional; written into the run config
    baselines: [constant, cosine, wsd]           # optional; written into the run config

``fit`` holds the fields of :class:`~optctl.calibrate.fitting.FitOptions`; ``target`` the horizon
``T`` (default: the longest curve), the batch size (default: the last one of the
longest curve) and ``eta_max_factor``: the solved schedule's rate is bounded by ``eta_max_factor`` × the
largest measured rate, or by ``lr_max`` (real units; from a learning-rate range test,
say) when that is given, and never above 0.98 of the fitted model's own stability limit
(:func:`optctl.model.spectrum.stable_rate`). The default (factor 1.0, no ``lr_max``)
keeps the schedule inside the range of rates the pilots measured. Keys are strict, as in
:mod:`optctl.io.config`.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from optctl.baselines.families import BASELINE_NAMES
from optctl.calibrate.params import FitOptions
from optctl.errors import ConfigError, SpecError
from optctl.io.yamlfile import (
    MISSING,
    check_baselines,
    check_keys,
    check_name,
    check_schema_version,
    read_config,
    section,
)
from optctl.spec import SolverOptions
from optctl.validate import check_int, check_real

_FIT_KEYS = tuple(f.name for f in dataclasses.fields(FitOptions) if f.name != "progress")
_TARGET_KEYS = ("T", "batch_size", "eta_max_factor", "lr_max")
_SOLVER_KEYS = tuple(f.name for f in dataclasses.fields(SolverOptions))
_TOP_KEYS = ("schema_version", "name", "fit", "target", "solver", "baselines")


@dataclass(frozen=True)
class FitConfig:
    """A validated fit config; ``T``/``batch_size`` ``None`` mean "from the curves"."""

    name: str = "fit"
    options: FitOptions = field(default_factory=FitOptions)
    T: int | None = None
    batch_size: float | None = None
    eta_max_factor: float = 1.0
    lr_max: float | None = None
    solver: SolverOptions = field(default_factory=SolverOptions)
    baselines: tuple[str, ...] = BASELINE_NAMES

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.T is not None:
            t = check_int("target.T", self.T)
            if t < 1:
                raise SpecError("target.T", self.T, "must be >= 1 (number of updates to solve for)")
            object.__setattr__(self, "T", t)
        if self.batch_size is not None:
            m = check_real("target.batch_size", self.batch_size)
            if m < 1:
                raise SpecError("target.batch_size", self.batch_size, "must be >= 1")
            object.__setattr__(self, "batch_size", m)
        f = check_real("target.eta_max_factor", self.eta_max_factor)
        if f <= 0:
            raise SpecError("target.eta_max_factor", self.eta_max_factor,
                            "must be > 0 (1.0 keeps the schedule within the measured rates)")
        object.__setattr__(self, "eta_max_factor", f)
        if self.lr_max is not None:
            if f != 1.0:
                raise SpecError("target.lr_max", self.lr_max, "and target.eta_max_factor both bound the "
                                "rate; give one of them")
            x = check_real("target.lr_max", self.lr_max)
            if not x > 0:
                raise SpecError("target.lr_max", self.lr_max, "must be > 0 (the largest real learning rate)")
            object.__setattr__(self, "lr_max", x)
        object.__setattr__(self, "baselines", check_baselines(self.baselines))


def fit_config_from_dict(d: Mapping[str, Any]) -> FitConfig:
    if not isinstance(d, Mapping):
        raise ConfigError("config", d, f"must be a mapping with keys {', '.join(_TOP_KEYS)}")
    check_keys("", d, _TOP_KEYS)
    check_schema_version(d.get("schema_version", MISSING))
    target = section(d, "target", _TARGET_KEYS)
    return FitConfig(name=d.get("name", "fit"), options=FitOptions(**section(d, "fit", _FIT_KEYS)),
                     T=target.get("T"), batch_size=target.get("batch_size"),
                     eta_max_factor=target.get("eta_max_factor", 1.0), lr_max=target.get("lr_max"),
                     solver=SolverOptions(**section(d, "solver", _SOLVER_KEYS)),
                     baselines=d.get("baselines", BASELINE_NAMES))


def load_fit_config(path: str | os.PathLike[str]) -> FitConfig:
    """Read and validate a fit config (safe YAML, strict keys, schema version 1)."""
    return read_config(path, lambda d, _: fit_config_from_dict(d), kind="fit config",
                       example="configs/fit_pilot.yaml")
