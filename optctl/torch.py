"""PyTorch adapter: drive an optimizer from a schedule table.

The only optctl module that imports torch (an optional extra: ``pip install optctl[torch]``).

- :class:`TableScheduler`, an ``LRScheduler`` that writes ``lr`` (absolute, or relative
  to each group's base lr) and, when the table has it, the momentum: SGD's
  ``momentum = dampening = μ_t`` or Adam's ``betas[0] = μ_t`` (the EMA form of
  MODEL.md §3, Bordelon & Mori, arXiv:2602.04774). It steps by updates or by consumed
  samples, knows the table's horizon, and when ``group["lr"]`` is a tensor updates it in
  place from a device-side copy of the table; its ``step()`` never synchronises with the
  host (whether ``optimizer.step()`` does is up to the optimizer: docs/export.md).
  It composes with torch's ``SequentialLR`` and ``ChainedScheduler`` and resumes from
  ``load_state_dict`` or torch's ``last_epoch``.
- :func:`lambda_lr`, the same schedule as a ``torch.optim.lr_scheduler.LambdaLR``.
- :func:`get_table_schedule`, a :class:`TableScheduler` with Hugging Face's factory signature.
- :class:`TableBatchSampler`, batches of the table's batch size ``m_t`` for a ``DataLoader``.
- :func:`trunk_scheduler` and :func:`branch_scheduler`, the checkpoint-and-branch workflow
  of an anytime plan (:class:`~optctl.table.BranchingTable`, docs/anytime.md): train the
  trunk, save a checkpoint after ``leave[i]`` updates, and later train branch ``i`` from it.
- The plain callable is :meth:`optctl.table.ScheduleTable.schedule`.
- :class:`GenMomSGD` and :class:`ScheduleFreeSGD`, small optimizers that run a
  :class:`~optctl.table.FamilyTable` (DANA, log-time momentum, Schedule-Free;
  docs/momentum_families.md) update by update; :func:`family_optimizer` picks one.

Torch's SGD starts its momentum buffer from the raw gradient (``buf_0 = g_0``) whereas
the model's velocity starts at ``v_0 = β_0 g_0``. :class:`TableScheduler` removes the
difference by giving SGD a zero buffer before the first update
(``init_momentum_buffers=True``), so that ``buf_0 = μ_0·0 + (1 − μ_0) g_0 = β_0 g_0``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sized
from typing import Any, Literal

import numpy as np

try:
    import torch
    from torch import Tensor
    from torch.optim import Optimizer
    from torch.optim.lr_scheduler import LambdaLR, LRScheduler
    from torch.utils.data import Sampler
except ImportError as err:  # torch is an optional extra
    raise ImportError(f"optctl.torch needs PyTorch, which cannot be imported ({err}); install it "
                      "with `pip install 'optctl[torch]'` (or see pytorch.org for a CUDA build)") from err

from optctl.errors import ExportError
from optctl.table import PAST_END, BranchingTable, FamilyTable, PastEnd, ScheduleTable
from optctl.validate import check_choice

# Written for μ_t = 0 into SGD groups (see TableScheduler._apply): torch skips a zero momentum.
SGD_ZERO_MOMENTUM = 1e-300

Mode = Literal["absolute", "relative"]
Index = Literal["steps", "samples"]
Compose = Literal["replace", "multiply"]


def _check_relative_bases(optimizer: Optimizer) -> None:
    """Relative mode scales the table to each group's initial lr, which must be > 0."""
    for i, group in enumerate(optimizer.param_groups):
        base = group.get("initial_lr", group["lr"])
        value = float(base.detach().cpu()) if isinstance(base, Tensor) else base
        try:
            positive = not isinstance(value, bool) and float(value) > 0
        except (TypeError, ValueError):
            positive = False
        if not positive:
            raise ExportError(
                f"param_groups[{i}] lr = {value!r}: relative mode writes base_lr * lr_t / max(lr), "
                "so the group's initial lr (its peak) must be > 0, else it trains at lr 0; construct "
                "the optimizer with the peak you want (e.g. SGD(params, lr=0.1)), or use "
                "mode='absolute' for the table's own rates")


def _check_float_lrs(optimizer: Optimizer) -> None:
    for i, group in enumerate(optimizer.param_groups):
        if isinstance(group["lr"], Tensor):
            raise ExportError(f"param_groups[{i}] lr is a tensor: compose='multiply' (inside a "
                              "ChainedScheduler) tracks the other schedulers' factor on the host and "
                              "needs float learning rates; construct the optimizer with lr=<float>, "
                              "or use compose='replace' (alone or inside SequentialLR)")


def _is_int(value: object) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _check_position(name: str, value: object, T: int, past_end: PastEnd, fix: str,
                    top: int | None = None) -> int:
    """A scheduler position: an int from -1 (not started) to ``top`` (default ``T``: a run
    of ``T`` updates done; ``last_epoch`` at construction names the last update done, so its
    ``top`` is ``T − 1``)."""
    top = T if top is None else top
    if not _is_int(value):
        raise ExportError(f"{name} = {value!r} has type {type(value).__name__}; expected an int "
                          f"from -1 to {top} (the table has T = {T} updates); {fix}")
    pos = int(value)  # type: ignore[call-overload]
    if pos < -1:
        raise ExportError(f"{name} = {pos}: positions count updates from 0 (-1: not started); a "
                          f"negative position would read the table from its end; {fix}")
    if pos > top and past_end == "error":
        raise ExportError(f"{name} = {pos} is past the end of the table (T = {T} updates, {name} "
                          f"from -1 to {top}); {fix}, or construct the scheduler with past_end='hold' "
                          "to keep the last values past the end")
    return pos


