"""YAML run configs → validated specs: strict keys, a schema version, one result type.

A config file (schema version 1) looks like::

    schema_version: 1
    name: hard_phase            # optional; run-name stem, [A-Za-z0-9_.-]+
    model: {a: 3.5, b: 5.0, N: 1000, sigma: 0.5, normalize_init: false, tail: false}
    training: {T: 1000, batch_size: 5, eta_max: 1.0}
    solver: {grid: auto, K: 100}  # optional; any SolverOptions field
    baselines: [constant, power_law, linear_decay, cosine, wsd]  # optional
    controls: [lr]                # optional; [lr, batch_size] or [lr, momentum]
    family: {name: schedule-free, tune: true}   # optional; a momentum family instead of a solve
                                  # (solve: true solves its step schedules; eta_max bounds its step)

``controls`` (optional, default ``[lr]``) picks the control problem of MODEL.md §4:
with ``batch_size`` the keys ``training.m_min`` and ``training.m_max`` are required
(``training.batch_size`` is then the mean batch ``m̄`` of the sample budget
``Σ m_t = T m̄``); with ``momentum`` the keys ``training.beta_min`` (default 0) and
``training.kappa`` (smoothness penalty, default 0) are accepted. A bound given for a
control that is not chosen is an error. These keys are additions to schema version 1:
files without them mean exactly what they meant before.

``family`` (optional) replaces the solve by a momentum family of
docs/momentum_families.md (``dana-decaying``, ``dana-constant``, ``log-time``,
``schedule-free``; underscores accepted): either its two tuning coordinates are given
(``gamma2, gamma3`` for DANA, ``lr, gamma3`` for log-time, ``lr, beta`` for
Schedule-Free; DANA and log-time also accept their fixed ``delta``, ``kappa``,
log-time ``gamma2``) or ``tune: true`` tunes them for ``training.T`` under the exact
model. With ``solve: true`` (DANA and Schedule-Free) the family's step schedules are then
solved per update block (docs/momentum_families.md §7; the start is the given or tuned
hyperparameters): DANA's ``(γ₂(t), γ₃(t))`` with ``γ₁ = 1`` and ``Δ(t) = δ/(δ + t)``,
Schedule-Free's ``γ(t)`` with its ``β`` fixed, on ``solver.K`` refined blocks. ``eta_max``
(optional, with ``tune`` or ``solve``) bounds the family's effective step (DANA
``γ₂ + γ₃/Δ(t)``, Schedule-Free ``γ(t)``). A family runs with ``controls: [lr]`` only and
without ``horizons``.

``model`` and ``training`` together are the fields of :class:`~optctl.spec.ProblemSpec`
(Bordelon & Mori, arXiv:2602.04774, section 2: ``a``, ``b``, ``N``, ``σ`` → ``sigma``,
batch size ``m`` → ``batch_size``, horizon ``T``, ``η_max`` → ``eta_max``); ``solver``
holds the fields of :class:`~optctl.spec.SolverOptions`. ``model.a``, ``model.b`` and
``training.T`` are required; every other key falls back to the spec's default, and
:meth:`RunConfig.to_dict` writes every resolved value back out.

Files are read with the strict safe loader of :mod:`optctl.io.yamlfile` (YAML 1.2
floats such as ``1e-10``, duplicate keys are errors).

Errors: a wrong value type raises :class:`~optctl.errors.SpecTypeError` (a
``TypeError``); a wrong value, a missing or unknown key, a wrong schema version or an
unreadable file raises :class:`~optctl.errors.ConfigError` (a :class:`~optctl.errors.SpecError`, hence
a ``ValueError``). Every message names the dotted field (``model.a``, ``training.T``,
``solver.grid``), the offending value, and how to fix it. Errors raised while loading a
file carry a note (:meth:`BaseException.add_note`) naming the file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from optctl.baselines.families import BASELINE_NAMES
from optctl.errors import AssumptionWarning, ConfigError, SpecError, SpecTypeError
from optctl.io.yamlfile import (
    MISSING,
    SCHEMA_VERSION,
    check_baselines,
    check_keys,
    check_name,
    check_schema_version,
    control_spec,
    name_from_source,
    read_config,
    section,
    suggest,
)
from optctl.spec import CONTROL_BOUNDS, MAX_T, ControlSpec, ProblemSpec, SolverOptions
from optctl.theory import assumption_note
from optctl.validate import check_horizons

_TRAINING_KEYS: tuple[str, ...] = ("T", "batch_size", "eta_max")
_MODEL_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ProblemSpec) if f.name not in _TRAINING_KEYS
)
_SOLVER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SolverOptions))
_REQUIRED: dict[str, tuple[str, ...]] = {"model": ("a", "b"), "training": ("T",)}
_SECTIONS: dict[str, tuple[str, ...]] = {
    "model": _MODEL_KEYS,
    "training": _TRAINING_KEYS + CONTROL_BOUNDS,
    "solver": _SOLVER_KEYS,
}
_TOP_KEYS: tuple[str, ...] = ("schema_version", "name", "model", "training", "solver", "baselines",
                              "controls", "horizons", "leave", "family")
# The momentum families a config can run instead of a solve: (tuning coordinates, fixed keys).
FAMILY_KEYS: dict[str, tuple[tuple[str, str], tuple[str, ...]]] = {
    "dana-decaying": (("gamma2", "gamma3"), ("delta", "kappa")),
    "dana-constant": (("gamma2", "gamma3"), ("delta",)),
    "log-time": (("lr", "gamma3"), ("gamma2", "delta", "kappa")),
    "schedule-free": (("lr", "beta"), ()),
}
# The families whose step schedules `solve: true` solves (optctl.solver.family).
SOLVABLE_FAMILIES: tuple[str, ...] = ("dana-decaying", "dana-constant", "schedule-free")
# Examples shown in "required key" messages: the hard-phase reference case.
_EXAMPLES: dict[str, str] = {"model.a": "a: 3.5", "model.b": "b: 5.0", "training.T": "T: 1000"}


# --- the result type ---------------------------------------------------------------------


LEAVE_WITHOUT_HORIZONS = ("leave points belong to an anytime plan: add `horizons: [T_1, ..., T_n]` (one "
                          "leave point 0 <= t_i < T_i per horizon), or remove `leave:`")

@dataclass(frozen=True)
class FamilySpec:
    """A momentum family of a run config: its name, and its hyperparameters or ``tune``.

    ``params`` holds the given hyperparameters (both tuning coordinates, and optionally the
    family's fixed keys, :data:`FAMILY_KEYS`); with ``tune`` the two coordinates are tuned
    for the horizon (docs/momentum_families.md §4) and no hyperparameter may be given.
    """

    name: str
    params: Mapping[str, float] = field(default_factory=dict)
    tune: bool = False
    solve: bool = False
    eta_max: float | None = None

    def __post_init__(self) -> None:
        name = self.name.replace("_", "-") if isinstance(self.name, str) else self.name
        if name not in FAMILY_KEYS:
            raise ConfigError("family.name", self.name, f"choose one of {', '.join(FAMILY_KEYS)} "
                              f"(underscores also accepted){'; ' + suggest(str(name), tuple(FAMILY_KEYS)) if isinstance(name, str) else ''}")
        object.__setattr__(self, "name", name)
        if not isinstance(self.tune, bool):
            raise SpecTypeError("family.tune", self.tune, "true or false")
        if not isinstance(self.solve, bool):
            raise SpecTypeError("family.solve", self.solve, "true or false")
        if self.solve and name not in SOLVABLE_FAMILIES:
            raise ConfigError("family.solve", True, f"{name} has no solved schedule (its step law is fixed); "
                              f"solve: true takes {', '.join(SOLVABLE_FAMILIES)}, or drop solve")
        if self.eta_max is not None:
            if isinstance(self.eta_max, bool) or not isinstance(self.eta_max, (int, float)) \
                    or not math.isfinite(self.eta_max):
                raise SpecTypeError("family.eta_max", self.eta_max, "a finite number > 0")
            if self.eta_max <= 0:
                raise ConfigError("family.eta_max", self.eta_max, "bound the effective step by a value > 0")
            if not (self.tune or self.solve):
                raise ConfigError("family.eta_max", self.eta_max, "bounds the step of a tuned or solved family; "
                                  "add tune: true or solve: true, or drop eta_max")
            object.__setattr__(self, "eta_max", float(self.eta_max))
        coords, fixed = FAMILY_KEYS[name]
        params = dict(self.params)
        for key, value in params.items():
            if key not in coords + fixed:
                raise ConfigError(f"family.{key}", value, f"is not a hyperparameter of {name}; "
                                  f"{suggest(key, coords + fixed)}allowed: {', '.join(coords + fixed)} (and tune, solve, eta_max)")
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
                raise SpecTypeError(f"family.{key}", value, "a finite number")
            params[key] = float(value)
            _check_family_value(name, key, params[key], coords)
        if self.tune and params:
            raise ConfigError(f"family.{next(iter(params))}", params[next(iter(params))],
                              f"tune: true tunes {coords[0]} and {coords[1]} with the family's default "
                              "fixed values; drop the hyperparameters, or drop tune: true and give both")
        if not self.tune:
            for key in coords:
                if key not in params:
                    raise ConfigError(f"family.{key}", MISSING, f"is required for {name} (give "
                                      f"{coords[0]} and {coords[1]}), or write tune: true to tune them")
        object.__setattr__(self, "params", params)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, **({"tune": True} if self.tune else {}),
                **({"solve": True} if self.solve else {}),
                **({"eta_max": self.eta_max} if self.eta_max is not None else {}), **self.params}


def _check_family_value(name: str, key: str, value: float, coords: tuple[str, str]) -> None:
    """Ranges of the families' hyperparameters: Schedule-Free's averaging weight in [0, 1),
    the step sizes and DANA's delta above 0, the others (damping, decay exponent) at least 0."""
    if key == "beta":
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"family.{key}", value, f"{name}'s beta interpolates between the iterates: "
                              "give a value in [0, 1), e.g. beta: 0.9")
    elif key in coords or key == "delta":
        if value <= 0.0:
            raise ConfigError(f"family.{key}", value, "must be > 0 (a step size or time scale)")
    elif value < 0.0:
        raise ConfigError(f"family.{key}", value, "must be >= 0 (a negative exponent or damping makes "
                          "the step grow with t)")


