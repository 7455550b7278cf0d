"""The torch adapter against the table, step by step (in the style of torch's scheduler tests)."""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    ADAPTER_FLOAT32_RTOL,
    ADAPTER_RELATIVE_RTOL,
    MOMENTUM_EMA_RTOL,
    TABLE_EXACT_RTOL,
)

from optctl import ExportError, ScheduleTable
from optctl.errors import HorizonWarning
from optctl.io.tables import export_table, load_table
from optctl.table import momentum_from_beta

torch = pytest.importorskip("torch")
from optctl.torch import TableScheduler, lambda_lr  # noqa: E402

F64 = torch.float64
cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(scope="module")
def table(small_result, tmp_path_factory: pytest.TempPathFactory) -> ScheduleTable:
    """The small solved schedule, through a file: solve → export → load."""
    path = tmp_path_factory.mktemp("table") / "table.safetensors"
    export_table(small_result, path)
    return load_table(path)


def _param(device: str = "cpu") -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.zeros(4, dtype=F64, device=device))


def _sgd(lr: float | torch.Tensor = 1.0, **kw: object) -> torch.optim.SGD:
    return torch.optim.SGD([_param()], lr=lr, **kw)


def _lr(opt: torch.optim.Optimizer, i: int = 0) -> float:
    return float(opt.param_groups[i]["lr"])


def _step(opt: torch.optim.Optimizer, sched: TableScheduler | torch.optim.lr_scheduler.LRScheduler,
          **kw: object) -> None:
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = torch.ones_like(p)
    opt.step()
    sched.step(**kw)


def _check_closed_form(opt: torch.optim.Optimizer, sched, expected: Callable[[int], list[float]],
                       steps: range, rtol: float) -> None:
    """At every step the optimizer and get_last_lr hold the closed-form values."""
    for t in steps:
        want = expected(t)
        np.testing.assert_allclose([_lr(opt, i) for i in range(len(want))], want, rtol=rtol, atol=0,
                                   err_msg=f"step {t}")
        np.testing.assert_allclose([float(v) for v in sched.get_last_lr()], want, rtol=rtol, atol=0,
                                   err_msg=f"step {t}")
        _step(opt, sched)


# --- closed form at every step -----------------------------------------------------------


def test_absolute_mode_gives_the_table_at_every_step(small_result, table: ScheduleTable) -> None:
    opt = _sgd()
    sched = TableScheduler(opt, table, total_steps=300)
    _check_closed_form(opt, sched, lambda t: [small_result.eta[t]], range(table.T), TABLE_EXACT_RTOL)
    assert sched.position == table.T and _lr(opt) == table.lr[-1]  # end of a run of T updates
    with pytest.raises(ExportError, match="past the end of its table"):
        sched.step()


def test_past_end_hold(table: ScheduleTable) -> None:
    opt = _sgd()
    sched = TableScheduler(opt, table, past_end="hold")
    for _ in range(table.T + 50):
        _step(opt, sched)
    assert _lr(opt) == table.lr[-1] and sched.position == table.T + 50


def test_relative_mode_scales_each_group_base_lr(table: ScheduleTable) -> None:
    opt = torch.optim.SGD([{"params": [_param()], "lr": 0.3}, {"params": [_param()], "lr": 2.0}])
    sched = TableScheduler(opt, table, mode="relative")
    peak = table.lr.max()
    _check_closed_form(opt, sched, lambda t: [0.3 * (table.lr[t] / peak), 2.0 * (table.lr[t] / peak)],
                       range(table.T), ADAPTER_RELATIVE_RTOL)


@pytest.mark.parametrize("lr_dtype", [F64, torch.float32])
def test_tensor_lr_is_updated_in_place(table: ScheduleTable, lr_dtype: torch.dtype) -> None:
    lr = torch.tensor(0.0, dtype=lr_dtype)
    opt = _sgd(lr=lr)
    sched = TableScheduler(opt, table)
    rtol = TABLE_EXACT_RTOL if lr_dtype == F64 else ADAPTER_FLOAT32_RTOL
    _check_closed_form(opt, sched, lambda t: [table.lr[t]], range(table.T), rtol)
    assert opt.param_groups[0]["lr"] is lr  # same tensor: compiled steps and graphs stay valid
    assert all(isinstance(v, torch.Tensor) for v in sched.get_last_lr())


