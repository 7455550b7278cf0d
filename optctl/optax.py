"""JAX/optax adapter: a schedule table as jittable optax schedules and optimizers.

The only optctl module that imports optax (``pip install optax``); jax comes with optctl.

- :func:`schedule`, ``schedule(count) -> value`` for one column of a table: a gather from
  a constant array, so it traces under ``jax.jit`` (``ScheduleTable.schedule`` is numpy
  and does not). Past the end the last value is held (``past_end="hold"``), or
  ``past_end="error"`` raises :class:`~optctl.errors.ExportError` for a concrete count
  and gives NaN for a traced one (a jitted function cannot raise; a NaN learning rate
  makes the overrun visible at once), as the torch adapter refuses to step past ``T``.
- :func:`optimizer`, ``optax.sgd`` or ``optax.adam``/``adamw`` with the table's learning
  rate and momentum injected per update (``optax.inject_hyperparams``), in the momentum
  convention each one uses.

Momentum conventions. The table's column is EMA momentum (``v_t = μ_t v_{t−1} +
(1 − μ_t) g_t``, :attr:`~optctl.table.ScheduleTable.momentum_convention`); Adam's ``b1``
is that form, so it is passed as is. ``optax.sgd`` is heavy-ball momentum
(``optax.trace``: ``h_t = μ h_{t−1} + g_t``): feeding it the EMA column would take steps
about ``1/(1 − μ)`` too large, so :func:`optimizer` converts exactly with
:meth:`~optctl.table.ScheduleTable.heavy_ball` (``lr'_t = lr_t (1 − μ_t)``,
``μ'_t = μ_t (1 − μ_{t−1})/(1 − μ_t)``) and refuses settings that would break the
conversion (Nesterov, a momentum or learning rate given next to the table's).

Values are float64 when jax's 64-bit mode is on where the schedule is traced (``with
jax.enable_x64(True):``); otherwise jax stores the table in float32, rounding each value
by at most ``2^-24`` relative.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

import numpy as np

try:
    import jax
    import jax.numpy as jnp
    import optax
except ImportError as err:  # optax is an optional extra
    raise ImportError(f"optctl.optax needs optax and jax, which cannot be imported ({err}); install "
                      "them with `pip install optax`") from err

from optctl.errors import ExportError
from optctl.table import PAST_END, PastEnd, ScheduleTable
from optctl.validate import check_choice

Optimizer = Literal["sgd", "adam", "adamw"]
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam", "adamw")


def _check_table(table: object) -> ScheduleTable:
    if not isinstance(table, ScheduleTable):
        raise ExportError(f"table = {type(table).__name__}: pass a ScheduleTable "
                          "(optctl.io.tables.load_table, or optctl.schedule)")
    return table


def _gather(values: np.ndarray, past_end: PastEnd, name: str) -> Callable[[Any], jax.Array]:
    """``count -> values[min(count, T−1)]`` as jax operations (see :func:`schedule`)."""
    T = int(values.size)
    check_choice("past_end", past_end, PAST_END, ExportError)

    def schedule(count: Any) -> jax.Array:
        if not isinstance(count, jax.core.Tracer):
            c = np.asarray(count)
            if not np.issubdtype(c.dtype, np.integer):
                raise ExportError(f"count = {count!r}: pass an integer update count (0-based), as "
                                  "optax's step counter is")
            if np.any(c < 0):
                raise ExportError(f"count = {int(c.min())}: update counts start at 0")
            if past_end == "error" and np.any(c >= T):
                raise ExportError(f"count = {int(c.max())} is past the end of the {name} table (T = {T} "
                                  "updates, counts 0..T-1); use past_end='hold' to keep the last value, "
                                  "or a table for the longer horizon (table.for_horizon)")
        elif not jnp.issubdtype(count.dtype, jnp.integer):
            raise ExportError(f"count has dtype {count.dtype}: pass an integer update count, as "
                              "optax's step counter is")
        count = jnp.asarray(count)
        column = jnp.asarray(values)  # float64 under jax.enable_x64(True), else float32
        out = column[jnp.clip(count, 0, T - 1)]
        if past_end == "error":
            out = jnp.where((count < 0) | (count >= T), jnp.nan, out)
        return out

    return schedule


def schedule(table: ScheduleTable, column: str = "lr", *,
             past_end: PastEnd = "hold") -> Callable[[Any], jax.Array]:
    """A jittable optax schedule ``count -> table.<column>[count]`` (``count`` 0-based).

    ``values[t]`` for ``0 ≤ t < T``; past the end the last value (``past_end="hold"``) or,
    with ``past_end="error"``, :class:`ExportError` for a concrete count and NaN under
    ``jax.jit``. ``column`` is ``"lr"``, ``"momentum"`` (EMA form, for Adam's ``b1``) or
    ``"batch_size"``.
    """
    table = _check_table(table)
    values = table.column(column)
    if values is None or column == "step":
        raise ExportError(f"table has no {column!r} column; columns are {', '.join(table.columns)}")
    return _gather(np.asarray(values, dtype=np.float64), past_end, column)


def heavy_ball_schedules(table: ScheduleTable, *, past_end: PastEnd = "hold"
                         ) -> tuple[Callable[[Any], jax.Array], Callable[[Any], jax.Array]]:
    """``(learning_rate, momentum)`` schedules for heavy-ball SGD (``optax.sgd``, ``optax.trace``).

    The exact conversion of the table's EMA momentum,
    :meth:`~optctl.table.ScheduleTable.heavy_ball`; the buffer must start at zero (optax's do).
    """
    table = _check_table(table)
    lr, mu = table.heavy_ball()
    return _gather(lr, past_end, "lr"), _gather(mu, past_end, "momentum")


def optimizer(table: ScheduleTable, name: Optimizer = "sgd", *, past_end: PastEnd = "hold",
              **kwargs: Any) -> optax.GradientTransformationExtraArgs:
    """``optax.<name>`` driven by the table at every update, through ``optax.inject_hyperparams``.

    ``sgd``: the table's learning rate, and its momentum converted to heavy-ball form
    (:func:`heavy_ball_schedules`) when the table has a momentum column. ``adam``/``adamw``:
    ``learning_rate = lr_t`` and ``b1 = μ_t`` (Adam's first moment is the EMA form).
    ``kwargs`` go to the optax factory (``b2``, ``weight_decay``, ...); the values the table
    sets, and Nesterov momentum (for which the conversion does not hold), are refused.
    The current values are in ``state.hyperparams``.
    """
    table = _check_table(table)
    check_choice("name", name, OPTIMIZERS, ExportError)
    owned = ["learning_rate"] + (["momentum" if name == "sgd" else "b1"] if table.momentum is not None
                                 else [])
    for key in owned:
        if key in kwargs:
            raise ExportError(f"{key} = {kwargs[key]!r}: the table sets {key} at every update; drop the "
                              "argument (or build the schedule yourself with optctl.optax.schedule)")
    if kwargs.get("nesterov"):
        raise ExportError("nesterov = True: the table's momentum converts exactly to plain heavy-ball "
                          "momentum only; use nesterov=False (the default)")
    if name == "sgd":
        if table.momentum is None:
            return optax.inject_hyperparams(optax.sgd)(learning_rate=schedule(table, past_end=past_end),
                                                       **kwargs)
        lr, mu = heavy_ball_schedules(table, past_end=past_end)
        return optax.inject_hyperparams(optax.sgd)(learning_rate=lr, momentum=mu, **kwargs)
    factory = optax.adam if name == "adam" else optax.adamw
    hyper: dict[str, Any] = {"learning_rate": schedule(table, past_end=past_end)}
    if table.momentum is not None:
        hyper["b1"] = schedule(table, "momentum", past_end=past_end)
    return optax.inject_hyperparams(factory)(**hyper, **kwargs)
