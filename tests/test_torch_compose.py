"""The torch adapter composed with torch's own schedulers, resumed, and fed bad checkpoints.

Every test runs the real ``SequentialLR``, ``ChainedScheduler``, ``LinearLR`` ... and
compares the optimizer's values at each step with the closed form (warmup factor times
the table's row), never with another run of the adapter alone.
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from conftest import ADAPTER_COMPOSE_RTOL, LINEAR_WARMUP_RTOL, MOMENTUM_EMA_RTOL, TABLE_EXACT_RTOL
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from optctl import ExportError, ScheduleTable
from optctl.table import momentum_from_beta

torch = pytest.importorskip("torch")
from torch.optim.lr_scheduler import (  # noqa: E402
    ChainedScheduler,
    ExponentialLR,
    LinearLR,
    OneCycleLR,
    SequentialLR,
)

from optctl.torch import TableScheduler  # noqa: E402

F64 = torch.float64
WARMUP = 10
START = 0.1


def _table(T: int = 40) -> ScheduleTable:
    """A decaying lr with a momentum column and a batch ramp (values that are easy to tell apart)."""
    lr = 0.39 * np.linspace(1.0, 0.05, T) ** 1.5
    return ScheduleTable(lr=lr, momentum=momentum_from_beta(np.linspace(0.3, 0.9, T)),
                         batch_size=[4] * (T // 2) + [8] * (T - T // 2))


def _param() -> torch.nn.Parameter:
    return torch.nn.Parameter(torch.arange(1.0, 5.0, dtype=F64))


def _sgd(lr: float | torch.Tensor = 0.5, groups: int = 1) -> torch.optim.SGD:
    return torch.optim.SGD([{"params": [_param()]} for _ in range(groups)], lr=lr, momentum=0.0)


def _lr(opt: torch.optim.Optimizer, i: int = 0) -> float:
    return float(opt.param_groups[i]["lr"])


def _train_step(opt: torch.optim.Optimizer, sched: object) -> None:
    """One update on the quadratic 0.5·|p|², then the scheduler, as a training loop does."""
    for group in opt.param_groups:
        for p in group["params"]:
            p.grad = p.detach().clone()
    opt.step()
    sched.step()  # type: ignore[attr-defined]


def _warmup_factor(t: int) -> float:
    """LinearLR(start_factor=START, total_iters=WARMUP) in closed form."""
    return START + (1.0 - START) * min(t, WARMUP) / WARMUP


def _sequential(opt: torch.optim.Optimizer, table: ScheduleTable) -> SequentialLR:
    warmup = LinearLR(opt, start_factor=START, total_iters=WARMUP)
    return SequentialLR(opt, [warmup, TableScheduler(opt, table)], milestones=[WARMUP])


def _check_sequential_step(opt: torch.optim.Optimizer, table: ScheduleTable, t: int,
                           base: float = 0.5) -> None:
    if t < WARMUP:
        np.testing.assert_allclose(_lr(opt), base * _warmup_factor(t), rtol=LINEAR_WARMUP_RTOL,
                                   err_msg=f"warmup step {t}")
    else:
        row = t - WARMUP
        assert _lr(opt) == table.lr[row], f"step {t}: lr {_lr(opt)} != table.lr[{row}] {table.lr[row]}"
        group = opt.param_groups[0]
        assert group["momentum"] == group["dampening"] == table.momentum[row], f"step {t}"


# --- SequentialLR -----------------------------------------------------------------------------


@pytest.mark.parametrize("tensor_lr", [False, True], ids=["float-lr", "float64-tensor-lr"])
def test_sequential_linear_warmup_then_table_every_step(tensor_lr: bool) -> None:
    table = _table()
    opt = _sgd(torch.tensor(0.5, dtype=F64) if tensor_lr else 0.5)
    sched = _sequential(opt, table)
    for t in range(WARMUP + table.T):
        _check_sequential_step(opt, table, t)
        _train_step(opt, sched)
    # the table's first row at the milestone (the defect measured 0.355 for 0.390 here)
    assert sched.get_last_lr()[0] == pytest.approx(table.lr[-1], rel=TABLE_EXACT_RTOL)
    with pytest.raises(ExportError, match="past the end of its table"):
        _train_step(opt, sched)


@pytest.mark.parametrize("halfway", [WARMUP // 2, WARMUP + 15], ids=["in-warmup", "in-table"])
def test_sequential_checkpoint_round_trip_halfway(halfway: int) -> None:
    """Save (weights_only), rebuild everything, load, continue: the same lrs and the same weights."""
    table = _table()
    total = WARMUP + table.T
    ref_opt = _sgd()
    ref = _sequential(ref_opt, table)
    for _ in range(total):
        _train_step(ref_opt, ref)

    opt = _sgd()
    sched = _sequential(opt, table)
    for _ in range(halfway):
        _train_step(opt, sched)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": sched.state_dict(),
                "param": opt.param_groups[0]["params"][0].detach()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)

    opt2 = _sgd()
    sched2 = _sequential(opt2, table)
    opt2.load_state_dict(saved["opt"])
    sched2.load_state_dict(saved["sched"])
    with torch.no_grad():
        opt2.param_groups[0]["params"][0].copy_(saved["param"])
    for t in range(halfway, total):
        _check_sequential_step(opt2, table, t)
        _train_step(opt2, sched2)
    torch.testing.assert_close(opt2.param_groups[0]["params"][0], ref_opt.param_groups[0]["params"][0],
                               rtol=TABLE_EXACT_RTOL, atol=0)


def test_samples_index_inside_sequential_starts_the_table_at_zero_samples() -> None:
    table = _table()
    opt = _sgd()
    warmup = LinearLR(opt, start_factor=START, total_iters=WARMUP)
    inner = TableScheduler(opt, table, index="samples")
    sched = SequentialLR(opt, [warmup, inner], milestones=[WARMUP])
    for _ in range(WARMUP):
        _train_step(opt, sched)
    assert inner.position == 0 and inner.consumed_samples == 0 and _lr(opt) == table.lr[0]
    for t in range(1, table.T):
        _train_step(opt, sched)
        assert _lr(opt) == table.lr[t] and inner.consumed_samples == table.consumed_samples[t]


def test_the_deprecated_step_epoch_of_older_torch_jumps_to_the_row() -> None:
    table = _table()
    opt = _sgd()
    sched = TableScheduler(opt, table)
    sched.step(7)
    assert sched.position == 7 and _lr(opt) == table.lr[7]
    assert sched.consumed_samples == table.consumed_samples[7]
    with pytest.raises(ExportError, match=r"epoch = -3: .*from 0"):
        sched.step(-3)
    with pytest.raises(ExportError, match=r"epoch = 41 is past the end .*T = 40"):
        sched.step(41)
    assert sched.position == 7


# --- ChainedScheduler -------------------------------------------------------------------------


@pytest.mark.parametrize("table_first", [True, False], ids=["table-first", "warmup-first"])
def test_chained_warmup_times_table(table_first: bool) -> None:
    table = _table()
    opt = _sgd(1.0)
    if table_first:
        inner = TableScheduler(opt, table, compose="multiply", momentum=False)
        chain = ChainedScheduler([inner, LinearLR(opt, start_factor=START, total_iters=WARMUP)])
    else:
        warmup = LinearLR(opt, start_factor=START, total_iters=WARMUP)
        chain = ChainedScheduler([warmup, TableScheduler(opt, table, compose="multiply", momentum=False)])
    for t in range(table.T):
        np.testing.assert_allclose(_lr(opt), _warmup_factor(t) * table.lr[t], rtol=ADAPTER_COMPOSE_RTOL,
                                   err_msg=f"step {t}")
        _train_step(opt, chain)


def test_chained_exponential_decay_times_relative_table() -> None:
    table = _table()
    gamma = 0.97
    opt = _sgd(0.2, groups=2)
    opt.param_groups[1]["lr"] = 0.05
    chain = ChainedScheduler([TableScheduler(opt, table, mode="relative", compose="multiply",
                                             momentum=False), ExponentialLR(opt, gamma=gamma)])
    peak = table.lr.max()
    for t in range(table.T):
        for i, base in enumerate((0.2, 0.05)):
            np.testing.assert_allclose(_lr(opt, i), base * table.lr[t] / peak * gamma**t,
                                       rtol=ADAPTER_COMPOSE_RTOL, err_msg=f"group {i} step {t}")
        _train_step(opt, chain)


def test_chained_checkpoint_round_trip_keeps_the_outer_factor() -> None:
    table = _table()

    def build(opt: torch.optim.SGD) -> ChainedScheduler:
        return ChainedScheduler([LinearLR(opt, start_factor=START, total_iters=WARMUP),
                                 TableScheduler(opt, table, compose="multiply", momentum=False)])

    opt = _sgd(1.0)
    chain = build(opt)
    for _ in range(6):
        _train_step(opt, chain)
    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "sched": chain.state_dict()}, buf)
    buf.seek(0)
    saved = torch.load(buf, weights_only=True)
    opt2 = _sgd(1.0)
    chain2 = build(opt2)
    opt2.load_state_dict(saved["opt"])
    chain2.load_state_dict(saved["sched"])
    for t in range(6, table.T):
        np.testing.assert_allclose(_lr(opt2), _warmup_factor(t) * table.lr[t], rtol=ADAPTER_COMPOSE_RTOL,
                                   err_msg=f"step {t}")
        _train_step(opt2, chain2)


def test_replace_mode_refuses_an_lr_changed_by_another_scheduler() -> None:
    table = _table()
    opt = _sgd(1.0)
    chain = ChainedScheduler([LinearLR(opt, start_factor=START, total_iters=WARMUP),
                              TableScheduler(opt, table, momentum=False)])
    with pytest.raises(ExportError, match=r"param_groups\[0\]\['lr'\] = .*something else changed.*"
                                          r"compose='multiply'"):
        _train_step(opt, chain)
    with pytest.raises(ExportError, match=r"lr is a tensor: compose='multiply'.*lr=<float>"):
        TableScheduler(_sgd(torch.tensor(1.0, dtype=F64)), table, compose="multiply")


def test_momentum_cycled_by_another_scheduler_is_refused() -> None:
    """OneCycleLR writes heavy-ball momentum; mixed with the table's EMA column it must not pass."""
    table = _table()
    opt = torch.optim.SGD([_param()], lr=0.1, momentum=0.9)
    inner = TableScheduler(opt, table, compose="multiply")
    cycle = OneCycleLR(opt, max_lr=0.1, total_steps=100, cycle_momentum=True)
    with pytest.raises(ExportError, match=r"\['momentum'\] = .*table wrote .*EMA momentum.*"
                                          r"cycle_momentum=False"):
        _train_step(opt, ChainedScheduler([inner, cycle]))


