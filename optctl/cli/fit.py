"""``optctl fit CURVES...``: calibrate the model from measured loss curves into a fit folder."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from optctl.calibrate.params import PARAMS, FitResult
from optctl.io.curves import load_curves
from optctl.io.files import claim
from optctl.io.fitconfig import FitConfig, load_fit_config
from optctl.io.fits import write_fit


def run(args: argparse.Namespace) -> int:
    cfg = load_fit_config(args.config) if args.config else FitConfig()
    options = {k: v for k, v in (("N", args.N), ("bootstrap", args.bootstrap)) if v is not None}
    cfg = dataclasses.replace(cfg, options=dataclasses.replace(cfg.options, progress=not args.quiet,
                                                               **options))
    if args.T is not None:
        cfg = dataclasses.replace(cfg, T=args.T)
    curves = load_curves(args.curves)
    out = Path(args.out) if args.out else Path("results") / "fits" / cfg.name
    with claim(out, overwrite=args.overwrite):  # before any work; no two jobs write one folder
        from optctl.calibrate.fitting import fit  # jax, once the curves and config are good

        res = fit(curves, cfg.options)
        run_cfg = write_fit(out, cfg, res, curves, overwrite=args.overwrite,
                            sources=list(args.curves))
    print(format_fit(res))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    if res.quality is not None and not res.quality.ok:
        for reason in res.quality.reasons:
            print(f"warning: poor fit: {reason}", file=sys.stderr)
        print(f"warning: the fit may not predict other schedules; try {res.quality.advice}",
              file=sys.stderr)
    print(f"solve for T = {run_cfg.problem.T}: optctl solve {out}   (then: optctl export RUN "
          f"--calibration RUN for real learning rates)")
    print(f"results written to {out}")
    return 0


def format_fit(res: FitResult) -> str:
    """A short table for the terminal."""
    lines = [f"{'parameter':<12} {'fit':>12}   {'interval (' + format(100 * res.options.level, '.0f') + '%)':<24}"
             " asymptotic sd"]
    for k in PARAMS:
        iv = res.intervals.get(k)
        span = f"[{iv[0]:.4g}, {iv[1]:.4g}]" if iv else "(no bootstrap)"
        lines.append(f"{k:<12} {res.params[k]:>12.5g}   {span:<24} {res.asymptotic_sd.get(k, float('nan')):.3g}")
    lines.append(f"phase: {res.phase} (P(b < a) = {res.p_easy:.3f}, confidence {res.confidence:.3f})")
    worst = max(res.rms_log_error.values())
    lines.append("rms log error per curve: " + ", ".join(f"{k} {v:.3g}" for k, v in res.rms_log_error.items())
                 + f" (worst {worst:.3g})")
    if res.quality is not None:
        held = ", ".join(f"{k} {v:.3g}" for k, v in res.quality.held_out.items())
        lines.append(f"fit quality: {'ok' if res.quality.ok else 'POOR'}"
                     + (f" (held-out rms log error: {held})" if held else ""))
    return "\n".join(lines)
