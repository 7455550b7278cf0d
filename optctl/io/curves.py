"""Loss-curve CSV files: what ``optctl fit`` reads, and how pilot runs write theirs.

A curve file is a CSV with a header row naming at least ``step``, ``lr`` and ``loss``,
and optionally ``batch_size`` and ``momentum``; lines starting with ``#`` are comments.
Each row is one measurement:

- ``step``: updates done when ``loss`` was measured (an integer; ``0`` is the loss
  before training). Steps must increase strictly; they need not be consecutive.
- ``lr``: the learning rate used from this row's step until the next row's step
  (the schedule is held piecewise constant between measurements). The last row's
  ``lr`` is not used.
- ``loss``: the measured loss (finite, > 0), e.g. a held-out or smoothed training loss.
- ``batch_size`` (optional): the batch size over the same interval (>= 1).
- ``momentum`` (optional): must be 0 in every row; the fit models plain SGD
  (MODEL.md §2) and refuses curves whose dynamics it cannot describe.

Every error is a :class:`~optctl.errors.CurveError` naming the file, the row (1-based
line number in the file) and column, the value, and how to fix it.
"""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np

from optctl.calibrate.curves import LossCurve, curve_from_arrays, row_error
from optctl.errors import CurveError
from optctl.io.files import special_file, write_text_atomic

REQUIRED_COLUMNS: tuple[str, ...] = ("step", "lr", "loss")
OPTIONAL_COLUMNS: tuple[str, ...] = ("batch_size", "momentum")


def load_curve(path: str | os.PathLike[str]) -> LossCurve:
    """Read and validate one curve CSV (see the module docstring for the format)."""
    src = Path(path)
    where = str(src)
    if special_file(src):
        raise CurveError(f"{where}: is not a regular file (a pipe or a device); pass CSV files with "
                         "columns step, lr, loss")
    try:
        text = src.read_text(encoding="utf-8-sig")  # also files saved with a byte-order mark
    except FileNotFoundError:
        raise CurveError(f"{where}: no such file; pass CSV files with columns step, lr, loss") from None
    except IsADirectoryError:
        raise CurveError(f"{where}: is a directory; pass CSV files with columns step, lr, loss") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CurveError(f"{where}: cannot be read ({err}); pass a readable UTF-8 CSV file") from err
    rows = [(i + 1, r) for i, r in enumerate(csv.reader(text.splitlines()))
            if r and not r[0].lstrip().startswith("#")]
    if not rows:
        raise CurveError(f"{where}: the file is empty; it needs a header row step,lr,loss and data rows")
    header_line, header = rows[0]
    names = [h.strip() for h in header]
    for col in REQUIRED_COLUMNS:
        if col not in names:
            raise CurveError(f"{where}, line {header_line}: the header {','.join(names)!r} lacks "
                             f"the column {col!r}; the header must name step, lr, loss "
                             f"(optionally {', '.join(OPTIONAL_COLUMNS)})")
    for col in names:
        if col not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS:
            raise CurveError(f"{where}, line {header_line}: unknown column {col!r}; allowed columns "
                             f"are {', '.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)}")
    if len(set(names)) != len(names):
        raise CurveError(f"{where}, line {header_line}: a column is named twice in {names}")
    values: dict[str, list[float]] = {c: [] for c in names}
    lines: list[int] = []
    for line, r in rows[1:]:
        if len(r) != len(names):
            raise CurveError(f"{where}, line {line}: {len(r)} fields but the header has "
                             f"{len(names)} ({','.join(names)}); every row needs one value per column")
        for col, cell in zip(names, r, strict=True):
            try:
                values[col].append(float(cell))
            except ValueError:
                raise row_error(where, line, col, cell.strip(), "is not a number") from None
        lines.append(line)
    if "momentum" in values:
        mom = np.asarray(values["momentum"])
        bad = ~np.isfinite(mom) | (mom != 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise row_error(where, lines[i], "momentum", float(mom[i]),
                        "is not 0; the fit models plain SGD (MODEL.md §2), so calibrate with "
                        "pilot runs without momentum, or drop the column if it is unused")
    return curve_from_arrays(
        src.stem, np.asarray(values["step"]), np.asarray(values["lr"]), np.asarray(values["loss"]),
        np.asarray(values["batch_size"]) if "batch_size" in values else 1.0,
        where=where, lines=lines)


def load_curves(paths: list[str | os.PathLike[str]]) -> list[LossCurve]:
    """Read several curves; names (file stems) must be distinct."""
    if not paths:
        raise CurveError("no curve files given; pass one or more CSV files with columns step, lr, loss")
    curves = [load_curve(p) for p in paths]
    seen: dict[str, str] = {}
    for p, c in zip(paths, curves, strict=True):
        if c.name in seen:
            raise CurveError(f"{p}: the name {c.name!r} is also the name of {seen[c.name]}; "
                             "give each curve file a distinct name")
        seen[c.name] = str(p)
    return curves


def write_curve(path: str | os.PathLike[str], steps: np.ndarray, lr_per_step: np.ndarray,
                loss: np.ndarray, batch_size: float | None = None) -> None:
    """Write a curve CSV from measurements at ``steps`` and the per-update schedule.

    ``lr_per_step[t]`` is the rate of update ``t``; a row's ``lr`` is the rate of the
    update right after its step, so the schedule must be constant between measured
    steps for the file to describe it exactly (checked).
    """
    steps = np.asarray(steps, dtype=np.int64)
    lr_per_step = np.asarray(lr_per_step, dtype=float)
    T = int(steps[-1])
    if lr_per_step.size < T:
        raise CurveError(f"{path}: the schedule has {lr_per_step.size} updates but the last step is {T}")
    for s0, s1 in zip(steps[:-1], steps[1:], strict=True):
        seg = lr_per_step[s0:s1]
        if not np.all(seg == seg[0]):
            raise CurveError(f"{path}: the learning rate changes between steps {s0} and {s1}; "
                             "measure at every step where it changes")
    head = "step,lr,loss" + (",batch_size" if batch_size is not None else "")
    out = [head]
    for i, s in enumerate(steps):
        lr = lr_per_step[s] if s < lr_per_step.size else lr_per_step[-1]
        row = f"{int(s)},{float(lr)!r},{float(loss[i])!r}"
        if batch_size is not None:
            row += f",{batch_size:g}"
        out.append(row)
    if not math.isfinite(float(np.max(loss))):
        raise CurveError(f"{path}: a loss is not finite; nothing written")
    write_text_atomic(Path(path), "\n".join(out) + "\n")
