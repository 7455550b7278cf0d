"""Command line: ``optctl solve | sweep | plot | reproduce | export | fit``.

The parser needs nothing but argparse, so ``optctl --help`` and argument errors are
instant; the command's module (``optctl.cli.<command>``), and with it the numerical
stack, is loaded only once the arguments are parsed. Bad input ends with a one-line
``optctl: error: ...`` naming the field, the value and the fix, exit code 2, and no
results folder; Ctrl-C ends with exit code 130.
"""

from __future__ import annotations

import argparse
import atexit
import importlib
import os
import sys
import threading
import time
import warnings
from pathlib import Path
from typing import Any, TextIO

from optctl.errors import AssumptionWarning, HorizonWarning, OptctlError
from optctl.versions import optctl_version

# When the command line was entered (wall clock): the start of the stage timings that
# `optctl solve` records in summary.json.
STARTED = time.time()

GRIDS = ("auto", "per_step", "uniform", "refined")
# Exit codes (README, `optctl --help`).
OK, WRITE_FAILED, BAD_INPUT, SOLVER_FAILED, INTERRUPTED = 0, 1, 2, 3, 130
EXIT_CODES = (f"exit codes: {OK} success; {WRITE_FAILED} results could not be written (or sweep "
              f"points failed); {BAD_INPUT} bad input (config, arguments, files, --out, resources), "
              f"one line naming the field, the value and the fix, nothing written; {SOLVER_FAILED} "
              f"the solver did not succeed (the results are written, marked success: false, and "
              f"no claim is made from them); {INTERRUPTED} interrupted (Ctrl-C)")
TABLE_FORMATS = ("npz", "safetensors", "csv", "json")


def _count(text: str) -> int:
    """A count on the command line: an integer, also written as ``1e5`` or ``100_000``
    (as YAML configs take it)."""
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not value.is_integer():
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; give an integer such as 1000")
    return int(value)


