"""YAML sweep configs → a validated :class:`SweepSpec`.

A sweep solves one model, or a grid of models, at several horizons. The file extends
the run config of :mod:`optctl.io.config` with a ``kind`` and a ``sweep:`` section
(schema version 1)::

    schema_version: 1
    name: phase_diagram
    kind: phase_diagram        # horizons | phase_diagram | compute_optimal | grid
    model: {a: 3.5, b: 2.0, N: 1000, sigma: 0.5}      # the base model
    training: {batch_size: 5, eta_max: 1.0}          # no T: horizons come from sweep
    solver: {grid: refined, K: 100, polish: false}
    baselines: [constant, wsd]
    controls: [lr]             # optional, as in a run config; bounds under training
    sweep:
      axes:                    # model/training fields varied on a product grid
        a: {linspace: [1.25, 4.55, 12]}
        b: [1.0, 1.4, 1.8]
      horizons: {logspace: [3, 5, 3]}   # 10^3, 10^4, 10^5 (rounded to integers)
      baseline_horizons: [100000]       # where baselines are tuned (default: all)
      exact_tuning_max_T: 2000          # tune with the exact replay up to this T
      warm_start: true                  # start each horizon from the previous one
      workers: 2                        # local processes
      scheduler: null                   # a Dask scheduler address runs it there

Every point of the product of ``axes`` solves its horizons in increasing order, each
warm-started from the previous one (with every control of ``controls``); with
``warm_start`` a learning-rate solve also starts IPOPT warm from the better of that
schedule and the finite-horizon law's (the first horizon from ``T = 1000`` on: the law's),
instead of ranking the generic candidate starts (``optctl.solver.solve.solve(warm=True)``). An axis
is a list of numbers or one of ``{linspace: [lo, hi, n]}``, ``{geomspace: [lo, hi, n]}``,
``{logspace: [lo_exp, hi_exp, n]}``. ``N`` and the horizons are rounded to integers.

Kinds decide what is analysed and drawn after the sweep: ``horizons`` fits the loss
exponents of each point (needs two horizons or more); ``phase_diagram`` needs exactly
the axes ``a`` and ``b``; ``compute_optimal`` needs an axis ``N`` and ``model.tail:
true`` (MODEL.md §1: compute-optimal studies need the tail); ``grid`` only solves.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from optctl.errors import AssumptionWarning, ConfigError, SpecError, SpecTypeError
from optctl.io.yamlfile import (
    MISSING,
    SCHEMA_VERSION,
    check_baselines,
    check_keys,
    check_name,
    check_schema_version,
    control_spec,
    read_config,
    section,
)
from optctl.solver.report import EXACT_TUNING_MAX_T
from optctl.spec import CONTROL_BOUNDS, ControlSpec, ProblemSpec, SolverOptions, digest
from optctl.theory import assumption_note

SweepKind = Literal["horizons", "phase_diagram", "compute_optimal", "grid"]
KINDS: tuple[str, ...] = ("horizons", "phase_diagram", "compute_optimal", "grid")
AXIS_FIELDS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(ProblemSpec) if f.name != "T")
_REAL_AXES = ("a", "b", "sigma", "batch_size", "eta_max")
_TOP = ("schema_version", "name", "kind", "model", "training", "solver", "baselines", "controls",
        "sweep")
_SWEEP_KEYS = ("axes", "horizons", "baseline_horizons", "exact_tuning_max_T", "warm_start",
               "workers", "scheduler")
_MODEL_KEYS = ("a", "b", "N", "sigma", "normalize_init", "tail")
_TRAINING_KEYS = ("batch_size", "eta_max")
_SOLVER_KEYS = tuple(f.name for f in dataclasses.fields(SolverOptions))
_HINTS = {"T": "horizons go under sweep.horizons; "}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep: base model, axes, horizons, solver, baselines, executor.

    ``points()`` lists the model variants (one dict of axis values each), ``spec(values, T)``
    the :class:`ProblemSpec` of one variant at one horizon. ``digest()`` hashes everything
    that changes results (not ``workers``/``scheduler``), so a results folder can tell
    whether it belongs to this sweep.
    """

    name: str
    kind: SweepKind
    base: dict[str, Any]
    axes: dict[str, tuple[float, ...]]
    horizons: tuple[int, ...]
    solver: SolverOptions = field(default_factory=SolverOptions)
    baselines: tuple[str, ...] = ()
    baseline_horizons: tuple[int, ...] = ()
    exact_tuning_max_T: int = EXACT_TUNING_MAX_T
    warm_start: bool = True
    workers: int = 1
    scheduler: str | None = None
    source: str | None = field(default=None, compare=False)
    controls: ControlSpec = field(default_factory=ControlSpec)

    def points(self) -> list[dict[str, float]]:
        names = list(self.axes)
        return [dict(zip(names, combo, strict=True))
                for combo in itertools.product(*(self.axes[n] for n in names))]

    def spec(self, values: Mapping[str, float], T: int) -> ProblemSpec:
        return ProblemSpec(**{**self.base, **values, "T": int(T)})

    def to_dict(self) -> dict[str, Any]:
        """The resolved config in the file's shape (axes as explicit lists). ``controls``
        appears only for a joint problem, so learning-rate sweeps keep their digests."""
        out = {
            "schema_version": SCHEMA_VERSION, "name": self.name, "kind": self.kind,
            "model": {k: self.base[k] for k in _MODEL_KEYS},
            "training": {**{k: self.base[k] for k in _TRAINING_KEYS}, **self.controls.bounds},
            "solver": self.solver.to_dict(), "baselines": list(self.baselines),
            "sweep": {"axes": {k: list(v) for k, v in self.axes.items()},
                      "horizons": list(self.horizons),
                      "baseline_horizons": list(self.baseline_horizons),
                      "exact_tuning_max_T": self.exact_tuning_max_T,
                      "warm_start": self.warm_start, "workers": self.workers,
                      "scheduler": self.scheduler},
        }
        if self.controls.controls != ("lr",):
            out["controls"] = list(self.controls.controls)
        return out

    def digest(self) -> str:
        d = self.to_dict()
        d["sweep"] = {k: v for k, v in d["sweep"].items() if k not in ("workers", "scheduler")}
        d["solver"] = {k: v for k, v in d["solver"].items() if k != "progress"}
        return digest(d)


