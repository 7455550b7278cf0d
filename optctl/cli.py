"""Command line: ``optctl solve [CONFIG] [--out DIR] [--T T]``, ``optctl fit CURVES...`` and ``optctl export RUN``.

Bad input ends with a one-line ``optctl: error: ...`` naming the field, the value and
the fix, exit code 2, and no results folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
from pathlib import Path

from optctl.errors import OptctlError


def _default_out(name: str, T: int) -> Path:
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / "runs" / f"{name}-T{T}-{stamp}"


def _cmd_solve(args: argparse.Namespace) -> int:
    from optctl import config, plots
    from optctl.report import format_table, run_solve, summary
    from optctl.results import staged_dir, write_arrays, write_json, write_text_atomic

    path = args.config if args.config is not None else config.default_config_path()
    calibration_file = None
    if Path(path).is_dir():
        from optctl.fitrun import CALIBRATION_FILE

        # A folder written by `optctl fit`: its run config, and its practice maps travel along.
        calibration_file = Path(path) / CALIBRATION_FILE
        if not calibration_file.exists() or not (Path(path) / "config.yaml").exists():
            raise OptctlError(f"{path} is a folder but not one written by `optctl fit` (no config.yaml "
                              f"and {CALIBRATION_FILE}); pass a YAML config or a fit folder")
        path = Path(path) / "config.yaml"
    cfg = config.load_config(path)
    overrides = {k: v for k, v in (("T", args.T), ("K", args.K), ("grid", args.grid)) if v is not None}
    if overrides:
        cfg = config.with_overrides(cfg, **overrides)
    if not args.quiet:
        cfg = config.with_overrides(cfg, progress=True)
    out = Path(args.out) if args.out else _default_out(cfg.name, cfg.problem.T)
    if out.exists() and not args.overwrite:
        raise OptctlError(f"--out {out} already exists; choose a new folder or pass --overwrite")

    baselines = () if args.no_baselines else cfg.baselines
    report = run_solve(cfg.problem, cfg.solver, baselines, quiet=args.quiet, controls=cfg.controls)
    r = report.result
    title = f"{cfg.name}: a={r.spec.a}, b={r.spec.b}, N={r.spec.N}, T={r.spec.T} ({r.spec.phase} phase)"
    with staged_dir(out, overwrite=args.overwrite) as tmp:
        write_text_atomic(tmp / "config.yaml", config.dump_config(cfg))
        if calibration_file is not None:
            write_text_atomic(tmp / calibration_file.name, calibration_file.read_text())
        arrays = {"eta": r.eta, "loss": r.loss, "bias": r.bias, "variance": r.variance,
                  "grid": r.grid, "eta_blocks": r.eta_blocks, "batch_size": r.batch_size}
        if r.beta is not None:
            arrays["beta"] = r.beta
        for name, b in report.baselines.items():
            arrays[f"baseline_{name}_eta"] = b.eta
            arrays[f"baseline_{name}_loss"] = report.baseline_curves[name]
        write_arrays(tmp / "arrays.npz", arrays)
        summ = {"name": cfg.name, "config_source": str(path), **summary(report)}
        write_json(tmp / "summary.json", summ)
        plots.save(plots.plot_schedule(r.eta, {n: b.eta for n, b in report.baselines.items()},
                                       title=title), str(tmp / "schedule.png"))
        plots.save(plots.plot_loss(r.loss, report.baseline_curves, bias=r.bias, variance=r.variance,
                                   title=title), str(tmp / "loss.png"))
        if cfg.controls.controls != ("lr",):
            plots.save(plots.plot_controls(r.eta, r.batch_size, r.beta, title=title), str(tmp / "controls.png"))
    print(format_table(report))
    if report.best_baseline is not None:
        gain = summ["gain_over_best_baseline"]["relative_improvement"]
        print(f"optimum beats the best baseline ({report.best_baseline}) by {100 * gain:.2f}%")
    if not r.success:
        print(f"warning: {r.message}", file=sys.stderr)
    print(f"results written to {out}")
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from optctl.sweep import run_sweep
    from optctl.sweepconfig import load_sweep_config
    from optctl.sweepreport import write_sweep_report

    sweep = load_sweep_config(args.config)
    out = Path(args.out) if args.out else Path("results") / "sweeps" / sweep.name
    if args.workers is not None and args.workers < 1:
        raise OptctlError(f"--workers {args.workers}: give a positive number of processes")
    n = len(sweep.points())
    if not args.quiet:
        print(f"sweep {sweep.name} ({sweep.kind}): {n} points x horizons {list(sweep.horizons)} "
              f"-> {out}", file=sys.stderr)
    try:
        run = run_sweep(sweep, out, workers=args.workers, scheduler=args.scheduler,
                        progress=not args.quiet)
    except KeyboardInterrupt:
        print(f"optctl: interrupted; finished points are saved in {out}; run the same command "
              "again to resume", file=sys.stderr)
        return 130
    print(f"{run.total} points: {run.skipped} already done, {run.ran} run, {len(run.failed)} failed "
          f"[{run.wall_time:.1f} s]")
    if not args.no_plots:
        write_sweep_report(out)
        print(f"report and figures written to {out}")
    if run.failed:
        for key, err in run.failed.items():
            print(f"  point {key} failed: {err}", file=sys.stderr)
        print("optctl: some points failed; re-run the command to retry them", file=sys.stderr)
        return 1
    return 0


def _cmd_plot(args: argparse.Namespace) -> int:
    from optctl import plots
    from optctl.results import read_arrays, read_json
    from optctl.sweepreport import write_sweep_report

    run = Path(args.run)
    if (run / "sweep.yaml").exists():
        write_sweep_report(run)
        print(f"figures written to {run / 'figures'}")
        return 0
    if (run / "summary.json").exists() and (run / "arrays.npz").exists():
        summ, arr = read_json(run / "summary.json"), read_arrays(run / "arrays.npz")
        names = [k[len("baseline_"):-len("_eta")] for k in arr if k.startswith("baseline_") and k.endswith("_eta")]
        title = f"{summ.get('name', run.name)} ({summ.get('phase_theory', '')} phase)"
        plots.save(plots.plot_schedule(arr["eta"], {n: arr[f"baseline_{n}_eta"] for n in names}, title=title),
                   str(run / "schedule.png"))
        plots.save(plots.plot_loss(arr["loss"], {n: arr[f"baseline_{n}_loss"] for n in names},
                                   bias=arr["bias"], variance=arr["variance"], title=title),
                   str(run / "loss.png"))
        print(f"figures written to {run}")
        return 0
    if not run.is_dir():
        raise OptctlError(f"{run}: no such folder; pass a folder written by `optctl sweep` or `optctl solve`")
    raise OptctlError(f"{run}: not a results folder (no sweep.yaml, nor summary.json and arrays.npz); "
                      "pass a folder written by `optctl sweep` or `optctl solve`")


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from optctl.reproduce import reproduce

    out = Path(args.out)
    try:
        rep = reproduce(out, workers=args.workers, progress=not args.quiet, quick=args.quick,
                        controls=not args.no_controls)
    except KeyboardInterrupt:
        print(f"optctl: interrupted; finished points are saved under {out / 'sweeps'}; run the same "
              "command again to resume", file=sys.stderr)
        return 130
    print(f"{len(rep['figures'])} figures and report.md written to {out} [{rep['wall_time_s']:.0f} s]")
    return 0


def _add_study_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("sweep", help="solve a sweep config over its points and horizons (resumable)")
    p.add_argument("config", help="sweep YAML config (see configs/sweep_*.yaml)")
    p.add_argument("--out", help="results folder (default: results/sweeps/<name>); re-running resumes")
    p.add_argument("--workers", type=int, help="local processes (overrides sweep.workers)")
    p.add_argument("--scheduler", help="Dask scheduler address (overrides sweep.scheduler)")
    p.add_argument("--no-plots", action="store_true", help="skip the report and figures")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_sweep)
    p = sub.add_parser("plot", help="(re)draw the figures of a sweep or solve results folder")
    p.add_argument("run", help="a folder written by `optctl sweep` or `optctl solve`")
    p.set_defaults(func=_cmd_plot)
    p = sub.add_parser("reproduce", help="regenerate the paper's figures 2-5 (and the batch-size "
                       "study) into results/paper/")
    p.add_argument("--out", default=str(Path("results") / "paper"), help="output folder (resumable)")
    p.add_argument("--workers", type=int, default=2, help="local processes (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny sweeps: checks the pipeline, not the exponents")
    p.add_argument("--no-controls", action="store_true",
                   help="skip the momentum (figure 5) and batch-size studies")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_reproduce)


def _export_target(run: Path, out_arg: str | None, fmt_arg: str | None) -> tuple[Path, str]:
    """The table file and format of ``optctl export``: --format, else --out's suffix, else npz."""
    from optctl.export import SUFFIXES, format_of, suffix_format

    if out_arg is not None:
        out = Path(out_arg)
        by_suffix = suffix_format(out)
        if fmt_arg is not None and by_suffix is not None and by_suffix != fmt_arg:
            raise OptctlError(f"--format {fmt_arg} clashes with --out {out} (a {by_suffix} suffix); "
                              f"drop --format or write to a {SUFFIXES[fmt_arg]} file")
        if fmt_arg is None and by_suffix is None:
            raise OptctlError(f"--out {out}: cannot tell the table format from the suffix "
                              f"{out.suffix!r}; use one of {', '.join(SUFFIXES.values())} or pass --format")
        return out, format_of(out, fmt_arg)
    fmt = fmt_arg or "npz"
    if run.is_dir():
        return run / f"table{SUFFIXES[fmt]}", fmt
    if run.exists() and suffix_format(run) is not None:  # a table file: convert it beside itself
        out = run.with_suffix(SUFFIXES[fmt])
        if out == run:
            raise OptctlError(f"{run} is already a {fmt} table; pass --out for the copy, or "
                              "--format for another format")
        return out, fmt
    return run / f"table{SUFFIXES[fmt]}", fmt  # export_table says what is wrong with RUN


