"""Schedule tables on disk: write atomically, load with validation.

Formats (chosen by ``format`` or the file's suffix):

- ``npz``: numpy archive, no pickle; the header is a JSON string in the entry ``header``.
- ``safetensors``: the header is the JSON string under the metadata key ``optctl_table``.
- ``csv``: for people; two comment lines (the second holds the header JSON), then
  ``step,lr[,momentum][,batch_size]`` rows with floats written to round-trip exactly.
- ``json``: ``{"header": {...}, "columns": {"step": [...], "lr": [...], ...}}``.

A momentum family's run (``optctl solve`` with ``family:``) exports a
:class:`~optctl.table.FamilyTable` instead (:func:`export_family_table`: ``json``, the
dictionary of :meth:`FamilyTable.to_dict`, or ``csv`` with that header on its second line and
one row per update); :func:`load_family_table` reads both back for
:func:`optctl.torch.family_optimizer`.

The header is :meth:`ScheduleTable.header`: schema name and version, ``T``, units, the
column names, the model parameters and solver options with their hashes, how the horizon
was obtained, the source run, and the content hash. :func:`load_table` checks all of it
and recomputes the content hash, so a corrupt, truncated or edited file raises
:class:`~optctl.errors.ExportError` naming the file and what is wrong.
"""

from __future__ import annotations

import csv
import io
import json
import os
import zipfile
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import safetensors
import safetensors.numpy

from optctl.errors import ExportError, OptctlError
from optctl.io.files import check_writable, special_file, write_bytes_atomic
from optctl.io.runs import read_run
from optctl.solver.result import ScheduleResult
from optctl.table import (
    COLUMNS,
    SCHEMA,
    SUPPORTED_SCHEMA_VERSIONS,
    BranchingTable,
    FamilyTable,
    ScheduleTable,
    branching_from_dict,
    family_table_from_dict,
)

Format = Literal["npz", "safetensors", "csv", "json"]
FORMATS: tuple[str, ...] = ("npz", "safetensors", "csv", "json")
SUFFIXES = {"npz": ".npz", "safetensors": ".safetensors", "csv": ".csv", "json": ".json"}
_SAFETENSORS_KEY = "optctl_table"
def _csv_banner(version: int) -> str:
    return f"# {SCHEMA} (schema version {version}); the next line is its header JSON, do not edit"


def suffix_format(path: Path) -> str | None:
    """The table format that ``path``'s suffix names, or None."""
    for name, suffix in SUFFIXES.items():
        if path.suffix == suffix:
            return name
    return None


def format_of(path: Path, format: str | None = None) -> str:
    """The table format named by ``format``, or else by ``path``'s suffix.

    A ``format`` that contradicts the suffix (``format="npz"`` for ``t.csv``) is an error;
    with a suffix that names no table format, ``format`` decides.
    """
    by_suffix = suffix_format(path)
    if format is not None:
        if format not in FORMATS:
            raise ExportError(f"format = {format!r}: choose one of {', '.join(FORMATS)}")
        if by_suffix is not None and by_suffix != format:
            raise ExportError(f"{path}: format = {format!r} but the suffix {path.suffix!r} names "
                              f"{by_suffix}; drop format or give the path the suffix "
                              f"{SUFFIXES[format]!r}")
        return format
    if by_suffix is not None:
        return by_suffix
    raise ExportError(f"{path}: cannot tell the table format from the suffix {path.suffix!r}; "
                      f"use one of {', '.join(SUFFIXES.values())} or pass format")


