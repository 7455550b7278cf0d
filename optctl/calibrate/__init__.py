"""Calibration: measured loss curves in, a fitted model out (``optctl fit``).

- :mod:`~optctl.calibrate.curves`: :class:`LossCurve`, validated measurements;
- :mod:`~optctl.calibrate.fitmodel`: the differentiable forward model (jax);
- :mod:`~optctl.calibrate.options`: :class:`FitOptions`;
- :mod:`~optctl.calibrate.fitting`: ``fit``, ``pilot_sd``, ``predict``, ``measurement_steps``.

The names are loaded on first use, so ``optctl.calibrate.curves`` does not import jax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"LossCurve": "curves", "curve_from_arrays": "curves", "FitOptions": "options",
            "FitResult": "fitting", "fit": "fitting", "pilot_sd": "fitting", "predict": "fitting",
            "measurement_steps": "fitting"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"optctl.calibrate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'optctl.calibrate' has no attribute {name!r}")
