"""The optax adapter against the table, under jax.jit, and an optax SGD loop with momentum."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import ADAPTER_FLOAT32_RTOL, MOMENTUM_EMA_RTOL, TABLE_EXACT_RTOL

from optctl import ExportError, ScheduleTable
from optctl.io.tables import export_table, load_table
from optctl.table import momentum_from_beta

optax = pytest.importorskip("optax")
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from optctl.optax import heavy_ball_schedules, optimizer, schedule  # noqa: E402


def _momentum_table(T: int = 60) -> ScheduleTable:
    lr = 0.3 * np.linspace(1.0, 0.02, T) ** 1.3
    return ScheduleTable(lr=lr, momentum=momentum_from_beta(np.linspace(0.2, 0.95, T)))


@pytest.fixture(scope="module")
def exported(small_result, tmp_path_factory: pytest.TempPathFactory) -> ScheduleTable:
    path: Path = tmp_path_factory.mktemp("optax") / "table.npz"
    export_table(small_result, path)
    return load_table(path)


def test_jitted_schedule_equals_the_exported_table_at_every_step(exported: ScheduleTable) -> None:
    T = exported.T
    with jax.enable_x64(True):
        sched = jax.jit(schedule(exported))
        per_step = np.array([sched(jnp.asarray(t)) for t in range(T + 3)])
        batched = np.asarray(jax.jit(jax.vmap(schedule(exported)))(jnp.arange(T + 3)))
        assert sched(jnp.asarray(0)).dtype == jnp.float64
    want = np.concatenate([exported.lr, np.full(3, exported.lr[-1])])  # past the end: held
    for got in (per_step, batched):
        max_diff = float(np.max(np.abs(got - want)))
        assert max_diff == TABLE_EXACT_RTOL, f"max difference {max_diff}"


def test_past_end_error_raises_eagerly_and_is_nan_under_jit() -> None:
    table = _momentum_table(10)
    sched = schedule(table, past_end="error")
    with jax.enable_x64(True):
        assert float(sched(9)) == table.lr[9]
        with pytest.raises(ExportError, match=r"count = 10 is past the end of the lr table \(T = 10"):
            sched(10)
        jitted = jax.jit(sched)
        assert float(jitted(jnp.asarray(9))) == table.lr[9]
        assert np.isnan(float(jitted(jnp.asarray(10))))
    with pytest.raises(ExportError, match="count = 1.5: pass an integer"):
        sched(1.5)
    with pytest.raises(ExportError, match="count = -1: update counts start at 0"):
        sched(-1)
    with pytest.raises(ExportError, match="no 'momentum' column"):
        schedule(ScheduleTable(lr=[0.1]), "momentum")


def test_without_64_bit_mode_the_table_is_float32() -> None:
    table = _momentum_table()
    got = np.asarray(jax.jit(jax.vmap(schedule(table)))(jnp.arange(table.T)), dtype=np.float64)
    np.testing.assert_allclose(got, table.lr, rtol=ADAPTER_FLOAT32_RTOL, atol=0)


def _ema_reference(table: ScheduleTable, h: np.ndarray, p0: np.ndarray) -> list[np.ndarray]:
    """The table's own recursion on 0.5·Σ h_i p_i²: v_t = μ_t v + (1 − μ_t) g, p −= lr_t v."""
    p, v, out = p0.copy(), np.zeros_like(p0), []
    for t in range(table.T):
        mu = table.momentum[t]  # type: ignore[index]
        v = mu * v + (1.0 - mu) * (h * p)
        p = p - table.lr[t] * v
        out.append(p.copy())
    return out


def test_optax_sgd_loop_with_momentum_follows_the_table() -> None:
    table = _momentum_table()
    h = np.array([1.0, 0.5, 0.1, 2.0])
    p0 = np.array([1.0, -2.0, 3.0, 0.5])
    want = _ema_reference(table, h, p0)
    lr_hb, mu_hb = table.heavy_ball()
    with jax.enable_x64(True):
        opt = optimizer(table, "sgd")
        hvec = jnp.asarray(h)

        @jax.jit
        def update(params: jax.Array, state: optax.OptState) -> tuple[jax.Array, optax.OptState]:
            grads = jax.grad(lambda q: 0.5 * jnp.sum(hvec * q**2))(params)
            updates, state = opt.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        params = jnp.asarray(p0)
        state = opt.init(params)
        for t in range(table.T):
            params, state = update(params, state)
            np.testing.assert_allclose(np.asarray(params), want[t], rtol=MOMENTUM_EMA_RTOL, atol=0,
                                       err_msg=f"update {t}")
            # the heavy-ball values used by update t, injected from the table
            assert float(state.hyperparams["learning_rate"]) == lr_hb[t]
            assert float(state.hyperparams["momentum"]) == mu_hb[t]


def test_optax_adam_gets_b1_as_the_table_momentum() -> None:
    table = _momentum_table(8)
    with jax.enable_x64(True):
        opt = optimizer(table, "adamw", b2=0.99, weight_decay=0.0)
        params = jnp.ones(3)
        state = opt.init(params)
        for t in range(table.T):
            _, state = opt.update(jnp.ones(3), state, params)
            assert float(state.hyperparams["b1"]) == table.momentum[t]  # type: ignore[index]
            assert float(state.hyperparams["learning_rate"]) == table.lr[t]


def test_optimizer_refuses_mismatched_settings() -> None:
    table = _momentum_table()
    with pytest.raises(ExportError, match="nesterov = True: .*plain heavy-ball"):
        optimizer(table, "sgd", nesterov=True)
    with pytest.raises(ExportError, match="momentum = 0.9: the table sets momentum"):
        optimizer(table, "sgd", momentum=0.9)
    with pytest.raises(ExportError, match="b1 = 0.9: the table sets b1"):
        optimizer(table, "adam", b1=0.9)
    with pytest.raises(ExportError, match="learning_rate"):
        optimizer(table, "sgd", learning_rate=0.1)
    with pytest.raises(ExportError, match="name = 'lion'"):
        optimizer(table, "lion")  # type: ignore[arg-type]
    with pytest.raises(ExportError, match="pass a ScheduleTable"):
        schedule(np.ones(3))  # type: ignore[arg-type]
    lr, mu = heavy_ball_schedules(table)
    with jax.enable_x64(True):
        assert float(lr(0)) == table.lr[0] * (1 - table.momentum[0])  # type: ignore[index]


def test_the_numpy_schedule_under_jit_says_which_schedule_to_use() -> None:
    table = _momentum_table()
    with pytest.raises(ExportError, match=r"numpy cannot read .*optctl.optax.schedule\(table\)"):
        jax.jit(table.schedule())(3)
