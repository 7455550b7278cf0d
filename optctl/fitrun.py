"""``optctl fit``: curves in, a calibrated model folder out (atomically).

The folder holds ``fit.json`` (parameters, intervals, phase verdict, misfit, starts),
``calibration.json`` (the practice maps: real lr = ``lr_scale`` × model ``η``; measured
loss = ``loss_offset`` + ``loss_scale`` × model loss), ``config.yaml`` (a run config of
the fitted model for the target horizon, ready for ``optctl solve``), ``arrays.npz``
(bootstrap fits, measured and fitted curves) and ``fit.png``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from optctl import calibrate
from optctl.config import RunConfig, dump_config, load_config_dict
from optctl.curves import LossCurve
from optctl.fitconfig import FitConfig
from optctl.model import stability_limit
from optctl.results import staged_dir, write_arrays, write_json, write_text_atomic
from optctl.spec import ProblemSpec

CALIBRATION_FILE = "calibration.json"


def run_config(cfg: FitConfig, res: calibrate.FitResult, curves: list[LossCurve]) -> RunConfig:
    """The fitted model as a run config for the target horizon (validated by optctl.config)."""
    longest = max(curves, key=lambda c: c.T)
    T = cfg.T if cfg.T is not None else longest.T
    m = cfg.batch_size if cfg.batch_size is not None else float(longest.batch_size[-1])
    max_lr = max(float(c.lr.max()) for c in curves)
    eta_max = min(calibrate.ETA_FRAC_BOUNDS[1] * stability_limit(m),
                  cfg.eta_max_factor * max_lr / res.params["lr_scale"])
    p = res.params
    spec = ProblemSpec(a=p["a"], b=p["b"], N=res.options.N, sigma=p["sigma"], batch_size=m, T=T,
                       eta_max=eta_max, tail=res.options.tail)
    run = RunConfig(name=f"{cfg.name}_fitted", problem=spec, solver=cfg.solver,
                    baselines=cfg.baselines)
    return load_config_dict(run.to_dict())  # the written file must load back as it is


def calibration(res: calibrate.FitResult, fit_dir: str | None = None) -> dict[str, Any]:
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


def run_fit(curves: list[LossCurve], cfg: FitConfig, out: Path, *, overwrite: bool = False,
            sources: list[str] | None = None) -> tuple[calibrate.FitResult, RunConfig]:
    """Fit, then write the fit folder through a staged temporary folder."""
    from optctl import plots

    if out.exists() and not overwrite:
        from optctl.results import ResultsError

        raise ResultsError(f"--out {out} already exists; choose a new folder or pass --overwrite")
    res = calibrate.fit(curves, cfg.options)
    run = run_config(cfg, res, curves)
    preds = {c.name: calibrate.predict(res.params, c.lr, c.batch_size, res.options.N,
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
                                         "params": np.array([res.params[k] for k in calibrate.PARAMS])}
        for c in curves:
            arrays[f"{c.name}_steps"] = c.steps
            arrays[f"{c.name}_measured"] = c.loss
            arrays[f"{c.name}_fitted"] = preds[c.name]
        write_arrays(tmp / "arrays.npz", arrays)
        fig = plots.plot_fit({c.name: (c.steps, c.loss, preds[c.name]) for c in curves}, res.samples,
                             (res.params["a"], res.params["b"]),
                             title=f"{cfg.name}: a = {res.params['a']:.3f}, b = {res.params['b']:.3f} "
                                   f"({res.phase}, confidence {res.confidence:.2f})")
        plots.save(fig, str(tmp / "fit.png"))
    return res, run


def format_fit(res: calibrate.FitResult) -> str:
    """A short table for the terminal."""
    lines = [f"{'parameter':<12} {'fit':>12}   {'interval (' + format(100 * res.options.level, '.0f') + '%)':<24}"
             " asymptotic sd"]
    for k in calibrate.PARAMS:
        iv = res.intervals.get(k)
        span = f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "(no bootstrap)"
        lines.append(f"{k:<12} {res.params[k]:>12.5g}   {span:<24} {res.asymptotic_sd.get(k, float('nan')):.3g}")
    lines.append(f"phase: {res.phase} (P(b < a) = {res.p_easy:.3f}, confidence {res.confidence:.3f})")
    worst = max(res.rms_log_error.values())
    lines.append("rms log error per curve: " + ", ".join(f"{k} {v:.3g}" for k, v in res.rms_log_error.items())
                 + f" (worst {worst:.3g})")
    return "\n".join(lines)