def _lr_scale(args: argparse.Namespace) -> tuple[float, dict[str, object] | None]:
    """The lr scale asked for by ``--lr-scale`` or ``--calibration`` (1.0: model units)."""
    import json
    import math

    from optctl.fitrun import CALIBRATION_FILE

    if args.lr_scale is not None and args.calibration is not None:
        raise OptctlError("pass either --lr-scale or --calibration, not both")
    if args.lr_scale is not None:
        if not math.isfinite(args.lr_scale) or args.lr_scale <= 0:
            raise OptctlError(f"--lr-scale {args.lr_scale}: give a finite scale > 0 "
                              "(real lr = scale x model rate)")
        return float(args.lr_scale), {"lr_scale": float(args.lr_scale), "from": "--lr-scale"}
    if args.calibration is None:
        return 1.0, None
    cal = Path(args.calibration)
    if cal.is_dir():
        cal = cal / CALIBRATION_FILE
    try:
        data = json.loads(cal.read_text())
        scale = float(data["lr_scale"])
    except FileNotFoundError:
        raise OptctlError(f"--calibration {args.calibration}: no {CALIBRATION_FILE} there; pass a "
                          "folder written by `optctl fit` (or a run solved from one)") from None
    except (ValueError, KeyError, TypeError) as err:
        raise OptctlError(f"--calibration {cal}: not a calibration file with a numeric lr_scale "
                          f"({err}); re-run `optctl fit`") from err
    if not math.isfinite(scale) or scale <= 0:
        raise OptctlError(f"--calibration {cal}: lr_scale = {scale} must be finite and > 0")
    return scale, {"file": str(cal), **{k: data.get(k) for k in ("lr_scale", "loss_scale",
                                                                  "loss_offset", "fit_dir")}}