# --- torch's last_epoch resume -----------------------------------------------------------------


def test_last_epoch_resume_continues_after_that_update() -> None:
    table = _table()
    ref_opt = _sgd()
    ref = TableScheduler(ref_opt, table)
    for _ in range(table.T):
        _train_step(ref_opt, ref)

    opt = _sgd()
    sched = TableScheduler(opt, table)
    for _ in range(17):
        _train_step(opt, sched)
    saved_opt = opt.state_dict()  # what HF / torch resume from: the optimizer and the last update
    opt2 = _sgd()
    opt2.load_state_dict(saved_opt)
    with torch.no_grad():
        opt2.param_groups[0]["params"][0].copy_(opt.param_groups[0]["params"][0])
    resumed = TableScheduler(opt2, table, last_epoch=16)
    assert resumed.position == 17 and resumed.consumed_samples == table.consumed_samples[17]
    for t in range(17, table.T):
        assert _lr(opt2) == table.lr[t] and opt2.param_groups[0]["momentum"] == table.momentum[t]
        _train_step(opt2, resumed)
    torch.testing.assert_close(opt2.param_groups[0]["params"][0], ref_opt.param_groups[0]["params"][0],
                               rtol=TABLE_EXACT_RTOL, atol=0)


def test_last_epoch_errors() -> None:
    table = _table()
    with pytest.raises(ExportError, match=r"last_epoch = 3 resumes a run.*no 'initial_lr'.*state_dict"):
        TableScheduler(_sgd(), table, last_epoch=3)
    opt = _sgd()
    opt.param_groups[0]["initial_lr"] = 0.5
    for bad, message in ((-5, "last_epoch = -5: positions count updates from 0"),
                         (40, "last_epoch = 40 is past the end"),
                         ("3", "last_epoch = '3' has type str")):
        with pytest.raises(ExportError, match=message):
            TableScheduler(opt, table, last_epoch=bad)  # type: ignore[arg-type]
    held = TableScheduler(opt, table, last_epoch=45, past_end="hold")
    assert held.position == 46 and _lr(opt) == table.lr[-1]
    # the message states the table's T and the range last_epoch may take (the last update is T − 1)
    with pytest.raises(ExportError, match=rf"T = {table.T} updates, last_epoch from -1 to {table.T - 1}"):
        TableScheduler(opt, table, last_epoch=table.T)


