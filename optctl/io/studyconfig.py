"""The parameters of the batch-size and momentum studies, read from YAML like the sweeps.

The packaged file ``optctl/data/study_controls.yaml`` holds the models (one per phase)
and the settings of both studies (:mod:`optctl.studies.momentum`,
:mod:`optctl.studies.batch`); :func:`load_control_study` reads it, or any file of the
same shape, strictly (unknown keys are errors, every value is checked).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from optctl.errors import ConfigError, SpecTypeError
from optctl.io.yamlfile import (
    MISSING,
    check_keys,
    check_name,
    check_schema_version,
    read_config,
    section,
)
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.validate import check_int, check_real

_TOP = ("schema_version", "name", "models", "momentum", "batch")
_MODEL_KEYS = ("a", "b", "N", "sigma", "batch_size")
_MOMENTUM_KEYS = ("horizons", "eta_max", "beta_min", "solver", "monte_carlo", "settings")
_SETTING_KEYS = ("normalize_init", "kappa", "momentum_init")
# The setting of the momentum study when the file names none.
PROJECT_SETTING: dict[str, Any] = {"normalize_init": False, "kappa": 0.0, "momentum_init": "model"}
_BATCH_KEYS = ("T0", "mean_batch", "m_min", "m_max", "constant_batches", "loss_rtol")
_SOLVER_KEYS = tuple(f.name for f in dataclasses.fields(SolverOptions))


@dataclass(frozen=True)
class ControlStudy:
    """The validated study file: ``models[phase]`` (model fields without ``T``), the
    momentum study's horizons per phase, bound, solver options and Monte-Carlo check, and
    the batch study's reference horizon, budget, batch bounds and loss tolerance."""

    name: str
    models: dict[str, dict[str, float]]
    horizons: dict[str, tuple[int, ...]]
    eta_max: float
    beta_min: float
    solver: SolverOptions
    mc_T: int | None
    mc_runs: int
    T0: int
    mean_batch: float
    m_min: float
    m_max: float
    constant_batches: tuple[float, ...]
    loss_rtol: float
    settings: dict[str, dict[str, Any]] = dataclasses.field(default_factory=lambda: {"project": PROJECT_SETTING})

    def spec(self, phase: str, T: int, *, eta_max: float = 1.0, batch_size: float | None = None,
             setting: str = "project") -> ProblemSpec:
        """The model of ``phase`` at horizon ``T`` (its own batch size unless given), with the
        initial loss of ``setting`` (normalised to 1 or not)."""
        m = self.models[phase]
        return ProblemSpec(a=m["a"], b=m["b"], N=int(m["N"]), sigma=m["sigma"],
                           batch_size=m["batch_size"] if batch_size is None else batch_size,
                           T=T, eta_max=eta_max, normalize_init=bool(self.setting(setting)["normalize_init"]))

    def setting(self, name: str) -> dict[str, Any]:
        """The momentum study's setting ``name`` (``normalize_init``, ``kappa``, ``momentum_init``)."""
        if name not in self.settings:
            raise ConfigError("momentum.settings", name, f"unknown setting; choose one of {sorted(self.settings)}")
        return self.settings[name]

    def momentum_controls(self, setting: str = "project") -> ControlSpec:
        """``[lr, momentum]`` with the study's ``beta_min`` and the setting's penalty and start."""
        s = self.setting(setting)
        return ControlSpec(controls=("lr", "momentum"), beta_min=self.beta_min, kappa=s["kappa"],
                           momentum_init=s["momentum_init"])

    def batch_controls(self) -> ControlSpec:
        return ControlSpec(controls=("lr", "batch_size"), m_min=self.m_min, m_max=self.m_max)


def packaged_study_path() -> Path:
    return Path(str(resources.files("optctl") / "data" / "study_controls.yaml"))


def load_control_study(path: str | os.PathLike[str] | None = None) -> ControlStudy:
    """Read and validate a study file (default: the packaged ``study_controls.yaml``)."""
    return read_config(packaged_study_path() if path is None else path,
                       lambda d, _: control_study_from_dict(d), kind="study file",
                       example="optctl/data/study_controls.yaml")