def test_tensor_lr_relative_mode(table: ScheduleTable) -> None:
    opt = _sgd(lr=torch.tensor(0.5, dtype=F64))
    sched = TableScheduler(opt, table, mode="relative")
    _check_closed_form(opt, sched, lambda t: [0.5 * (table.lr[t] / table.lr.max())], range(table.T),
                       ADAPTER_RELATIVE_RTOL)


def test_state_dict_restore_mid_run_continues_the_table(table: ScheduleTable) -> None:
    for make_lr in (lambda: 1.0, lambda: torch.tensor(1.0, dtype=F64)):
        reference = _sgd(lr=make_lr())
        ref_sched = TableScheduler(reference, table)
        for _ in range(table.T):
            _step(reference, ref_sched)

        opt = _sgd(lr=make_lr())
        sched = TableScheduler(opt, table)
        for _ in range(137):
            _step(opt, sched)
        buf = io.BytesIO()
        torch.save({"param": opt.param_groups[0]["params"][0].detach(), "opt": opt.state_dict(),
                    "sched": sched.state_dict()}, buf)
        buf.seek(0)
        saved = torch.load(buf, weights_only=True)
        assert saved["sched"]["table_hash"] == table.content_hash and saved["sched"]["T"] == table.T

        opt2 = _sgd(lr=make_lr())
        sched2 = TableScheduler(opt2, table)  # scheduler first, then the optimizer state
        opt2.load_state_dict(saved["opt"])
        sched2.load_state_dict(saved["sched"])
        with torch.no_grad():
            opt2.param_groups[0]["params"][0].copy_(saved["param"])
        assert sched2.position == 137
        _check_closed_form(opt2, sched2, lambda t: [table.lr[t]], range(137, table.T), TABLE_EXACT_RTOL)
        torch.testing.assert_close(opt2.param_groups[0]["params"][0], reference.param_groups[0]["params"][0],
                                   rtol=TABLE_EXACT_RTOL, atol=0)


@pytest.mark.parametrize("index", ["steps", "samples"])
def test_a_refused_past_end_step_changes_nothing(table: ScheduleTable, index: str) -> None:
    opt = _sgd()
    sched = TableScheduler(opt, table, index=index)  # type: ignore[arg-type]
    for _ in range(table.T):
        _step(opt, sched)
    before = (sched.state_dict(), sched._step_count, sched.consumed_samples, sched.last_epoch,
              _lr(opt), [float(v) for v in sched.get_last_lr()])
    for _ in range(2):
        with pytest.raises(ExportError, match="past the end of its table"):
            sched.step()
        after = (sched.state_dict(), sched._step_count, sched.consumed_samples, sched.last_epoch,
                 _lr(opt), [float(v) for v in sched.get_last_lr()])
        assert after == before
    # a bad sample count is refused the same way
    with pytest.raises(ExportError, match="samples = -1"):
        sched.step(samples=-1)
    assert sched.state_dict() == before[0]


def test_relative_mode_refuses_a_zero_base_lr() -> None:
    table = ScheduleTable(lr=[0.1, 0.2, 0.1])
    for lr in (0.0, torch.tensor(0.0, dtype=F64)):
        with pytest.raises(ExportError, match=r"relative mode .*initial lr \(its peak\) must be > 0.*"
                                              r"lr=0.1.*mode='absolute'"):
            TableScheduler(_sgd(lr=lr), table, mode="relative")
    opt = torch.optim.SGD([{"params": [_param()], "lr": 0.3}, {"params": [_param()], "lr": 0.0}])
    with pytest.raises(ExportError, match=r"param_groups\[1\] lr = 0.0"):
        TableScheduler(opt, table, mode="relative")
    TableScheduler(_sgd(lr=0.0), table)  # absolute mode writes the table's own rates


def test_restore_across_tables_that_differ_only_in_progress(table: ScheduleTable) -> None:
    def with_progress(progress: bool) -> ScheduleTable:
        return ScheduleTable(lr=table.lr, batch_size=table.batch_size, spec=table.spec,
                             solver={**table.solver, "progress": progress}, horizon=table.horizon)

    opt = _sgd()
    sched = TableScheduler(opt, with_progress(True))
    for _ in range(40):
        _step(opt, sched)
    resumed = TableScheduler(_sgd(), with_progress(False))
    resumed.load_state_dict(sched.state_dict())
    assert resumed.position == 40 and _lr(resumed.optimizer) == table.lr[40]


