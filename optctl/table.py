"""Schedule tables: the per-step controls of a solved schedule, self-describing.

A :class:`ScheduleTable` holds one value per update ``t = 0..T−1`` of the learning rate
``lr`` and, optionally, the ``momentum`` and ``batch_size``, together with what produced
them: the model parameters (the :class:`~optctl.spec.ProblemSpec` as a mapping), the
solver options, their hashes, the source run, and how the horizon ``T`` relates to the
spec's (solved for it, or rescaled from another). Its :attr:`~ScheduleTable.content_hash`
covers the columns and every field that determines them, so a stored table can be
checked on load and a training job can tell two tables apart.

Momentum is stored in the convention training code uses: ``momentum[t] = μ_t`` is the
coefficient of ``torch.optim.SGD(momentum=μ, dampening=μ)`` (or Adam's ``β1``) at update
``t``. The EMA form of MODEL.md §3 (Bordelon & Mori, arXiv:2602.04774) weights the new
gradient by ``β``; with ``v_{t+1} = (1 − β_t) v_t + β_t g_{t+1}`` and ``v_0 = β_0 g_0``
the update ``t`` uses the buffer built with ``β_{t−1}``, so ``μ_0 = 1 − β_0`` and
``μ_t = 1 − β_{t−1}`` (:func:`momentum_from_beta`).

Files are written and read by :mod:`optctl.io.tables`; the torch adapter is
:mod:`optctl.torch`; a solve's table comes from
:meth:`optctl.solver.result.ScheduleResult.to_table`, and re-solving a table for a new
horizon is :func:`optctl.solver.horizon.resolve_table`. This module needs numpy only.
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from optctl import theory
from optctl.errors import ExportError, HorizonWarning
from optctl.schedules import Schedule, StepLike
from optctl.spec import digest, solver_identity

SCHEMA = "optctl.schedule_table"
# Version 1: learning rates in model units. Version 2 adds ``lr_scale``: the ``lr`` column
# holds real learning rates ``lr_scale × η`` (a table calibrated by ``optctl fit``).
# Model-unit tables are still written as version 1, so their hashes do not change.
SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS: tuple[int, ...] = (1, 2)
COLUMNS: tuple[str, ...] = ("step", "lr", "momentum", "batch_size")
UNITS = "per_step"
MOMENTUM_CONVENTION = ("mu: torch SGD(momentum=mu, dampening=mu) or Adam beta1 = mu at update t; "
                       "mu_0 = 1 - beta_0, mu_t = 1 - beta_{t-1} (MODEL.md section 3)")

PastEnd = Literal["hold", "error"]
HorizonMode = Literal["rescale", "resolve"]
PAST_END: tuple[str, ...] = ("hold", "error")
HORIZON_MODES: tuple[str, ...] = ("rescale", "resolve")
RESOLVE_HINT = "optctl.solver.horizon.resolve_table(table, T)"


def _canonical(obj: object) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False, default=str)


def momentum_from_beta(beta: np.ndarray) -> np.ndarray:
    """Torch momentum per update from the EMA weights ``β_t`` of MODEL.md §3.

    ``μ_0 = 1 − β_0`` and ``μ_t = 1 − β_{t−1}`` for ``t ≥ 1``: the buffer used at update
    ``t`` is ``v_t = (1 − β_{t−1}) v_{t−1} + β_{t−1} g_t``. ``β_{T−1}`` only shapes
    ``v_T``, which no update uses.
    """
    b = np.asarray(beta, dtype=float)
    if b.ndim != 1 or b.size == 0:
        raise ExportError(f"beta has shape {b.shape}; pass one momentum weight per update")
    return 1.0 - np.concatenate([b[:1], b[:-1]])


def _column(name: str, values: object, T: int | None) -> np.ndarray:
    try:
        arr = np.array(values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ExportError(f"table column {name!r} is not numeric ({err})") from err
    if arr.ndim != 1 or arr.size == 0:
        raise ExportError(f"table column {name!r} has shape {arr.shape}; "
                          "expected one value per update, shape (T,) with T >= 1")
    if T is not None and arr.size != T:
        raise ExportError(f"table column {name!r} has {arr.size} values but lr has {T}; "
                          "every column needs one value per update")
    bad = ~np.isfinite(arr)
    if bad.any():
        t = int(np.argmax(bad))
        raise ExportError(f"table column {name}[{t}] = {arr[t]}: values must be finite")
    arr.setflags(write=False)
    return arr


def _check_range(name: str, arr: np.ndarray, lo: float, hi: float | None, rule: str) -> None:
    bad = (arr < lo) | (arr >= hi) if hi is not None else arr < lo
    if bad.any():
        t = int(np.argmax(bad))
        raise ExportError(f"table column {name}[{t}] = {float(arr[t])!r}: {rule}")


@dataclass(frozen=True, eq=False)
class ScheduleTable:
    """One value per update of the learning rate (and optionally momentum, batch size).

    ``lr[t] = s η_t`` with ``s = lr_scale`` (1: model units; otherwise real learning rates
    from a calibration, :mod:`optctl.calibrate`), ``momentum[t] = μ_t`` (torch convention, see the module docstring)
    and ``batch_size[t] = m_t`` for updates ``t = 0..T−1``; ``units`` is ``"per_step"``.
    ``spec`` holds the model parameters (``ProblemSpec.to_dict()``; empty for a table
    made from plain arrays), ``solver`` the solver options that determine the schedule
    (:func:`~optctl.spec.solver_identity`: ``progress`` and IPOPT's output options are
    dropped, so a table does not depend on whether its solve printed), ``source`` where the table
    came from (informational, not hashed), and ``horizon`` how ``T`` relates to
    ``spec["T"]``: ``{"mode": "solved"}``, ``{"mode": "given"}`` (no solve), or a
    rescaling record written by :meth:`for_horizon`. ``controls`` is the
    :class:`~optctl.spec.ControlSpec` of a joint solve (``{"controls": ["lr", "momentum"],
    "beta_min": 0.0, ...}``); it is empty for the learning rate alone and for tables made
    from arrays, and hashed only when present, so learning-rate tables keep their hashes.
    """

    lr: np.ndarray
    momentum: np.ndarray | None = None
    batch_size: np.ndarray | None = None
    spec: Mapping[str, Any] = field(default_factory=dict)
    solver: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)
    horizon: Mapping[str, Any] = field(default_factory=lambda: {"mode": "given"})
    units: str = UNITS
    lr_scale: float = 1.0
    controls: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.lr_scale, bool) or not isinstance(self.lr_scale, (int, float)) \
                or not math.isfinite(self.lr_scale) or self.lr_scale <= 0:
            raise ExportError(f"table lr_scale = {self.lr_scale!r}: expected a finite number > 0 "
                              "(real learning rate = lr_scale x model rate)")
        object.__setattr__(self, "lr_scale", float(self.lr_scale))
        lr = _column("lr", self.lr, None)
        _check_range("lr", lr, 0.0, None, "learning rates must be >= 0")
        object.__setattr__(self, "lr", lr)
        T = lr.size
        if self.momentum is not None:
            mom = _column("momentum", self.momentum, T)
            _check_range("momentum", mom, 0.0, 1.0, "momentum must lie in [0, 1) (torch convention)")
            object.__setattr__(self, "momentum", mom)
        if self.batch_size is not None:
            bs = _column("batch_size", self.batch_size, T)
            _check_range("batch_size", bs, 1.0, None, "batch sizes must be >= 1")
            object.__setattr__(self, "batch_size", bs)
        if self.units != UNITS:
            raise ExportError(f"table units = {self.units!r}: schema {self.schema_version} stores "
                              f"{UNITS!r} values only (index by samples with step_at_samples)")
        for name in ("spec", "solver", "source", "horizon", "controls"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ExportError(f"table {name} = {value!r}: expected a mapping")
            object.__setattr__(self, name, dict(value))
        object.__setattr__(self, "solver", solver_identity(self.solver))
        mode = self.horizon.get("mode")
        if mode not in ("solved", "given", "rescale"):
            raise ExportError(f"table horizon mode = {mode!r}: expected solved, given or rescale")
        if mode == "solved" and self.spec.get("T") != T:
            raise ExportError(f"table has T = {T} updates but its spec says T = {self.spec.get('T')}; "
                              "a table solved for one horizon must keep it (use for_horizon)")
        if mode == "rescale" and not self.spec:
            raise ExportError("a rescaled table needs the model parameters it was rescaled with")

    # --- identity ----------------------------------------------------------------------

    @property
    def T(self) -> int:
        """The horizon: number of updates the table covers."""
        return int(self.lr.size)

    @property
    def schema_version(self) -> int:
        """1 for model-unit tables, 2 for tables in real learning-rate units (``lr_scale``)."""
        return 1 if self.lr_scale == 1.0 else 2

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(c for c in COLUMNS if c == "step" or self.column(c) is not None)

    @property
    def spec_hash(self) -> str | None:
        return digest(self.spec) if self.spec else None

    @property
    def solver_hash(self) -> str | None:
        return digest(self.solver) if self.solver else None

    def identity(self) -> dict[str, Any]:
        """Every header field that determines the columns (what the content hash covers)."""
        out: dict[str, Any] = {
            "schema": SCHEMA, "schema_version": self.schema_version, "T": self.T,
            "units": self.units, "columns": list(self.columns), "spec": self.spec,
            "spec_hash": self.spec_hash, "solver": self.solver, "solver_hash": self.solver_hash,
            "horizon": self.horizon,
        }
        if self.schema_version >= 2:
            out["lr_scale"] = self.lr_scale
            out["lr_units"] = "real: lr = lr_scale x model rate eta (spec and eta_max in model units)"
        if self.momentum is not None:
            out["momentum_convention"] = MOMENTUM_CONVENTION
        if self.controls:
            out["controls"] = self.controls
        return out

    @property
    def content_hash(self) -> str:
        """SHA-256 over :meth:`identity` (canonical JSON) and the float64 bytes of each column."""
        return self._hash_with(self.identity())

    def _hash_with(self, identity: Mapping[str, Any]) -> str:
        h = hashlib.sha256(_canonical(identity).encode())
        for name in self.columns[1:]:
            h.update(b"\0" + name.encode() + b"\0")
            h.update(np.ascontiguousarray(self.column(name), dtype="<f8").tobytes())
        return h.hexdigest()

    def header(self) -> dict[str, Any]:
        """The self-description written with the columns: identity, source, content hash."""
        return {**self.identity(), "source": self.source, "content_hash": self.content_hash}

    def column(self, name: str) -> np.ndarray | None:
        if name == "step":
            return np.arange(self.T)
        if name not in COLUMNS:
            raise ExportError(f"table column {name!r} does not exist; columns are {', '.join(COLUMNS)}")
        value: np.ndarray | None = getattr(self, name)
        return value

    def to_columns(self) -> dict[str, np.ndarray]:
        """The present columns by name, ``step`` first (int64), the others float64."""
        return {name: col for name in self.columns if (col := self.column(name)) is not None}

    # --- lookup ------------------------------------------------------------------------

    def _index(self, step: StepLike, past_end: PastEnd) -> np.ndarray:
        if past_end not in PAST_END:
            raise ExportError(f"past_end = {past_end!r}: choose 'hold' (keep the last value) or 'error'")
        try:
            t = np.asarray(step)
        except TypeError as err:  # e.g. a value traced by jax.jit, which numpy cannot read
            raise ExportError(f"step is a {type(step).__name__}, which numpy cannot read (a value traced "
                              "by jax.jit?); this schedule is numpy-only: under jax.jit use "
                              "optctl.optax.schedule(table)") from err
        if not np.issubdtype(t.dtype, np.integer):
            raise ExportError(f"step = {step!r}: pass an integer update count (0-based)")
        if np.any(t < 0):
            raise ExportError(f"step = {int(t.min())}: steps count updates from 0")
        if past_end == "error" and np.any(t >= self.T):
            raise ExportError(f"step = {int(t.max())} is past the end of the table (T = {self.T} "
                              "updates, steps 0..T-1); use past_end='hold' to keep the last "
                              "value, or a table for the longer horizon (for_horizon)")
        return np.minimum(t, self.T - 1)

    def schedule(self, column: str = "lr", past_end: PastEnd = "hold") -> Schedule:
        """A ``schedule(step) -> value`` reading one column, with numpy.

        ``step`` is an int or an integer array (0-based updates); past the end the last
        value is held (``past_end="hold"``) or :class:`ExportError` is raised. It does not
        trace under ``jax.jit``: the jittable form is :func:`optctl.optax.schedule`.
        """
        values = self.column(column)
        if values is None or column == "step":
            raise ExportError(f"table has no {column!r} column; columns are {', '.join(self.columns)}")
        self._index(0, past_end)

        def schedule(step: StepLike) -> float | np.ndarray:
            idx = self._index(step, past_end)
            out = values[idx]
            return float(out) if np.ndim(step) == 0 else np.asarray(out, dtype=float)

        return schedule

    @property
    def momentum_convention(self) -> str:
        """``"ema"``: ``momentum[t] = μ_t`` in ``v_t = μ_t v_{t−1} + (1 − μ_t) g_t``, ``θ −= lr_t v_t``.

        That is torch's ``SGD(momentum=μ, dampening=μ)`` and Adam's ``β1``. Heavy-ball
        optimizers (torch's default ``dampening=0``, ``optax.sgd``, ``OneCycleLR``) need
        :meth:`heavy_ball`; feeding them this column takes steps about ``1/(1 − μ)`` too large.
        """
        return "ema"

    def heavy_ball(self) -> tuple[np.ndarray, np.ndarray]:
        """``(lr', μ')`` giving the same updates with heavy-ball momentum.

        Heavy ball: ``h_t = μ'_t h_{t−1} + g_t``, ``θ −= lr'_t h_t``, from a zero buffer
        (torch's SGD with ``dampening=0``, ``optax.sgd``/``optax.trace``). With
        ``h_t = v_t / (1 − μ_t)`` the EMA recursion of :attr:`momentum_convention` becomes
        ``lr'_t = lr_t (1 − μ_t)`` and ``μ'_t = μ_t (1 − μ_{t−1}) / (1 − μ_t)`` (``μ'_0 = μ_0``
        multiplies the zero buffer). ``μ'_t`` may exceed 1 where the momentum rises fast;
        the recursion is still the table's. For a constant ``μ`` this is ``lr (1 − μ)``, ``μ``.
        """
        if self.momentum is None:
            raise ExportError("table has no momentum column, so there is nothing to convert to "
                              "heavy-ball form; use the lr column as it is")
        mu = self.momentum
        keep = 1.0 - mu
        lr = self.lr * keep
        mu_hb = mu.copy()
        mu_hb[1:] = mu[1:] * keep[:-1] / keep[1:]
        return lr, mu_hb

    def lr_at(self, step: int, past_end: PastEnd = "hold") -> float:
        return float(self.lr[int(self._index(step, past_end))])

    def momentum_at(self, step: int, past_end: PastEnd = "hold") -> float:
        if self.momentum is None:
            raise ExportError("table has no momentum column; solve with a momentum control")
        return float(self.momentum[int(self._index(step, past_end))])

    def _batch(self) -> np.ndarray:
        if self.batch_size is None:
            raise ExportError("table has no batch_size column; export it from a run "
                              "(solver tables always carry one)")
        return self.batch_size

    def batch_size_at(self, step: int, past_end: PastEnd = "hold") -> int:
        """The batch size ``m_t`` of update ``step``, as an integer number of samples."""
        m = float(self._batch()[int(self._index(step, past_end))])
        if m != round(m):
            raise ExportError(f"batch_size[{step}] = {m} is fractional (a continuous relaxation); "
                              "round the column before training on it")
        return int(m)

    @property
    def consumed_samples(self) -> np.ndarray:
        """``S_t = Σ_{s<t} m_s`` for ``t = 0..T``: samples consumed before update ``t``."""
        return np.concatenate([[0.0], np.cumsum(self._batch())])

    def step_at_samples(self, samples: float) -> int:
        """The update under way when ``samples`` have been consumed: ``t`` with ``S_t <= n < S_{t+1}``.

        Returns ``T`` once the table's whole sample budget ``S_T`` is consumed, so a
        schedule indexed by samples is not shifted when the real batch sizes differ.
        """
        if isinstance(samples, bool) or not isinstance(samples, (int, float, np.integer, np.floating)) \
                or not math.isfinite(samples) or samples < 0:
            raise ExportError(f"samples = {samples!r}: pass a number of samples >= 0")
        return int(np.searchsorted(self.consumed_samples, samples, side="right")) - 1

    def batch_ramp(self, unit: Literal["samples", "steps"] = "samples") -> str:
        """Megatron-style batch ramp ``"threshold:batch ..."``, one pair per change of ``m_t``.

        Thresholds are consumed samples (``unit="samples"``, as Megatron's ramp-up counts
        them) or update indices (``unit="steps"``) at which each batch size starts.
        """
        if unit not in ("samples", "steps"):
            raise ExportError(f"unit = {unit!r}: choose 'samples' or 'steps'")
        m = self._batch()
        for t in range(self.T):
            self.batch_size_at(t)
        starts = np.flatnonzero(np.concatenate([[True], m[1:] != m[:-1]]))
        at = self.consumed_samples[starts] if unit == "samples" else starts
        return " ".join(f"{int(a)}:{int(m[s])}" for a, s in zip(at, starts, strict=True))

    def with_lr_scale(self, lr_scale: float, *, calibration: Mapping[str, Any] | None = None) -> ScheduleTable:
        """The same schedule in real learning-rate units: ``lr = lr_scale × η`` (model ``η``).

        Only a model-unit table can be converted (scaling twice is refused). The scale is
        recorded in the header (schema version 2) and covered by the content hash;
        ``calibration`` (e.g. the fit folder and its maps) is kept in ``source``.
        """
        if self.lr_scale != 1.0:
            raise ExportError(f"this table is already in real units (lr_scale = {self.lr_scale}); "
                              "export it from the model-unit run instead")
        src = dict(self.source)
        if calibration is not None:
            src["calibration"] = dict(calibration)
        return replace(self, lr=self.lr * float(lr_scale), lr_scale=float(lr_scale), source=src)

    # --- horizons ----------------------------------------------------------------------

    def for_horizon(self, T: int, *, mode: HorizonMode) -> ScheduleTable:
        """The schedule for another horizon ``T``, rescaled in ``u = t/T`` by the phase's law.

        ``mode="rescale"`` keeps the shape as a function of ``u = t/T`` (each new update
        takes the mean of the old piecewise-constant schedule over its ``u``-interval;
        momentum likewise, batch sizes from the nearest update) and applies the phase's
        scaling law (Bordelon & Mori, arXiv:2602.04774; MODEL.md §5): in the easy phase
        (``b < a``) ``η*_T(t) ≈ T^(−ξ) f(t/T)`` with ``ξ = 1 − b/a``, so the rates are
        multiplied by ``(T/T_0)^(−ξ)`` and clipped to ``η_max``; in the hard phase the
        plateau at its height is kept. Rescaling is an asymptotic law, not a solve: it
        is exact for neither phase at finite ``T`` (the hard phase's annealing fraction
        shrinks as ``T`` grows). A :class:`~optctl.errors.HorizonWarning` says what was
        done. ``mode="resolve"`` (a new solve) needs the solver, which a table does not
        import: use :func:`optctl.solver.horizon.resolve_table`.
        """
        if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
            raise ExportError(f"T = {T!r}: pass a positive integer number of updates")
        if mode not in HORIZON_MODES:
            raise ExportError(f"mode = {mode!r}: choose 'rescale' (scaling law in t/T) or "
                              f"'resolve' (solve again for the new horizon, with {RESOLVE_HINT})")
        if mode == "resolve":
            raise ExportError(f"re-solving a table needs the solver, which tables do not import: "
                              f"call {RESOLVE_HINT}")
        T = int(T)
        if T == self.T:
            return self
        if not self.spec:
            raise ExportError("this table has no model parameters, so it can be neither "
                              "re-solved nor rescaled by a phase's law; build it for the horizon you need")
        return self._rescale(T)

    def _rescale(self, T: int) -> ScheduleTable:
        a, b = float(self.spec["a"]), float(self.spec["b"])
        xi = theory.xi(a, b)
        factor = (T / self.T) ** (-xi)
        lr = _stretch(self.lr, T) * factor
        eta_max = self.spec.get("eta_max")
        if eta_max is not None:
            lr = np.minimum(lr, float(eta_max) * self.lr_scale)
        law = (f"easy phase (b < a): rates scaled by (T/T0)^(-xi) = {factor:.6g}, xi = 1 - b/a = {xi:.6g}"
               if b < a else "hard phase or boundary (b >= a): plateau height kept")
        mom = None if self.momentum is None else _stretch(self.momentum, T)
        bs = None if self.batch_size is None else self.batch_size[_nearest(self.T, T)]
        solved_T = self.horizon.get("solved_T", self.spec.get("T"))
        horizon = {"mode": "rescale", "from_T": self.T, "solved_T": solved_T, "xi": xi,
                   "peak_factor": factor, "law": law}
        warnings.warn(
            f"rescaled the table from T = {self.T} to T = {T} in t/T; {law}. This is the "
            "asymptotic scaling law of MODEL.md section 5, not a solve: for the optimum at "
            f"T = {T} run `optctl solve CONFIG --T {T}` or {RESOLVE_HINT}",
            HorizonWarning, stacklevel=3)
        return replace(self, lr=lr, momentum=mom, batch_size=bs, horizon=horizon)


def _stretch(values: np.ndarray, T: int) -> np.ndarray:
    """Mean of the piecewise-constant ``values`` (as a function of ``u = t/T_0``) over each of ``T`` cells."""
    T0 = values.size
    integral = np.concatenate([[0.0], np.cumsum(values)]) / T0
    at = np.interp(np.arange(T + 1) / T, np.arange(T0 + 1) / T0, integral)
    return np.diff(at) * T


def _nearest(T0: int, T: int) -> np.ndarray:
    """Index of the old update whose ``u``-cell holds the midpoint of each new update's cell."""
    return np.minimum(((np.arange(T) + 0.5) * T0 / T).astype(np.int64), T0 - 1)


BRANCHING_SCHEMA = "optctl.branching_table"


@dataclass(frozen=True, eq=False)
class BranchingTable:
    """An anytime plan as tables: one shared trunk and a branch per horizon.

    ``trunk[t]`` is the learning rate of update ``t`` of the shared run,
    ``t = 0..max(leave)−1``; ``branches[i]`` the rates of updates ``leave[i] .. T_i − 1``
    of horizon ``horizons[i] = T_i``, which starts from the trunk's checkpoint after
    ``leave[i]`` updates. Horizon ``i`` trains with ``trunk[0:t_i]`` then ``branches[i]``
    (:meth:`horizon_table`). ``spec`` holds the model parameters; ``source`` where the
    plan came from (its regrets, and for a solved plan whether its minimax certificate
    holds: ``success``, ``status``, ``gap``; :attr:`certified`). The torch workflow is in :mod:`optctl.torch`
    (:func:`~optctl.torch.trunk_scheduler`, :func:`~optctl.torch.branch_scheduler`).
    """

    trunk: np.ndarray
    branches: tuple[np.ndarray, ...]
    leave: tuple[int, ...]
    horizons: tuple[int, ...]
    spec: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        trunk = _column("trunk", self.trunk, None) if np.size(self.trunk) else np.zeros(0)
        _check_range("trunk", trunk, 0.0, None, "learning rates must be >= 0")
        object.__setattr__(self, "trunk", trunk)
        n = len(self.horizons)
        if n < 1 or len(self.leave) != n or len(self.branches) != n:
            raise ExportError(f"branching table: {n} horizons, {len(self.leave)} leave points and "
                              f"{len(self.branches)} branches; give one leave point and one branch per horizon")
        hs = [int(T) for T in self.horizons]
        if hs != sorted(set(hs)):
            raise ExportError(f"branching table horizons {hs}: expected strictly increasing horizons")
        leave = [int(t) for t in self.leave]
        branches = []
        for i, (t, T, b) in enumerate(zip(leave, hs, self.branches, strict=True)):
            if not 0 <= t < T or t > trunk.size:
                raise ExportError(f"branching table leave[{i}] = {t}: expected 0 <= t < T = {T} and "
                                  f"t <= the trunk's {trunk.size} updates")
            col = _column(f"branches[{i}]", b, T - t)
            _check_range(f"branches[{i}]", col, 0.0, None, "learning rates must be >= 0")
            branches.append(col)
        if trunk.size != max(leave):
            raise ExportError(f"branching table trunk has {trunk.size} updates; the last leave point is "
                              f"{max(leave)}: the trunk runs exactly to it")
        object.__setattr__(self, "branches", tuple(branches))
        object.__setattr__(self, "leave", tuple(leave))
        object.__setattr__(self, "horizons", tuple(hs))
        object.__setattr__(self, "spec", dict(self.spec))
        object.__setattr__(self, "source", dict(self.source))

    @property
    def certified(self) -> bool:
        """Whether the plan's source says its minimax certificate holds (``success`` true);
        false for an uncertified plan and for a table that does not say."""
        return self.source.get("success") is True

    def trunk_table(self) -> ScheduleTable:
        """The trunk as a schedule table (the shared run, ``max(leave)`` updates)."""
        if self.trunk.size == 0:
            raise ExportError("this plan has no trunk (every branch leaves at t = 0): train each "
                              "horizon_table(i) from the start")
        return ScheduleTable(lr=self.trunk, spec={}, source={"kind": "branching_trunk"})

    def branch_table(self, i: int) -> ScheduleTable:
        """Branch ``i`` as a schedule table: its row 0 is update ``leave[i]`` of the run."""
        return ScheduleTable(lr=self.branches[i], source={"kind": "branching_branch", "index": i,
                                                          "leave": self.leave[i], "T": self.horizons[i]})

    def horizon_table(self, i: int) -> ScheduleTable:
        """Horizon ``i`` whole: ``trunk[0:t_i]`` then branch ``i`` (``T_i`` updates)."""
        return ScheduleTable(lr=np.concatenate([self.trunk[: self.leave[i]], self.branches[i]]),
                             source={"kind": "branching_horizon", "index": i, "T": self.horizons[i]})

    def to_dict(self) -> dict[str, Any]:
        """The plan as plain JSON data (:func:`branching_from_dict` reads it back)."""
        return {"schema": BRANCHING_SCHEMA, "schema_version": 1, "horizons": list(self.horizons),
                "leave": list(self.leave), "trunk": self.trunk.tolist(),
                "branches": [b.tolist() for b in self.branches], "spec": dict(self.spec),
                "source": dict(self.source)}


def branching_from_dict(d: Mapping[str, Any]) -> BranchingTable:
    """The :class:`BranchingTable` of :meth:`BranchingTable.to_dict` (checked)."""
    if not isinstance(d, Mapping) or d.get("schema") != BRANCHING_SCHEMA:
        raise ExportError(f"not a branching table (schema {d.get('schema') if isinstance(d, Mapping) else d!r}); "
                          f"expected {BRANCHING_SCHEMA!r}")
    try:
        return BranchingTable(trunk=np.asarray(d["trunk"], dtype=float),
                              branches=tuple(np.asarray(b, dtype=float) for b in d["branches"]),
                              leave=tuple(d["leave"]), horizons=tuple(d["horizons"]),
                              spec=d.get("spec", {}), source=d.get("source", {}))
    except KeyError as err:
        raise ExportError(f"branching table misses the field {err}") from None


# --- momentum-family tables ----------------------------------------------------------------

FAMILY_SCHEMA = "optctl.family_table"
# The per-step coefficient columns of each kind of family table (docs/momentum_families.md §2).
FAMILY_COLUMNS: dict[str, tuple[str, ...]] = {
    "gen-mom": ("gamma1", "gamma2", "gamma3", "Delta"),
    "schedule-free": ("lr", "beta"),
}
FAMILY_KINDS: dict[str, str] = {"dana-decaying": "gen-mom", "dana-constant": "gen-mom",
                                "dana-scheduled": "gen-mom", "log-time": "gen-mom",
                                "schedule-free": "schedule-free"}
# A coefficient that must vanish or match for a family to fit torch's SGD, to this tolerance.
_EXPRESS_RTOL = 1e-12


@dataclass(frozen=True, eq=False)
class FamilyTable:
    """The per-step coefficients of a momentum family (docs/momentum_families.md §2).

    ``family`` is one of ``dana-decaying``, ``dana-constant``, ``dana-scheduled`` (DANA with
    solved per-step ``γ₂, γ₃``), ``log-time``, ``schedule-free`` (its ``lr`` column constant or
    solved); ``columns`` holds one value per update ``t = 0..T−1`` of

    - Gen-Mom-SGD families (DANA, log-time): ``gamma1, gamma2, gamma3, Delta`` of
      ``y_t = (1 − Δ_t) y_{t−1} + γ₁(t) g_t``, ``θ_{t+1} = θ_t − γ₂(t) g_t − γ₃(t) y_t``,
      ``y_{−1} = 0``, gradient at ``θ_t``;
    - Schedule-Free SGD: ``lr, beta`` of ``y_t = (1 − β_t) z_t + β_t x_t``,
      ``z_{t+1} = z_t − γ_t g(y_t)``, ``x_{t+1} = (1 − c) x_t + c z_{t+1}``, ``c = 1/(t + 2)``
      (0-based ``t``), ``x_0 = z_0``; the trained model is ``x``.

    ``params`` are the family's hyperparameters, ``spec`` the model they were chosen for
    and ``expected_loss`` the exact expected ``L_T`` of the recursion (when known).
    The torch adapter drives them with :class:`optctl.torch.GenMomSGD` and
    :class:`optctl.torch.ScheduleFreeSGD`; :meth:`to_schedule_table` converts the cases
    that torch's own SGD can run (and refuses the others, saying why).
    """

    family: str
    columns: Mapping[str, Any]
    params: Mapping[str, Any] = field(default_factory=dict)
    spec: Mapping[str, Any] = field(default_factory=dict)
    expected_loss: float | None = None
    source: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.family not in FAMILY_KINDS:
            raise ExportError(f"family table family = {self.family!r}: expected one of "
                              f"{', '.join(FAMILY_KINDS)}")
        if not isinstance(self.columns, Mapping):
            raise ExportError(f"family table columns = {self.columns!r}: expected a mapping name -> values")
        need = FAMILY_COLUMNS[self.kind]
        if set(self.columns) != set(need):
            raise ExportError(f"family table ({self.family}) has columns {sorted(self.columns)}; "
                              f"a {self.kind} table needs exactly {', '.join(need)}")
        T: int | None = None
        cols: dict[str, np.ndarray] = {}
        for name in need:
            arr = _column(name, self.columns[name], T)
            T = arr.size
            cols[name] = arr
        if self.kind == "gen-mom":
            _check_closed("Delta", cols["Delta"], "the velocity's decay rate Δ lies in [0, 1]")
            for name in ("gamma1", "gamma2", "gamma3"):
                _check_range(name, cols[name], 0.0, None, "step coefficients must be >= 0")
        else:
            _check_range("lr", cols["lr"], 0.0, None, "learning rates must be >= 0")
            _check_closed("beta", cols["beta"], "β must lie in [0, 1]")
        object.__setattr__(self, "columns", cols)
        for name in ("params", "spec", "source"):
            value = getattr(self, name)
            if not isinstance(value, Mapping):
                raise ExportError(f"family table {name} = {value!r}: expected a mapping")
            object.__setattr__(self, name, dict(value))
        if self.expected_loss is not None:
            object.__setattr__(self, "expected_loss", float(self.expected_loss))

    @property
    def kind(self) -> str:
        """``gen-mom`` (a velocity and the iterate) or ``schedule-free`` (``z`` and ``x``)."""
        return FAMILY_KINDS[self.family]

    @property
    def T(self) -> int:
        return int(next(iter(self.columns.values())).size)

    def column(self, name: str) -> np.ndarray:
        if name not in self.columns:
            raise ExportError(f"family table ({self.family}) has no column {name!r}; columns are "
                              f"{', '.join(self.columns)}")
        return np.asarray(self.columns[name])

    def row(self, t: int) -> dict[str, float]:
        """The coefficients of update ``t`` (``0 <= t < T``)."""
        if isinstance(t, bool) or not isinstance(t, (int, np.integer)) or not 0 <= t < self.T:
            raise ExportError(f"update {t!r} is outside the family table (T = {self.T} updates, "
                              f"0 <= t < {self.T}); solve or tune the family for the longer run")
        return {name: float(col[t]) for name, col in self.columns.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the header and the columns as lists (read back by :func:`family_table_from_dict`)."""
        return {"schema": FAMILY_SCHEMA, "schema_version": 1, "family": self.family, "kind": self.kind,
                "T": self.T, "params": {k: v for k, v in self.params.items() if not k.startswith("_")},
                "spec": self.spec, "expected_loss": self.expected_loss, "source": self.source,
                "columns": {k: [float(x) for x in v] for k, v in self.columns.items()}}

    def to_schedule_table(self) -> ScheduleTable:
        """The same updates as a :class:`ScheduleTable` for torch's SGD, where that exists.

        Gen-Mom-SGD with ``γ₂ ≡ 0`` and ``γ₁ ≡ Δ`` is EMA momentum: ``lr_t = γ₃(t)``,
        ``μ_t = 1 − Δ_t`` (torch ``SGD(momentum=μ, dampening=μ)`` from a zero buffer,
        which :class:`optctl.torch.TableScheduler` sets up); ``Δ ≡ γ₁ ≡ 1`` is plain SGD with
        ``lr_t = γ₂ + γ₃``. Everything else raises :class:`ExportError`: DANA and the
        damped log-time momentum step along the fresh gradient and the velocity with
        independent weights (``γ₂ g + γ₃ y``), which one momentum buffer cannot hold, and
        Schedule-Free keeps two iterates (``z`` and the average ``x``).
        """
        c = self.columns
        if self.kind == "schedule-free":
            raise ExportError(
                f"{self.family}: its state is two iterates (z and the running average x, the "
                "gradient taken at y = (1 - beta) z + beta x), which torch.optim.SGD cannot "
                "express; drive it with optctl.torch.ScheduleFreeSGD(params, family_table)")
        g1, g2, g3, D = c["gamma1"], c["gamma2"], c["gamma3"], c["Delta"]
        source = {**self.source, "family": self.family, "params": self.to_dict()["params"]}
        if np.allclose(D, 1.0, rtol=0, atol=_EXPRESS_RTOL) and np.allclose(g1, 1.0, rtol=0, atol=_EXPRESS_RTOL):
            return ScheduleTable(lr=g2 + g3, spec=self.spec, source=source)
        if np.all(g2 <= _EXPRESS_RTOL * np.maximum(g3, 1e-300)) and np.allclose(
                g1, D, rtol=_EXPRESS_RTOL, atol=0):
            return ScheduleTable(lr=g3, momentum=1.0 - D, spec=self.spec, source=source)
        raise ExportError(
            f"{self.family}: each update steps along the fresh gradient and the velocity with "
            "independent weights (theta -= gamma2 g + gamma3 y, y = (1 - Delta) y + gamma1 g), a "
            "state that torch.optim.SGD's single momentum buffer cannot express (its Nesterov form "
            "would need gamma3 = gamma2 (1 - Delta) and gamma1 = 1); drive it with "
            "optctl.torch.GenMomSGD(params, family_table)")


def _check_closed(name: str, arr: np.ndarray, rule: str) -> None:
    """Values in the closed interval ``[0, 1]``."""
    bad = (arr < 0.0) | (arr > 1.0)
    if bad.any():
        t = int(np.argmax(bad))
        raise ExportError(f"table column {name}[{t}] = {float(arr[t])!r}: {rule}")


def family_table_from_dict(d: Mapping[str, Any]) -> FamilyTable:
    """Read :meth:`FamilyTable.to_dict`'s output back (checks the schema)."""
    if not isinstance(d, Mapping) or d.get("schema") != FAMILY_SCHEMA:
        raise ExportError(f"not a family table (schema {d.get('schema') if isinstance(d, Mapping) else d!r}, "
                          f"expected {FAMILY_SCHEMA!r}); write it with FamilyTable.to_dict")
    if d.get("schema_version") != 1:
        raise ExportError(f"family table schema_version = {d.get('schema_version')!r}: this optctl reads 1")
    table = FamilyTable(family=d["family"], columns=d["columns"], params=d.get("params", {}),
                        spec=d.get("spec", {}), expected_loss=d.get("expected_loss"),
                        source=d.get("source", {}))
    if "T" in d and d["T"] != table.T:
        raise ExportError(f"family table says T = {d['T']} but its columns hold {table.T} updates")
    return table