def _cmd_export(args: argparse.Namespace) -> int:
    from optctl.export import as_table, export_table

    run = Path(args.run)
    scale, cal = _lr_scale(args)
    out, fmt = _export_target(run, args.out, args.format)
    if run.is_file() and out.resolve() == run.resolve():
        raise OptctlError(f"--out {out} is RUN itself; write the table to another file")
    source = as_table(run)
    if cal is not None:
        source = source.with_lr_scale(scale, calibration=cal)
    table = export_table(source, out, fmt, overwrite=args.overwrite)  # type: ignore[arg-type]
    if table.lr_scale != 1.0:
        print(f"learning rates in real units: lr = {table.lr_scale:.6g} x model rate "
              f"(peak {table.lr.max():.6g})")
    print(f"exported T = {table.T} updates ({', '.join(table.columns)}), spec {table.spec_hash}, "
          f"content hash {table.content_hash[:16]} to {out}")
    return 0


def _add_export_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    e = sub.add_parser("export", help="write a run's schedule table, or convert a table file")
    e.add_argument("run", help="run folder written by `optctl solve`, or a table file to convert")
    e.add_argument("--format", choices=("npz", "safetensors", "csv", "json"),
                   help="npz/safetensors for training jobs, csv/json for people (default: the "
                        "suffix of --out, else npz)")
    e.add_argument("--out", help="table file (default: RUN/table.<format> for a run folder, the "
                                 "input with the new suffix for a table file)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing table file")
    e.add_argument("--calibration", help="write real learning rates: lr_scale from a folder of "
                   "`optctl fit` (or a run solved from one) or its calibration.json")
    e.add_argument("--lr-scale", type=float, help="write real learning rates: lr = SCALE x model rate")
    e.set_defaults(func=_cmd_export)