def family_spec(value: object) -> FamilySpec | None:
    """The ``family:`` mapping of a config (``None`` when absent)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise SpecTypeError("family", value, "a mapping such as {name: schedule-free, tune: true}")
    if "name" not in value:
        raise ConfigError("family.name", MISSING, f"is required; one of {', '.join(FAMILY_KEYS)}")
    rest = {k: v for k, v in value.items() if k not in ("name", "tune", "solve", "eta_max")}
    return FamilySpec(name=value["name"], params=rest, tune=value.get("tune", False),
                      solve=value.get("solve", False), eta_max=value.get("eta_max"))


@dataclass(frozen=True)
class RunConfig:
    """One validated run: the problem, how to solve it, and which baselines to tune.

    ``name`` is the run-name stem (``[A-Za-z0-9_.-]+``, used in result folder names);
    ``problem`` and ``solver`` are the validated specs; ``baselines`` is a subset of
    :data:`BASELINE_NAMES` (tuned with :func:`optctl.baselines.tune_baselines`);
    ``source`` is the file the config came from, if any (not compared by ``==``).
    Variants come from :func:`dataclasses.replace` or :func:`with_overrides`, both of
    which re-run the validation.
    """

    name: str
    problem: ProblemSpec
    solver: SolverOptions = field(default_factory=SolverOptions)
    baselines: tuple[str, ...] = BASELINE_NAMES
    source: str | None = field(default=None, compare=False)
    controls: ControlSpec = field(default_factory=ControlSpec)
    horizons: tuple[int, ...] | None = None
    leave: tuple[int, ...] | None = None
    family: FamilySpec | None = None

    def __post_init__(self) -> None:
        check_name(self.name)
        if self.family is not None:
            if not isinstance(self.family, FamilySpec):
                raise SpecTypeError("family", self.family, "a FamilySpec")
            if self.controls.controls != ("lr",):
                raise ConfigError("family", self.family.name, "a momentum family has its own "
                                  "hyperparameters; drop the config's controls (or the family)")
            if self.horizons is not None:
                raise ConfigError("family", self.family.name, "a family runs one horizon (training.T); "
                                  "drop `horizons:`")
        if self.horizons is not None:
            hs = check_horizons(list(self.horizons) if isinstance(self.horizons, tuple) else self.horizons)
            object.__setattr__(self, "horizons", hs)
            if self.problem.T != hs[-1]:
                raise ConfigError("training.T", self.problem.T, f"with horizons, T is the longest one "
                                  f"({hs[-1]}): write T: {hs[-1]} or leave T out")
            if self.controls.controls != ("lr",):
                raise ConfigError("horizons", list(hs), "anytime plans are solved for the learning "
                                  "rate alone; drop the config's controls")
        if self.leave is not None:
            if self.horizons is None:
                raise ConfigError("leave", self.leave, LEAVE_WITHOUT_HORIZONS)
            lv = list(self.leave) if isinstance(self.leave, tuple) else self.leave
            if not isinstance(lv, list) or len(lv) != len(self.horizons):
                raise ConfigError("leave", lv, f"give one leave point per horizon ({len(self.horizons)})")
            for i, (t, T) in enumerate(zip(lv, self.horizons, strict=True)):
                if isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < T:
                    raise ConfigError(f"leave[{i}]", t, f"a leave point is an integer 0 <= t < T = {T}")
            object.__setattr__(self, "leave", tuple(lv))
        if not isinstance(self.problem, ProblemSpec):
            raise SpecTypeError("problem", self.problem, "a ProblemSpec")
        if not isinstance(self.solver, SolverOptions):
            raise SpecTypeError("solver", self.solver, "a SolverOptions")
        if not isinstance(self.controls, ControlSpec):
            raise SpecTypeError("controls", self.controls, "a ControlSpec")
        self.controls.check_problem(self.problem)
        self.controls.check_options(self.solver)
        object.__setattr__(self, "baselines", check_baselines(self.baselines))
        if self.source is not None and not isinstance(self.source, str):
            object.__setattr__(self, "source", os.fspath(self.source))

    def to_dict(self) -> dict[str, Any]:
        """The resolved config in the file's shape, with every default filled in.

        ``load_config_dict(cfg.to_dict()) == cfg`` holds for every valid config.
        """
        problem = self.problem.to_dict()
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "name": self.name,
            "model": {k: problem[k] for k in _MODEL_KEYS},
            "training": {**{k: problem[k] for k in _TRAINING_KEYS}, **self.controls.bounds},
            "solver": self.solver.to_dict(),
            "baselines": list(self.baselines),
        }
        if self.controls.controls != ("lr",):
            out["controls"] = list(self.controls.controls)
        if self.horizons is not None:
            out["horizons"] = list(self.horizons)
        if self.leave is not None:
            out["leave"] = list(self.leave)
        if self.family is not None:
            out["family"] = self.family.to_dict()
        return out


# --- public functions --------------------------------------------------------------------


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config (safe loading, strict keys).

    Raises :class:`ConfigError` when the file is missing, is not valid YAML (with the
    line and column), or does not hold a mapping; field errors as in
    :func:`load_config_dict`, with a note naming the file.
    """
    return read_config(path, _build, kind="run config", example="configs/hard_phase.yaml",
                       missing="no such file; check the path (example configs are in the "
                               "configs/ folder of optctl's source, and `optctl solve` without a "
                               "config runs the packaged hard-phase case)")


