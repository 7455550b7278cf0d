"""``optctl export RUN``: a run's schedule table in a file (or a table converted)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from optctl.errors import OptctlError
from optctl.io.files import check_writable
from optctl.io.fits import read_calibration
from optctl.io.runs import read_run
from optctl.io.tables import (
    as_table,
    check_family_target,
    export_family_table,
    export_table,
    export_target,
    family_table_from_run,
    is_family_run,
)


def run(args: argparse.Namespace) -> int:
    source = Path(args.run)
    scale, calibration = _lr_scale(args)
    if args.format == "recipe":
        return _recipe(args, source, scale)
    if is_family_run(source):
        return _family(args, source, scale)
    out, fmt = export_target(source, args.out, args.format)
    table = as_table(source)
    if calibration is not None:
        table = table.with_lr_scale(scale, calibration=calibration)
    table = export_table(table, out, fmt, overwrite=args.overwrite)  # type: ignore[arg-type]
    if table.lr_scale != 1.0:
        print(f"learning rates in real units: lr = {table.lr_scale:.6g} x model rate "
              f"(peak {table.lr.max():.6g})")
    print(f"exported T = {table.T} updates ({', '.join(table.columns)}), spec {table.spec_hash}, "
          f"content hash {table.content_hash[:16]} to {out}")
    return 0


def _lr_scale(args: argparse.Namespace) -> tuple[float, dict[str, Any] | None]:
    """The lr scale asked for by ``--lr-scale`` or ``--calibration`` (1.0: model units)."""
    if args.lr_scale is not None and args.calibration is not None:
        raise OptctlError("pass either --lr-scale or --calibration, not both")
    if args.lr_scale is not None:
        if not math.isfinite(args.lr_scale) or args.lr_scale <= 0:
            raise OptctlError(f"--lr-scale {args.lr_scale}: give a finite scale > 0 "
                              "(real lr = scale x model rate)")
        return float(args.lr_scale), {"lr_scale": float(args.lr_scale), "from": "--lr-scale"}
    if args.calibration is None:
        return 1.0, None
    return read_calibration(args.calibration)


def _recipe(args: argparse.Namespace, source: Path, scale: float) -> int:
    """``--format recipe``: the closed-form schedule closest to the run's optimum, as recipe.md."""
    run = read_run(source)
    if run.config.controls.controls != ("lr",):
        raise OptctlError(f"{source} solves {', '.join(run.config.controls.controls)}; recipes are "
                          "closed-form learning-rate schedules, so export this run as a table instead")
    out = Path(args.out) if args.out else source / "recipe.md"
    if out.suffix != ".md":
        raise OptctlError(f"--out {out}: a recipe is a markdown file; give it the suffix .md")
    if out.exists() and not args.overwrite:
        raise OptctlError(f"--out {out} exists; pass --overwrite to replace it")
    check_writable(out, folder=False)

    from optctl.baselines.recipes import best_recipe, fit_recipes
    from optctl.io.recipes import write_recipe

    result = run.report.result
    recipes = fit_recipes(run.config.problem, result.eta,
                          baselines={n: b.params for n, b in run.report.baselines.items()})
    write_recipe(out, recipes, optimum_loss=result.final_loss, lr_scale=scale, name=run.name,
                 baselines={n: b.final_loss for n, b in run.report.baselines.items()})
    best = best_recipe(recipes)
    print(f"recipe: {best.shape}, peak {best.peak * scale:.6g}, {best.stable_steps} stable + "
          f"{best.decay_steps} decay updates; predicted L_T {best.final_loss:.6e} vs the optimum's "
          f"{result.final_loss:.6e} (+{100 * (best.final_loss / result.final_loss - 1):.2f}%)")
    print(f"written to {out}")
    return 0


def _family(args: argparse.Namespace, source: Path, scale: float) -> int:
    """A momentum family's run: its :class:`~optctl.table.FamilyTable` as json or csv, for
    :func:`optctl.torch.family_optimizer` (via :func:`optctl.io.tables.load_family_table`)."""
    if scale != 1.0:
        raise OptctlError(f"{source} is a momentum family's run: its coefficients (gamma, Delta, beta) are not "
                          "one learning rate, so --lr-scale/--calibration do not apply; export it without them")
    out = check_family_target(source, args.out, args.format)
    table = family_table_from_run(source)
    export_family_table(table, out, overwrite=args.overwrite)
    solved = table.source.get("solved", False)
    print(f"exported {table.family} ({'solved' if solved else 'tuned' if table.source.get('tuned') else 'given'}), "
          f"T = {table.T} updates ({', '.join(table.columns)}), expected L_T = {table.expected_loss:.6e} to {out}; "
          f"drive it with optctl.torch.family_optimizer(params, optctl.io.tables.load_family_table(PATH))")
    return 0