def test_a_model_or_a_dict_instead_of_the_optimizer_or_table_is_the_package_error() -> None:
    table = _table()
    model = torch.nn.Linear(2, 1)
    with pytest.raises(ExportError, match="optimizer = Linear: pass the torch optimizer"):
        TableScheduler(model, table)  # type: ignore[arg-type]
    with pytest.raises(ExportError, match=r"table = dict: pass a ScheduleTable \(optctl.load_table"):
        TableScheduler(_sgd(), {"lr": [0.1]})  # type: ignore[arg-type]


def test_lambda_lr_refuses_a_table_whose_momentum_it_would_drop() -> None:
    from optctl.torch import lambda_lr

    table = _table()
    assert table.momentum is not None
    with pytest.raises(ExportError, match="momentum column, which lambda_lr cannot write"):
        lambda_lr(torch.optim.SGD([_param()], lr=0.5, momentum=0.9), table)


# --- momentum conventions ------------------------------------------------------------------------


def test_heavy_ball_conversion_takes_the_same_steps_as_the_ema_column() -> None:
    """torch SGD with dampening = 0 (heavy ball) on (lr', μ') against SGD on the EMA column."""
    table = _table()
    lr_hb, mu_hb = table.heavy_ball()
    ema_opt = torch.optim.SGD([_param()], lr=1.0, momentum=0.5)
    ema = TableScheduler(ema_opt, table)
    hb_param = _param()
    hb_opt = torch.optim.SGD([hb_param], lr=float(lr_hb[0]), momentum=float(mu_hb[0]))
    for t in range(table.T):
        hb_opt.param_groups[0].update(lr=float(lr_hb[t]), momentum=float(mu_hb[t]))
        hb_param.grad = hb_param.detach().clone()
        hb_opt.step()
        _train_step(ema_opt, ema)
        torch.testing.assert_close(hb_param, ema_opt.param_groups[0]["params"][0],
                                   rtol=MOMENTUM_EMA_RTOL, atol=0, msg=f"update {t}")
    # the naive use of the EMA column as heavy-ball momentum is ~1/(1 − μ) too large
    mu = float(table.momentum[-1])
    assert lr_hb[-1] == pytest.approx(table.lr[-1] * (1 - mu), rel=TABLE_EXACT_RTOL)
    assert table.momentum_convention == "ema"
    with pytest.raises(ExportError, match="no momentum column"):
        ScheduleTable(lr=[0.1, 0.2]).heavy_ball()


