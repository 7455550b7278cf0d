"""Batch sizes from a table in a real DataLoader, and the Hugging Face-style factory."""

from __future__ import annotations

import numpy as np
import pytest

from optctl import ExportError, ScheduleTable

torch = pytest.importorskip("torch")
from torch.utils.data import DataLoader, SequentialSampler, TensorDataset  # noqa: E402

from optctl.torch import TableBatchSampler, TableScheduler, get_table_schedule  # noqa: E402

SIZES = [2] * 5 + [4] * 5 + [8] * 5  # a ramp: 15 updates, 70 samples


def _table() -> ScheduleTable:
    return ScheduleTable(lr=np.linspace(0.5, 0.05, len(SIZES)), batch_size=SIZES)


def _dataset(n: int) -> TensorDataset:
    return TensorDataset(torch.arange(n, dtype=torch.float64))


def test_dataloader_yields_the_table_batch_sizes_across_epochs() -> None:
    table = _table()
    ds = _dataset(30)  # 30 samples an epoch: the ramp spans three epochs
    sampler = TableBatchSampler(SequentialSampler(ds), table, drop_last=True)
    loader = DataLoader(ds, batch_sampler=sampler)
    sizes, firsts = [], []
    for _epoch in range(5):
        expected_len = len(sampler)
        got = [batch[0] for batch in loader]
        assert len(got) == expected_len
        sizes += [len(b) for b in got]
        firsts += [int(b[0]) for b in got]
    assert sizes == SIZES  # and no batch past the table's horizon
    assert sampler.position == table.T and sampler.consumed_samples == sum(SIZES)
    # each epoch starts at index 0 again; batches are consecutive indices within an epoch
    assert firsts[:5] == [0, 2, 4, 6, 8] and firsts[5:7] == [10, 14]


def test_short_batches_step_the_scheduler_by_samples() -> None:
    table = _table()
    ds = _dataset(25)
    sampler = TableBatchSampler(SequentialSampler(ds), table, past_end="hold")
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = TableScheduler(opt, table, index="samples", past_end="hold")
    consumed = 0
    for _epoch in range(3):
        for (batch,) in DataLoader(ds, batch_sampler=sampler):
            want = table.lr[min(table.step_at_samples(consumed), table.T - 1)]
            assert opt.param_groups[0]["lr"] == want, f"after {consumed} samples"
            param.grad = torch.ones_like(param)
            opt.step()
            sched.step(samples=len(batch))
            consumed += len(batch)
    assert consumed == 75 and sched.consumed_samples == 75
    assert sampler.consumed_samples == 75  # short batches at epoch ends counted as they were


def test_sampler_state_and_errors() -> None:
    table = _table()
    ds = _dataset(100)
    a = TableBatchSampler(SequentialSampler(ds), table)
    it = iter(a)
    for _ in range(7):
        next(it)
    b = TableBatchSampler(SequentialSampler(ds), table)
    b.load_state_dict(a.state_dict())
    assert b.position == 7 and [len(x) for x in b] == SIZES[7:]
    c = TableBatchSampler(SequentialSampler(ds), table, start=7)
    assert c.consumed_samples == 2 * 5 + 4 * 2
    with pytest.raises(ExportError, match="not saved with this table"):
        b.load_state_dict({**a.state_dict(), "table_hash": "x"})
    with pytest.raises(ExportError, match=r"position = -4"):
        b.load_state_dict({**a.state_dict(), "position": -4})
    with pytest.raises(ExportError, match="consumed_samples = nan"):
        b.load_state_dict({**a.state_dict(), "consumed_samples": float("nan")})
    with pytest.raises(ExportError, match="no batch_size column"):
        TableBatchSampler(SequentialSampler(ds), ScheduleTable(lr=[0.1, 0.2]))
    with pytest.raises(ExportError, match="batch_size.* is fractional"):
        TableBatchSampler(SequentialSampler(ds), ScheduleTable(lr=[0.1, 0.2], batch_size=[2.5, 3]))


def test_hugging_face_factory_signature() -> None:
    table = _table()
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = torch.optim.SGD([param], lr=1.0)
    sched = get_table_schedule(opt, table, num_warmup_steps=0, num_training_steps=table.T)
    assert isinstance(sched, TableScheduler) and opt.param_groups[0]["lr"] == table.lr[0]
    with pytest.raises(ExportError, match="total_steps = 20 but the table covers T = 15"):
        get_table_schedule(opt, table, 0, 20)
    with pytest.raises(ExportError, match="num_warmup_steps = 3: .*warmup_steps=0.*SequentialLR"):
        get_table_schedule(opt, table, 3, table.T)
    resumed = get_table_schedule(opt, table, 0, table.T, last_epoch=4)
    assert resumed.position == 5 and opt.param_groups[0]["lr"] == table.lr[5]
