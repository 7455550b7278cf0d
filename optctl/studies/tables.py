"""``optctl.schedule``: one call from a config (or a fit folder) to a schedule table in memory.

The in-memory path is ``load_config → solve → ScheduleResult.to_table → adapter``
(:mod:`optctl.torch`, :mod:`optctl.optax`), with no run folder and no file: what
``optctl solve CONFIG --T T`` followed by ``optctl export RUN`` produces, minus the tuned
baselines. Solves of the same shape share the compiled problem (the solver's cache, as
on the command line), and a table already made in this process for the same model,
horizon, solver options and controls is returned again without a solve.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from optctl.errors import ConfigError
from optctl.io.config import RunConfig, load_config, with_overrides
from optctl.io.fits import fit_folder_config, read_calibration
from optctl.solver.solve import solve
from optctl.spec import digest, solver_identity
from optctl.table import ScheduleTable

_MADE: dict[str, ScheduleTable] = {}


def _config(source: RunConfig | str | os.PathLike[str]) -> tuple[RunConfig, float, dict[str, Any] | None]:
    """The run config, the lr scale (1: model units) and the calibration record of ``source``."""
    if isinstance(source, RunConfig):
        return source, 1.0, None
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError("source", type(source).__name__,
                          "pass a YAML run config path, a folder written by `optctl fit`, or a RunConfig")
    path = Path(source)
    if path.suffix.lower() in (".csv", ".json", ".npz", ".safetensors"):
        raise ConfigError("source", str(path), "this is a schedule table, not a config: load it with "
                          "optctl.load_table(path); optctl.schedule takes a YAML run config or a fit folder")
    if path.is_dir():  # a fit folder: its config, and the learning rates in real units
        config_path, calibration_file = fit_folder_config(path)
        scale, calibration = read_calibration(calibration_file)
        return load_config(config_path), scale, calibration
    return load_config(path), 1.0, None


def schedule(source: RunConfig | str | os.PathLike[str], T: int | None = None, *,
             K: int | None = None, grid: str | None = None, progress: bool = False,
             **overrides: Any) -> ScheduleTable:
    """Solve ``source`` for ``T`` updates and return its schedule table.

    ``source`` is a YAML run config, a folder written by ``optctl fit`` (then the table's
    ``lr`` is in real learning-rate units: ``lr = lr_scale × η`` from the fit's
    calibration, as ``optctl export RUN --calibration FIT``), or a
    :class:`~optctl.io.config.RunConfig`. ``T``, ``K``, ``grid`` and any other field of the
    model or solver options (``overrides``, e.g. ``batch_size=8``) replace the config's,
    validated as on the command line. The table carries the momentum and batch-size
    columns of the config's controls; a solve that did not converge is returned with its
    status in ``table.source`` (``success``, ``status``), as ``optctl solve`` reports it.

    Example::

        table = optctl.schedule("configs/easy_phase.yaml", T=2000)
        sched = optctl.torch.TableScheduler(opt, table)
    """
    cfg, scale, calibration = _config(source)
    changes: dict[str, Any] = {k: v for k, v in (("T", T), ("K", K), ("grid", grid)) if v is not None}
    cfg = with_overrides(cfg, progress=progress, **changes, **overrides)
    key = digest({"spec": cfg.problem.to_dict(), "solver": solver_identity(cfg.solver.to_dict()),
                  "controls": cfg.controls.to_dict(), "lr_scale": scale, "calibration": calibration})
    if key in _MADE:
        return _MADE[key]
    result = solve(cfg.problem, cfg.solver, controls=cfg.controls)
    src: dict[str, Any] = {"kind": "optctl.schedule", "name": cfg.name, "config": cfg.source}
    if calibration is not None:
        src["calibration"] = calibration
    table = result.to_table(source=src, lr_scale=scale)
    _MADE[key] = table
    return table
