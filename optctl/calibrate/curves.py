"""Measured loss curves: the data ``optctl fit`` takes, validated.

A :class:`LossCurve` is one measured run: losses at measured steps and the per-update
schedule that produced them. :func:`curve_from_arrays` builds one from per-row arrays,
checking every value; the CSV files users write are read by :mod:`optctl.io.curves`.
A row's ``lr`` (and ``batch_size``) is held from its step until the next row's step.
Every error is a :class:`~optctl.errors.CurveError` naming the curve, the row and
column, the value, and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from optctl.errors import CurveError
from optctl.spec import MAX_T

#: The largest learning rate a curve may hold. The fit works with products of rates and
#: eigenvalues in double precision; rates near the float range overflow there and fail
#: late, far from the row that caused it. No optimizer trains at a rate this large.
MAX_LR = 1e6

MIN_ROWS = 3
# A curve whose loss never falls this fraction below its start carries no decay to fit.
FLAT_DROP = 0.05
# A plateau: after PLATEAU_WITHIN of its updates the loss is still within PLATEAU_DROP of
# its start (the model's loss falls from the first update at any stable rate).
PLATEAU_WITHIN = 0.02
PLATEAU_DROP = 0.1


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

    def after(self, start: int, name: str | None = None) -> LossCurve:
        """The curve from its measured step ``start`` on, as a run of its own starting
        there (steps shifted by ``start``): what the model fits when the run's first
        ``start`` updates are a transient it does not describe (:func:`main_phase_start`)."""
        hits = np.flatnonzero(self.steps == start)
        if hits.size == 0 or start >= self.T:
            raise CurveError(f"{self.name}: step {start} is not one of its measured steps before the "
                             f"last ({self.T}); start at a measured step")
        i = int(hits[0])
        if self.steps.size - i < MIN_ROWS:
            raise CurveError(f"{self.name}: from step {start} on only {self.steps.size - i} measurements "
                             f"are left; a fit needs at least {MIN_ROWS}")
        steps = self.steps[i:] - start
        for arr in (steps, self.lr[start:], self.batch_size[start:]):
            arr.setflags(write=False)
        return LossCurve(name=name or self.name, steps=steps, loss=self.loss[i:].copy(),
                         lr=self.lr[start:], batch_size=self.batch_size[start:])


def row_error(where: str, line: int | None, column: str | None, value: object, fix: str) -> CurveError:
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
            raise row_error(where, line_of(i), col, arr[i], "is not a finite number; remove or fix the row")
    frac = steps_f != np.round(steps_f)
    if frac.any():
        i = int(np.argmax(frac))
        raise row_error(where, line_of(i), "step", steps_f[i], "is not an integer number of updates")
    if steps_f[0] < 0:
        raise row_error(where, line_of(0), "step", steps_f[0], "is negative; steps count updates from 0")
    if steps_f[-1] > MAX_T:
        raise row_error(where, line_of(n - 1), "step", int(steps_f[-1]),
                        f"is beyond the longest run the model describes ({MAX_T:.0e} updates); "
                        "measure the curve in updates (not samples or tokens), or cut it")
    if steps_f[0] != 0:
        raise row_error(where, line_of(0), "step", int(steps_f[0]),
                    "is the first step; the curve must start at step 0 (the loss before training)")
    d = np.diff(steps_f)
    if np.any(d <= 0):
        i = int(np.argmax(d <= 0)) + 1
        raise row_error(where, line_of(i), "step", int(steps_f[i]),
                    f"does not increase (previous row has step {int(steps_f[i - 1])}); sort the "
                    "rows by step and drop duplicates")
    for col, lo, rule in (("lr", 0.0, "must be >= 0"), ("loss", 0.0, "must be > 0"),
                          ("batch_size", 1.0, "must be >= 1")):
        arr = cols[col]
        bad = arr <= lo if col == "loss" else arr < lo
        if bad.any():
            i = int(np.argmax(bad))
            raise row_error(where, line_of(i), col, arr[i], rule)
    if np.any(cols["lr"] > MAX_LR):
        i = int(np.argmax(cols["lr"] > MAX_LR))
        raise row_error(where, line_of(i), "lr", cols["lr"][i],
                        f"is above {MAX_LR:.0e}, larger than any learning rate a run trains at; "
                        "check that the column holds the learning rate itself (not its inverse, "
                        "its log, or a value in other units)")
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


def main_phase_start(curve: LossCurve, level: float = 0.5) -> int:
    """Where a run's main learning phase starts: the first measured step at which the
    loss has fallen ``level`` of the way, in log scale, from its start to its lowest value.

    Networks often sit on a plateau, or drop through a fast transient, before their loss
    settles into the slow decay a power-law model describes (a classifier at chance, say).
    Fitting from this step on (:meth:`LossCurve.after`) leaves that transient out; 0 when
    the curve falls from its first step. Found from the curve itself, not a fixed count.
    """
    if not 0.0 < level < 1.0:
        raise CurveError(f"level = {level!r}: give a fraction in (0, 1)")
    loss = np.asarray(curve.loss, dtype=float)
    target = float(np.exp((1 - level) * np.log(loss[0]) + level * np.log(loss.min())))
    return int(curve.steps[int(np.argmax(loss <= target))])


def has_plateau(curve: LossCurve, within: float = PLATEAU_WITHIN, drop: float = PLATEAU_DROP) -> bool:
    """Whether a run starts on a plateau the model does not describe: at its first measured
    step at or after ``within`` of its updates (step 1 at least), the loss has not fallen
    ``drop`` below its start.

    The model's loss falls from the first update at any stable rate, so a curve that
    falls at once is described from step 0, and cutting it at :func:`main_phase_start`
    would only discard what its start says about the initial state (on a task that *is*
    the model, the cut turned predictions within 3% into errors of 64-88%). A classifier at
    chance level, flat for its first updates, is the case the cut is for.
    """
    if not (0.0 < within < 1.0 and 0.0 < drop < 1.0):
        raise CurveError(f"within = {within!r}, drop = {drop!r}: give fractions in (0, 1)")
    at = max(1, int(np.ceil(within * curve.T)))
    i = int(np.argmax(curve.steps >= at))
    return bool(curve.loss[i] > (1.0 - drop) * curve.loss[0])


def flat_curves(curves: list[LossCurve]) -> list[str]:
    """Names of the curves whose loss never falls :data:`FLAT_DROP` below its first value
    (constant or rising): they carry no information on the decay exponents."""
    return [c.name for c in curves if not float(np.min(c.loss[1:])) < (1 - FLAT_DROP) * float(c.loss[0])]
