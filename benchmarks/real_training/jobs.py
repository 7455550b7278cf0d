"""Training jobs run in worker processes, cached on disk so an interrupted benchmark resumes.

A job is a plain dict (``kind``: ``train``, ``schedule_free`` or ``closed_loop``, the task
name, the seed, the schedule and what to record); :func:`run_job` runs one and returns a
:class:`~real_training.training.RunLog` as a dict. :class:`Runner` runs a list of jobs on
local processes (one torch thread each) and keeps every finished one as a JSON file named
by a hash of the job and of the code it runs (:data:`TRAINING_CODE`, :data:`OPTCTL_CODE`),
so running the benchmark again reuses it until that code changes.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import importlib.util
import json
import multiprocessing as mp
import os
import pickle
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _sources(paths: list[Path]) -> str:
    h = hashlib.sha256()
    for path in sorted(paths):
        h.update(path.read_bytes())
    return h.hexdigest()


_HERE = Path(__file__).resolve().parent
# What a run's result depends on besides the job itself: the training code for every run,
# and the optctl package for the closed loop (it refits and re-solves during training). A
# change there gives new cache names, so a stale run is never reused.
TRAINING_CODE = _sources([_HERE / "training.py", _HERE / "tasks.py", _HERE / "jobs.py"])
OPTCTL_CODE = _sources(list(Path(importlib.util.find_spec("optctl").origin).parent.rglob("*.py")))  # type: ignore[arg-type,union-attr]


def _digest(job: dict[str, Any]) -> str:
    h = hashlib.sha256(TRAINING_CODE.encode())
    if job.get("kind") == "closed_loop":
        h.update(OPTCTL_CODE.encode())
    for key in sorted(job):
        value = job[key]
        h.update(key.encode())
        if isinstance(value, np.ndarray):
            h.update(np.ascontiguousarray(value, dtype="<f8").tobytes())
        elif key == "loop":  # the closed loop's start: its table and its fit
            h.update(value["table"].content_hash.encode())
            h.update(json.dumps(value["result"].params, sort_keys=True).encode())
            h.update(pickle.dumps([(c.name, c.steps.tobytes(), c.loss.tobytes()) for c in value["pilots"]]))
            h.update(repr(sorted((k, v) for k, v in value.items() if k not in ("table", "result", "pilots"))).encode())
        else:
            h.update(repr(value).encode())
    return h.hexdigest()[:24]


def _init_worker(parent: int | None = None) -> None:
    import torch

    torch.set_num_threads(1)
    if parent is not None:  # leave when the benchmark is killed, not train on unseen
        from optctl.studies.sweep import exit_with_parent

        exit_with_parent(parent)


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run one job in this process; the RunLog as a dict (plus the closed loop's history)."""
    from .tasks import TASKS
    from .training import train, train_schedule_free

    task = TASKS[job["task"]]
    if job.get("T") is not None and job["T"] != task.T:
        from dataclasses import replace

        task = replace(task, T=job["T"])
    if job["kind"] == "schedule_free":
        log = train_schedule_free(task, job["seed"], job["peak"], task.T, job["record"], job["warmup"])
        return log.to_dict()
    if job["kind"] == "closed_loop":
        from optctl.calibrate.closedloop import ClosedLoop

        spec = job["loop"]
        loop = ClosedLoop(spec["pilots"], spec["result"], spec["table"], eta_max=spec["eta_max"],
                          batch_size=task.batch_size, name="run", start=spec.get("start", 0))
        checkpoints = [round(f * spec["table"].T) for f in spec["checkpoints"]]
        log = train(task, job["seed"], spec["table"], job["record"], controller=loop.update,
                    checkpoints=lambda step: loop.due(step, checkpoints))
        return {**log.to_dict(), "history": loop.history}
    log = train(task, job["seed"], job["lr"], job["record"], grad_norm_p=job.get("grad_norm_p"))
    return log.to_dict()


class Runner:
    """Runs jobs on ``workers`` local processes, reusing every job finished before."""

    def __init__(self, cache: Path, workers: int = 2, progress: bool = True) -> None:
        self.cache = Path(cache)
        self.cache.mkdir(parents=True, exist_ok=True)
        self.workers, self.progress = workers, progress
        self.pool: cf.ProcessPoolExecutor | None = None
        # every run returned (fresh or from the cache), the fresh ones, and the seconds all
        # of them took when they ran: the benchmark's cost without a cache
        self.runs, self.fresh, self.seconds = 0, 0, 0.0

    def __enter__(self) -> Runner:
        if self.workers > 1:
            self.pool = cf.ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                               initializer=_init_worker, initargs=(os.getpid(),))
        else:
            _init_worker()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def run(self, jobs: list[dict[str, Any]], label: str = "") -> list[dict[str, Any]]:
        paths = [self.cache / f"{job['task']}-{job['kind']}-{_digest(job)}.json" for job in jobs]
        out: list[dict[str, Any] | None] = [None] * len(jobs)
        todo = []
        for i, p in enumerate(paths):
            if p.exists():
                out[i] = json.loads(p.read_text())
            else:
                todo.append(i)
        t0 = time.perf_counter()
        if todo:
            if self.pool is None:
                results = (run_job(jobs[i]) for i in todo)
                for i, res in zip(todo, results, strict=True):
                    out[i] = self._keep(paths[i], res)
            else:
                futures = {self.pool.submit(run_job, jobs[i]): i for i in todo}
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    out[i] = self._keep(paths[i], fut.result())
        self.runs += len(jobs)
        self.fresh += len(todo)
        self.seconds += sum(float(o["wall"]) for o in out if o is not None)
        if self.progress and label:
            print(f"  {label}: {len(jobs)} runs ({len(todo)} new) [{time.perf_counter() - t0:.0f} s]",
                  file=sys.stderr, flush=True)
        return [o for o in out if o is not None]

    def _keep(self, path: Path, result: dict[str, Any]) -> dict[str, Any]:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(result, default=_jsonable))
        tmp.replace(path)
        return json.loads(path.read_text())


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")
