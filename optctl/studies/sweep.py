"""Sweep engine: solve every point of a :class:`~optctl.io.sweepconfig.SweepSpec`, resumably.

A *point* is one model (one combination of the swept axes); it runs the solve job of
:mod:`optctl.solver.job` at each of its horizons in increasing order, each warm-started
from the previous one in ``u = t/T`` (every control of the sweep's ``controls``), with
the requested baselines at the baseline horizons. With ``warm_start`` on, learning-rate
solves take the short start of ``solve(..., warm=True)``: the previous horizon's schedule
or the finite-horizon law's (the first horizon from ``T = 1000`` on: the law's alone),
whichever scores lower, and IPOPT started warm from there (its safeguard: the usual cold
solve when that run does not converge). Every finished horizon is written at
once, atomically, as ``<out>/points/<key>/T<T>.json`` (the job's compact record:
:meth:`optctl.solver.job.SolveReport.to_record`), so a sweep killed at any moment loses
no finished work, and running it again skips what is on disk: a point resumes at its
first missing horizon, warm-started from the last saved one. At the end of each run the
folder also gets ``records.csv``, one tidy row per saved record (:func:`records_rows`:
point values, ``T``, the optimum's and each baseline's final loss, the solver status).

Points run on local processes by default (``workers``; one process runs them in
place) and on a Dask distributed cluster when the spec names a ``scheduler`` address
(Dask workers must share the results folder's file system; the driver also writes
every record it receives, so nothing is lost if they do not). Progress (points done,
time left) goes to stderr.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import csv
import io
import math
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from optctl.errors import ResultsError, SweepError
from optctl.io.files import read_json, write_json, write_text_atomic
from optctl.io.sweepconfig import SweepSpec, dump_sweep, load_sweep_config, point_key
from optctl.solver.job import run_job
from optctl.solver.result import record_start
from optctl.spec import ProblemSpec

RECORD_VERSION = 1
# How often the driver looks at the records the workers have written (progress line).
POLL_SECONDS = 2.0
# Seconds to wait for a Dask scheduler before giving up with an error.
DASK_CONNECT_TIMEOUT = 30.0
# Worker processes get one BLAS/XLA thread each: points are the unit of parallelism.
_SINGLE_THREAD_ENV = {
    "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPTCTL_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}


@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to run one point (plain, picklable data)."""

    sweep: SweepSpec
    values: dict[str, float]
    out: str | None

    @property
    def key(self) -> str:
        return point_key(self.values)


def record_path(out: Path, key: str, T: int) -> Path:
    return Path(out) / "points" / key / f"T{T}.json"


def read_record(path: Path) -> dict[str, Any] | None:
    """A saved record, or ``None`` if absent or unreadable (it will be recomputed)."""
    try:
        rec = read_json(path)
    except ResultsError:
        return None
    return rec if rec.get("record_version") == RECORD_VERSION else None


def solve_record(spec: ProblemSpec, task: PointTask, prev: dict[str, Any] | None) -> dict[str, Any]:
    """Solve one horizon of one point (and tune its baselines): the record to save."""
    sw = task.sweep
    init = record_start(prev) if (prev is not None and sw.warm_start) else None
    baselines = sw.baselines if spec.T in sw.baseline_horizons else ()
    report = run_job(spec, sw.solver, baselines, controls=sw.controls, init=init,
                     exact_tuning_max_T=sw.exact_tuning_max_T, warm=sw.warm_start)
    return {"record_version": RECORD_VERSION, "sweep_digest": sw.digest(), "key": task.key,
            "values": task.values, **report.to_record(),
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_point(task: PointTask) -> list[dict[str, Any]]:
    """Run (or resume) one point: every horizon not yet on disk, in increasing order.

    Each record is written as soon as it is complete when ``task.out`` is set; the
    records of the horizons computed here are returned.
    """
    out = Path(task.out) if task.out is not None else None
    prev: dict[str, Any] | None = None
    new: list[dict[str, Any]] = []
    for T in task.sweep.horizons:
        path = record_path(out, task.key, T) if out is not None else None
        saved = read_record(path) if path is not None else None
        if saved is not None and saved.get("sweep_digest") == task.sweep.digest():
            prev = saved
            continue
        rec = solve_record(task.sweep.spec(task.values, T), task, prev)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, rec)
        new.append(rec)
        prev = rec
    return new