def test_restoring_with_another_horizon_or_table_is_refused(table: ScheduleTable) -> None:
    opt = _sgd()
    sched = TableScheduler(opt, table)
    for _ in range(50):
        _step(opt, sched)
    state = sched.state_dict()
    with pytest.warns(HorizonWarning):
        longer = table.for_horizon(600, mode="rescale")
    other = TableScheduler(_sgd(), longer)
    with pytest.raises(ExportError, match=r"horizon T = 300 -> 600.*for_horizon"):
        other.load_state_dict(state)
    edited = ScheduleTable(lr=table.lr * 0.5, batch_size=table.batch_size, spec=table.spec,
                           solver=table.solver, horizon=table.horizon)
    with pytest.raises(ExportError, match="another schedule table"):
        TableScheduler(_sgd(), edited).load_state_dict(state)
    other.load_state_dict(state, allow_table_change=True)  # an explicit change is allowed
    assert other.position == 50 and _lr(other.optimizer) == longer.lr[50]
    with pytest.raises(ExportError, match="total_steps = 600 but the table covers T = 300"):
        TableScheduler(_sgd(), table, total_steps=600)
    with pytest.raises(ExportError, match="not saved by TableScheduler"):
        sched.load_state_dict({"last_epoch": 3})


# --- samples, batch sizes, momentum --------------------------------------------------------


def _ramp_table() -> ScheduleTable:
    lr = np.linspace(1.0, 0.1, 12)
    return ScheduleTable(lr=lr, batch_size=[2] * 4 + [4] * 4 + [8] * 4,
                         momentum=momentum_from_beta(np.linspace(0.2, 1.0, 12)))


def test_index_by_samples_follows_consumed_samples() -> None:
    table = _ramp_table()
    # with the table's own batch sizes, samples and steps agree
    a, b = _sgd(), _sgd()
    by_steps = TableScheduler(a, table, momentum=False)
    by_samples = TableScheduler(b, table, index="samples", momentum=False)
    for t in range(table.T):
        assert _lr(a) == _lr(b) == table.lr[t] and by_samples.batch_size_at() == table.batch_size_at(t)
        _step(a, by_steps)
        _step(b, by_samples)
    assert by_samples.consumed_samples == table.consumed_samples[-1] == 56
    # with a constant batch of 3 the rate follows the samples consumed, not the steps
    c = _sgd()
    sched = TableScheduler(c, table, index="samples", momentum=False)
    n = 0
    while n + 3 <= 56:
        _step(c, sched, samples=3)
        n += 3
        assert _lr(c) == table.lr[min(table.step_at_samples(n), table.T - 1)]
    with pytest.raises(ExportError, match="56 samples"):
        _step(c, sched, samples=3)


def test_sgd_momentum_and_dampening_are_written() -> None:
    table = _ramp_table()
    opt = _sgd(momentum=0.5)
    sched = TableScheduler(opt, table)
    for t in range(table.T):
        group = opt.param_groups[0]
        assert group["momentum"] == group["dampening"] == table.momentum[t]
        # floats even with a tensor lr: torch's SGD does not compile with tensor momentum
        # (docs/export.md, torch.compile)
        assert type(group["momentum"]) is float and type(group["dampening"]) is float
        _step(opt, sched)


def test_adam_beta1_is_written_float_and_tensor() -> None:
    table = _ramp_table()
    for betas in ((0.9, 0.99), (torch.tensor(0.9, dtype=F64), torch.tensor(0.99, dtype=F64))):
        opt = torch.optim.Adam([_param()], lr=torch.tensor(0.1, dtype=F64), betas=betas)
        sched = TableScheduler(opt, table)
        for t in range(table.T):
            b1, b2 = opt.param_groups[0]["betas"]
            assert float(b1) == table.momentum[t] and float(b2) == 0.99
            _step(opt, sched)