def _command(sub: argparse._SubParsersAction, name: str, module: str,  # type: ignore[type-arg]
             help: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, epilog=EXIT_CODES)
    p.set_defaults(module=f"optctl.cli.{module}", command=name)
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="optctl", description="Optimal learning-rate, batch-size "
                                     "and momentum schedules by optimal control (arXiv:2602.04774).",
                                     epilog=EXIT_CODES)
    parser.add_argument("--version", action="version", version=f"%(prog)s {optctl_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = _command(sub, "solve", "solve", "solve for the optimal schedule (lr, and batch size or "
                 "momentum if the config's controls say so)")
    p.add_argument("config", nargs="?", help="YAML config, or a folder written by `optctl fit` "
                   "(default: the packaged hard-phase case)")
    p.add_argument("--out", help="results folder (default: results/runs/<name>-T<T>-<time>)")
    p.add_argument("--T", type=_count, help="override training.T (number of updates)")
    p.add_argument("--K", type=_count, help="override solver.K (control blocks)")
    p.add_argument("--grid", choices=GRIDS, help="override solver.grid")
    p.add_argument("--no-baselines", action="store_true", help="skip tuning the baselines")
    p.add_argument("--law", action="store_true", help="the finite-horizon law's schedule instead of "
                   "a numerical solve (learning rate only; milliseconds, no IPOPT; docs/scaling.md)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = _command(sub, "sweep", "sweep", "solve a sweep config over its points and horizons (resumable)")
    p.add_argument("config", help="sweep YAML config (see configs/sweep_*.yaml)")
    p.add_argument("--out", help="results folder (default: results/sweeps/<name>); re-running resumes")
    p.add_argument("--workers", type=int, help="local processes (overrides sweep.workers)")
    p.add_argument("--scheduler", help="Dask scheduler address (overrides sweep.scheduler)")
    p.add_argument("--no-plots", action="store_true", help="skip the report and figures")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    p = _command(sub, "plot", "plot", "(re)draw the figures of a sweep or solve results folder")
    p.add_argument("run", help="a folder written by `optctl sweep` or `optctl solve`")

    p = _command(sub, "reproduce", "reproduce", "regenerate the paper's figures 1-5, the claim table and the studies (batch, "
                 "study) into results/paper/")
    p.add_argument("--out", default=str(Path("results") / "paper"), help="output folder (resumable)")
    p.add_argument("--workers", type=int, default=2, help="local processes (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny sweeps: checks the pipeline, not the exponents")
    p.add_argument("--no-controls", action="store_true",
                   help="skip the momentum (figure 5) and batch-size studies")
    p.add_argument("--full", action="store_true",
                   help="also run the slow studies that are otherwise read from --out: the law against "
                        "block solves (law.md, law_T1e7/) and the missing batch-ramp points")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")

    e = _command(sub, "export", "export", "write a run's schedule table, or convert a table file")
    e.add_argument("run", help="run folder written by `optctl solve`, or a table file to convert")
    e.add_argument("--format", choices=(*TABLE_FORMATS, "recipe"),
                   help="npz/safetensors for training jobs, csv/json for people (default: the "
                        "suffix of --out, else npz; a momentum family's run: json or csv, default json); "
                        "recipe: the closest closed-form schedule as "
                        "Hugging Face, torch and optax code with its predicted loss (RUN/recipe.md)")
    e.add_argument("--out", help="table file (default: RUN/table.<format> for a run folder, the "
                                 "input with the new suffix for a table file)")
    e.add_argument("--overwrite", action="store_true", help="replace an existing table file")
    e.add_argument("--calibration", help="write real learning rates: lr_scale from a folder of "
                   "`optctl fit` (or a run solved from one) or its calibration.json")
    e.add_argument("--lr-scale", type=float, help="write real learning rates: lr = SCALE x model rate")

    f = _command(sub, "fit", "fit", "calibrate (a, b, sigma) and the lr/loss maps from measured loss curves")
    f.add_argument("curves", nargs="+", help="CSV files with columns step, lr, loss [, batch_size, momentum]")
    f.add_argument("--config", help="fit YAML config (see configs/fit_pilot.yaml)")
    f.add_argument("--out", help="fit folder (default: results/fits/<name>)")
    f.add_argument("--T", type=_count, help="override target.T: the horizon to solve for afterwards")
    f.add_argument("--N", type=_count, help="override fit.N: the number of model features")
    f.add_argument("--bootstrap", type=_count, help="override fit.bootstrap: resampled refits (0: none)")
    f.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    f.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None, *, _default: Any = None) -> None:
    """optctl's own warnings as one line (``optctl: warning: <message>``), without the
    file and source line Python prints; any other warning as Python prints it."""
    if issubclass(category, OWN_WARNINGS):
        print(f"optctl: warning: {_one_line(Warning(str(message)))}", file=sys.stderr if file is None else file)
    else:
        _default(message, category, filename, lineno, file, line)


OWN_WARNINGS = (AssumptionWarning, HorizonWarning)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with warnings.catch_warnings():
        default = warnings.showwarning
        warnings.showwarning = lambda *a, **k: _show_warning(*a, **k, _default=default)
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        # The one deferred import of the package: the command's module and its stack.
        module = importlib.import_module(args.module)
        return int(module.run(args))
    except OptctlError as err:
        print(f"optctl: error: {_one_line(err)}", file=sys.stderr)
        return BAD_INPUT
    except OSError as err:  # a disk or folder that failed while results were written
        where = f": {err.filename}" if err.filename else ""
        print(f"optctl: error: could not write the results ({err.strerror or err}{where}); "
              "nothing incomplete was left behind", file=sys.stderr)
        return WRITE_FAILED
    except MemoryError:
        print("optctl: error: this machine ran out of memory; shrink the problem (a smaller "
              "model.N, solver.modes: grouped, a block grid such as solver.grid: refined, or a "
              "smaller training.T)", file=sys.stderr)
        return BAD_INPUT
    except RecursionError:
        print("optctl: error: an input is nested too deeply to be read; check the files passed",
              file=sys.stderr)
        return BAD_INPUT
    except KeyboardInterrupt:
        print("optctl: interrupted; nothing was written", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        # Leave without running finalizers: tearing down CasADi's compiled solvers and
        # jax after an interrupt has crashed the interpreter on exit.
        os._exit(INTERRUPTED)
    except Exception as err:
        if os.environ.get("OPTCTL_TRACEBACK"):
            raise
        print(f"optctl: internal error: {type(err).__name__}: {_one_line(err)} (a bug in "
              "optctl; set OPTCTL_TRACEBACK=1 to see where, and please report it)", file=sys.stderr)
        return WRITE_FAILED


def _one_line(err: BaseException, limit: int = 2000) -> str:
    """The message of ``err`` on one line, at most ``limit`` characters."""
    text = str(err).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."


def entry() -> None:
    """The ``optctl`` program: :func:`main`, then a quick exit.

    The interpreter's own teardown frees every object one by one (CasADi's solvers and
    loaded libraries, numba's kernels, the arrays of the run) and writes nothing; it costs
    0.2-0.4 s of a solve's few seconds. Once the command is done, its output flushed and
    the exit handlers run (the scratch folders are removed there), the process ends at
    once, unless a thread that the interpreter would wait for is still running."""
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":
    entry()
