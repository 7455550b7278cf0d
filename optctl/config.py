"""YAML run configs → validated specs: strict keys, a schema version, one result type.

A config file (schema version 1) looks like::

    schema_version: 1
    name: hard_phase            # optional; run-name stem, [A-Za-z0-9_.-]+
    model: {a: 3.5, b: 5.0, N: 1000, sigma: 0.5, normalize_init: false, tail: false}
    training: {T: 1000, batch_size: 5, eta_max: 1.0}
    solver: {grid: auto, K: 100}  # optional; any SolverOptions field
    baselines: [constant, power_law, linear_decay, cosine, wsd]  # optional
    controls: [lr]                # optional; [lr, batch_size] or [lr, momentum]

``controls`` (optional, default ``[lr]``) picks the control problem of MODEL.md §4:
with ``batch_size`` the keys ``training.m_min`` and ``training.m_max`` are required
(``training.batch_size`` is then the mean batch ``m̄`` of the sample budget
``Σ m_t = T m̄``); with ``momentum`` the keys ``training.beta_min`` (default 0) and
``training.kappa`` (smoothness penalty, default 0) are accepted. A bound given for a
control that is not chosen is an error. These keys are additions to schema version 1:
files without them mean exactly what they meant before.

``model`` and ``training`` together are the fields of :class:`~optctl.spec.ProblemSpec`
(Bordelon & Mori, arXiv:2602.04774, section 2: ``a``, ``b``, ``N``, ``σ`` → ``sigma``,
batch size ``m`` → ``batch_size``, horizon ``T``, ``η_max`` → ``eta_max``); ``solver``
holds the fields of :class:`~optctl.spec.SolverOptions`. ``model.a``, ``model.b`` and
``training.T`` are required; every other key falls back to the spec's default, and
:meth:`RunConfig.to_dict` writes every resolved value back out.

Files are read with a safe loader. It differs from :class:`yaml.SafeLoader` in two ways,
both to catch mistakes early: ``1e-10`` and ``1e6`` are floats (as in YAML 1.2, where
PyYAML's YAML 1.1 rules would read them as strings), and a key repeated in one mapping
is an error rather than silently keeping the last value.

Errors: a wrong value type raises :class:`~optctl.errors.SpecTypeError` (a
``TypeError``); a wrong value, a missing or unknown key, a wrong schema version or an
unreadable file raises :class:`ConfigError` (a :class:`~optctl.errors.SpecError`, hence
a ``ValueError``). Every message names the dotted field (``model.a``, ``training.T``,
``solver.grid``), the offending value, and how to fix it. Errors raised while loading a
file carry a note (:meth:`BaseException.add_note`) naming the file.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from optctl.baselines import BASELINE_NAMES
from optctl.errors import SpecError, SpecTypeError
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions

__all__ = [
    "BASELINE_NAMES",
    "SCHEMA_VERSION",
    "SUPPORTED_SCHEMA_VERSIONS",
    "ConfigError",
    "RunConfig",
    "default_config_path",
    "dump_config",
    "load_config",
    "load_config_dict",
    "with_overrides",
]

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
DEFAULT_NAME = "run"

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
_TRAINING_KEYS: tuple[str, ...] = ("T", "batch_size", "eta_max")
_CONTROL_KEYS: tuple[str, ...] = ("m_min", "m_max", "beta_min", "kappa")
_MODEL_KEYS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(ProblemSpec) if f.name not in _TRAINING_KEYS
)
_SOLVER_KEYS: tuple[str, ...] = tuple(f.name for f in dataclasses.fields(SolverOptions))
_REQUIRED: dict[str, tuple[str, ...]] = {"model": ("a", "b"), "training": ("T",)}
_SECTIONS: dict[str, tuple[str, ...]] = {
    "model": _MODEL_KEYS,
    "training": _TRAINING_KEYS + _CONTROL_KEYS,
    "solver": _SOLVER_KEYS,
}
_TOP_KEYS: tuple[str, ...] = ("schema_version", "name", "model", "training", "solver", "baselines",
                              "controls")
# Examples shown in "required key" messages: the hard-phase reference case.
_EXAMPLES: dict[str, str] = {"model.a": "a: 3.5", "model.b": "b: 5.0", "training.T": "T: 1000"}


class ConfigError(SpecError):
    """A config is malformed: a bad value, a missing or unknown key, an unreadable file.

    Like :class:`~optctl.errors.SpecError` (and so a ``ValueError`` and an
    :class:`~optctl.errors.OptctlError`), the message names the dotted field, the
    offending value and how to fix it.
    """


class _Missing:
    """Stands in for the value of a required key that is absent."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()


