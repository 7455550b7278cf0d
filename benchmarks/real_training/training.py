"""One training run of a task under a schedule, with the held-out loss at recorded steps.

The schedule drives the optimizer through ``optctl.torch.TableScheduler`` (absolute
rates); a closed-loop controller may replace the remaining rows at checkpoints
(``TableScheduler.splice``). Schedule-Free runs use the ``schedulefree`` optimizers
instead. A run that diverges (a non-finite or exploding loss) stops and reports an
infinite final loss.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from optctl.table import ScheduleTable
from optctl.torch import TableScheduler

from .tasks import Task, grad_norm, optimizer

# A held-out loss above this multiple of the initial one counts as divergence.
DIVERGED = 1e3

# At a checkpoint: (step, measured steps, measured held-out losses) -> the new table, or None.
Controller = Callable[[int, np.ndarray, np.ndarray], ScheduleTable | None]


@dataclass
class RunLog:
    """What a run measured: the held-out loss at ``steps`` (``final`` at ``T``), the rates
    actually used per update, the gradient norms if asked, and the updates it cost."""

    steps: np.ndarray
    loss: np.ndarray
    final: float
    lr: np.ndarray
    grad_norms: np.ndarray | None
    diverged: bool
    updates: int
    wall: float
    tables: int = 1

    def to_dict(self) -> dict[str, object]:
        return {"steps": self.steps.tolist(), "loss": self.loss.tolist(), "final": self.final,
                "lr": self.lr.tolist(), "diverged": self.diverged, "updates": self.updates,
                "wall": self.wall, "tables": self.tables,
                "grad_norms": None if self.grad_norms is None else self.grad_norms.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> RunLog:  # type: ignore[type-arg]
        g = d.get("grad_norms")
        return cls(steps=np.asarray(d["steps"]), loss=np.asarray(d["loss"], dtype=float),
                   final=float(d["final"]), lr=np.asarray(d["lr"], dtype=float),
                   grad_norms=None if g is None else np.asarray(g, dtype=float),
                   diverged=bool(d["diverged"]), updates=int(d["updates"]), wall=float(d["wall"]),
                   tables=int(d.get("tables", 1)))


def train(task: Task, seed: int, lr: np.ndarray | ScheduleTable, record: Sequence[int], *,
          grad_norm_p: float | None = None, controller: Controller | None = None,
          checkpoints: Sequence[int] | Callable[[int], bool] = ()) -> RunLog:
    """Train ``task`` on ``seed`` for ``len(lr)`` updates with the per-update rates ``lr``.

    The held-out loss is measured before the first update and after the updates listed in
    ``record``. At each step of ``checkpoints`` the ``controller`` sees the measurements so
    far and may return a new table (same horizon, same past rows) to continue on.
    ``checkpoints`` may instead be a function of the step, asked after every measured
    step before ``T`` (:meth:`optctl.calibrate.closedloop.ClosedLoop.due`).
    """
    table = lr if isinstance(lr, ScheduleTable) else ScheduleTable(lr=np.asarray(lr, dtype=float))
    T = table.T
    setup = task.setup(seed)
    opt = optimizer(task, setup.model.parameters(), float(table.lr[0]))
    sched = TableScheduler(opt, table, mode="absolute", past_end="hold")
    marks = sorted({int(s) for s in record if 0 < s <= T} | {T})
    checks = set() if callable(checkpoints) else {int(c) for c in checkpoints if 0 < c < T}
    steps, losses = [0], [setup.heldout(setup.model)]
    norms = np.zeros(T) if grad_norm_p is not None else None
    used = np.zeros(T)
    limit = DIVERGED * max(losses[0], 1e-12)
    t0, tables, diverged = time.perf_counter(), 1, False
    for t in range(T):
        used[t] = opt.param_groups[0]["lr"]
        loss = setup.loss(setup.model, setup.batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if norms is not None:
            norms[t] = grad_norm(setup.model, grad_norm_p)  # type: ignore[arg-type]
        opt.step()
        if t + 1 in marks:
            steps.append(t + 1)
            losses.append(setup.heldout(setup.model))
            if not math.isfinite(losses[-1]) or losses[-1] > limit:
                diverged = True
                break
        ask = (t + 1 in checks) if not callable(checkpoints) else (t + 1 < T and steps[-1] == t + 1
                                                                   and checkpoints(t + 1))
        if controller is not None and ask:
            new = controller(t + 1, np.array(steps), np.array(losses))
            if new is not None:
                sched.splice(new)
                tables += 1
        if t + 1 < T:
            sched.step()
    final = float("inf") if diverged else losses[-1]
    return RunLog(steps=np.array(steps), loss=np.array(losses), final=final, lr=used,
                  grad_norms=norms, diverged=diverged, updates=t + 1, wall=time.perf_counter() - t0,
                  tables=tables)


def train_schedule_free(task: Task, seed: int, lr: float, T: int, record: Sequence[int],
                        warmup: int) -> RunLog:
    """Schedule-Free SGD or AdamW (Defazio et al., 2024; the ``schedulefree`` package) at
    the peak ``lr`` with a linear warmup of ``warmup`` updates; evaluated in its averaged
    (``eval``) weights."""
    import schedulefree  # an optional benchmark dependency

    setup = task.setup(seed)
    if task.optimizer == "adamw":
        opt: torch.optim.Optimizer = schedulefree.AdamWScheduleFree(
            setup.model.parameters(), lr=lr, betas=(0.9, 0.95), weight_decay=0.01, warmup_steps=warmup)
    else:
        opt = schedulefree.SGDScheduleFree(setup.model.parameters(), lr=lr, warmup_steps=warmup)
    marks = sorted({int(s) for s in record if 0 < s <= T} | {T})

    def measure() -> float:
        opt.eval()  # type: ignore[attr-defined]
        value = setup.heldout(setup.model)
        opt.train()  # type: ignore[attr-defined]
        return value

    steps, losses = [0], [measure()]
    limit = DIVERGED * max(losses[0], 1e-12)
    t0, diverged = time.perf_counter(), False
    for t in range(T):
        loss = setup.loss(setup.model, setup.batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if t + 1 in marks:
            steps.append(t + 1)
            losses.append(measure())
            if not math.isfinite(losses[-1]) or losses[-1] > limit:
                diverged = True
                break
    lr_used = np.full(T, lr) * np.minimum(1.0, (np.arange(T) + 1) / max(warmup, 1))
    return RunLog(steps=np.array(steps), loss=np.array(losses),
                  final=float("inf") if diverged else losses[-1], lr=lr_used, grad_norms=None,
                  diverged=diverged, updates=t + 1, wall=time.perf_counter() - t0)