# --- issue 14, item 6: load_state_dict refuses bad states -------------------------------------------


def _running(table: ScheduleTable | None = None, **kw: object) -> TableScheduler:
    table = table or _table()
    opt = _sgd()
    sched = TableScheduler(opt, table, **kw)  # type: ignore[arg-type]
    for _ in range(12):
        _train_step(opt, sched)
    return sched


def _unchanged(sched: TableScheduler, bad: dict, match: str, **kw: object) -> None:
    before = (sched.state_dict(), _lr(sched.optimizer))
    with pytest.raises(ExportError, match=match):
        sched.load_state_dict(bad, **kw)  # type: ignore[arg-type]
    after = (sched.state_dict(), _lr(sched.optimizer))
    assert str(after) == str(before)


def test_state_negative_last_epoch_is_refused() -> None:
    sched = _running()
    for bad in (-5, -2):
        _unchanged(sched, {**sched.state_dict(), "last_epoch": bad},
                   rf"last_epoch = {bad}: .*negative position would read the table from its end")


def test_state_huge_last_epoch_is_refused() -> None:
    sched = _running()
    _unchanged(sched, {**sched.state_dict(), "last_epoch": 10**9},
               r"last_epoch = 1000000000 is past the end of the table \(T = 40.*past_end='hold'")


