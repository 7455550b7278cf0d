"""Calibration: measured loss curves in, a fitted model out (``optctl fit``).

- :mod:`~optctl.calibrate.curves`: :class:`LossCurve`, validated measurements;
- :mod:`~optctl.calibrate.fitmodel`: the differentiable forward model (jax);
- :mod:`~optctl.calibrate.params`: the parameters, :class:`FitOptions`, :class:`FitResult`,
  ``predict`` and ``measurement_steps`` (numpy only);
- :mod:`~optctl.calibrate.fitting`: ``fit`` and ``pilot_sd`` (jax);
- :mod:`~optctl.calibrate.closedloop`: :class:`ClosedLoop`, refit and re-solve during a run.

The names are loaded on first use, so only ``fit`` and ``pilot_sd`` import jax.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {"LossCurve": "curves", "curve_from_arrays": "curves", "FitOptions": "params",
            "FitResult": "params", "predict": "params", "measurement_steps": "params",
            "fit": "fitting", "pilot_sd": "fitting", "ClosedLoop": "closedloop"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"optctl.calibrate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'optctl.calibrate' has no attribute {name!r}")