# --- reading YAML ------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` with YAML 1.2 floats and an error on duplicate keys."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r} (first at line {seen[key].start_mark.line + 1});"
                    " keep only one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


# YAML 1.1 (PyYAML's default) needs a dot in a float, so `tol: 1e-10` would be the string
# "1e-10" and fail as a wrong type; accept the YAML 1.2 spellings too.
_StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


# --- the result type ---------------------------------------------------------------------


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

    def __post_init__(self) -> None:
        _check_name(self.name)
        if not isinstance(self.problem, ProblemSpec):
            raise SpecTypeError("problem", self.problem, "a ProblemSpec")
        if not isinstance(self.solver, SolverOptions):
            raise SpecTypeError("solver", self.solver, "a SolverOptions")
        if not isinstance(self.controls, ControlSpec):
            raise SpecTypeError("controls", self.controls, "a ControlSpec")
        self.controls.check_problem(self.problem)
        object.__setattr__(self, "baselines", _check_baselines(self.baselines))
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
        return out


# --- public functions --------------------------------------------------------------------


def read_yaml(source: str, example: str, *, missing: str | None = None) -> Any:
    """Read and parse a YAML config file safely (strict loader: no duplicate keys).

    Raises :class:`ConfigError` naming the file when it is missing (``missing``, or a
    pointer to ``example``), a directory, unreadable, not valid YAML (with the line and
    column) or empty. Returns the parsed document, not yet checked to be a mapping.
    """
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("path", source, missing or f"no such file; see {example} for an example") from None
    except IsADirectoryError:
        raise ConfigError("path", source, "is a directory; pass a .yaml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("path", source, f"cannot be read ({exc}); pass a readable UTF-8 YAML file") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise ConfigError("path", source, f"is not valid YAML: {_describe_yaml_error(exc)}; check "
                          "indentation, ': ' after each key and matching quotes and brackets") from exc
    if data is None:
        raise ConfigError("config", None, f"{source} is empty; start from {example}")
    return data


def load_config(path: str | os.PathLike[str]) -> RunConfig:
    """Read and validate a YAML run config (safe loading, strict keys).

    Raises :class:`ConfigError` when the file is missing, is not valid YAML (with the
    line and column), or does not hold a mapping; field errors as in
    :func:`load_config_dict`, with a note naming the file.
    """
    source = os.fspath(path)
    data = read_yaml(source, "configs/hard_phase.yaml", missing="no such file; check the path (shipped configs "
                     "are in configs/, and default_config_path() gives the packaged default)")
    if not isinstance(data, Mapping):
        raise ConfigError(
            "config",
            data,
            f"{source} must hold a mapping with keys "
            f"{', '.join(_TOP_KEYS)}; see configs/hard_phase.yaml",
        )
    return load_config_dict(data, source=source)


def load_config_dict(d: Mapping[str, Any], source: str | None = None) -> RunConfig:
    """Validate a config already parsed into a mapping (the file's shape).

    ``source`` is recorded on the result and named in a note on any error; without a
    ``name`` key the run is named after the file stem (or ``"run"``).
    """
    try:
        return _build(d, source)
    except (SpecError, SpecTypeError) as exc:
        if source is not None:
            exc.add_note(f"in config file {source}")
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
                f"is not an overridable field; {_suggest(key, allowed)}"
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
    _check_keys("", d, _TOP_KEYS)
    _check_schema_version(d.get("schema_version", MISSING))
    sections = {sec: _section(d, sec) for sec in _SECTIONS}
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
    bounds = {k: training.pop(k) for k in _CONTROL_KEYS if k in training}
    problem = ProblemSpec(**sections["model"], **training)
    chosen = d.get("controls", ["lr"])
    if isinstance(chosen, str) or not isinstance(chosen, Sequence):
        raise SpecTypeError("controls", chosen, "a list such as [lr], [lr, batch_size] or [lr, momentum]")
    controls = ControlSpec(controls=tuple(chosen), **bounds)
    _check_ipopt(sections["solver"].get("ipopt", {}))
    solver = SolverOptions(**sections["solver"])
    if "name" in d:
        name = d["name"]
    else:
        name = _name_from_source(source)
    baselines = d.get("baselines", BASELINE_NAMES)
    if baselines is None:
        raise SpecTypeError(
            "baselines",
            None,
            "a list of baseline names: omit the key for all five, or write [] for none",
        )
    return RunConfig(name=name, problem=problem, solver=solver, baselines=baselines, source=source,
                     controls=controls)