def export_target(source: Path, out: str | None, format: str | None) -> tuple[Path, str]:
    """The table file and format of ``optctl export SOURCE [--out OUT] [--format FORMAT]``.

    The format is ``format``, else ``out``'s suffix, else npz; without ``out`` the table
    goes into a run folder as ``table.<format>``, or beside a table file being converted.
    """
    if out is not None:
        path = Path(out)
        by_suffix = suffix_format(path)
        if format is not None and by_suffix is not None and by_suffix != format:
            raise ExportError(f"--format {format} clashes with --out {path} (a {by_suffix} suffix); "
                              f"drop --format or write to a {SUFFIXES[format]} file")
        if format is None and by_suffix is None:
            raise ExportError(f"--out {path}: cannot tell the table format from the suffix "
                              f"{path.suffix!r}; use one of {', '.join(SUFFIXES.values())} or pass --format")
        target = (path, format_of(path, format))
    else:
        fmt = format or "npz"
        target = (source / f"table{SUFFIXES[fmt]}", fmt)
        if not source.is_dir() and source.exists() and suffix_format(source) is not None:
            # a table file: convert it beside itself
            target = (source.with_suffix(SUFFIXES[fmt]), fmt)
            if target[0] == source:
                raise ExportError(f"{source} is already a {fmt} table; pass --out for the copy, or "
                                  "--format for another format")
    if source.is_file() and target[0].resolve() == source.resolve():
        raise ExportError(f"--out {target[0]} is RUN itself; write the table to another file")
    check_writable(target[0], folder=False)
    return target


# --- building a table -----------------------------------------------------------------------


def table_from_run(run: str | os.PathLike[str]) -> ScheduleTable:
    """The table of a run folder written by ``optctl solve`` (config.yaml, arrays.npz, summary.json)."""
    folder = Path(run)
    try:
        rf = read_run(folder)
    except OptctlError as err:
        raise ExportError(str(err)) from err
    r = rf.report.result
    source = {"kind": "run", "run": str(folder), "name": rf.name, "final_loss": r.final_loss,
              "phase": r.spec.phase, "status": r.status, "versions": r.versions}
    return r.to_table(source=source)


def as_table(obj: ScheduleTable | ScheduleResult | str | os.PathLike[str]) -> ScheduleTable:
    """A table from a table, a :class:`ScheduleResult`, a run folder, or a table file."""
    if isinstance(obj, ScheduleTable):
        return obj
    if isinstance(obj, ScheduleResult):
        return obj.to_table()
    if isinstance(obj, (str, os.PathLike)):
        path = Path(obj)
        if path.is_dir():
            return table_from_run(path)
        if not path.exists():
            raise ExportError(f"{path} does not exist; pass a run folder written by "
                              f"`optctl solve CONFIG --out FOLDER` or a table file "
                              f"({', '.join(SUFFIXES.values())}) written by `optctl export`")
        if suffix_format(path) is None:
            raise ExportError(f"{path} is neither a run folder nor a table file "
                              f"({', '.join(SUFFIXES.values())}); pass a folder written by "
                              "`optctl solve` or a table written by `optctl export`")
        return load_table(path)
    raise ExportError(f"cannot make a schedule table from {type(obj).__name__}; pass a run "
                      "folder, a ScheduleResult or a ScheduleTable")


# --- writing --------------------------------------------------------------------------------


def _encode(table: ScheduleTable, fmt: str) -> bytes:
    header = table.header()
    cols = table.to_columns()
    text = json.dumps(header, sort_keys=True, allow_nan=False)
    if fmt == "npz":
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.array(text), **cols)  # type: ignore[arg-type]
        return buf.getvalue()
    if fmt == "safetensors":
        return safetensors.numpy.save({k: np.ascontiguousarray(v) for k, v in cols.items()},
                    metadata={_SAFETENSORS_KEY: text})
    if fmt == "json":
        body = {"header": header,
                "columns": {k: [int(x) for x in v] if k == "step" else [float(x) for x in v]
                            for k, v in cols.items()}}
        return (json.dumps(body, indent=1, allow_nan=False) + "\n").encode()
    out = io.StringIO()
    out.write(_csv_banner(table.schema_version) + "\n# " + text + "\n")
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(cols))
    for t in range(table.T):
        writer.writerow([t] + [repr(float(v[t])) for k, v in cols.items() if k != "step"])
    return out.getvalue().encode()


