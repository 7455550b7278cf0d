"""Argument checks shared by every spec, config and public function.

Each check returns the value in its canonical type or raises
:class:`~optctl.errors.SpecTypeError` (wrong type) or :class:`~optctl.errors.SpecError`
(wrong value), naming the field, the value and how to fix it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from optctl.errors import SpecError, SpecTypeError, echo

_REAL_TYPES = (int, float, np.integer, np.floating)


def check_real(name: str, value: object, what: str = "a real number") -> float:
    """A finite real number (``bool`` is refused: YAML's ``yes`` is not a number)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, _REAL_TYPES):
        raise SpecTypeError(name, value, what)
    x = float(value)
    if not math.isfinite(x):
        raise SpecError(name, value, "must be a finite number")
    return x


def check_int(name: str, value: object, what: str = "an integer") -> int:
    """An integer; a float with an integral value (``1e6``) is accepted as one."""
    if isinstance(value, (bool, np.bool_)):
        raise SpecTypeError(name, value, what)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if not isinstance(value, (int, np.integer)):
        raise SpecTypeError(name, value, what)
    return int(value)


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise SpecTypeError(name, value, "true or false")
    return value


def check_choice(name: str, value: object, choices: Sequence[str],
                 error: Callable[[str], Exception] | None = None) -> str:
    """One of ``choices``. ``error`` builds the exception from the message (a
    :class:`~optctl.errors.SpecError` by default; the torch adapter raises its own kind)."""
    if not isinstance(value, str) or value not in choices:
        fix = f"choose one of {', '.join(choices)}"
        raise SpecError(name, value, fix) if error is None else error(f"{name} = {echo(value)}: {fix}")
    return value


def per_step(name: str, x: np.ndarray | float, T: int, what: str = "value") -> np.ndarray:
    """A scalar broadcast to ``T`` updates, or an array of shape ``(T,)``, as float64."""
    arr = np.asarray(x, dtype=float)
    if arr.ndim == 0:
        return np.full(T, float(arr))
    if arr.shape != (T,):
        raise SpecError(name, f"array of shape {arr.shape}",
                        f"pass a scalar or one {what} per update, shape ({T},)")
    return arr


def check_horizons(horizons: object, field_name: str = "horizons") -> tuple[int, ...]:
    """``horizons`` as a tuple of increasing integers >= 2, or a :class:`SpecError`."""
    if not isinstance(horizons, (list, tuple)) or len(horizons) < 1:
        raise SpecError(field_name, horizons, "give a list of horizons (updates), e.g. [1000, 10000, 100000]")
    out = []
    for i, T in enumerate(horizons):
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)):
            if isinstance(T, float) and T.is_integer():
                raise SpecError(f"{field_name}[{i}]", T, "write horizons as integers (100000, not 1e5)")
            raise SpecError(f"{field_name}[{i}]", T, "a horizon is a whole number of updates")
        if T < 2:
            raise SpecError(f"{field_name}[{i}]", T, "a horizon needs at least 2 updates")
        out.append(int(T))
    if len(set(out)) != len(out):
        raise SpecError(field_name, list(out), "remove the repeated horizon")
    if out != sorted(out):
        raise SpecError(field_name, list(out), f"list the horizons in increasing order: {sorted(out)}")
    return tuple(out)