def test_state_position_beyond_a_changed_table_is_refused() -> None:
    sched = _running()
    state = {**sched.state_dict(), "last_epoch": 30}
    short = ScheduleTable(lr=np.linspace(0.3, 0.1, 20))
    other = TableScheduler(_sgd(), short)
    _unchanged(other, state, r"last_epoch = 30 is past the end .*T = 20.*new table is shorter",
               allow_table_change=True)
    other.load_state_dict({**state, "last_epoch": 20}, allow_table_change=True)  # the end is fine
    assert other.position == 20 and _lr(other.optimizer) == short.lr[-1]


def test_state_non_integer_last_epoch_is_the_package_error() -> None:
    sched = _running()
    for bad in ("abc", 3.5, None, True, [3]):
        _unchanged(sched, {**sched.state_dict(), "last_epoch": bad}, r"last_epoch = .* has type")


def test_state_nan_consumed_samples_is_refused() -> None:
    sched = _running()
    for bad in (math.nan, math.inf, -1.0, "12"):
        _unchanged(sched, {**sched.state_dict(), "consumed_samples": bad},
                   r"consumed_samples = .*finite number of samples >= 0")
    samples = _running(index="samples")
    _unchanged(samples, {**samples.state_dict(), "consumed_samples": 4.0},
               r"consumed_samples = 4.0 \(update 1\) but last_epoch = 12")


def test_state_base_lrs_of_the_wrong_length_are_refused() -> None:
    sched = _running()
    for bad in ([0.5, 0.5], [], 0.5, [math.nan], ["a"], [-0.1]):
        _unchanged(sched, {**sched.state_dict(), "base_lrs": bad}, r"base_lrs")
    relative = _running(mode="relative")
    _unchanged(relative, {**relative.state_dict(), "base_lrs": [0.0]}, r"base_lrs\[0\] = 0.0.*> 0 in relative")


# --- property test: any scheduler state ends in the package's error or a valid position -------------

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(10**12), 10**12),
                  st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=8),
                  st.lists(st.floats(allow_nan=True), max_size=3), st.just(np.float64("nan")),
                  st.just(np.int64(5)), st.just(np.array([1.0, 2.0])), st.just(torch.tensor([0.5, 0.1])),
                  st.just({"a": 1}))
_KEYS = ("table_hash", "T", "mode", "index", "past_end", "compose", "last_epoch", "_step_count",
         "consumed_samples", "outer_factors", "base_lrs")
_STATE_TABLE = _table()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(edits=st.dictionaries(st.sampled_from(_KEYS), st.one_of(_JUNK, st.integers(-3, 45)), max_size=4),
       dropped=st.lists(st.sampled_from(_KEYS), max_size=2), allow=st.booleans(),
       index=st.sampled_from(["steps", "samples"]), past_end=st.sampled_from(["error", "hold"]))
def test_property_scheduler_states_never_raise_a_foreign_exception(edits, dropped, allow, index,
                                                                   past_end) -> None:
    opt = _sgd()
    sched = TableScheduler(opt, _STATE_TABLE, index=index, past_end=past_end)
    for _ in range(5):
        _train_step(opt, sched)
    state = {**sched.state_dict(), **edits}
    for key in dropped:
        state.pop(key, None)
    before = str((sched.state_dict(), _lr(opt)))
    try:
        sched.load_state_dict(state, allow_table_change=allow)
    except ExportError:
        event("refused")
        assert str((sched.state_dict(), _lr(opt))) == before, "a refused state changed the scheduler"
        return
    event("accepted")
    # accepted: a position the table has, and the optimizer holds that row's values
    T = _STATE_TABLE.T
    assert -1 <= sched.position and (sched.position <= T or past_end == "hold")
    assert math.isfinite(sched.consumed_samples) and sched.consumed_samples >= 0
    if sched.position >= 0:
        row = min(sched.position, T - 1)
        assert _lr(opt) == _STATE_TABLE.lr[row]
        assert opt.param_groups[0]["momentum"] == _STATE_TABLE.momentum[row]