def point_key(values: Mapping[str, float]) -> str:
    """A file-name-safe, exact name of a point, e.g. ``a3.5_b2``."""
    if not values:
        return "base"
    return "_".join(f"{k}{np.format_float_positional(float(v), trim='-')}" for k, v in values.items())


def dump_sweep(spec: SweepSpec) -> str:
    header = f"# optctl sweep config (schema version {SCHEMA_VERSION}), all defaults resolved\n"
    return header + yaml.safe_dump(spec.to_dict(), sort_keys=False, default_flow_style=None)


def load_sweep_config(path: str | os.PathLike[str]) -> SweepSpec:
    """Read and validate a sweep config (safe loading, strict keys, every point checked)."""
    return read_config(path, load_sweep_dict, kind="sweep config", example="configs/sweep_horizons.yaml",
                       missing="no such file; sweep configs are in configs/sweep_*.yaml")


def load_sweep_dict(d: Mapping[str, Any], source: str | None = None) -> SweepSpec:
    """Validate a sweep config already parsed into a mapping."""
    if not isinstance(d, Mapping):
        raise ConfigError("config", d, f"must be a mapping with keys {', '.join(_TOP)}")
    check_keys("", d, _TOP, hints=_HINTS)
    check_schema_version(d.get("schema_version", MISSING))
    name = d.get("name", Path(source).stem if source else "sweep")
    check_name(name)
    kind = d.get("kind", "grid")
    if kind not in KINDS:
        raise ConfigError("kind", kind, f"choose one of {', '.join(KINDS)}")
    model = section(d, "model", _MODEL_KEYS, hints=_HINTS)
    training = section(d, "training", _TRAINING_KEYS + CONTROL_BOUNDS, hints=_HINTS)
    controls = control_spec(d, {k: training.pop(k) for k in CONTROL_BOUNDS if k in training})
    solver = SolverOptions(**section(d, "solver", _SOLVER_KEYS, hints=_HINTS))
    baselines = check_baselines(d.get("baselines", []))
    sw = d.get("sweep")
    if not isinstance(sw, Mapping):
        raise SpecTypeError("sweep", sw, f"a mapping with keys {', '.join(_SWEEP_KEYS)}")
    check_keys("sweep", sw, _SWEEP_KEYS, hints=_HINTS)
    axes_in = sw.get("axes", {}) or {}
    if not isinstance(axes_in, Mapping):
        raise SpecTypeError("sweep.axes", axes_in, "a mapping of model/training field -> values")
    axes: dict[str, tuple[float, ...]] = {}
    for k, v in axes_in.items():
        if k not in AXIS_FIELDS:
            raise ConfigError(f"sweep.axes.{k}", v, f"not a sweepable field; choose from {', '.join(AXIS_FIELDS)}"
                              " (horizons go under sweep.horizons)")
        vals = _values(f"sweep.axes.{k}", v)
        if k == "N":
            vals = tuple(float(round(x)) for x in vals)
        if k in ("normalize_init", "tail"):
            raise ConfigError(f"sweep.axes.{k}", v, "booleans are not swept; run two sweeps")
        axes[str(k)] = tuple(dict.fromkeys(vals))
    if "horizons" not in sw:
        raise ConfigError("sweep.horizons", None, "is required, e.g. `horizons: [1000, 10000]`")
    horizons = tuple(sorted({int(round(x)) for x in _values("sweep.horizons", sw["horizons"])}))
    if horizons[0] < 1:
        raise ConfigError("sweep.horizons", list(horizons), "must be >= 1 updates")
    bh_in = sw.get("baseline_horizons", "all")
    if bh_in == "all" or bh_in is None:
        bh = horizons if baselines else ()
    elif isinstance(bh_in, Sequence) and not isinstance(bh_in, str) and len(bh_in) == 0:
        bh = ()  # baselines at no horizon
    else:
        bh = tuple(sorted({int(round(x)) for x in _values("sweep.baseline_horizons", bh_in)}))
        missing = sorted(set(bh) - set(horizons))
        if missing:
            raise ConfigError("sweep.baseline_horizons", list(bh),
                              f"{missing} are not among sweep.horizons {list(horizons)}")
    exact_max = sw.get("exact_tuning_max_T", EXACT_TUNING_MAX_T)
    workers = sw.get("workers", 1)
    for fname, val, lo, what in (("exact_tuning_max_T", exact_max, 0, "a non-negative integer"),
                                 ("workers", workers, 1, "a positive number of local processes")):
        if isinstance(val, bool) or not isinstance(val, int):
            raise SpecTypeError(f"sweep.{fname}", val, what)
        if val < lo:
            raise ConfigError(f"sweep.{fname}", val, f"must be {what}")
    warm = sw.get("warm_start", True)
    if not isinstance(warm, bool):
        raise SpecTypeError("sweep.warm_start", warm, "true or false")
    scheduler = sw.get("scheduler")
    if scheduler is not None and not isinstance(scheduler, str):
        raise SpecTypeError("sweep.scheduler", scheduler, "a Dask scheduler address, e.g. tcp://host:8786")
    base = {**{f.name: f.default for f in dataclasses.fields(ProblemSpec) if f.name not in ("a", "b", "T")},
            **model, **training}
    for req in ("a", "b"):
        if req not in base and req not in axes:
            raise ConfigError(f"model.{req}", None, f"is required unless swept under sweep.axes.{req}")
    base.setdefault("a", axes.get("a", (0.0,))[0])
    base.setdefault("b", axes.get("b", (0.0,))[0])
    out = SweepSpec(name=name, kind=kind, base=base, axes=axes, horizons=horizons, solver=solver,
                    baselines=tuple(baselines), baseline_horizons=bh,
                    exact_tuning_max_T=exact_max, warm_start=warm, workers=workers,
                    scheduler=scheduler, source=source, controls=controls)
    _check_kind(out)
    controls.check_options(solver)
    for values in out.points():  # every point must be a valid problem
        try:
            controls.check_problem(out.spec(values, horizons[0]))
        except (SpecError, SpecTypeError) as exc:
            swept = str(getattr(exc, "field", "")).rsplit(".", 1)[-1]
            if isinstance(exc, SpecError) and swept in values:  # a value of an axis is out of range
                raise ConfigError(f"sweep.axes.{swept}", values[swept], exc.fix) from exc
            exc.add_note(f"at sweep point {point_key(values)}")
            raise
    low = sorted(b for b in out.axes.get("b", (out.base["b"],)) if assumption_note(b) is not None)
    if low:
        field_name = "sweep.axes.b" if "b" in out.axes else "model.b"
        where = f" (in {source})" if source is not None else ""
        warnings.warn(f"{field_name}{where}: {len(low)} value(s) {[float(b) for b in low]} at or below 1; "
                      f"{assumption_note(low[0])}. Those points are a finite-N regime; the others are "
                      "unaffected", AssumptionWarning, stacklevel=3)
    return out