def control_study_from_dict(d: Any) -> ControlStudy:
    if not isinstance(d, Mapping):
        raise ConfigError("config", d, f"must be a mapping with keys {', '.join(_TOP)}")
    check_keys("", d, _TOP)
    check_schema_version(d.get("schema_version", MISSING))
    name = d.get("name", "controls")
    check_name(name)
    models_in = d.get("models")
    if not isinstance(models_in, Mapping) or not models_in:
        raise SpecTypeError("models", models_in, "a mapping phase -> {a, b, N, sigma, batch_size}")
    models: dict[str, dict[str, float]] = {}
    for phase in models_in:
        m = section(models_in, str(phase), _MODEL_KEYS)
        for key in _MODEL_KEYS:
            if key not in m:
                raise ConfigError(f"models.{phase}.{key}", MISSING, f"is required; give {key} of the model")
        ProblemSpec(**m, T=1)  # checks every value
        models[str(phase)] = {k: m[k] for k in _MODEL_KEYS}
    mom = section(d, "momentum", _MOMENTUM_KEYS)
    horizons_in = mom.get("horizons", {})
    if not isinstance(horizons_in, Mapping) or set(horizons_in) != set(models):
        raise ConfigError("momentum.horizons", horizons_in, f"give a list of horizons for each of {sorted(models)}")
    horizons = {str(p): tuple(sorted({check_int(f"momentum.horizons.{p}[{i}]", T)
                                      for i, T in enumerate(v)})) for p, v in horizons_in.items()}
    mc = section(mom, "monte_carlo", ("T", "runs"))
    settings_in = mom.get("settings", {"project": PROJECT_SETTING})
    if not isinstance(settings_in, Mapping) or not settings_in:
        raise SpecTypeError("momentum.settings", settings_in,
                            "a mapping name -> {normalize_init, kappa, momentum_init}")
    settings: dict[str, dict[str, Any]] = {}
    for sname in settings_in:
        entry = section(settings_in, str(sname), _SETTING_KEYS)
        settings[str(sname)] = {**PROJECT_SETTING, **entry}
    batch = section(d, "batch", _BATCH_KEYS)
    out = ControlStudy(
        name=name, models=models, horizons=horizons,
        eta_max=check_real("momentum.eta_max", mom.get("eta_max", 1.0)),
        beta_min=check_real("momentum.beta_min", mom.get("beta_min", 0.0)),
        solver=SolverOptions(**section(mom, "solver", _SOLVER_KEYS)),
        mc_T=None if mc.get("T") is None else check_int("momentum.monte_carlo.T", mc["T"]),
        mc_runs=check_int("momentum.monte_carlo.runs", mc.get("runs", 2000)),
        T0=check_int("batch.T0", batch.get("T0", 256)),
        mean_batch=check_real("batch.mean_batch", batch.get("mean_batch", 4.0)),
        m_min=check_real("batch.m_min", batch.get("m_min", 1.0)),
        m_max=check_real("batch.m_max", batch.get("m_max", 64.0)),
        constant_batches=tuple(check_real(f"batch.constant_batches[{i}]", m)
                               for i, m in enumerate(batch.get("constant_batches", (1, 2, 4, 8, 16)))),
        loss_rtol=check_real("batch.loss_rtol", batch.get("loss_rtol", 1e-3)),
        settings=settings,
    )
    for sname in settings:  # each setting must make a valid problem and control set
        out.momentum_controls(sname)
        out.spec(next(iter(out.models)), 1, setting=sname)
    for p, hs in out.horizons.items():  # every solve must be a valid problem
        for T in hs:
            out.spec(p, T, eta_max=out.eta_max)
        ControlSpec(controls=("lr", "momentum"), beta_min=out.beta_min)
        out.batch_controls().check_problem(out.spec(p, out.T0, batch_size=out.mean_batch))
    return out