def _check_last_epoch(optimizer: Optimizer, table: ScheduleTable, past_end: PastEnd,
                      last_epoch: object) -> int:
    """Torch's resume argument: ``last_epoch = k`` continues after update ``k`` (at ``k + 1``)."""
    k = _check_position("last_epoch", last_epoch, table.T, past_end,
                        "pass the index of the last update done (-1 for a new run)", top=table.T - 1)
    if k >= 0:
        for i, group in enumerate(optimizer.param_groups):
            if "initial_lr" not in group:
                raise ExportError(f"last_epoch = {k} resumes a run, but param_groups[{i}] has no "
                                  "'initial_lr'; load the optimizer's state_dict before building the "
                                  "scheduler, or pass last_epoch=-1 for a new run")
    return k + 1


def _peak(table: ScheduleTable) -> float:
    peak = float(table.lr.max())
    if peak <= 0:
        raise ExportError("the table's learning rates are all 0, so relative mode has no peak to "
                          "scale by; use mode='absolute'")
    return peak


class TableScheduler(LRScheduler):
    """Set each update's learning rate (and momentum) from a :class:`ScheduleTable`.

    After construction the optimizer holds the values of update 0; each :meth:`step`
    (called after ``optimizer.step()``, as for any torch scheduler) moves to the next
    update. ``mode="absolute"`` writes ``lr_t`` itself; ``mode="relative"`` writes
    ``base_lr · lr_t / max(lr)`` (the table's shape with each group's initial lr as its
    peak). ``index="steps"`` advances one table row per call; ``index="samples"`` adds
    ``samples`` (default: the table's batch size of the update just taken) to a count of
    consumed samples and moves to the row that count falls in
    (:meth:`ScheduleTable.step_at_samples`), so a different batch ramp does not shift the
    schedule.

    Horizon: the table covers updates ``0..T−1``. Stepping onto ``T`` (the end of a run
    of ``T`` updates) holds the last values; stepping further raises
    :class:`ExportError` with ``past_end="error"`` (default) and keeps holding with
    ``past_end="hold"``. ``total_steps``, when given, must equal ``T``: a table for
    another horizon must be adapted explicitly with :meth:`ScheduleTable.for_horizon`.

    Momentum (``momentum=None``: written exactly when the table has the column): SGD
    groups get ``momentum = dampening = μ_t``, Adam-style groups ``betas = (μ_t, β2)``;
    with ``init_momentum_buffers`` SGD's buffers start at zero, matching MODEL.md §3.

    Tensor learning rates: when ``group["lr"]`` (or ``betas[0]``) is a tensor, the table
    is copied once to its device and every step updates it in place through a
    device-side step counter (``add_``, ``index_select``, ``copy_``): the scheduler calls
    no ``.item()`` and does not synchronise with the host, and the tensor keeps its
    identity, so a ``torch.compile``-d optimizer step is not recompiled. The optimizer
    may still synchronise: eager ``torch.optim.SGD`` turns a tensor lr into a host scalar
    (``.item()``) every step; only its compiled step reads the tensor on the device.
    SGD's ``momentum`` and ``dampening`` are written as floats: torch's SGD does not
    compile with tensor values there, so a compiled SGD step recompiles when they change
    (Adam-style tensor ``betas`` are updated in place like the lr). Relative mode needs
    every group's initial lr to be > 0.

    Composition with torch's schedulers: inside ``SequentialLR`` (e.g. a ``LinearLR``
    warmup, then the table) the table starts at its row 0 at the milestone, with its
    momentum, and ``compose="replace"`` (default) writes the table's values. Inside
    ``ChainedScheduler`` pass ``compose="multiply"``: the lr is then the table's value
    times the factor the other schedulers applied since the table's construction (read
    back each step, saved in :meth:`state_dict`), e.g. ``LinearLR`` warmup × table; float
    lrs only. With ``compose="replace"`` an lr that something else changed since the last
    step is refused rather than silently overwritten, and so is a momentum changed by
    another scheduler (``cycle_momentum``).

    Resume: :meth:`load_state_dict` (checkpoints load with ``torch.load(...,
    weights_only=True)``), or torch's ``last_epoch=k`` (the index of the last update done,
    as Hugging Face passes it), which continues at update ``k + 1`` and needs the
    optimizer's state (its ``initial_lr``) restored first.
    """

    def __init__(self, optimizer: Optimizer, table: ScheduleTable, *, mode: Mode = "absolute",
                 index: Index = "steps", past_end: PastEnd = "error",
                 momentum: bool | None = None, init_momentum_buffers: bool = True,
                 total_steps: int | None = None, compose: Compose = "replace",
                 last_epoch: int = -1) -> None:
        if isinstance(table, FamilyTable):  # EMA-momentum and plain-SGD families; the others raise
            table = table.to_schedule_table()
        if not isinstance(table, ScheduleTable):
            raise ExportError(f"table = {type(table).__name__}: pass a ScheduleTable "
                              "(optctl.load_table(path), or optctl.schedule(config, T))")
        if not isinstance(optimizer, Optimizer):
            raise ExportError(f"optimizer = {type(optimizer).__name__}: pass the torch optimizer "
                              "(e.g. torch.optim.SGD(model.parameters(), lr=...)), not the model")
        check_choice("mode", mode, ("absolute", "relative"), ExportError)
        check_choice("index", index, ("steps", "samples"), ExportError)
        check_choice("past_end", past_end, PAST_END, ExportError)
        if total_steps is not None and total_steps != table.T:
            raise ExportError(
                f"total_steps = {total_steps} but the table covers T = {table.T} updates; re-solve "
                f"with `optctl solve CONFIG --T {total_steps}` or adapt the table explicitly with "
                f"table.for_horizon({total_steps}, mode='rescale') or resolve_table(table, {total_steps})")
        if index == "samples" and table.batch_size is None:
            raise ExportError("index='samples' needs the table's batch_size column; export the "
                              "table from a run, or use index='steps'")
        write_momentum = table.momentum is not None if momentum is None else bool(momentum)
        if write_momentum and table.momentum is None:
            raise ExportError("momentum=True but the table has no momentum column")
        start_rule = table.controls.get("momentum_init", "model") if table.controls else "model"
        if write_momentum and start_rule != "model":
            raise ExportError(f"the table was solved with momentum_init={start_rule!r}, a velocity "
                              "start torch's SGD/Adam buffers cannot express (they start at g_0, or "
                              "at beta_0 g_0 with init_momentum_buffers); re-solve with "
                              "momentum_init: model, or pass momentum=False to write the learning rate only")
        check_choice("compose", compose, ("replace", "multiply"), ExportError)
        if compose == "multiply":
            _check_float_lrs(optimizer)
        start = _check_last_epoch(optimizer, table, past_end, last_epoch)
        self.table = table
        self.mode: Mode = mode
        self.index: Index = index
        self.past_end: PastEnd = past_end
        self.compose: Compose = compose
        self.write_momentum = write_momentum
        # A resumed run (last_epoch = k) continues after update k: its consumed samples are S_k.
        self.consumed_samples = (float(table.consumed_samples[min(start - 1, table.T)])
                                 if start > 0 and table.batch_size is not None else 0.0)
        if mode == "relative":
            _check_relative_bases(optimizer)
        self._factor = table.lr / _peak(table) if mode == "relative" else table.lr
        self._device: list[dict[str, Tensor]] | None = None
        # compose="multiply": the factor other schedulers applied to each group's lr, and
        # the value this scheduler wrote last (what the factor is read against).
        self._outer = [float(g["lr"]) / float(g.get("initial_lr", g["lr"])) if compose == "multiply"
                       and float(g.get("initial_lr", g["lr"])) != 0 else 1.0
                       for g in optimizer.param_groups]
        self._written: list[float | None] = [None] * len(optimizer.param_groups)
        self._momentum_written: list[float | None] = [None] * len(optimizer.param_groups)
        if write_momentum:
            self._check_momentum_groups(optimizer, init_momentum_buffers)
        super().__init__(optimizer, last_epoch=last_epoch)

    # --- the schedule --------------------------------------------------------------------

    @staticmethod
    def _check_momentum_groups(optimizer: Optimizer, init_buffers: bool) -> None:
        for i, group in enumerate(optimizer.param_groups):
            if "betas" in group:
                continue
            if "momentum" not in group:
                raise ExportError(f"param_groups[{i}] has neither 'momentum' (SGD) nor 'betas' "
                                  "(Adam); pass momentum=False to write the learning rate only")
            if group.get("nesterov", False):
                raise ExportError(f"param_groups[{i}] uses Nesterov momentum, which needs zero "
                                  "dampening; the table's momentum is the EMA form (MODEL.md §3)")
            if init_buffers:
                for p in group["params"]:
                    optimizer.state[p].setdefault("momentum_buffer",
                                                  torch.zeros_like(p, memory_format=torch.preserve_format))

    def _row(self) -> int:
        return min(self.last_epoch, self.table.T - 1)

    def _lr_value(self, i: int, row: int) -> float:
        if self.mode == "absolute":
            return float(self._factor[row])
        base = self.base_lrs[i]
        if isinstance(base, Tensor):
            raise ExportError("internal: tensor base lr on the host path")
        return float(base) * float(self._factor[row])

    def get_lr(self) -> list[float | Tensor]:  # type: ignore[override]
        """The learning rates of the current update (host floats; tensors are written in place)."""
        if self.last_epoch < 0:
            return [g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"]
                    for g in self.optimizer.param_groups]
        row = self._row()
        return [group["lr"].clone() if isinstance(group["lr"], Tensor)
                else self._outer[i] * self._lr_value(i, row)
                for i, group in enumerate(self.optimizer.param_groups)]

    def _device_tables(self) -> list[dict[str, Tensor]]:
        """Per group: the table on the lr tensor's device, and a step counter there."""
        out: list[dict[str, Tensor]] = []
        for i, group in enumerate(self.optimizer.param_groups):
            d: dict[str, Tensor] = {}
            lr = group["lr"]
            if isinstance(lr, Tensor):
                col = torch.tensor(self._factor, dtype=lr.dtype, device=lr.device)
                if self.mode == "relative":
                    col = col * torch.as_tensor(self.base_lrs[i], dtype=lr.dtype, device=lr.device)
                d["lr"] = col
                d["lr_counter"] = torch.zeros((), dtype=torch.long, device=lr.device)
            beta1 = group["betas"][0] if "betas" in group else None
            if self.write_momentum and self.table.momentum is not None and isinstance(beta1, Tensor):
                d["momentum"] = torch.tensor(self.table.momentum, dtype=beta1.dtype,
                                             device=beta1.device)
                d["momentum_counter"] = torch.zeros((), dtype=torch.long, device=beta1.device)
            out.append(d)
        return out

    def _write_tensor(self, target: Tensor, column: Tensor, counter: Tensor, row: int,
                      advanced: bool) -> None:
        # The counter lives on the device so that a one-row advance is a device op only.
        if advanced:
            counter.add_(1)
        else:
            counter.fill_(row)
        at = counter.clamp(max=self.table.T - 1).reshape(1)
        target.copy_(torch.index_select(column, 0, at).reshape(target.shape))

    def _observe_lr(self, i: int, group: dict[str, Any]) -> None:
        """What happened to a float lr since this scheduler wrote it.

        ``compose="multiply"`` folds the other schedulers' change into the outer factor
        (``ChainedScheduler``); ``compose="replace"`` refuses it, since writing the table
        would silently undo another scheduler's (or code's) change.
        """
        written, now = self._written[i], float(group["lr"])
        if written is None or now == written:
            return
        if self.compose == "multiply":
            if written != 0:
                self._outer[i] *= now / written
            return
        raise ExportError(
            f"param_groups[{i}]['lr'] = {now!r}, but the table wrote {written!r}: something else changed "
            "the learning rate since the last step (another scheduler, e.g. inside ChainedScheduler, "
            "or code that sets it), and the table would overwrite it. Inside ChainedScheduler "
            "construct TableScheduler(..., compose='multiply'); to change the schedule on purpose use "
            "splice(new_table); after optimizer.load_state_dict also restore the scheduler's state")

    def _check_momentum_owner(self, i: int, group: dict[str, Any]) -> None:
        """Refuse a momentum that something else changed since the table wrote it.

        The table's column is the EMA form (``dampening = momentum``); a scheduler that cycles
        SGD's heavy-ball momentum (``OneCycleLR(cycle_momentum=True)``, ``CyclicLR``) or code
        that sets it would mix two conventions and two schedules silently.
        """
        wrote = self._momentum_written[i]
        if wrote is None:
            return
        if "betas" in group:
            beta1 = group["betas"][0]
            now = None if isinstance(beta1, Tensor) else float(beta1)
            fields = {"betas[0]": now}
        else:
            fields = {"momentum": float(group["momentum"]), "dampening": float(group["dampening"])}
        for name, now in fields.items():
            if now is not None and now != wrote:
                raise ExportError(
                    f"param_groups[{i}][{name!r}] = {now!r}, but the table wrote {wrote!r}: something "
                    "else changed the momentum (another scheduler with cycle_momentum=True, or code "
                    "that sets it). The table's column is EMA momentum (dampening = momentum, "
                    f"{self.table.momentum_convention!r}); let one scheduler own it: "
                    "cycle_momentum=False on the other scheduler, or TableScheduler(momentum=False)")

    def _apply(self, advanced: bool, observe: bool = False) -> None:
        if self.last_epoch < 0:
            # Not started: inside SequentialLR before its milestone the other scheduler owns the lr.
            self._last_lr = [g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"]
                             for g in self.optimizer.param_groups]
            return
        if self._device is None:
            self._device = self._device_tables()
        row = self._row()
        for i, group in enumerate(self.optimizer.param_groups):
            dev = self._device[i]
            if isinstance(group["lr"], Tensor):
                self._write_tensor(group["lr"], dev["lr"], dev["lr_counter"], row, advanced)
            else:
                if observe:
                    self._observe_lr(i, group)
                value = self._lr_value(i, row)
                group["lr"] = value if self._outer[i] == 1.0 else self._outer[i] * value
                self._written[i] = group["lr"]
            if not self.write_momentum or self.table.momentum is None:
                continue
            self._check_momentum_owner(i, group)
            mu = float(self.table.momentum[row])
            if "betas" in group:
                beta1 = group["betas"][0]
                if isinstance(beta1, Tensor):
                    self._write_tensor(beta1, dev["momentum"], dev["momentum_counter"], row, advanced)
                else:
                    group["betas"] = (mu, *group["betas"][1:])
            else:
                # torch's SGD skips its buffer when momentum == 0, so the next update would
                # read a stale buffer; a momentum of 1e-300 makes the buffer the gradient
                # (1e-300 buf + (1 - 1e-300) g = g in floating point), the EMA step of μ = 0
                mu = mu if mu != 0.0 else SGD_ZERO_MOMENTUM
                group["momentum"] = mu
                group["dampening"] = mu
            self._momentum_written[i] = mu
        self._last_lr = [g["lr"].clone() if isinstance(g["lr"], Tensor) else g["lr"]
                         for g in self.optimizer.param_groups]

    def _samples_before(self, position: int) -> float:
        """Samples consumed before update ``position`` by the table's own batch sizes (0 without them)."""
        if self.table.batch_size is None or position <= 0:
            return 0.0
        return float(self.table.consumed_samples[min(position, self.table.T)])

    def _jump(self, epoch: object) -> None:
        """Set the position to update ``epoch`` (what torch's SequentialLR does at a milestone)."""
        pos = _check_position("epoch", epoch, self.table.T, self.past_end,
                              "pass an update index within the table")
        self.last_epoch = pos
        self.consumed_samples = self._samples_before(pos)
        self._apply(advanced=False)

    def _update_lr(self, epoch: int | None = None) -> None:
        # torch's SequentialLR calls _update_lr(0) when its milestone hands over to this scheduler.
        if epoch is None:
            self.step()
        else:
            self._jump(epoch)

    def step(self, epoch: int | None = None, samples: float | None = None) -> None:  # type: ignore[override]
        """Move to the next update (``index="steps"``) or by ``samples`` consumed samples.

        ``step(epoch)`` (torch's deprecated form, which older torch's ``SequentialLR`` calls at
        a milestone) sets the position to update ``epoch``.
        """
        if epoch is not None:
            self._step_count = getattr(self, "_step_count", 0) + 1
            self._jump(epoch)
            return
        if self.last_epoch < 0:
            self._step_count = getattr(self, "_step_count", 0) + 1
            self.last_epoch = 0
            self._apply(advanced=False)
            return
        # Everything is checked before anything changes: a refused step leaves the state as it was.
        done = self.last_epoch
        consumed = self.consumed_samples
        if samples is None and self.table.batch_size is not None:
            samples = float(self.table.batch_size[min(done, self.table.T - 1)])
        if samples is not None:
            if isinstance(samples, bool) or not isinstance(samples, numbers.Real) \
                    or not math.isfinite(samples) or samples < 0:
                raise ExportError(f"samples = {samples!r}: pass the number of samples in the batch "
                                  "just used")
            consumed += float(samples)
        if self.index == "steps":
            row = done + 1
            past = row > self.table.T
        else:
            row = self.table.step_at_samples(consumed)
            past = consumed > self.table.consumed_samples[-1]
        if past and self.past_end == "error":
            raise ExportError(
                f"the scheduler was stepped past the end of its table (T = {self.table.T} updates"
                + (f", {self.table.consumed_samples[-1]:.0f} samples" if self.index == "samples" else "")
                + "); train for the table's horizon, pass past_end='hold' to keep the last values, "
                "or use a table for the longer horizon (table.for_horizon)")
        self.consumed_samples = consumed
        self._step_count += 1
        self.last_epoch = row
        self._apply(advanced=self.index == "steps", observe=True)

    # --- position, batch size and checkpoints ------------------------------------------

    @property
    def position(self) -> int:
        """The update the optimizer is set for (``T`` once a run of ``T`` updates is done;
        ``-1`` inside a ``SequentialLR`` before its milestone)."""
        return int(self.last_epoch)

    def batch_size_at(self, step: int | None = None) -> int:
        """The table's batch size at ``step`` (default: the current update)."""
        return self.table.batch_size_at(max(self.position, 0) if step is None else step,
                                        past_end="hold" if step is None else self.past_end)

    def state_dict(self) -> dict[str, Any]:
        """Position and identity: the table's content hash and horizon, mode, counters.

        Plain Python values and tensors only, so ``torch.load(..., weights_only=True)`` reads it.
        """
        return {"table_hash": self.table.content_hash, "T": self.table.T, "mode": self.mode,
                "index": self.index, "past_end": self.past_end, "compose": self.compose,
                "last_epoch": self.last_epoch, "_step_count": self._step_count,
                "consumed_samples": self.consumed_samples, "outer_factors": list(self._outer),
                "base_lrs": [b.detach().clone() if isinstance(b, Tensor) else float(b) for b in self.base_lrs]}

    def splice(self, table: ScheduleTable) -> None:
        """Continue on ``table`` from the current update on: a closed-loop re-solve.

        ``table`` must cover the same horizon, carry the same columns, and agree with the
        current table on every update already taken (rows ``0..position−1``); the optimizer
        state, the position and the consumed samples are kept, and the values of the
        current update are rewritten from the new table. A checkpoint saved afterwards
        names the new table (:meth:`state_dict`).
        """
        if not isinstance(table, ScheduleTable):
            raise ExportError(f"table = {type(table).__name__}: pass a ScheduleTable")
        old, pos = self.table, max(self.position, 0)
        if table.T != old.T or table.columns != old.columns:
            raise ExportError(f"cannot splice a table with T = {table.T} and columns {table.columns} into "
                              f"one with T = {old.T} and columns {old.columns}; re-solve for the same "
                              "horizon (optctl.solve with prefix=)")
        for name in old.columns[1:]:
            past_old, past_new = old.column(name)[:pos], table.column(name)[:pos]  # type: ignore[index]
            if not np.array_equal(past_old, past_new):
                t = int(np.argmax(past_old != past_new))
                raise ExportError(f"the new table changes {name}[{t}], an update already taken (position "
                                  f"{pos}); only the remainder may change")
        if self.mode == "relative" and _peak(table) != _peak(old):
            raise ExportError("relative mode scales the table by its peak, which the new table changes; "
                              "use mode='absolute' for a closed loop")
        self.table = table
        self._factor = table.lr / _peak(table) if self.mode == "relative" else table.lr
        self._device = None
        self._apply(advanced=False)

    def _checked_state(self, state_dict: object, allow_table_change: bool) -> dict[str, Any]:
        """Every field of a saved state, validated; nothing of the scheduler changes here."""
        if not isinstance(state_dict, dict):
            raise ExportError(f"scheduler state is a {type(state_dict).__name__}; pass the dict that "
                              "TableScheduler.state_dict() returned")
        for key in ("table_hash", "T", "mode", "index", "last_epoch", "consumed_samples"):
            if key not in state_dict:
                raise ExportError(f"scheduler state lacks {key!r}; it was not saved by TableScheduler")
        T_saved, h_saved = state_dict["T"], state_dict["table_hash"]
        if not _is_int(T_saved) or T_saved < 1 or not isinstance(h_saved, str):
            raise ExportError(f"scheduler state has T = {T_saved!r} and table_hash = {str(h_saved)[:80]!r}; "
                              "expected a positive int and a hex string, as state_dict() saves them")
        if not allow_table_change and (T_saved != self.table.T or h_saved != self.table.content_hash):
            change = (f"horizon T = {T_saved} -> {self.table.T}" if T_saved != self.table.T
                      else f"table {h_saved[:16]}... -> {self.table.content_hash[:16]}...")
            raise ExportError(
                f"refusing to resume: the checkpoint was saved with another schedule table ({change}). "
                "Resume with the same table, or change it on purpose: build the new table with "
                "table.for_horizon(T, mode=...) and pass allow_table_change=True")
        for key in ("mode", "index", "compose"):
            saved = state_dict.get(key, "replace" if key == "compose" else None)
            if not isinstance(saved, str) or saved != getattr(self, key):
                raise ExportError(f"scheduler state has {key} = {_short(saved)} but this scheduler "
                                  f"uses {getattr(self, key)!r}; construct it with the same {key}")
        pos = _check_position("last_epoch", state_dict["last_epoch"], self.table.T, self.past_end,
                              "restore a state saved by TableScheduler.state_dict() for this table"
                              + (" (the new table is shorter than the saved position)"
                                 if allow_table_change else ""))
        consumed = state_dict["consumed_samples"]
        if isinstance(consumed, bool) or not isinstance(consumed, numbers.Real) \
                or not math.isfinite(consumed) or consumed < 0:
            raise ExportError(f"scheduler state has consumed_samples = {_short(consumed)}; expected a "
                              "finite number of samples >= 0")
        consumed = float(consumed)
        if self.index == "samples" and not allow_table_change \
                and self.table.step_at_samples(consumed) != max(pos, 0):
            raise ExportError(f"scheduler state has consumed_samples = {consumed} (update "
                              f"{self.table.step_at_samples(consumed)}) but last_epoch = {pos}; with "
                              "index='samples' the position follows the samples: restore an unedited state")
        count = state_dict.get("_step_count", self._step_count)
        if not _is_int(count) or count < 0:
            raise ExportError(f"scheduler state has _step_count = {_short(count)}; expected an int >= 0")
        out: dict[str, Any] = {"last_epoch": pos, "consumed_samples": consumed, "_step_count": int(count)}
        n = len(self.optimizer.param_groups)
        if "base_lrs" in state_dict:
            bases = state_dict["base_lrs"]
            if not isinstance(bases, (list, tuple)) or len(bases) != n:
                raise ExportError(f"scheduler state has base_lrs = {_short(bases)}; expected a list of "
                                  f"{n} learning rates, one per param group of this optimizer")
            for i, b in enumerate(bases):
                value = _real(b)
                if value is None or value < 0 or (self.mode == "relative" and value == 0):
                    raise ExportError(f"scheduler state has base_lrs[{i}] = {_short(b)}; expected a finite "
                                      "learning rate >= 0 (> 0 in relative mode), as state_dict() saves it")
            out["base_lrs"] = list(bases)
        factors = state_dict.get("outer_factors", [1.0] * n)
        if not isinstance(factors, (list, tuple)) or len(factors) != n \
                or any((_real(f) or 0.0) <= 0 for f in factors) \
                or (self.compose == "replace" and any(_real(f) != 1.0 for f in factors)):
            raise ExportError(f"scheduler state has outer_factors = {_short(factors)}; expected {n} "
                              "finite numbers > 0 (all 1.0 with compose='replace'), as state_dict() "
                              "saves them")
        out["outer_factors"] = [float(_real(f) or 0.0) for f in factors]
        return out

    def load_state_dict(self, state_dict: dict[str, Any], *, allow_table_change: bool = False) -> None:
        """Restore a position saved by :meth:`state_dict` and rewrite the optimizer's values.

        Refuses a state saved with another table, and so any silent change of horizon,
        unless ``allow_table_change=True`` (the position, in updates, is then kept and must
        lie within the new table). Every field is checked before anything changes: a refused
        state leaves the scheduler as it was.
        """
        state = self._checked_state(state_dict, allow_table_change)
        self.last_epoch = state["last_epoch"]
        self._step_count = state["_step_count"]
        self.consumed_samples = state["consumed_samples"]
        self._outer = state["outer_factors"]
        if "base_lrs" in state:
            self.base_lrs = state["base_lrs"]
            self._device = None
        # The optimizer's state was restored too: what this scheduler wrote before is moot.
        self._written = [None] * len(self.optimizer.param_groups)
        self._momentum_written = [None] * len(self.optimizer.param_groups)
        self._apply(advanced=False)