def export_table(source: ScheduleTable | ScheduleResult | str | os.PathLike[str],
                 path: str | os.PathLike[str], format: Format | None = None,
                 *, overwrite: bool = False) -> ScheduleTable:
    """Write the schedule table of ``source`` to ``path`` atomically; return the table.

    ``source`` is a run folder of ``optctl solve``, a table file (so a table is converted
    between formats), a :class:`ScheduleResult` or a :class:`ScheduleTable`. ``format``
    is one of ``npz``, ``safetensors`` (binary, for training jobs), ``csv``, ``json`` (for
    people); by default the suffix of ``path`` decides, and a ``format`` that contradicts
    the suffix is an error. The file is written to a temporary name and renamed, so it is either
    complete or absent. An existing file is replaced only with ``overwrite=True``.
    """
    out = Path(path)
    fmt = format_of(out, format)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; choose another path or pass overwrite "
                          "(--overwrite on the command line)")
    table = as_table(source)
    write_bytes_atomic(out, _encode(table, fmt))
    return table


# --- loading --------------------------------------------------------------------------------


def _parse_header(text: str, where: str) -> dict[str, Any]:
    try:
        header = json.loads(text)
    except json.JSONDecodeError as err:
        raise ExportError(f"{where}: the table header is not valid JSON ({err}); the file is "
                          "corrupt, re-export it with `optctl export RUN`") from err
    if not isinstance(header, dict):
        raise ExportError(f"{where}: the table header is not a JSON object; re-export the table")
    if header.get("schema") != SCHEMA:
        raise ExportError(f"{where}: not an optctl schedule table (schema = {header.get('schema')!r}, "
                          f"expected {SCHEMA!r})")
    version = header.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
        raise ExportError(f"{where}: table schema version {version!r} is not supported; this optctl "
                          f"reads versions {supported}. Re-export the table with this optctl")
    if version == 1 and "lr_scale" in header:
        raise ExportError(f"{where}: a version 1 table cannot carry lr_scale; the header was edited")
    if version >= 2:
        scale = header.get("lr_scale")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale <= 0:
            raise ExportError(f"{where}: a version {version} table needs lr_scale > 0 in its header "
                              f"(got {scale!r}); re-export the table")
    for key in ("T", "columns", "content_hash", "spec", "solver", "horizon", "units"):
        if key not in header:
            raise ExportError(f"{where}: the table header lacks {key!r}; re-export the table")
    return header


def _read_npz(data: bytes, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, zlib.error, ValueError, OSError, EOFError, KeyError) as err:
        raise ExportError(f"{where}: not a readable npz archive ({err}); the file is corrupt or "
                          "truncated, re-export it with `optctl export RUN`") from err
    if "header" not in arrays:
        raise ExportError(f"{where}: the archive has no 'header' entry; not an optctl table")
    header = _parse_header(str(arrays.pop("header")), where)
    return header, arrays


