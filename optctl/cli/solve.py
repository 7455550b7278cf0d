"""``optctl solve [CONFIG | FIT_FOLDER]``: the solve job on a config, into a run folder."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from optctl.cli.main import SOLVER_FAILED, STARTED
from optctl.errors import ConfigError
from optctl.io.config import RunConfig, default_config_path, load_config, with_overrides
from optctl.io.drawing import FigureWorker
from optctl.io.files import check_new, claim
from optctl.io.fits import fit_folder_config, fit_warnings
from optctl.io.runs import default_out, write_run
from optctl.solver.report import SolveReport
from optctl.solver.resources import check_branching_fits, check_law_fits, check_solve_fits

# What --law leaves unused, said on stderr and in summary.json.
LAW_NOTE = ("--law: the config's solver: settings (grid, K, tolerances, IPOPT options) are not used; the law's "
            "schedule is computed per step without IPOPT")


def run(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config is not None else default_config_path()
    extra = {}
    if path.is_dir():  # a folder written by `optctl fit`: its practice maps travel along
        folder = path
        path, calibration = fit_folder_config(folder)
        extra[calibration.name] = calibration.read_text()
        if not args.quiet:
            for warning in fit_warnings(folder):
                print(f"warning: {warning}", file=sys.stderr)
    cfg = load_config(path)
    if cfg.horizons is not None:
        _check_anytime_options(cfg, args)
    if args.law:
        for flag, value in (("--K", args.K), ("--grid", args.grid)):
            if value is not None:
                raise ConfigError(flag, value, "the law's schedule is per step and needs no solver grid; "
                                  f"drop {flag} with --law, or drop --law to solve on that grid")
    overrides = {k: v for k, v in (("T", args.T), ("K", args.K), ("grid", args.grid)) if v is not None}
    cfg = with_overrides(cfg, progress=not args.quiet, **overrides)
    blocks = cfg.solver.K
    blocked = cfg.solver.grid in ("uniform", "refined") or (
        cfg.solver.grid == "auto" and cfg.problem.T > cfg.solver.per_step_max_T)
    if blocks > cfg.problem.T and blocked:
        if args.K is not None:
            raise ConfigError("--K", args.K, f"is more control blocks than updates (T = "
                              f"{cfg.problem.T}); give --K <= {cfg.problem.T}, or --grid per_step")
        if not args.quiet:
            print(f"note: solver.K = {blocks} is more blocks than updates; the solve uses "
                  f"T = {cfg.problem.T} blocks (one per update)", file=sys.stderr)
    if args.law and cfg.controls.controls != ("lr",):
        raise ConfigError("--law", ", ".join(cfg.controls.controls), "the law's schedule is for the "
                          "learning rate alone; drop --law, or the config's batch-size/momentum controls")
    if args.out is not None and not args.out.strip():
        raise ConfigError("--out", args.out, "is empty; give a folder, or leave --out out for the default")
    out = Path(args.out) if args.out else default_out(cfg.name, cfg.problem.T)
    check_new(out, args.overwrite)
    if cfg.family is not None:
        return _family(cfg, out, args, str(path))
    if cfg.horizons is not None:  # before any work
        estimate = check_branching_fits(cfg.problem, cfg.horizons, cfg.solver,
                                        baselines=not args.no_baselines and bool(cfg.baselines))
    else:
        estimate = (check_law_fits(cfg.problem) if args.law else
                    check_solve_fits(cfg.problem, cfg.solver, cfg.controls))
    notes = [LAW_NOTE] if args.law else []
    if not args.quiet:
        print(f"estimated peak memory: {estimate.describe()}", file=sys.stderr)
        for n in notes:
            print(f"note: {n}", file=sys.stderr)
    # The folder is claimed before any work: a second job writing the same --out stops at
    # once, and no two jobs ever both write it.
    if cfg.horizons is not None:
        return _anytime(cfg, out, args, str(path))
    # The figures are drawn by a helper process that loads matplotlib at a lower priority
    # while this one solves, so that its imports take mostly core time the solve leaves idle,
    # and forks a process per further figure (optctl.io.drawing).
    with claim(out, overwrite=args.overwrite), FigureWorker() as worker:
        # CasADi and the solver are loaded once the config is known to be good, so that a
        # mistake in it is reported at once.
        t0 = time.time()
        from optctl.solver.job import run_job

        t1 = time.time()
        report = run_job(cfg.problem, cfg.solver, () if args.no_baselines else cfg.baselines,
                         controls=cfg.controls, progress=not args.quiet, law=args.law)
        # CPU seconds so far: this thread's (the critical path when a second core is free)
        # and the whole process's (with the background loads and the threaded probes).
        timings = {"cli_started_unix": STARTED, "prepare_s": t0 - STARTED, "imports_s": t1 - t0,
                   "job_s": time.time() - t1, "job_cpu_main_thread_s": time.thread_time(),
                   "job_cpu_process_s": time.process_time()}
        write_run(out, cfg, report, overwrite=args.overwrite, source=str(path), extra=extra,
                  timings=timings, worker=worker, notes=notes)
    print(format_table(report))
    if not report.result.success:
        print(f"optctl: the solver did not succeed ({report.result.status}): "
              f"{report.result.message} The results in {out} are marked success: false; do not "
              f"use them as an optimum.", file=sys.stderr)
        print(f"results written to {out} (solver did not succeed)")
        return SOLVER_FAILED
    gain = report.gain()
    if gain is not None:
        print(f"{'the law' if args.law else 'optimum'} beats the best baseline ({report.best_baseline}) by "
              f"{100 * gain['relative_improvement']:.2f}%")
    elif report.baselines:
        print("note: no baseline reached a finite loss at any rate its tuning tried (up to "
              "training.eta_max), so none is compared with the optimum", file=sys.stderr)
    print(f"results written to {out}")
    return 0


def _check_anytime_options(cfg: RunConfig, args: argparse.Namespace) -> None:
    """The options of ``optctl solve`` that a config with ``horizons`` cannot take are refused
    by name; ``--K`` and ``--grid`` set every horizon's own grid and the branching grids cut
    from them, ``--no-baselines`` skips WSD-S, SGDR and Schedule-Free (docs/anytime.md)."""
    hs = list(cfg.horizons or ())
    if args.law:
        raise ConfigError("--law", True, f"the law's schedule is for one horizon, and this config has "
                          f"horizons: {hs}; drop --law, or remove `horizons:` from the config")
    if args.T is not None and args.T != hs[-1]:
        raise ConfigError("--T", args.T, f"with `horizons: {hs}` the run is as long as the longest horizon "
                          f"({hs[-1]}); drop --T, or change `horizons:`")


def _anytime(cfg: RunConfig, out: Path, args: argparse.Namespace, source: str) -> int:
    """A config with ``horizons``: the anytime plan and its comparison (docs/anytime.md)."""
    with claim(out, overwrite=args.overwrite):
        from optctl.studies.anytime import run_anytime

        report = run_anytime(cfg.problem, cfg.horizons or (), cfg.solver, name=cfg.name, leave=cfg.leave,
                             baselines=not args.no_baselines and bool(cfg.baselines), progress=not args.quiet)
        report.write_run(out, cfg, overwrite=args.overwrite, source=source)
    print(report.markdown())
    if report.branching.unconverged_bounds:
        from optctl.studies.anytime import bounds_warning

        print(f"optctl: warning: {bounds_warning(report.branching)}", file=sys.stderr)
    if not report.branching.success:
        print(f"optctl: the branching solve did not succeed ({report.branching.status}): "
              f"{report.branching.message}", file=sys.stderr)
        print(f"results written to {out} (solver did not succeed)")
        return SOLVER_FAILED
    print(f"results written to {out}")
    return 0


def _family(cfg: RunConfig, out: Path, args: argparse.Namespace, source: str) -> int:
    """A config with ``family:``: tune or evaluate the momentum family, write its table."""
    if args.law:
        raise ConfigError("--law", True, "a config with `family:` runs that family, not the law; drop --law")
    fam = cfg.family
    assert fam is not None
    with claim(out, overwrite=args.overwrite):
        from optctl.studies.families import run_family, write_family_run

        table, info, curve = run_family(cfg.problem, fam, options=cfg.solver, progress=None if args.quiet else
                                        (lambda line: print(line, file=sys.stderr, flush=True)))
        write_family_run(out, cfg, table, info, curve, overwrite=args.overwrite, source=source)
    edge = " (tuning ended on its grid edge)" if info.get("on_edge") else ""
    if fam.solve:
        print(f"{table.family} at T = {cfg.problem.T}: solved {', '.join(info['schedules'])} on {info['K']} blocks "
              f"({info['status']}, {info['iterations']} iterations): expected L_T = {info['loss']:.6e} "
              f"(start {info['start_loss']:.6e}, replay gap {info['replay_gap']:.1e}){edge}")
    else:
        print(f"{fam.name} at T = {cfg.problem.T}: expected L_T = {info['loss']:.6e} with {info['params']}{edge}")
    if fam.solve and not info["success"]:
        print(f"optctl: the {fam.name} schedule solve did not succeed ({info['status']}): {info['message']}",
              file=sys.stderr)
        print(f"results written to {out} (solver did not succeed)")
        return SOLVER_FAILED
    print(f"results written to {out} (family_table.json drives optctl.torch.family_optimizer; "
          f"`optctl export {out}` writes it as a table file)")
    return 0


def format_table(report: SolveReport) -> str:
    """A plain-text table of final losses, best first; the solved schedule is named by
    :attr:`~optctl.solver.result.ScheduleResult.label`, so a solve that stopped at its
    iteration cap is not printed as optimal."""
    name = report.result.label
    ref = "law" if name == "law" else "optimum"
    rows = [(name, report.result.final_loss)]
    rows += [(n, b.final_loss) for n, b in report.baselines.items()]
    rows.sort(key=lambda r: r[1])
    opt = report.result.final_loss
    w = max(14, max(len(n) for n, _ in rows) + 2)
    lines = [f"{'schedule':<{w}}{'L_T (replayed)':>16}{'vs ' + ref:>12}"]
    lines += [f"{n:<{w}}{v:>16.6e}{v / opt:>11.3f}x" for n, v in rows]
    return "\n".join(lines)
