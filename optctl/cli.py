"""Command line: ``optctl solve [CONFIG] [--out DIR] [--T T]``.

Bad input ends with a one-line ``optctl: error: ...`` naming the field, the value and
the fix, exit code 2, and no results folder.
"""

from __future__ import annotations

import argparse
import datetime as dt
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
    report = run_solve(cfg.problem, cfg.solver, baselines, quiet=args.quiet)
    r = report.result
    title = f"{cfg.name}: a={r.spec.a}, b={r.spec.b}, N={r.spec.N}, T={r.spec.T} ({r.spec.phase} phase)"
    with staged_dir(out, overwrite=args.overwrite) as tmp:
        write_text_atomic(tmp / "config.yaml", config.dump_config(cfg))
        arrays = {"eta": r.eta, "loss": r.loss, "bias": r.bias, "variance": r.variance,
                  "grid": r.grid, "eta_blocks": r.eta_blocks, "batch_size": r.batch_size}
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
    print(format_table(report))
    if report.best_baseline is not None:
        gain = summ["gain_over_best_baseline"]["relative_improvement"]
        print(f"optimum beats the best baseline ({report.best_baseline}) by {100 * gain:.2f}%")
    if not r.success:
        print(f"warning: {r.message}", file=sys.stderr)
    print(f"results written to {out}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optctl", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("solve", help="solve for the optimal learning-rate schedule of a config")
    p.add_argument("config", nargs="?", help="YAML config (default: the packaged hard-phase case)")
    p.add_argument("--out", help="results folder (default: results/runs/<name>-T<T>-<time>)")
    p.add_argument("--T", type=int, help="override training.T (number of updates)")
    p.add_argument("--K", type=int, help="override solver.K (control blocks)")
    p.add_argument("--grid", choices=("auto", "per_step", "uniform", "refined"),
                   help="override solver.grid")
    p.add_argument("--no-baselines", action="store_true", help="skip tuning the baselines")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=_cmd_solve)
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
        return 130


if __name__ == "__main__":
    sys.exit(main())
