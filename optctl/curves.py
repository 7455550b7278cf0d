"""Measured loss curves: read and validate the CSV files ``optctl fit`` takes.

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

Every error is a :class:`CurveError` naming the file, the row (1-based line number in
the file) and column, the value, and how to fix it.
"""

from __future__ import annotations

import csv
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from optctl.errors import OptctlError

REQUIRED_COLUMNS: tuple[str, ...] = ("step", "lr", "loss")
OPTIONAL_COLUMNS: tuple[str, ...] = ("batch_size", "momentum")
MIN_ROWS = 3


class CurveError(OptctlError, ValueError):
    """A loss-curve file is missing, malformed, or holds values the fit cannot use."""


@dataclass(frozen=True, eq=False)
class LossCurve:
    """One measured run: losses at ``steps`` and the per-update schedule that produced them.

    ``steps[i]`` (strictly increasing) and ``loss[i]`` are the measurements; ``lr[t]``
    and ``batch_size[t]`` for ``t = 0..T−1`` (``T = steps[-1]``) are the per-update
    learning rate and batch size, expanded from the rows by holding each row's value
    until the next measured step.
    """

    name: str
    steps: np.ndarray
    loss: np.ndarray
    lr: np.ndarray
    batch_size: np.ndarray

    @property
    def T(self) -> int:
        return int(self.steps[-1])

    @property
    def final_loss(self) -> float:
        return float(self.loss[-1])


def _fail(where: str, line: int | None, column: str | None, value: object, fix: str) -> CurveError:
    at = where
    if line is not None:
        at += f", line {line}"
    if column is not None:
        at += f", column {column!r}"
    if isinstance(value, np.generic):
        value = value.item()
    return CurveError(f"{at}: {value!r} {fix}")


def curve_from_arrays(name: str, steps: np.ndarray, lr: np.ndarray, loss: np.ndarray,
                      batch_size: np.ndarray | float = 1.0, *, where: str | None = None,
                      lines: list[int] | None = None) -> LossCurve:
    """Validate per-row arrays (as in the CSV) and expand the schedule to every update."""
    where = where or name
    steps_f = np.asarray(steps, dtype=float)
    n = steps_f.size
    cols = {"lr": np.asarray(lr, dtype=float), "loss": np.asarray(loss, dtype=float),
            "batch_size": np.broadcast_to(np.asarray(batch_size, dtype=float), (n,))}
    line_of = (lambda i: lines[i]) if lines is not None else (lambda i: None)
    for col, arr in cols.items():
        if arr.shape != (n,):
            raise CurveError(f"{where}: column {col!r} has {arr.size} values but 'step' has {n}; "
                             "give one value per measured step")
    if n < MIN_ROWS:
        raise CurveError(f"{where}: {n} measurements; a fit needs at least {MIN_ROWS} rows "
                         "(step 0 and a few later steps) per curve")
    for col, arr in (("step", steps_f), *cols.items()):
        bad = ~np.isfinite(arr)
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(where, line_of(i), col, arr[i], "is not a finite number; remove or fix the row")
    frac = steps_f != np.round(steps_f)
    if frac.any():
        i = int(np.argmax(frac))
        raise _fail(where, line_of(i), "step", steps_f[i], "is not an integer number of updates")
    if steps_f[0] < 0:
        raise _fail(where, line_of(0), "step", steps_f[0], "is negative; steps count updates from 0")
    if steps_f[0] != 0:
        raise _fail(where, line_of(0), "step", int(steps_f[0]),
                    "is the first step; the curve must start at step 0 (the loss before training)")
    d = np.diff(steps_f)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0)) + 1
        raise _fail(where, line_of(i), "step", int(steps_f[i]),
                    f"does not increase (previous row has step {int(steps_f[i - 1])}); sort the "
                    "rows by step and drop duplicates")
    for col, lo, rule in (("lr", 0.0, "must be >= 0"), ("loss", 0.0, "must be > 0"),
                          ("batch_size", 1.0, "must be >= 1")):
        arr = cols[col]
        bad = arr <= lo if col == "loss" else arr < lo
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(where, line_of(i), col, arr[i], rule)
    if not np.any(cols["lr"][:-1] > 0):
        raise CurveError(f"{where}: every learning rate is 0, so the curve says nothing about "
                         "the dynamics; give runs with lr > 0")
    counts = np.diff(steps_f).astype(np.int64)
    lr_t = np.repeat(cols["lr"][:-1], counts)
    m_t = np.repeat(cols["batch_size"][:-1], counts)
    steps_i = steps_f.astype(np.int64)
    for arr in (steps_i, cols["loss"], lr_t, m_t):
        arr.setflags(write=False)
    return LossCurve(name=name, steps=steps_i, loss=cols["loss"].copy(), lr=lr_t, batch_size=m_t)


def load_curve(path: str | os.PathLike[str]) -> LossCurve:
    """Read and validate one curve CSV (see the module docstring for the format)."""
    src = Path(path)
    where = str(src)
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
                raise _fail(where, line, col, cell.strip(), "is not a number") from None
        lines.append(line)
    if "momentum" in values:
        mom = np.asarray(values["momentum"])
        bad = ~np.isfinite(mom) | (mom != 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise _fail(where, lines[i], "momentum", float(mom[i]),
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
    from optctl.results import write_text_atomic

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