def _read_safetensors(data: bytes, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        entries = safetensors.deserialize(data)
        length = int.from_bytes(data[:8], "little")
        meta = json.loads(data[8:8 + length]).get("__metadata__") or {}
    except (safetensors.SafetensorError, ValueError, TypeError) as err:
        raise ExportError(f"{where}: not a readable safetensors file ({err}); the file is corrupt "
                          "or truncated, re-export it with `optctl export RUN`") from err
    if _SAFETENSORS_KEY not in meta:
        raise ExportError(f"{where}: the safetensors metadata has no {_SAFETENSORS_KEY!r} entry; "
                          "not an optctl table")
    header = _parse_header(meta[_SAFETENSORS_KEY], where)
    dtypes = {"F64": np.float64, "I64": np.int64}
    arrays: dict[str, np.ndarray] = {}
    for name, info in entries:
        if info["dtype"] not in dtypes:
            raise ExportError(f"{where}: column {name!r} has dtype {info['dtype']}; expected F64 or I64")
        arrays[name] = np.frombuffer(bytes(info["data"]), dtype=np.dtype(dtypes[info["dtype"]]).newbyteorder("<")).reshape(info["shape"])
    return header, arrays


def _read_json(data: bytes, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        body = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ExportError(f"{where}: not valid JSON ({err}); the file is corrupt or truncated, "
                          "re-export it with `optctl export RUN`") from err
    if not isinstance(body, dict) or not isinstance(body.get("columns"), dict):
        raise ExportError(f"{where}: expected an object with 'header' and 'columns'; not an optctl table")
    header = _parse_header(json.dumps(body.get("header")), where)
    arrays = {}
    for name, values in body["columns"].items():
        try:
            arrays[name] = np.array(values, dtype=np.int64 if name == "step" else np.float64)
        except (TypeError, ValueError) as err:
            raise ExportError(f"{where}: column {name!r} is not a list of numbers ({err})") from err
    return header, arrays


def _read_csv(data: bytes, where: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    try:
        lines = data.decode().splitlines()
    except UnicodeDecodeError as err:
        raise ExportError(f"{where}: not UTF-8 text ({err}); the file is corrupt") from err
    if len(lines) < 3 or not lines[0].startswith("# " + SCHEMA) or not lines[1].startswith("# "):
        raise ExportError(f"{where}: missing the two '# {SCHEMA}' header lines; not an optctl "
                          "table, or its header was edited away")
    header = _parse_header(lines[1][2:], where)
    rows = list(csv.reader(lines[2:]))
    names = rows[0]
    body = [r for r in rows[1:] if r]
    arrays: dict[str, np.ndarray] = {}
    for i, r in enumerate(body):
        if len(r) != len(names):
            raise ExportError(f"{where}: row {i} has {len(r)} fields, expected {len(names)} "
                              f"({','.join(names)}); the file is truncated or was edited")
    for j, name in enumerate(names):
        try:
            arrays[name] = np.array([int(r[j]) if name == "step" else float(r[j]) for r in body],
                                    dtype=np.int64 if name == "step" else np.float64)
        except ValueError as err:
            raise ExportError(f"{where}: column {name!r} holds a non-number ({err})") from err
    return header, arrays


_READERS = {"npz": _read_npz, "safetensors": _read_safetensors, "json": _read_json, "csv": _read_csv}


def load_table(path: str | os.PathLike[str], format: Format | None = None, *,
               expect_spec_hash: str | None = None, expect_T: int | None = None) -> ScheduleTable:
    """Read a schedule table and check it: schema, columns, lengths, values, hashes.

    Raises :class:`ExportError` naming the file when it is missing, not a table, of an
    unknown schema version, truncated (a column shorter than ``T``), holds non-finite or
    out-of-range values, or its content hash does not match its contents (a corrupt or
    edited file), and when it does not match ``expect_spec_hash`` (the hash of the
    :class:`ProblemSpec` the caller trains under) or ``expect_T`` (the caller's horizon).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ExportError(f"load_table needs the path of a table file, got {path!r}; pass the file "
                          "written by `optctl export RUN`")
    src = Path(path)
    fmt = format_of(src, format)
    where = str(src)
    if special_file(src):
        raise ExportError(f"{where}: is not a regular file (a pipe or a device); pass a table file "
                          "written by `optctl export`")
    try:
        data = src.read_bytes()
    except FileNotFoundError:
        raise ExportError(f"{where}: no such table file; write one with `optctl export RUN`") from None
    except OSError as err:
        raise ExportError(f"{where}: cannot be read ({err})") from err
    try:
        return _load(data, fmt, where, expect_spec_hash, expect_T)
    except OptctlError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, AttributeError, OverflowError,
            RecursionError, UnicodeError, EOFError, zipfile.BadZipFile, zlib.error,
            MemoryError) as err:
        # Whatever a damaged file trips over inside a decoder ends here, named.
        raise ExportError(f"{where}: cannot be read as a schedule table ({type(err).__name__}: "
                          f"{str(err)[:200]}); the file is corrupt or was edited, re-export it "
                          "with `optctl export RUN`") from None


def _load(data: bytes, fmt: str, where: str, expect_spec_hash: str | None,
          expect_T: int | None) -> ScheduleTable:
    header, arrays = _READERS[fmt](data, where)

    T = header["T"]
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ExportError(f"{where}: header T = {T!r}: must be a positive integer (the number of "
                          "updates); the header was edited or damaged, re-export the table from "
                          "its run with `optctl export RUN`")
    names = header["columns"]
    if not isinstance(names, list) or "lr" not in names or "step" not in names \
            or any(n not in COLUMNS for n in names):
        raise ExportError(f"{where}: header columns = {names!r}; expected step, lr and optionally "
                          "momentum, batch_size")
    if set(arrays) != set(names):
        raise ExportError(f"{where}: the file holds columns {sorted(arrays)} but its header lists "
                          f"{sorted(names)}; the file is corrupt or was edited")
    for name in names:
        arr = arrays[name]
        if arr.shape != (T,):
            raise ExportError(f"{where}: column {name!r} has shape {arr.shape}, header says T = {T}; "
                              "the file is truncated or corrupt, re-export it")
    if not np.array_equal(arrays["step"], np.arange(T)):
        raise ExportError(f"{where}: column 'step' is not 0..{T - 1}; rows are missing or reordered")
    try:
        table = ScheduleTable(lr=arrays["lr"], momentum=arrays.get("momentum"),
                              batch_size=arrays.get("batch_size"), spec=header["spec"],
                              solver=header["solver"], source=header.get("source", {}),
                              horizon=header["horizon"], units=header["units"],
                              lr_scale=header.get("lr_scale", 1.0),
                              controls=header.get("controls", {}))
    except ExportError as err:
        raise ExportError(f"{where}: {err}; the file is corrupt or was edited, re-export the "
                          "table from its run with `optctl export RUN`") from err
    if table.content_hash != header["content_hash"]:
        raise ExportError(f"{where}: content hash mismatch (stored {str(header['content_hash'])[:16]}..., "
                          f"contents give {table.content_hash[:16]}...): the file is corrupt or was "
                          "edited; re-export it with `optctl export RUN`")
    _check_expected(table, where, expect_spec_hash, expect_T)
    return table


def _check_expected(table: ScheduleTable, where: str, spec_hash: str | None, T: int | None) -> None:
    if spec_hash is not None and table.spec_hash != spec_hash:
        raise ExportError(f"{where}: the table was solved for spec {table.spec_hash}, not {spec_hash}; "
                          "export the table of the run that matches your model")
    if T is not None and table.T != T:
        raise ExportError(f"{where}: the table covers T = {table.T} updates, not {T}; re-solve with "
                          f"`optctl solve CONFIG --T {T}` or adapt it explicitly with "
                          f"table.for_horizon({T}, mode='rescale')")


def describe(table: ScheduleTable) -> Mapping[str, Any]:
    """A short summary for people: horizon, columns, peak and final rate, hashes."""
    return {"T": table.T, "columns": list(table.columns), "lr_peak": float(table.lr.max()),
            "lr_final": float(table.lr[-1]), "spec_hash": table.spec_hash,
            "content_hash": table.content_hash, "horizon": table.horizon.get("mode")}


def export_branching_table(plan: BranchingTable, path: str | os.PathLike[str], *,
                           overwrite: bool = False) -> None:
    """Write an anytime plan (trunk, branches, leave points) as JSON, atomically."""
    out = Path(path)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} exists; pass overwrite=True (or --overwrite) to replace it")
    write_bytes_atomic(out, json.dumps(plan.to_dict()).encode())


def load_branching_table(path: str | os.PathLike[str]) -> BranchingTable:
    """Read and check a branching table written by :func:`export_branching_table`."""
    p = Path(path)
    try:
        data = json.loads(p.read_bytes())
    except FileNotFoundError:
        raise ExportError(f"{p}: no such branching table") from None
    except (OSError, ValueError) as err:
        raise ExportError(f"{p}: not a readable JSON branching table ({err})") from None
    return branching_from_dict(data)


# --- momentum-family tables -------------------------------------------------------------------

FAMILY_FORMATS: tuple[str, ...] = ("json", "csv")
_FAMILY_BANNER = "# optctl.family_table; the next line is its header JSON, do not edit"


def is_family_run(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is the run folder of a momentum family (``family_table.json``, no arrays)."""
    folder = Path(path)
    return folder.is_dir() and (folder / "family_table.json").is_file() and not (folder / "arrays.npz").exists()


def family_table_from_run(run: str | os.PathLike[str]) -> FamilyTable:
    """The family table of a run folder written by ``optctl solve`` with ``family:``."""
    return load_family_table(Path(run) / "family_table.json")


def check_family_target(source: Path, out: str | None, format: str | None) -> Path:
    """The file ``optctl export`` writes a family run's table to: ``out``, or ``RUN/table.<format>``
    (``json`` by default); the format must be json or csv and agree with ``out``'s suffix."""
    fmt = format or (suffix_format(Path(out)) if out is not None else None) or "json"
    if fmt not in FAMILY_FORMATS:
        raise ExportError(f"--format {fmt}: {source} is a momentum family's run, whose table is written as "
                          f"{' or '.join(FAMILY_FORMATS)} (its columns are the optimizer's coefficients, not a "
                          "learning-rate schedule); pass --format json or csv")
    path = source / f"table{SUFFIXES[fmt]}" if out is None else Path(out)
    if suffix_format(path) != fmt:
        raise ExportError(f"--out {path}: a {fmt} family table needs the suffix {SUFFIXES[fmt]}")
    check_writable(path, folder=False)
    return path


def export_family_table(table: FamilyTable, path: str | os.PathLike[str], format: str | None = None, *,
                        overwrite: bool = False) -> None:
    """Write a family table atomically as ``json`` or ``csv`` (by ``format`` or the suffix)."""
    out = Path(path)
    fmt = format or suffix_format(out) or "json"
    if fmt not in FAMILY_FORMATS:
        raise ExportError(f"--format {fmt}: a momentum family's table ({table.family}) is written as "
                          f"{' or '.join(FAMILY_FORMATS)} (its columns are the optimizer's coefficients, "
                          "not a learning-rate schedule); give --out with a .json or .csv suffix")
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; choose another path or pass overwrite "
                          "(--overwrite on the command line)")
    d = table.to_dict()
    if fmt == "json":
        data = json.dumps(d, allow_nan=False).encode()
    else:
        cols = d.pop("columns")
        buf = io.StringIO()
        buf.write(_FAMILY_BANNER + "\n" + "# " + json.dumps(d, allow_nan=False) + "\n")
        buf.write("step," + ",".join(cols) + "\n")
        for t in range(table.T):
            buf.write(f"{t}," + ",".join(repr(float(cols[k][t])) for k in cols) + "\n")
        data = buf.getvalue().encode()
    write_bytes_atomic(out, data)


def load_family_table(path: str | os.PathLike[str]) -> FamilyTable:
    """Read a family table written by ``optctl solve`` (``family_table.json``) or
    :func:`export_family_table` (json or csv), checked by :class:`FamilyTable`."""
    p = Path(path)
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ExportError(f"{p}: no such family table; write one with `optctl solve CONFIG` (family:) "
                          "and `optctl export RUN`") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ExportError(f"{p}: not a readable family table ({err})") from None
    try:
        if p.suffix == ".csv":
            lines = text.splitlines()
            if len(lines) < 3 or lines[0] != _FAMILY_BANNER or not lines[1].startswith("# "):
                raise ExportError(f"{p}: not a family table csv (its first line must be {_FAMILY_BANNER!r})")
            d = json.loads(lines[1][2:])
            rows = list(csv.reader(lines[2:]))
            names = rows[0][1:]
            values = np.array([[float(x) for x in r[1:]] for r in rows[1:]], dtype=float).reshape(-1, len(names))
            d["columns"] = {k: values[:, i] for i, k in enumerate(names)}
        else:
            d = json.loads(text)
    except (ValueError, IndexError) as err:
        raise ExportError(f"{p}: the family table is corrupt ({err}); re-export it with `optctl export RUN`") from None
    try:
        return family_table_from_dict(d)
    except ExportError as err:
        raise ExportError(f"{p}: {err}") from None