def load_config_dict(d: Mapping[str, Any], source: str | None = None) -> RunConfig:
    """Validate a config already parsed into a mapping (the file's shape).

    ``source`` is recorded on the result and named in a note on any error; without a
    ``name`` key the run is named after the file stem (or ``"run"``).
    """
    try:
        return _build(d, source)
    except (SpecError, SpecTypeError) as exc:
        if source is not None:
            exc.add_note(f"in run config {source}")
        raise


def dump_config(cfg: RunConfig) -> str:
    """The resolved config as YAML text, readable by :func:`load_config`."""
    header = f"# optctl run config (schema version {SCHEMA_VERSION}), all defaults resolved\n"
    return header + yaml.safe_dump(cfg.to_dict(), sort_keys=False, default_flow_style=False)


def with_overrides(
    cfg: RunConfig,
    *,
    name: str | None = None,
    baselines: Sequence[str] | None = None,
    **overrides: Any,
) -> RunConfig:
    """A copy of ``cfg`` with some fields replaced; arguments left as ``None`` are kept.

    ``overrides`` are fields of :class:`~optctl.spec.ProblemSpec` (``a``, ``b``, ``N``,
    ``sigma``, ``normalize_init``, ``tail``, ``T``, ``batch_size``, ``eta_max``) or of
    :class:`~optctl.spec.SolverOptions` (``grid``, ``K``, ...). The copies are made with
    :func:`dataclasses.replace`, so every value is validated again, e.g.
    ``with_overrides(cfg, T=10_000, grid="refined")``.
    """
    problem_kw: dict[str, Any] = {}
    solver_kw: dict[str, Any] = {}
    for key, value in overrides.items():
        if value is None:
            continue
        if key in _MODEL_KEYS or key in _TRAINING_KEYS:
            problem_kw[key] = value
        elif key in _SOLVER_KEYS:
            solver_kw[key] = value
        else:
            allowed = (*_MODEL_KEYS, *_TRAINING_KEYS, *_SOLVER_KEYS, "name", "baselines")
            raise ConfigError(
                key,
                value,
                f"is not an overridable field; {suggest(key, allowed)}"
                f"allowed: {', '.join(allowed)}",
            )
    changes: dict[str, Any] = {}
    if problem_kw:
        changes["problem"] = dataclasses.replace(cfg.problem, **problem_kw)
    if solver_kw:
        changes["solver"] = dataclasses.replace(cfg.solver, **solver_kw)
    if name is not None:
        changes["name"] = name
    if baselines is not None:
        changes["baselines"] = baselines
    return dataclasses.replace(cfg, **changes) if changes else cfg