def test_sgd_with_zero_buffer_is_the_ema_recursion_of_model_md(sgd_on_quadratic, ema_on_quadratic) -> None:  # type: ignore[no-untyped-def]
    """MODEL.md §3 on a deterministic quadratic ``½ λ Δ²`` (gradient ``λ Δ``)."""
    T, lam = 40, 0.7
    rng = np.random.default_rng(1)
    eta, beta = rng.uniform(0.1, 1.0, T), rng.uniform(0.1, 1.0, T)
    expected = ema_on_quadratic(eta, beta, lam)
    table = ScheduleTable(lr=eta, momentum=momentum_from_beta(beta))
    np.testing.assert_allclose(sgd_on_quadratic(table, lam, T, init_momentum_buffers=True), expected,
                               rtol=MOMENTUM_EMA_RTOL)
    # torch's own first step starts the buffer at g_0 instead of β_0 g_0 (documented)
    default = sgd_on_quadratic(table, lam, T, init_momentum_buffers=False)
    assert default[0] == pytest.approx(1.0 - eta[0] * lam, rel=MOMENTUM_EMA_RTOL)
    assert abs(default[-1] - expected[-1]) > MOMENTUM_EMA_RTOL


def test_momentum_errors() -> None:
    table = _ramp_table()
    with pytest.raises(ExportError, match="Nesterov"):
        TableScheduler(_sgd(momentum=0.9, nesterov=True), table)
    with pytest.raises(ExportError, match="neither 'momentum'"):
        TableScheduler(torch.optim.Adagrad([_param()], lr=0.1), table)
    TableScheduler(torch.optim.Adagrad([_param()], lr=0.1), table, momentum=False)
    with pytest.raises(ExportError, match="no momentum column"):
        TableScheduler(_sgd(), ScheduleTable(lr=[0.1, 0.2]), momentum=True)
    with pytest.raises(ExportError, match="needs the table's batch_size"):
        TableScheduler(_sgd(), ScheduleTable(lr=[0.1, 0.2]), index="samples")
    with pytest.raises(ExportError, match="choose one of absolute"):
        TableScheduler(_sgd(), table, mode="peak")  # type: ignore[arg-type]


# --- companions ----------------------------------------------------------------------------


def test_lambda_lr_factory_and_plain_callable(table: ScheduleTable) -> None:
    opt = _sgd(lr=0.25)
    sched = lambda_lr(opt, table)
    _check_closed_form(opt, sched, lambda t: [0.25 * table.lr[t] / table.lr.max()], range(table.T),
                       ADAPTER_RELATIVE_RTOL)
    opt = _sgd(lr=0.25)
    sched = lambda_lr(opt, table, mode="absolute")
    _check_closed_form(opt, sched, lambda t: [table.lr[t]], range(table.T), ADAPTER_RELATIVE_RTOL)
    schedule = table.schedule()
    assert [schedule(t) for t in range(table.T)] == list(table.lr)
    with pytest.raises(ExportError, match="positive float"):
        lambda_lr(_sgd(lr=torch.tensor(0.1)), table, mode="absolute")


# --- torch.compile and devices -------------------------------------------------------------


def _compile_count(opt: torch.optim.Optimizer, sched: TableScheduler, steps: int) -> int:
    """Dynamo graph compilations (first compile + recompiles) of ``opt.step`` over ``steps`` steps."""
    import torch._dynamo

    torch._dynamo.reset()
    compiles: list[int] = []

    def backend(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]) -> Callable[..., object]:
        compiles.append(1)
        return gm.forward

    @torch.compile(backend=backend)
    def opt_step() -> None:
        opt.step()

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(steps):
            for p in opt.param_groups[0]["params"]:
                p.grad = torch.ones_like(p)
            opt_step()
            sched.step()
    return len(compiles)


def test_tensor_lr_compiled_step_never_recompiles(table: ScheduleTable) -> None:
    lr = torch.tensor(0.0, dtype=F64)
    opt = _sgd(lr=lr)
    sched = TableScheduler(opt, table)
    assert _compile_count(opt, sched, 30) == 1
    assert _lr(opt) == table.lr[30]
    # the check is sensitive: a float lr changes a value dynamo guards on, so it recompiles
    opt = _sgd(lr=1.0)
    assert _compile_count(opt, TableScheduler(opt, table), 30) > 1