def _cmd_fit(args: argparse.Namespace) -> int:
    from optctl.curves import load_curves
    from optctl.fitconfig import FitConfig, load_fit_config
    from optctl.fitrun import format_fit, run_fit

    cfg = load_fit_config(args.config) if args.config else FitConfig()
    changes: dict[str, object] = {}
    opt_changes = {k: v for k, v in (("N", args.N), ("bootstrap", args.bootstrap)) if v is not None}
    if not args.quiet:
        opt_changes["progress"] = True
    if opt_changes:
        import dataclasses

        changes["options"] = dataclasses.replace(cfg.options, **opt_changes)
    if args.T is not None:
        changes["T"] = args.T
    if changes:
        import dataclasses

        cfg = dataclasses.replace(cfg, **changes)  # type: ignore[arg-type]
    curves = load_curves(args.curves)
    out = Path(args.out) if args.out else Path("results") / "fits" / cfg.name
    res, run = run_fit(curves, cfg, out, overwrite=args.overwrite, sources=list(args.curves))
    print(format_fit(res))
    for note in res.notes:
        print(f"note: {note}", file=sys.stderr)
    print(f"solve for T = {run.problem.T}: optctl solve {out}   (then: optctl export RUN "
          f"--calibration RUN for real learning rates)")
    print(f"results written to {out}")
    return 0


def _add_fit_command(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    f = sub.add_parser("fit", help="calibrate (a, b, sigma) and the lr/loss maps from measured loss curves")
    f.add_argument("curves", nargs="+", help="CSV files with columns step, lr, loss [, batch_size, momentum]")
    f.add_argument("--config", help="fit YAML config (see configs/fit_pilot.yaml)")
    f.add_argument("--out", help="fit folder (default: results/fits/<name>)")
    f.add_argument("--T", type=int, help="override target.T: the horizon to solve for afterwards")
    f.add_argument("--N", type=int, help="override fit.N: the number of model features")
    f.add_argument("--bootstrap", type=int, help="override fit.bootstrap: resampled refits (0: none)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    f.add_argument("--quiet", action="store_true", help="no progress on stderr")
    f.set_defaults(func=_cmd_fit)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="solve for the optimal schedule (lr, and batch size or momentum "
                       "if the config's controls say so)")
    p.add_argument("config", nargs="?", help="YAML config, or a folder written by `optctl fit` "
                   "(default: the packaged hard-phase case)")
    p.add_argument("--out", help="results folder (default: results/runs/<name>-T<T>-<time>)")
    p.add_argument("--T", type=int, help="override training.T (number of updates)")
    p.add_argument("--K", type=int, help="override solver.K (control blocks)")
    p.add_argument("--grid", choices=("auto", "per_step", "uniform", "refined"),
                   help="override solver.grid")
    p.add_argument("--no-baselines", action="store_true", help="skip tuning the baselines")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_solve)
    _add_study_commands(sub)
    _add_export_command(sub)
    _add_fit_command(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except OptctlError as err:
        print(f"optctl: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("optctl: interrupted; nothing was written", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # Leave without running finalizers: tearing down CasADi's compiled solvers and
        # jax after an interrupt has crashed the interpreter on exit.
        os._exit(130)


if __name__ == "__main__":
    sys.exit(main())