# --- progress ---------------------------------------------------------------------------


class Progress:
    """Points done and time left, on one refreshed line (a TTY) or on occasional lines."""

    def __init__(self, total: int, done: int, *, stream: TextIO | None = None,
                 enabled: bool = True, label: str = "points",
                 solves: tuple[int, int] | None = None) -> None:
        self.total, self.start_done, self.done = total, done, done
        # (done, total) solves, one per (point, horizon): finer than points, for the
        # estimate of the time left and so that the line moves during long points.
        self.solves, self.start_solves = solves, solves[0] if solves else 0
        self.stream = sys.stderr if stream is None else stream
        self.enabled, self.label = enabled, label
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last = -1.0
        self._emit(force=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        self._emit(force=self.done == self.total)

    def set_solves(self, done: int) -> None:
        """Record the number of finished solves (refreshes the line on a TTY)."""
        if self.solves is not None and done != self.solves[0]:
            self.solves = (done, self.solves[1])
        self._emit()

    def line(self) -> str:
        elapsed = time.perf_counter() - self.t0
        if self.solves is not None:
            ran, todo = self.solves[0] - self.start_solves, self.solves[1] - self.solves[0]
        else:
            ran, todo = self.done - self.start_done, self.total - self.done
        left = (elapsed / ran) * todo if ran > 0 else float("nan")
        width = 24
        fill = int(width * self.done / max(self.total, 1))
        left_s = "?" if not np.isfinite(left) else _hms(left)
        solves = f" ({self.solves[0]}/{self.solves[1]} solves)" if self.solves is not None else ""
        return (f"[{'#' * fill}{'.' * (width - fill)}] {self.done}/{self.total} {self.label}{solves}"
                f"  elapsed {_hms(elapsed)}  left ~{left_s}")

    def _emit(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.tty:
            self.stream.write("\r" + self.line())
            if self.done == self.total:
                self.stream.write("\n")
        elif force or now - self._last > 30.0:
            self.stream.write(self.line() + "\n")
        else:
            return
        self._last = now
        self.stream.flush()


def _hms(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


# --- the driver -------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepRun:
    """What :func:`run_sweep` did: points in total, skipped (already complete), run, failed."""

    out: Path
    total: int
    skipped: int
    ran: int
    failed: dict[str, str]
    wall_time: float


def prepare_out(sweep: SweepSpec, out: Path) -> None:
    """Create ``out`` (or check that it holds this sweep) and write ``sweep.yaml``."""
    out = Path(out)
    meta = out / "sweep.json"
    if meta.exists():
        old = read_json(meta)
        if old.get("digest") != sweep.digest():
            raise SweepError(f"{out} holds a different sweep (its sweep.yaml differs in results-"
                             "changing fields); choose another --out, or delete the folder")
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "sweep.yaml", dump_sweep(sweep))
    write_json(meta, {"digest": sweep.digest(), "name": sweep.name, "kind": sweep.kind})


def complete(sweep: SweepSpec, out: Path, values: dict[str, float]) -> bool:
    key, digest = point_key(values), sweep.digest()
    for T in sweep.horizons:
        rec = read_record(record_path(out, key, T))
        if rec is None or rec.get("sweep_digest") != digest:
            return False
    return True


def run_sweep(sweep: SweepSpec, out: Path, *, workers: int | None = None,
              scheduler: str | None = None, progress: bool = True,
              stream: TextIO | None = None) -> SweepRun:
    """Run every point of ``sweep`` not yet complete in ``out``; see the module docstring.

    ``workers``/``scheduler`` override the spec's. A point that raises is reported in
    ``SweepRun.failed`` (key → error) and left incomplete, so the next run retries it.
    """
    out = Path(out)
    t0 = time.perf_counter()
    prepare_out(sweep, out)
    points = sweep.points()
    todo = [v for v in points if not complete(sweep, out, v)]
    n_workers = sweep.workers if workers is None else int(workers)
    address = sweep.scheduler if scheduler is None else scheduler
    n_solves = len(points) * len(sweep.horizons)
    bar = Progress(len(points), len(points) - len(todo), stream=stream, enabled=progress,
                   solves=(count_records(out), n_solves))
    tasks = [PointTask(sweep=sweep, values=v, out=str(out)) for v in todo]
    failed: dict[str, str] = {}

    def done(task: PointTask, result: list[dict[str, Any]] | None, err: BaseException | None) -> None:
        if err is not None:
            failed[task.key] = f"{type(err).__name__}: {err}"
        else:
            for rec in result or []:  # the worker may not share our file system (Dask)
                path = record_path(out, rec["key"], int(rec["T"]))
                if read_record(path) is None:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    write_json(path, rec)
        bar.set_solves(count_records(out))  # before the point: the last line counts every solve
        bar.update()

    if tasks:
        if address:
            _run_dask(tasks, address, done)
        elif n_workers <= 1 or len(tasks) == 1:
            for task in tasks:
                try:
                    res = run_point(task)
                except Exception as exc:  # noqa: BLE001 - reported per point, retried next run
                    done(task, None, exc)
                else:
                    done(task, res, None)
        else:
            _run_local(tasks, min(n_workers, len(tasks)), done,
                       poll=lambda: bar.set_solves(count_records(out)))
    values_of = {t.key: t.values for t in tasks}
    write_records_csv(load_sweep(out), {k: (values_of[k], msg) for k, msg in failed.items()})
    return SweepRun(out=out, total=len(points), skipped=len(points) - len(todo),
                    ran=len(tasks), failed=failed, wall_time=time.perf_counter() - t0)


@contextlib.contextmanager
def _env(extra: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


Done = Callable[[PointTask, "list[dict[str, Any]] | None", "BaseException | None"], None]


def _terminated(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into ``SystemExit`` so that the workers are stopped, not orphaned."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_with_parent(parent: int) -> None:
    """Worker initializer: leave as soon as the driver is gone (``kill -9`` on it, say).

    Otherwise a killed sweep's workers would go on solving and writing records while
    the user re-runs the sweep.
    """

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, name="optctl-parent-watch", daemon=True).start()


def count_records(out: Path) -> int:
    """Finished solves (one record per point and horizon) in a sweep folder."""
    return sum(1 for _ in (Path(out) / "points").glob("*/T*.json"))


def _run_local(tasks: list[PointTask], workers: int, done: Done,
               poll: Callable[[], None] | None = None) -> None:
    # "spawn": jax and CasADi are not fork-safe once initialised in the parent.
    ctx = mp.get_context("spawn")
    with _env(_SINGLE_THREAD_ENV):  # children are spawned during submit and inherit it
        pool = cf.ProcessPoolExecutor(max_workers=workers, mp_context=ctx,
                                      initializer=exit_with_parent, initargs=(os.getpid(),))
        futures = {pool.submit(run_point, t): t for t in tasks}
    try:
        with _sigterm_raises():
            pending = set(futures)
            while pending:
                finished, pending = cf.wait(pending, timeout=POLL_SECONDS,
                                            return_when=cf.FIRST_COMPLETED)
                for fut in finished:
                    exc = fut.exception()
                    done(futures[fut], None if exc is not None else fut.result(), exc)
                if poll is not None:
                    poll()  # workers write records as they finish each horizon
    except BaseException:
        procs = list((getattr(pool, "_processes", None) or {}).values())  # None after shutdown
        pool.shutdown(wait=False, cancel_futures=True)
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.terminate()
        raise
    pool.shutdown(wait=True)


def _run_dask(tasks: list[PointTask], address: str, done: Done) -> None:
    try:
        from distributed import Client, as_completed
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise SweepError("sweep.scheduler is set but dask.distributed is not installed; "
                         "pip install 'optctl[dask]'") from err
    try:
        client = Client(address, timeout=DASK_CONNECT_TIMEOUT)
    except OSError as err:
        raise SweepError(f"cannot reach the Dask scheduler at {address!r} ({err}); "
                         "check sweep.scheduler / --scheduler") from err
    try:
        futures = client.map(run_point, tasks, pure=False)
        by_key = {f.key: t for f, t in zip(futures, tasks, strict=True)}
        for fut in as_completed(futures):
            task = by_key[fut.key]
            if fut.status == "error":
                done(task, None, fut.exception())
            else:
                done(task, fut.result(), None)
    finally:
        client.close()


# --- reading a sweep back ---------------------------------------------------------------


@dataclass(frozen=True)
class SweepData:
    """All saved records of a sweep folder: ``records[key][T]``, and the spec."""

    sweep: SweepSpec
    out: Path
    records: dict[str, dict[int, dict[str, Any]]]

    def values(self, key: str) -> dict[str, float]:
        return next(iter(self.records[key].values()))["values"]


def load_sweep(out: Path) -> SweepData:
    """Read a sweep folder written by :func:`run_sweep` (complete or not)."""
    out = Path(out)
    if not (out / "sweep.yaml").exists():
        raise ResultsError(f"{out} has no sweep.yaml; is it a folder written by `optctl sweep`?")
    sweep = load_sweep_config(out / "sweep.yaml")
    digest = sweep.digest()
    records: dict[str, dict[int, dict[str, Any]]] = {}
    for values in sweep.points():
        key = point_key(values)
        recs = {}
        for T in sweep.horizons:
            rec = read_record(record_path(out, key, T))
            if rec is not None and rec.get("sweep_digest") == digest:
                recs[T] = rec
        if recs:
            records[key] = recs
    return SweepData(sweep=sweep, out=out, records=records)


def summary_table(data: SweepData) -> str:
    """A plain-text table of every record (point, T, L_T, baselines, solver status)."""
    names = list(data.sweep.baselines)
    head = ["point", "T", "L_T optimal", *[f"L_T {n}" for n in names], "status", "wall s"]
    rows = [head]
    for key, recs in data.records.items():
        for T, r in sorted(recs.items()):
            # float(): a non-finite loss is saved as the string "nan" (strict JSON)
            bl = [f"{float(r['baselines'][n]['final_loss']):.4e}" if n in r["baselines"] else "-" for n in names]
            rows.append([key, str(T), f"{float(r['final_loss']):.4e}", *bl, r["status"],
                         f"{float(r['wall_time']):.1f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows)


RECORDS_CSV = "records.csv"


def records_rows(data: SweepData) -> list[dict[str, Any]]:
    """One row per saved record: the point's values, ``T``, the losses and the solver status.

    Columns: ``point`` (its key), one column per axis of the sweep, ``T``,
    ``final_loss`` (the optimum's replayed ``L_T``), ``loss_<name>`` for each baseline of
    the sweep (empty where that horizon tuned none), ``best_baseline``, ``gain`` (the best
    baseline's loss over the optimum's, minus 1), ``success``, ``status``, ``iterations``
    and ``wall_time``; rows sorted by point, then ``T``.
    """
    names = list(data.sweep.baselines)
    axes = list(data.sweep.axes)
    rows: list[dict[str, Any]] = []
    for key in sorted(data.records):
        for T, rec in sorted(data.records[key].items()):
            row: dict[str, Any] = {"point": key, **{a: rec["values"].get(a) for a in axes}, "T": T,
                                   "final_loss": rec["final_loss"]}
            losses = {n: rec["baselines"][n]["final_loss"] for n in names if n in rec.get("baselines", {})}
            for n in names:
                row[f"loss_{n}"] = losses.get(n, "")
            finite = {n: float(v) for n, v in losses.items() if math.isfinite(float(v))}
            best = min(finite, key=finite.__getitem__) if finite else ""
            row["best_baseline"] = best
            opt = float(rec["final_loss"])
            row["gain"] = (finite[best] / opt - 1.0) if best and opt > 0 and math.isfinite(opt) else ""
            row.update({k: rec.get(k, "") for k in ("success", "status", "iterations", "wall_time")})
            rows.append(row)
    return rows


def write_records_csv(data: SweepData, failed: Mapping[str, tuple[Mapping[str, float], str]] | None = None) -> Path:
    """``<out>/records.csv``: :func:`records_rows` as one tidy CSV (floats written to round-trip),
    plus a row per point that failed in this run (``failed``: key → (values, error); ``T``
    empty, ``success`` False, the error as ``status``), so a failure is not silent there."""
    rows = records_rows(data)
    for key, (values, message) in sorted((failed or {}).items()):
        rows.append({"point": key, **{a: values.get(a) for a in data.sweep.axes}, "T": "", "final_loss": "",
                     "success": False, "status": message})
    columns = ["point", *data.sweep.axes, "T", "final_loss", *[f"loss_{n}" for n in data.sweep.baselines],
               "best_baseline", "gain", "success", "status", "iterations", "wall_time"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(float(v)) if isinstance(v, float) else v for k, v in row.items()})
    path = Path(data.out) / RECORDS_CSV
    write_text_atomic(path, buf.getvalue())
    return path
