"""``optctl fit``: curves in, a calibrated model folder out (atomically).

The folder holds ``fit.json`` (parameters, intervals, phase verdict, misfit, starts),
``calibration.json`` (the practice maps: real lr = ``lr_scale`` × model ``η``; measured
loss = ``loss_offset`` + ``loss_scale`` × model loss), ``config.yaml`` (a run config of
the fitted model for the target horizon, ready for ``optctl solve``), ``arrays.npz``
(bootstrap fits, measured and fitted curves) and ``fit.png``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from optctl.calibrate.curves import LossCurve
from optctl.calibrate.params import PARAMS, FitResult, predict
from optctl.errors import ResultsError
from optctl.io.config import RunConfig, dump_config, load_config_dict
from optctl.io.files import staged_dir, write_arrays, write_json, write_text_atomic
from optctl.io.fitconfig import FitConfig

CALIBRATION_FILE = "calibration.json"


def run_config(cfg: FitConfig, res: FitResult, curves: list[LossCurve]) -> RunConfig:
    """The fitted model as a run config for the target horizon (validated by optctl.config)."""
    longest = max(curves, key=lambda c: c.T)
    T = cfg.T if cfg.T is not None else longest.T
    m = cfg.batch_size if cfg.batch_size is not None else float(longest.batch_size[-1])
    lr_max = cfg.lr_max if cfg.lr_max is not None else \
        cfg.eta_max_factor * max(float(c.lr.max()) for c in curves)
    spec = res.spec(T, m, res.eta_bound(m, lr_max))
    run = RunConfig(name=f"{cfg.name}_fitted", problem=spec, solver=cfg.solver,
                    baselines=cfg.baselines)
    return load_config_dict(run.to_dict())  # the written file must load back as it is


def calibration(res: FitResult, fit_dir: str | None = None) -> dict[str, Any]:
    p = res.params
    out: dict[str, Any] = {
        "lr_scale": p["lr_scale"], "loss_scale": p["loss_scale"], "loss_offset": p["loss_offset"],
        "maps": "real lr = lr_scale * model eta; measured loss = loss_offset + loss_scale * "
                "(model excess loss + tail)",
        "intervals": {k: list(res.intervals[k]) for k in ("lr_scale", "loss_scale", "loss_offset")
                      if k in res.intervals},
        "model": {k: p[k] for k in ("a", "b", "sigma")} | {"N": res.options.N, "tail": res.options.tail},
    }
    if fit_dir is not None:
        out["fit_dir"] = fit_dir
    return out


def write_fit(out: Path, cfg: FitConfig, res: FitResult, curves: list[LossCurve], *,
              overwrite: bool = False, sources: list[str] | None = None) -> RunConfig:
    """Write the fit folder of ``res`` through a staged temporary folder; return the run
    config of the fitted model (its ``config.yaml``)."""
    from optctl import plots  # matplotlib, only when drawing

    run = run_config(cfg, res, curves)
    preds = {c.name: predict(res.params, c.lr, c.batch_size, res.options.N,
                                       tail=res.options.tail) for c in curves}
    with staged_dir(out, overwrite=overwrite) as tmp:
        write_text_atomic(tmp / "config.yaml", dump_config(run))
        write_json(tmp / CALIBRATION_FILE, calibration(res, os.fspath(out)))
        summary = {"name": cfg.name, **res.to_dict(),
                   "curves": [{"name": c.name, "source": s, "T": c.T, "points": int(c.steps.size),
                               "max_lr": float(c.lr.max()), "final_loss": c.final_loss,
                               "fitted_final_loss": float(preds[c.name][-1])}
                              for c, s in zip(curves, sources or [c.name for c in curves], strict=True)],
                   "target": {"T": run.problem.T, "batch_size": run.problem.batch_size,
                              "eta_max_model": run.problem.eta_max,
                              "eta_max_real": run.problem.eta_max * res.params["lr_scale"]}}
        write_json(tmp / "fit.json", summary)
        arrays: dict[str, np.ndarray] = {"bootstrap": res.samples,
                                         "params": np.array([res.params[k] for k in PARAMS])}
        for c in curves:
            arrays[f"{c.name}_steps"] = c.steps
            arrays[f"{c.name}_measured"] = c.loss
            arrays[f"{c.name}_fitted"] = preds[c.name]
        write_arrays(tmp / "arrays.npz", arrays)
        fig = plots.plot_fit({c.name: (c.steps, c.loss, preds[c.name]) for c in curves}, res.samples,
                             (res.params["a"], res.params["b"]),
                             title=f"{cfg.name}: a = {res.params['a']:.3f}, b = {res.params['b']:.3f} "
                                   f"({res.phase}, confidence {res.confidence:.2f})")
        plots.save(fig, tmp / "fit.png")
    return run


def read_calibration(path: str | os.PathLike[str]) -> tuple[float, dict[str, Any]]:
    """The ``lr_scale`` of a fit (a folder of ``optctl fit``, a run solved from one, or its
    ``calibration.json``) and the record to keep with an exported table."""
    cal = Path(path)
    if cal.is_dir():
        cal = cal / CALIBRATION_FILE
    try:
        data = json.loads(cal.read_text())
        scale = float(data["lr_scale"])
    except FileNotFoundError:
        raise ResultsError(f"--calibration {path}: no {CALIBRATION_FILE} there; pass a folder "
                           "written by `optctl fit` (or a run solved from one)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise ResultsError(f"--calibration {cal}: not a calibration file with a numeric lr_scale "
                           f"({err}); re-run `optctl fit`") from err
    if not math.isfinite(scale) or scale <= 0:
        raise ResultsError(f"--calibration {cal}: lr_scale = {scale} must be finite and > 0")
    return scale, {"file": str(cal), **{k: data.get(k) for k in ("lr_scale", "loss_scale",
                                                                  "loss_offset", "fit_dir")}}


def fit_warnings(folder: Path) -> list[str]:
    """The fit-quality gate's warnings recorded in a fit folder's ``fit.json`` (none when the
    gate was silent, or the folder records no gate)."""
    try:
        quality = json.loads((folder / "fit.json").read_text()).get("quality")
    except (OSError, ValueError):
        return []
    if not quality or quality.get("ok", True):
        return []
    advice = f"; try {quality['advice']}" if quality.get("advice") else ""
    return [f"the fit in {folder} is poor: {reason}" for reason in quality.get("reasons", [])] + [
        f"the schedule extrapolates a fit that may not predict other schedules{advice}"]


def fit_folder_config(folder: Path) -> tuple[Path, Path]:
    """The run config and calibration file of a folder written by ``optctl fit``."""
    calibration_file = folder / CALIBRATION_FILE
    if not calibration_file.exists() or not (folder / "config.yaml").exists():
        raise ResultsError(f"{folder} is a folder but not one written by `optctl fit` (no config.yaml "
                           f"and {CALIBRATION_FILE}); pass a YAML config or a fit folder")
    return folder / "config.yaml", calibration_file