def _check_kind(s: SweepSpec) -> None:
    if s.kind == "horizons" and len(s.horizons) < 2:
        raise ConfigError("sweep.horizons", list(s.horizons), "a horizons sweep needs two horizons or more")
    if s.kind == "phase_diagram" and set(s.axes) != {"a", "b"}:
        raise ConfigError("sweep.axes", list(s.axes), "a phase diagram sweeps exactly the axes a and b")
    if s.kind == "compute_optimal":
        if "N" not in s.axes or len(s.axes["N"]) < 2:
            raise ConfigError("sweep.axes.N", s.axes.get("N"), "a compute-optimal sweep needs two N or more")
        if not s.base.get("tail"):
            raise ConfigError("model.tail", s.base.get("tail"),
                              "set `tail: true`: compute-optimal losses must include the part of "
                              "the teacher N features cannot represent (MODEL.md §1)")


def _values(name: str, v: object) -> tuple[float, ...]:
    """Expand a list or a ``{linspace|geomspace|logspace: [lo, hi, n]}`` into numbers."""
    if isinstance(v, Mapping):
        if len(v) != 1:
            raise ConfigError(name, v, "use exactly one of linspace, geomspace, logspace")
        (how, args), = v.items()
        fns: dict[str, Callable[[float, float, int], np.ndarray]] = {
            "linspace": np.linspace, "geomspace": np.geomspace,
            "logspace": lambda lo, hi, n: 10.0 ** np.linspace(lo, hi, n)}
        if how not in fns:
            raise ConfigError(name, v, "use linspace, geomspace or logspace: [lo, hi, n]")
        if (not isinstance(args, Sequence) or len(args) != 3
                or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in args)
                or not isinstance(args[2], int) or args[2] < 1):
            raise ConfigError(name, v, f"{how} takes [lo, hi, n] with n a positive integer")
        raw = fns[how](float(args[0]), float(args[1]), int(args[2]))
        vals: list[object] = [float(np.round(x, 10)) for x in raw]  # 1.55, not 1.5500000000000003
    elif isinstance(v, Sequence) and not isinstance(v, str):
        vals = list(v)
    else:
        vals = [v]
    out: list[float] = []
    for i, x in enumerate(list(vals)):
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(float(x)):
            raise SpecTypeError(f"{name}[{i}]", x, "a finite number")
        out.append(float(x))
    if not out:
        raise ConfigError(name, v, "needs at least one value")
    return tuple(out)