def _real(value: object) -> float | None:
    """A finite float from a number or a one-element tensor; None for anything else."""
    if isinstance(value, Tensor):
        if value.numel() != 1 or value.is_complex():
            return None
        value = float(value.detach().cpu())
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    out = float(value)
    return out if math.isfinite(out) else None


def _short(value: object) -> str:
    """``repr`` cut to a readable length for an error message."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def lambda_lr(optimizer: Optimizer, table: ScheduleTable, *, mode: Mode = "relative",
              past_end: PastEnd = "hold") -> LambdaLR:
    """The table as a ``LambdaLR``, for code that cannot take a new scheduler class.

    ``LambdaLR`` sets ``lr = base_lr · factor(t)``. ``mode="relative"``:
    ``factor(t) = lr_t / max(lr)``, each group's initial lr is the peak. ``mode="absolute"``:
    ``factor(t) = lr_t / base_lr``, so the groups get the table's values (their initial
    lrs must be positive floats). Momentum and batch sizes are not written.
    """
    check_choice("mode", mode, ("absolute", "relative"), ExportError)
    if table.momentum is not None:
        raise ExportError("the table has a momentum column, which lambda_lr cannot write (LambdaLR sets "
                          "the lr only, so the optimizer's own momentum would stay on); use "
                          "TableScheduler(optimizer, table), or TableScheduler(..., momentum=False) to "
                          "drop the column on purpose")
    schedule = table.schedule("lr", past_end)
    if mode == "relative":
        peak = _peak(table)

        def relative(step: int) -> float:
            return float(schedule(step)) / peak

        return LambdaLR(optimizer, relative)
    lambdas: list[Callable[[int], float]] = []
    for i, group in enumerate(optimizer.param_groups):
        base = group.get("initial_lr", group["lr"])
        if isinstance(base, Tensor) or not base > 0:
            raise ExportError(f"param_groups[{i}] lr = {base!r}: absolute mode needs a positive float "
                              "initial lr (LambdaLR multiplies it); use TableScheduler for tensor lrs")

        def absolute(step: int, base: float = float(base)) -> float:
            return float(schedule(step)) / base

        lambdas.append(absolute)
    return LambdaLR(optimizer, lambdas)


def get_table_schedule(optimizer: Optimizer, table: ScheduleTable, num_warmup_steps: int = 0,
                       num_training_steps: int | None = None, last_epoch: int = -1,
                       **kwargs: Any) -> TableScheduler:
    """A :class:`TableScheduler` with the signature of Hugging Face's schedule factories.

    ``get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps,
    last_epoch)`` and its siblings; pass the result to ``Trainer(optimizers=(opt, sched))``
    or return it from an overridden ``Trainer.create_scheduler``. ``num_training_steps``
    must be the table's horizon ``T`` (``TrainingArguments.max_steps``); the table is the
    whole schedule, so ``num_warmup_steps`` must be 0 (compose a warmup explicitly with
    ``SequentialLR``, docs/torch.md). ``last_epoch`` resumes as in torch; other keywords
    go to :class:`TableScheduler` (``mode``, ``past_end``, ...).
    """
    if isinstance(num_warmup_steps, bool) or not isinstance(num_warmup_steps, numbers.Integral) \
            or num_warmup_steps != 0:
        raise ExportError(f"num_warmup_steps = {num_warmup_steps!r}: the table is the whole schedule "
                          "from update 0 (set warmup_steps=0, warmup_ratio=0 in TrainingArguments); for "
                          "an extra warmup compose LinearLR and TableScheduler with SequentialLR")
    return TableScheduler(optimizer, table, total_steps=num_training_steps, last_epoch=last_epoch,
                          **kwargs)


class TableBatchSampler(Sampler[list[int]]):
    """Batches of the table's batch size: update ``t`` gets ``batch_size[t]`` indices.

    Wraps any sampler of dataset indices (``RandomSampler(ds)``, ``SequentialSampler(ds)``)
    and goes to ``DataLoader(ds, batch_sampler=...)``. ``position`` counts the batches
    yielded over all epochs (the update each one is for) and ``consumed_samples`` their
    samples, so an epoch boundary does not restart the ramp. At the end of an epoch a
    short batch is yielded (``drop_last=False``) or dropped; with a short batch, step the
    scheduler by samples (``TableScheduler(index="samples")`` and
    ``sched.step(samples=len(batch))``) so the lr follows the samples actually consumed.
    After ``T`` batches the iteration stops (``past_end="error"``, default: the run is
    over) or keeps the last batch size (``past_end="hold"``). Resume with
    :meth:`load_state_dict` or ``start=`` (the scheduler's ``position``). A ``DataLoader``
    with workers draws batch indices ahead of training, so ``position`` may run ahead of
    the updates taken; resume from the scheduler's position, not the sampler's.
    """

    def __init__(self, sampler: Sized, table: ScheduleTable, *, drop_last: bool = False,
                 past_end: PastEnd = "error", start: int = 0) -> None:
        if not isinstance(table, ScheduleTable):
            raise ExportError(f"table = {type(table).__name__}: pass a ScheduleTable")
        table.batch_size_at(0)  # the column exists
        check_choice("past_end", past_end, PAST_END, ExportError)
        if not hasattr(sampler, "__iter__") or not hasattr(sampler, "__len__"):
            raise ExportError(f"sampler = {type(sampler).__name__}: pass a sampler of dataset indices with "
                              "a length (RandomSampler(dataset), SequentialSampler(dataset))")
        self.sampler = sampler
        self.table = table
        self.drop_last = bool(drop_last)
        self.past_end: PastEnd = past_end
        self.position = _check_position("start", start, table.T, past_end,
                                        "pass the scheduler's position (0 for a new run)")
        self.position = max(self.position, 0)
        self.consumed_samples = float(table.consumed_samples[min(self.position, table.T)])

    def _size(self, position: int) -> int | None:
        """Batch size of update ``position``, or None when the table is over (past_end='error')."""
        if position >= self.table.T and self.past_end == "error":
            return None
        return self.table.batch_size_at(position, past_end="hold")

    def __iter__(self) -> Iterator[list[int]]:
        batch: list[int] = []
        size = self._size(self.position)
        for index in self.sampler:  # type: ignore[attr-defined]
            if size is None:
                return
            batch.append(int(index))
            if len(batch) == size:
                yield self._taken(batch)
                batch = []
                size = self._size(self.position)
        if batch and not self.drop_last and size is not None:
            yield self._taken(batch)

    def _taken(self, batch: list[int]) -> list[int]:
        self.position += 1
        self.consumed_samples += len(batch)
        return batch

    def __len__(self) -> int:
        """Batches one pass over the sampler yields from the current position."""
        n, position, count = len(self.sampler), self.position, 0
        while n > 0:
            size = self._size(position)
            if size is None or (size > n and self.drop_last):
                break
            n -= size
            position += 1
            count += 1
        return count

    def state_dict(self) -> dict[str, Any]:
        return {"table_hash": self.table.content_hash, "position": self.position,
                "consumed_samples": self.consumed_samples}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict` for the same table."""
        if not isinstance(state_dict, dict) or state_dict.get("table_hash") != self.table.content_hash:
            raise ExportError("sampler state was not saved with this table (its table_hash differs or is "
                              "missing); resume with the same table")
        pos = _check_position("position", state_dict.get("position"), self.table.T, self.past_end,
                              "restore a state saved by TableBatchSampler.state_dict()")
        consumed = _real(state_dict.get("consumed_samples"))
        if consumed is None or consumed < 0:
            raise ExportError(f"sampler state has consumed_samples = {_short(state_dict.get('consumed_samples'))}; "
                              "expected a finite number >= 0")
        self.position, self.consumed_samples = max(pos, 0), consumed


def trunk_scheduler(optimizer: Optimizer, plan: BranchingTable, **kwargs: Any) -> TableScheduler:
    """A :class:`TableScheduler` for the shared trunk of an anytime plan.

    The workflow (docs/anytime.md): step this scheduler after every update of the shared
    run, and when ``scheduler.position`` equals a leave point ``plan.leave[i]`` save a
    checkpoint (model, optimizer and this scheduler's ``state_dict``). Branch ``i`` is then
    trained from that checkpoint with :func:`branch_scheduler`. ``kwargs`` go to
    :class:`TableScheduler` (``mode``, ``past_end``, ...).
    """
    if not isinstance(plan, BranchingTable):
        raise ExportError(f"plan = {type(plan).__name__}: pass a BranchingTable "
                          "(BranchingResult.to_table(), or optctl.io.tables.load_branching_table(path))")
    return TableScheduler(optimizer, plan.trunk_table(), **kwargs)


def branch_scheduler(optimizer: Optimizer, plan: BranchingTable, i: int, **kwargs: Any) -> TableScheduler:
    """A :class:`TableScheduler` for branch ``i``, to run from the trunk's checkpoint at
    ``plan.leave[i]``: its step 0 is update ``leave[i]`` of the run, and it ends after
    ``T_i − leave[i]`` updates (``T_i = plan.horizons[i]``). Create it after loading the
    checkpoint's model and optimizer state (its first ``lr`` replaces the trunk's)."""
    if not isinstance(plan, BranchingTable):
        raise ExportError(f"plan = {type(plan).__name__}: pass a BranchingTable")
    if not _is_int(i) or not 0 <= int(i) < len(plan.horizons):
        raise ExportError(f"branch i = {i!r}: expected an integer 0 <= i < {len(plan.horizons)}")
    return TableScheduler(optimizer, plan.branch_table(int(i)), **kwargs)


# --- momentum families (docs/momentum_families.md) -------------------------------------------


class _FamilyOptimizer(Optimizer):
    """Shared part of the family optimizers: one table row per ``step()``, in float64 or not."""

    def __init__(self, params: Any, table: FamilyTable, kind: str) -> None:
        if not isinstance(table, FamilyTable):
            raise ExportError(f"table = {type(table).__name__}: pass a FamilyTable "
                              "(optctl.model.families.to_table, or the family_table.json of a run)")
        if table.kind != kind:
            raise ExportError(f"the table is {table.family} ({table.kind}); drive it with "
                              f"{'ScheduleFreeSGD' if table.kind == 'schedule-free' else 'GenMomSGD'}")
        super().__init__(params, {})
        self.table = table
        self.t = 0

    def _row(self) -> dict[str, float]:
        row = self.table.row(self.t)  # raises past the table's end
        for group in self.param_groups:  # visible to loggers, as an lr scheduler's values are
            group.update(row)
        return row

    def state_dict(self) -> dict[str, Any]:
        out = super().state_dict()
        out["family_t"] = self.t
        return out

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state_dict = dict(state_dict)
        self.t = int(state_dict.pop("family_t", 0))
        super().load_state_dict(state_dict)


class GenMomSGD(_FamilyOptimizer):
    """Gen-Mom-SGD from a family table (DANA-constant, DANA-decaying, log-time momentum).

    Update ``t`` reads ``γ₁, γ₂, γ₃, Δ`` from row ``t`` of the table and does
    ``y ← (1 − Δ) y + γ₁ g``, ``θ ← θ − γ₂ g − γ₃ y`` with ``y`` starting at zero
    (Paquette et al., arXiv:2505.16098; docs/momentum_families.md §2). The coefficients of
    the last update are also written into each param group (``group["gamma2"]`` ...).
    Stepping past the table's end raises :class:`~optctl.errors.ExportError`.
    """

    def __init__(self, params: Any, table: FamilyTable) -> None:
        super().__init__(params, table, "gen-mom")

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        r = self._row()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p)
                y = state["velocity"]
                y.mul_(1.0 - r["Delta"]).add_(g, alpha=r["gamma1"])
                p.add_(g, alpha=-r["gamma2"]).add_(y, alpha=-r["gamma3"])
        self.t += 1
        return loss


