"""Run folders of ``optctl solve``: the one module that writes and reads them.

A run folder holds the resolved ``config.yaml``, ``summary.json`` and ``arrays.npz``
(both laid out by :class:`optctl.solver.job.SolveReport`), the figures
``schedule.png``, ``loss.png`` (and ``controls.png`` for a joint problem), and any
files passed along (the ``calibration.json`` of a fit). It is assembled under a
temporary name and renamed when complete, so a failed run leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import time
import zipfile
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optctl.errors import OptctlError, ResultsError
from optctl.io.config import RunConfig, dump_config, load_config
from optctl.io.drawing import Figure, FigureWorker, draw
from optctl.io.files import (
    read_arrays,
    read_json,
    staged_dir,
    write_arrays,
    write_json,
    write_text_atomic,
)
from optctl.solver.report import SolveReport
from optctl.theory import assumption_note

CONFIG, SUMMARY, ARRAYS = "config.yaml", "summary.json", "arrays.npz"


@dataclass(frozen=True)
class RunFolder:
    """A run folder read back: its path, config, name and report."""

    path: Path
    config: RunConfig
    name: str
    report: SolveReport


def default_out(name: str, T: int) -> Path:
    """``results/runs/<name>-T<T>-<date>-<time>``."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("results") / "runs" / f"{name}-T{T}-{stamp}"


def title(cfg: RunConfig) -> str:
    p = cfg.problem
    return f"{cfg.name}: a={p.a}, b={p.b}, N={p.N}, T={p.T} ({p.phase} phase)"


def write_run(out: Path, cfg: RunConfig, report: SolveReport, *, overwrite: bool = False,
              source: str | None = None, extra: Mapping[str, str] | None = None,
              timings: Mapping[str, float] | None = None,
              notes: Sequence[str] | None = None,
              worker: FigureWorker | None = None) -> dict[str, Any]:
    """Write the run folder ``out`` atomically; return its summary.

    ``source`` is recorded as ``config_source``; ``extra`` maps file names to texts
    written alongside (a fit's ``calibration.json``). ``timings`` (the command line's
    stages, in seconds) are recorded under ``timings`` with the seconds spent writing the
    arrays and drawing the figures; ``notes`` (what the command line left unused) under
    ``notes``; ``summary.json`` is written last. ``worker``: a
    :class:`~optctl.io.drawing.FigureWorker` started earlier draws the figures in its own
    process while this one writes the arrays (else they are drawn here, in a thread beside
    the compression).
    """
    summary = {"name": cfg.name, "config_source": source, **report.summary()}
    note = assumption_note(cfg.problem.b)
    if note is not None:  # the breach travels with the results, not only on stderr
        summary["assumptions"] = [f"model.b: {note}"]
    if notes:  # what the command line left unused, e.g. the solver settings under --law
        summary["notes"] = list(notes)
    with staged_dir(out, overwrite=overwrite) as tmp:
        write_text_atomic(tmp / CONFIG, dump_config(cfg))
        for name, text in (extra or {}).items():
            write_text_atomic(tmp / name, text)
        t0 = time.perf_counter()
        # The arrays are written in a thread (zlib and the file writes release the GIL)
        # while the figures are sent to the helper, or drawn here without one.
        with ThreadPoolExecutor(max_workers=1) as pool:
            arrays = pool.submit(_timed, write_arrays, tmp / ARRAYS, report.arrays())
            if worker is not None:
                worker.submit(tmp, run_figures(report, title(cfg)))
                worker.wait()
            else:
                draw_run(tmp, report, title(cfg))
            t_figures = time.perf_counter() - t0
            t_arrays = arrays.result()
        if timings is not None:
            summary["timings"] = {**timings, "write_s": time.perf_counter() - t0,
                                  "write_arrays_s": t_arrays, "figures_s": t_figures}
        write_json(tmp / SUMMARY, summary)
    return summary


def _timed(fn: Callable[..., object], *args: object) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return time.perf_counter() - t0


def read_run(folder: str | Path) -> RunFolder:
    """Read a run folder written by :func:`write_run`; :class:`ResultsError` says what is wrong."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"run {folder} is not a folder; pass a run folder written by `optctl solve`")
    missing = [n for n in (CONFIG, ARRAYS, SUMMARY) if not (folder / n).is_file()]
    if missing:
        raise ResultsError(f"{folder} is not a run folder (it lacks {', '.join(missing)}); write one "
                           f"with `optctl solve CONFIG --out {folder}`, or pass a table file")
    try:
        cfg = load_config(folder / CONFIG)
        arrays = read_arrays(folder / ARRAYS)
        summary = read_json(folder / SUMMARY)
    except (OptctlError, zipfile.BadZipFile, OSError, ValueError) as err:
        raise ResultsError(f"run {folder} cannot be read ({err}); re-run `optctl solve`") from err
    if "eta" not in arrays:
        raise ResultsError(f"{folder / ARRAYS} has no 'eta' array; re-run `optctl solve`")
    if arrays["eta"].shape != (cfg.problem.T,):
        raise ResultsError(f"{folder / ARRAYS}: eta has shape {arrays['eta'].shape} but {CONFIG} says "
                           f"T = {cfg.problem.T}; the run folder is inconsistent, re-run `optctl solve`")
    try:
        report = SolveReport.from_run(cfg.problem, cfg.solver, cfg.controls, summary, arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise ResultsError(f"run {folder}: {SUMMARY} or {ARRAYS} lacks {err}; re-run `optctl solve`") from err
    return RunFolder(path=folder, config=cfg, name=str(summary.get("name", cfg.name)), report=report)


def run_figures(report: SolveReport, heading: str) -> dict[str, Figure]:
    """A run's figures as inputs to :mod:`optctl.plots` (file name → function, arguments):
    the schedule, the loss curves, and the controls of a joint problem."""
    r = report.result
    etas = {n: b.eta for n, b in report.baselines.items()}
    figures: dict[str, Figure] = {
        "schedule.png": ("plot_schedule", (r.eta, etas), {"title": heading, "label": r.label}),
        "loss.png": ("plot_loss", (r.loss, report.baseline_curves),
                     {"bias": r.bias, "variance": r.variance, "title": heading, "label": r.label})}
    if r.controls.controls != ("lr",):
        figures["controls.png"] = ("plot_controls", (r.eta, r.batch_size, r.beta),
                                   {"title": heading, "label": r.label})
    return figures


def draw_run(folder: Path, report: SolveReport, heading: str) -> list[Path]:
    """Draw a run's figures (:func:`run_figures`) into ``folder``. Returns the files written."""
    return draw(folder, run_figures(report, heading))