def test_adam_tensor_lr_and_betas_compile_once_with_a_momentum_column() -> None:
    table = _ramp_table()
    betas = (torch.tensor(0.9, dtype=F64), torch.tensor(0.99, dtype=F64))
    opt = torch.optim.Adam([_param()], lr=torch.tensor(0.0, dtype=F64), betas=betas)
    sched = TableScheduler(opt, table)
    assert _compile_count(opt, sched, table.T - 1) == 1
    assert opt.param_groups[0]["betas"][0] is betas[0] and float(betas[0]) == table.momentum[-1]


@cuda
def test_cuda_tensor_lr_no_host_sync_and_no_recompile(table: ScheduleTable) -> None:
    w = torch.nn.Parameter(torch.zeros(4, dtype=F64, device="cuda"))
    lr = torch.tensor(0.0, dtype=F64, device="cuda")
    opt = torch.optim.SGD([w], lr=lr)
    sched = TableScheduler(opt, table)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for _ in range(100):
            sched.step()  # raises if anything synchronises with the host
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert opt.param_groups[0]["lr"] is lr and float(lr) == table.lr[100]
    sched2 = TableScheduler(opt, table)
    assert _compile_count(opt, sched2, 20) == 1


@cuda
def test_cuda_state_dict_round_trip(table: ScheduleTable, tmp_path: Path) -> None:
    lr = torch.tensor(0.5, dtype=F64, device="cuda")
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(4, dtype=F64, device="cuda"))], lr=lr)
    sched = TableScheduler(opt, table, mode="relative")
    for _ in range(77):
        sched.step()
    torch.save(sched.state_dict(), tmp_path / "s.pt")
    lr2 = torch.tensor(0.5, dtype=F64, device="cuda")
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(4, dtype=F64, device="cuda"))], lr=lr2)
    sched2 = TableScheduler(opt2, table, mode="relative")
    sched2.load_state_dict(torch.load(tmp_path / "s.pt", weights_only=True))
    for t in range(77, table.T):
        assert float(lr2) == pytest.approx(float(lr), rel=ADAPTER_RELATIVE_RTOL), t
        sched.step()
        sched2.step()


def test_splice_continues_on_a_re_solved_remainder(table: ScheduleTable) -> None:
    """A closed-loop update: the scheduler keeps its position and switches to the new rows."""
    from dataclasses import replace

    opt = _sgd(momentum=0.9)
    sched = TableScheduler(opt, table)
    for _ in range(100):
        _step(opt, sched)
    buf = opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"].clone()
    new = replace(table, lr=np.concatenate([table.lr[:100], np.full(table.T - 100, 0.01)]))
    sched.splice(new)
    assert sched.position == 100 and sched.table is new and _lr(opt) == 0.01
    assert torch.equal(opt.state[opt.param_groups[0]["params"][0]]["momentum_buffer"], buf)
    for _ in range(10):
        _step(opt, sched)
    assert sched.position == 110 and _lr(opt) == 0.01
    assert sched.state_dict()["table_hash"] == new.content_hash
    # the past cannot change, nor the horizon
    with pytest.raises(ExportError, match=r"changes lr\[5\], an update already taken"):
        sched.splice(replace(new, lr=np.where(np.arange(table.T) == 5, 0.5, new.lr)))
    with pytest.raises(ExportError, match="same horizon"):
        sched.splice(ScheduleTable(lr=np.full(table.T + 1, 0.01)))


def test_a_velocity_start_torch_cannot_express_is_refused() -> None:
    beta = np.array([0.5, 0.3, 0.2])
    for rule in ("notebook", "zero"):
        tab = ScheduleTable(lr=[0.1, 0.2, 0.1], momentum=momentum_from_beta(beta),
                            controls={"controls": ["lr", "momentum"], "momentum_init": rule})
        opt = torch.optim.SGD([_param()], lr=0.1, momentum=0.5, dampening=0.5)
        with pytest.raises(ExportError, match=f"momentum_init='{rule}'"):
            TableScheduler(opt, tab)
        TableScheduler(torch.optim.SGD([_param()], lr=0.1), tab, momentum=False)  # lr only is fine
    ok = ScheduleTable(lr=[0.1, 0.2, 0.1], momentum=momentum_from_beta(beta),
                       controls={"controls": ["lr", "momentum"]})
    TableScheduler(torch.optim.SGD([_param()], lr=0.1, momentum=0.5, dampening=0.5), ok)