def _section(d: Mapping[str, Any], sec: str) -> dict[str, Any]:
    """The mapping under ``sec`` with its keys checked; an absent or empty one is ``{}``."""
    value = d.get(sec)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecTypeError(sec, value, f"a mapping with keys {', '.join(_SECTIONS[sec])}")
    _check_keys(sec, value, _SECTIONS[sec])
    return dict(value)


def _check_keys(prefix: str, mapping: Mapping[Any, Any], allowed: Sequence[str]) -> None:
    for key, value in mapping.items():
        if key in allowed:
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        hint = _suggest(str(key), allowed)
        for other, keys in _SECTIONS.items():
            if other != prefix and key in keys:
                hint = f"`{key}` belongs under `{other}:` ({other}.{key}); "
        where = f"under `{prefix}:`" if prefix else "at the top level"
        raise ConfigError(
            dotted, value, f"unknown key {where}; {hint}allowed keys: {', '.join(allowed)}"
        )


def _suggest(key: str, allowed: Sequence[str]) -> str:
    """``"did you mean 'x'? "`` for the closest allowed key (case-insensitive), or ``""``."""
    lowered = {k.lower(): k for k in allowed}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[match[0]]!r}? " if match else ""


def _check_schema_version(value: object) -> None:
    supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
    if value is MISSING:
        raise ConfigError(
            "schema_version",
            value,
            f"is required; add `schema_version: "
            f"{SCHEMA_VERSION}` at the top (supported versions: {supported})",
        )
    if isinstance(value, bool) or not isinstance(value, int):
        raise SpecTypeError(
            "schema_version",
            value,
            f"an integer; supported versions: "
            f"{supported} (write `schema_version: {SCHEMA_VERSION}`)",
        )
    if value not in SUPPORTED_SCHEMA_VERSIONS:
        raise ConfigError(
            "schema_version",
            value,
            f"is not supported by this optctl; supported versions: {supported}",
        )


def _check_name(name: object) -> None:
    if not isinstance(name, str):
        raise SpecTypeError(
            "name",
            name,
            "a string of letters, digits, '_', '.', '-' "
            "(quote it in YAML if it looks like a number or boolean)",
        )
    if not _NAME_RE.fullmatch(name) or set(name) == {"."}:
        fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip(".") or DEFAULT_NAME
        raise ConfigError(
            "name",
            name,
            "must be a file-name stem made of letters, digits, "
            f"'_', '.', '-' (not only dots); e.g. {fixed!r}",
        )


def _name_from_source(source: str | None) -> str:
    if source is None:
        return DEFAULT_NAME
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem).strip(".")
    return stem or DEFAULT_NAME


def _check_baselines(baselines: object) -> tuple[str, ...]:
    if isinstance(baselines, str) or not isinstance(baselines, Sequence):
        raise SpecTypeError(
            "baselines", baselines, "a list of baseline names, e.g. [constant, wsd]"
        )
    seen: set[str] = set()
    for i, b in enumerate(baselines):
        if not isinstance(b, str):
            raise SpecTypeError(
                f"baselines[{i}]", b, f"a baseline name, one of {', '.join(BASELINE_NAMES)}"
            )
        if b not in BASELINE_NAMES:
            raise ConfigError(
                f"baselines[{i}]",
                b,
                f"unknown baseline; "
                f"{_suggest(b, BASELINE_NAMES)}choose from "
                f"{', '.join(BASELINE_NAMES)}",
            )
        if b in seen:
            raise ConfigError(f"baselines[{i}]", b, "is listed twice; list each baseline once")
        seen.add(b)
    return tuple(baselines)


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


def _describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)