class ScheduleFreeSGD(_FamilyOptimizer):
    """Schedule-Free SGD from a family table (Defazio et al., *The Road Less Scheduled*, 2024).

    The parameters hold the gradient point ``y_t = (1 − β_t) z_t + β_t x_t`` while training;
    update ``t`` reads ``γ_t, β_t`` (row ``t``) and does ``z ← z − γ_t g(y_t)``,
    ``x ← (1 − c) x + c z`` with ``c = 1/(t + 2)``, then moves the parameters to
    ``y_{t+1}`` (with ``β_{t+1}``; the last row's ``β`` past the end). The trained model is
    ``x``: call :meth:`eval` before evaluating or saving it and :meth:`train` to go on.
    ``c`` is the uniform average of the paper with constant weights; its warm-up weighting
    ``c ∝ γ_t²`` is not implemented (nor in the model), so this is not the ``schedulefree``
    package's ``SGDScheduleFree``, whose defaults differ.
    """

    def __init__(self, params: Any, table: FamilyTable) -> None:
        super().__init__(params, table, "schedule-free")
        self.training = True

    def _start(self, p: Tensor) -> dict[str, Tensor]:
        state = self.state[p]
        if "z" not in state:
            if not self.training:
                raise ExportError("ScheduleFreeSGD.step() in eval mode: call optimizer.train() first")
            state["z"] = p.detach().clone()  # x_0 = z_0 = y_0
            state["x"] = p.detach().clone()
        return state

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        if not self.training:
            raise ExportError("ScheduleFreeSGD.step() in eval mode (the parameters hold the average x); "
                              "call optimizer.train() before training again")
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        r = self._row()
        c = 1.0 / (self.t + 2.0)
        beta_next = float(self.table.column("beta")[min(self.t + 1, self.table.T - 1)])
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self._start(p)
                z, x = state["z"], state["x"]
                z.add_(p.grad, alpha=-r["lr"])
                x.mul_(1.0 - c).add_(z, alpha=c)
                p.copy_(z).mul_(1.0 - beta_next).add_(x, alpha=beta_next)
        self.t += 1
        return loss

    @torch.no_grad()
    def eval(self) -> None:
        """Parameters ← the average ``x`` (the model Schedule-Free trains)."""
        if self.training:
            for group in self.param_groups:
                for p in group["params"]:
                    if "x" in self.state[p]:
                        p.copy_(self.state[p]["x"])
        self.training = False

    @torch.no_grad()
    def train(self) -> None:
        """Parameters ← the gradient point ``y`` again."""
        if not self.training:
            beta = float(self.table.column("beta")[min(self.t, self.table.T - 1)])
            for group in self.param_groups:
                for p in group["params"]:
                    st = self.state[p]
                    if "x" in st:
                        p.copy_(st["z"]).mul_(1.0 - beta).add_(st["x"], alpha=beta)
        self.training = True


def family_optimizer(params: Any, table: FamilyTable) -> Optimizer:
    """The torch optimizer that runs ``table``: :class:`GenMomSGD` or :class:`ScheduleFreeSGD`."""
    if not isinstance(table, FamilyTable):
        raise ExportError(f"table = {type(table).__name__}: pass a FamilyTable")
    return ScheduleFreeSGD(params, table) if table.kind == "schedule-free" else GenMomSGD(params, table)