def default_config_path() -> Path:
    """Path of the packaged default config (a copy of ``configs/hard_phase.yaml``).

    Lets the README one-liner run without a checkout: ``load_config(default_config_path())``
    (a CLI can use it when no config file is given). Found with :mod:`importlib.resources`,
    so it works from an installed wheel as well as from the source tree.
    """
    return Path(str(resources.files("optctl") / "data" / "default.yaml"))


# --- validation --------------------------------------------------------------------------


def _build(d: Mapping[str, Any], source: str | None) -> RunConfig:
    if not isinstance(d, Mapping):
        raise ConfigError(
            "config",
            d,
            f"must be a mapping with keys {', '.join(_TOP_KEYS)}; see configs/hard_phase.yaml",
        )
    check_keys("", d, _TOP_KEYS, _SECTIONS)
    check_schema_version(d.get("schema_version", MISSING))
    sections = {sec: section(d, sec, keys, _SECTIONS) for sec, keys in _SECTIONS.items()}
    horizons = d.get("horizons")
    if horizons is None and d.get("leave") is not None:  # before T is asked for: the fix is horizons
        raise ConfigError("leave", d["leave"], LEAVE_WITHOUT_HORIZONS)
    if horizons is not None:
        hs = check_horizons(horizons)
        if hs[-1] > MAX_T:  # named here: T comes from the horizons
            raise ConfigError(f"horizons[{len(hs) - 1}]", hs[-1], f"must be <= {MAX_T:.0e}: every horizon is "
                              "replayed step by step and stores O(T) arrays")
        sections["training"].setdefault("T", hs[-1])
    for sec, required in _REQUIRED.items():
        for key in required:
            if key not in sections[sec]:
                dotted = f"{sec}.{key}"
                raise ConfigError(
                    dotted,
                    MISSING,
                    f"is required; add `{_EXAMPLES[dotted]}` (or your value) under `{sec}:`",
                )
    training = sections["training"]
    bounds = {k: training.pop(k) for k in CONTROL_BOUNDS if k in training}
    problem = ProblemSpec(**sections["model"], **training)
    note = assumption_note(problem.b)
    if note is not None:
        where = f" (in {source})" if source is not None else ""
        warnings.warn(f"model.b{where}: {note}", AssumptionWarning, stacklevel=3)
    controls = control_spec(d, bounds)
    _check_ipopt(sections["solver"].get("ipopt", {}))
    solver = SolverOptions(**sections["solver"])
    if "name" in d:
        name = d["name"]
    else:
        name = name_from_source(source)
    baselines = d.get("baselines", BASELINE_NAMES)
    if baselines is None:
        raise SpecTypeError(
            "baselines",
            None,
            "a list of baseline names: omit the key for all five, or write [] for none",
        )
    return RunConfig(name=name, problem=problem, solver=solver, baselines=baselines, source=source,
                     controls=controls, horizons=None if horizons is None else tuple(horizons),
                     leave=None if d.get("leave") is None else
                     tuple(d["leave"]) if isinstance(d["leave"], list) else d["leave"],
                     family=family_spec(d.get("family")))


def _check_ipopt(options: object) -> None:
    """IPOPT options are name → str/int/float; YAML's ``yes``/``no`` would arrive as bools."""
    if not isinstance(options, Mapping):
        return  # SolverOptions reports the type
    for key, value in options.items():
        dotted = f"solver.ipopt.{key}"
        if not isinstance(key, str):
            raise SpecTypeError(dotted, key, "an IPOPT option name (a string)")
        if isinstance(value, bool):
            word = "yes" if value else "no"
            raise SpecTypeError(
                dotted,
                value,
                f"a string or a number, as IPOPT "
                f"takes it; quote YAML booleans, e.g. {key}: '{word}'",
            )
        if not isinstance(value, (str, int, float)):
            raise SpecTypeError(dotted, value, "a string or a number")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(dotted, value, "must be a finite number")


