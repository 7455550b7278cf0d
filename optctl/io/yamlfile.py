"""Reading YAML configs strictly, and the checks every config kind shares.

Files are read with :class:`StrictLoader`, a :class:`yaml.SafeLoader` that differs in
two ways, both to catch mistakes early: ``1e-10`` and ``1e6`` are floats (as in YAML
1.2, where PyYAML's YAML 1.1 rules would read them as strings), and a key repeated in
one mapping is an error rather than silently keeping the last value. Run, sweep and fit
configs (:mod:`optctl.io.config`, :mod:`optctl.io.sweepconfig`,
:mod:`optctl.io.fitconfig`) all read through :func:`read_yaml` and check their keys,
schema version, name and baselines with the functions here.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import yaml

from optctl.baselines.families import BASELINE_NAMES
from optctl.errors import ConfigError, SpecError, SpecTypeError
from optctl.io.files import special_file
from optctl.spec import ControlSpec

SCHEMA_VERSION = 1
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1,)
DEFAULT_NAME = "run"
# A config is a few levels of small mappings: anything far larger is the wrong file.
MAX_CONFIG_CHARS = 10_000_000
MAX_CONFIG_DEPTH = 32
# Longest run name: it is the stem of folder names that carry more (T, date, time).
MAX_NAME_CHARS = 100

_NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")
C = TypeVar("C")


class _Missing:
    """Stands in for the value of a required key that is absent."""

    def __repr__(self) -> str:
        return "<missing>"


MISSING = _Missing()

class StrictLoader(yaml.SafeLoader):
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
StrictLoader.add_implicit_resolver(
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

def read_yaml(source: str, example: str, *, missing: str | None = None) -> Any:
    """Read and parse a YAML config file safely (strict loader: no duplicate keys).

    Raises :class:`ConfigError` naming the file when it is missing (``missing``, or a
    pointer to ``example``), a directory, unreadable, not valid YAML (with the line and
    column) or empty. Returns the parsed document, not yet checked to be a mapping.
    """
    if special_file(source):
        raise ConfigError("path", source, "is not a regular file (a pipe or a device); pass a .yaml file")
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("path", source, missing or f"no such file; see {example} for an example") from None
    except IsADirectoryError:
        raise ConfigError("path", source, "is a directory; pass a .yaml file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("path", source, f"cannot be read ({exc}); pass a readable UTF-8 YAML file") from exc
    if len(text) > MAX_CONFIG_CHARS:
        raise ConfigError("path", source, f"holds {len(text)} characters; a config is at most "
                          f"{MAX_CONFIG_CHARS} (is this the right file?)")
    if _bracket_depth(text) > MAX_CONFIG_DEPTH:  # the parser is slow on deep flow nesting
        raise ConfigError("path", source, f"is nested more than {MAX_CONFIG_DEPTH} levels deep "
                          f"(brackets); a config is a mapping of a few levels (see {example})")
    try:
        data = yaml.load(text, Loader=StrictLoader)  # a SafeLoader subclass: safe
    except yaml.YAMLError as exc:
        raise ConfigError("path", source, f"is not valid YAML: {describe_yaml_error(exc)}; check "
                          "indentation, ': ' after each key and matching quotes and brackets") from exc
    except RecursionError:
        raise ConfigError("path", source, "is nested too deeply to be a config; a config is a "
                          "mapping of a few levels (see " + example + ")") from None
    except (ValueError, TypeError, OverflowError) as exc:  # an explicit tag such as !!float abc
        raise ConfigError("path", source, f"holds a value YAML cannot convert ({exc}); remove "
                          "the tag (such as !!float) or fix the value") from None
    if _depth(data) > MAX_CONFIG_DEPTH:
        raise ConfigError("path", source, f"is nested more than {MAX_CONFIG_DEPTH} levels deep; a "
                          f"config is a mapping of a few levels (see {example})")
    if data is None:
        raise ConfigError("config", None, f"{source} is empty; start from {example}")
    return data

def _bracket_depth(text: str) -> int:
    """The deepest nesting of ``[``/``{`` in ``text`` (quotes ignored: a bound, not a parse)."""
    codes = np.frombuffer(text.encode("utf-8", "replace"), dtype=np.uint8)
    step = np.isin(codes, (ord("["), ord("{"))).astype(np.int64) - np.isin(codes, (ord("]"), ord("}")))
    return int(np.cumsum(step).max(initial=0))


def _depth(data: Any, limit: int = 64) -> int:
    """Nesting depth of parsed YAML, counted without recursion (stops past ``limit``)."""
    stack, deepest = [(data, 1)], 0
    seen: set[int] = set()
    while stack:
        item, d = stack.pop()
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        if isinstance(item, (dict, list)) and id(item) not in seen:  # YAML anchors may repeat
            seen.add(id(item))
            values = item.values() if isinstance(item, dict) else item
            stack.extend((v, d + 1) for v in values)
    return deepest


def read_config(path: str | os.PathLike[str], build: Callable[[Mapping[str, Any], str], C], *,
                kind: str, example: str, missing: str | None = None) -> C:
    """Read a YAML config file (:func:`read_yaml`) that must hold a mapping, and ``build``
    the validated config from it; a field error carries a note naming the ``kind`` and
    the file (``"in sweep config configs/x.yaml"``)."""
    source = os.fspath(path)
    data = read_yaml(source, example, missing=missing)
    if not isinstance(data, Mapping):
        raise ConfigError("config", data, f"{source} must hold a mapping; see {example}")
    other = config_kind(data)
    if other is not None and other[0] != kind:
        raise ConfigError("path", source, f"is a {other[0]} (for {other[1]}), not a {kind}; "
                          f"see {example} for one")
    try:
        return build(data, source)
    except (SpecError, SpecTypeError) as exc:
        exc.add_note(f"in {kind} {source}")
        raise


def config_kind(data: Mapping[str, Any]) -> tuple[str, str] | None:
    """What a config mapping is, by its top-level keys: ``(kind, command)``, or ``None``
    when it is none of them (its own checks then name the fields)."""
    if "sweep" in data or "kind" in data:
        return "sweep config", "optctl sweep"
    if "fit" in data:
        return "fit config", "optctl fit CURVES --config"
    if "models" in data and ("momentum" in data or "batch" in data):
        return "study file", "the momentum and batch studies"
    if "model" in data and "training" in data:
        return "run config", "optctl solve"
    return None


def check_keys(prefix: str, mapping: Mapping[Any, Any], allowed: Sequence[str],
               sections: Mapping[str, Sequence[str]] | None = None,
               hints: Mapping[str, str] | None = None) -> None:
    """Strict keys: an unknown key is a :class:`ConfigError` whose hint is ``hints[key]``,
    else the section of ``sections`` the key belongs under, else the closest allowed key."""
    for key, value in mapping.items():
        if key in allowed:
            continue
        dotted = f"{prefix}.{key}" if prefix else str(key)
        hint = suggest(str(key), allowed)
        for other, keys in (sections or {}).items():
            if other != prefix and key in keys:
                hint = f"`{key}` belongs under `{other}:` ({other}.{key}); "
        if hints and key in hints:
            hint = hints[key]
        where = f"under `{prefix}:`" if prefix else "at the top level"
        raise ConfigError(
            dotted, value, f"unknown key {where}; {hint}allowed keys: {', '.join(allowed)}"
        )


def section(d: Mapping[str, Any], name: str, keys: Sequence[str],
            sections: Mapping[str, Sequence[str]] | None = None,
            hints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The mapping under ``name`` with its keys checked (:func:`check_keys`); an absent or
    empty one is ``{}``."""
    value = d.get(name)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise SpecTypeError(name, value, f"a mapping with keys {', '.join(keys)}")
    check_keys(name, value, keys, sections, hints)
    return dict(value)


def suggest(key: str, allowed: Sequence[str]) -> str:
    """``"did you mean 'x'? "`` for the closest allowed key (case-insensitive), or ``""``."""
    lowered = {k.lower(): k for k in allowed}
    match = difflib.get_close_matches(key.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[match[0]]!r}? " if match else ""


def check_schema_version(value: object) -> None:
    """``schema_version`` is required and must be one this optctl reads."""
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


def check_name(name: object) -> None:
    """A run name is a file-name stem: letters, digits, ``_``, ``.``, ``-``."""
    if not isinstance(name, str):
        raise SpecTypeError(
            "name",
            name,
            "a string of letters, digits, '_', '.', '-' "
            "(quote it in YAML if it looks like a number or boolean)",
        )
    if len(name) > MAX_NAME_CHARS:
        raise ConfigError("name", name[:40] + "...", f"has {len(name)} characters; give at most "
                          f"{MAX_NAME_CHARS} (it becomes part of folder names)")
    if not _NAME_RE.fullmatch(name) or set(name) == {"."}:
        fixed = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip(".") or DEFAULT_NAME
        raise ConfigError(
            "name",
            name,
            "must be a file-name stem made of letters, digits, "
            f"'_', '.', '-' (not only dots); e.g. {fixed!r}",
        )


def name_from_source(source: str | None) -> str:
    if source is None:
        return DEFAULT_NAME
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", Path(source).stem).strip(".")
    return stem or DEFAULT_NAME


def check_baselines(baselines: object) -> tuple[str, ...]:
    """A list of distinct baseline names of :data:`~optctl.baselines.families.BASELINE_NAMES`."""
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
                f"{suggest(b, BASELINE_NAMES)}choose from "
                f"{', '.join(BASELINE_NAMES)}",
            )
        if b in seen:
            raise ConfigError(f"baselines[{i}]", b, "is listed twice; list each baseline once")
        seen.add(b)
    return tuple(baselines)

def describe_yaml_error(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if mark is not None:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return str(problem)


def control_spec(d: Mapping[str, Any], bounds: Mapping[str, Any]) -> ControlSpec:
    """The ``controls:`` list of a config with the ``bounds`` given under ``training:``
    (keys of :data:`~optctl.spec.CONTROL_BOUNDS`); ``[lr]`` when the key is absent."""
    chosen = d.get("controls", ["lr"])
    if isinstance(chosen, str) or not isinstance(chosen, Sequence):
        raise SpecTypeError("controls", chosen, "a list such as [lr], [lr, batch_size] or [lr, momentum]")
    return ControlSpec(controls=tuple(chosen), **bounds)
