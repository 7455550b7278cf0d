"""Learning-rate schedule factories for the baselines (optax style).

Each factory checks its arguments once and returns ``schedule(step) -> value``.
``step`` is an ``int`` (or numpy integer scalar), giving a ``float``, or a numpy
integer array, giving a float array of the same shape. Steps count updates from 0:
a run of ``T`` updates uses ``η_0 .. η_{T−1}`` (:func:`sample`).

Discrete convention (one rule for every piece). A ramp of ``n`` steps from ``v_0``
to ``v_1`` takes the value ``v_0`` at relative step ``s = 0``, reaches ``v_1`` at
``s = n`` and holds ``v_1`` for ``s > n``. Pieces are chained with :func:`join`,
where the next piece starts at relative step 0 on its boundary. Consequences:

- a warmup of ``W`` steps starts at ``η_0 = 0`` and reaches the peak at ``t = W``;
- a decay over ``D`` steps that starts at ``t_0`` reaches ``end_value`` at
  ``t = t_0 + D``, so when ``t_0 + D = T`` the last update ``t = T − 1`` still
  uses a small nonzero rate (``peak / D`` for a linear decay to 0).

References: optax ``optax/schedules`` (factories, ``join_schedules``); Loshchilov &
Hutter 2017 (cosine, arXiv:1608.03983); Hu et al. 2024 (MiniCPM, warmup-stable-decay,
arXiv:2404.06395); Hägele et al. 2024 (``1 − sqrt`` cooldown, arXiv:2405.18392);
Bordelon & Mori 2026 (arXiv:2602.04774), section 4 baselines and the easy-phase
shape ``(1 − t/T)^(2b−1)`` of the optimal schedule.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt

from optctl.errors import SpecError, SpecTypeError
from optctl.validate import check_int, check_real

StepLike = int | np.integer | npt.NDArray[np.integer]
Schedule = Callable[[StepLike], float | np.ndarray]
DecayShape = Literal["linear", "cosine", "sqrt"]
DECAY_SHAPES: tuple[str, ...] = ("linear", "cosine", "sqrt")


# ---------------------------------------------------------------- argument checks


def _real(factory: str, name: str, value: object, *, lo: float | None = None,
          lo_open: bool = False) -> float:
    x = check_real(name, value, f"a real number ({factory})")
    if lo is not None and (x <= lo if lo_open else x < lo):
        rel = ">" if lo_open else ">="
        raise SpecError(name, value, f"{factory} needs {name} {rel} {lo:g}")
    return x


def _count(factory: str, name: str, value: object, *, lo: int) -> int:
    n = check_int(name, value, f"an integer number of steps ({factory})")
    if n < lo:
        raise SpecError(name, value, f"{factory} needs {name} >= {lo} (a number of steps)")
    return n


def _end_value(factory: str, peak: float, value: object) -> float:
    end = _real(factory, "end_value", value, lo=0.0)
    if end > peak:
        raise SpecError("end_value", value,
                        f"{factory} decays, so end_value must lie in [0, peak_value={peak:g}]")
    return end


def _as_steps(step: StepLike) -> np.ndarray:
    arr = np.asarray(step)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise SpecTypeError("step", step, "an int or a numpy integer array of update counts")
    if arr.size and int(arr.min()) < 0:
        raise SpecError("step", int(arr.min()), "steps count updates from 0; pass step >= 0")
    return arr.astype(np.int64, copy=False)


def _out(values: np.ndarray, step: StepLike) -> float | np.ndarray:
    return float(values) if np.ndim(step) == 0 else values


# ---------------------------------------------------------------- private pieces


def _ramp(init_value: float, end_value: float, steps: int,
          shape: DecayShape = "linear") -> Schedule:
    """``v(s) = v_1 + (v_0 − v_1) w(min(s, n)/n)`` (arguments already checked).

    ``w(x) = 1 − x`` (linear), ``(1 + cos πx)/2`` (cosine) or ``1 − √x`` (sqrt);
    ``v_0 = init_value``, ``v_1 = end_value``, ``n = steps``. Values are clipped to
    the interval between ``v_0`` and ``v_1`` so rounding never leaves it.
    """
    lo, hi = min(init_value, end_value), max(init_value, end_value)

    def schedule(step: StepLike) -> float | np.ndarray:
        # In place on one buffer (long runs sample 10^5+ steps per call): the same
        # floats as x = min(s, n)/n, w(x), v_0 w + v_1 (1 − w), clipped.
        t = _as_steps(step)
        x = np.divide(np.minimum(t, steps, out=np.empty(t.shape)), steps, out=np.empty(t.shape))
        w = x
        if shape == "linear":
            np.subtract(1.0, x, out=w)
        elif shape == "cosine":
            np.multiply(0.5, np.add(1.0, np.cos(np.multiply(np.pi, x, out=w), out=w), out=w), out=w)
        else:
            np.subtract(1.0, np.sqrt(x, out=w), out=w)
        # v_0 w + v_1 (1 − w) rather than v_1 + (v_0 − v_1) w: exact at both ends.
        v = np.multiply(init_value, w, out=np.empty(t.shape))
        np.add(v, np.multiply(end_value, np.subtract(1.0, w, out=w), out=w), out=v)
        return _out(np.clip(v, lo, hi, out=v), step)

    return schedule


def _warmup_then(peak_value: float, warmup_steps: int, rest: Sequence[Schedule],
                 boundaries: Sequence[int]) -> Schedule:
    """Prefix a linear warmup ``0 → peak`` of ``warmup_steps`` to already joined pieces."""
    if warmup_steps == 0:
        return rest[0] if len(rest) == 1 else join(rest, boundaries)
    pieces = [_ramp(0.0, peak_value, warmup_steps), *rest]
    return join(pieces, [warmup_steps, *(warmup_steps + b for b in boundaries)])


# ---------------------------------------------------------------- public factories


def constant(value: float) -> Schedule:
    """Constant schedule ``η_t = value`` for every ``t >= 0``."""
    v = _real("constant", "value", value, lo=0.0)

    def schedule(step: StepLike) -> float | np.ndarray:
        return _out(np.full(_as_steps(step).shape, v), step)

    return schedule


def power_law(init_value: float, exponent: float) -> Schedule:
    """Power-law decay ``η_t = η_0 (t + 1)^(−χ)``.

    ``init_value`` → ``η_0`` (the rate of the first update), ``exponent`` → ``χ``
    (``χ = 0`` is the constant schedule). The "best power law" baseline of Bordelon &
    Mori (arXiv:2602.04774), section 4.
    """
    eta0 = _real("power_law", "init_value", init_value, lo=0.0)
    chi = _real("power_law", "exponent", exponent, lo=0.0)

    def schedule(step: StepLike) -> float | np.ndarray:
        t = _as_steps(step)
        return _out(eta0 * (t + 1.0) ** (-chi), step)

    return schedule


def linear_decay(peak_value: float, decay_steps: int, end_value: float = 0.0,
                 warmup_steps: int = 0) -> Schedule:
    """Optional linear warmup, then linear decay from the peak to ``end_value``.

    With ``W = warmup_steps``, ``D = decay_steps``, ``η̂ = peak_value``,
    ``η_end = end_value`` and ``s = t − W``::

        η_t = η̂ t / W                              for 0 <= t < W
        η_t = η_end + (η̂ − η_end)(1 − min(s, D)/D)   for t >= W

    so ``η_W = η̂``, ``η_{W+D} = η_end`` and the rate stays at ``η_end`` afterwards.
    A full-horizon decay (``W + D = T``) ends with ``η_{T−1} = η_end + (η̂ − η_end)/D``.
    """
    peak = _real("linear_decay", "peak_value", peak_value, lo=0.0)
    d = _count("linear_decay", "decay_steps", decay_steps, lo=1)
    end = _end_value("linear_decay", peak, end_value)
    w = _count("linear_decay", "warmup_steps", warmup_steps, lo=0)
    return _warmup_then(peak, w, [_ramp(peak, end, d, "linear")], [])


def cosine(peak_value: float, decay_steps: int, end_value: float = 0.0,
           warmup_steps: int = 0) -> Schedule:
    """Optional linear warmup, then a half cosine from the peak to ``end_value``.

    With ``W = warmup_steps``, ``D = decay_steps``, ``η̂ = peak_value``,
    ``η_end = end_value`` and ``s = t − W``::

        η_t = η̂ t / W                                         for 0 <= t < W
        η_t = η_end + (η̂ − η_end)(1 + cos(π min(s, D)/D))/2     for t >= W

    (Loshchilov & Hutter, arXiv:1608.03983, without restarts.) ``η_{W+D} = η_end``.
    """
    peak = _real("cosine", "peak_value", peak_value, lo=0.0)
    d = _count("cosine", "decay_steps", decay_steps, lo=1)
    end = _end_value("cosine", peak, end_value)
    w = _count("cosine", "warmup_steps", warmup_steps, lo=0)
    return _warmup_then(peak, w, [_ramp(peak, end, d, "cosine")], [])


def polynomial_decay(peak_value: float, total_steps: int, exponent: float) -> Schedule:
    """Polynomial decay to zero ``η_t = η̂ (1 − min(t, T)/T)^p``.

    ``peak_value`` → ``η̂``, ``total_steps`` → ``T``, ``exponent`` → ``p``
    (``p = 0`` is constant; the rate is 0 from ``t = T`` on when ``p > 0``). With
    ``p = 2b − 1`` this is the decaying part of the easy-phase optimal schedule of
    Bordelon & Mori (arXiv:2602.04774), section 5.
    """
    peak = _real("polynomial_decay", "peak_value", peak_value, lo=0.0)
    total = _count("polynomial_decay", "total_steps", total_steps, lo=1)
    p = _real("polynomial_decay", "exponent", exponent, lo=0.0)

    def schedule(step: StepLike) -> float | np.ndarray:
        x = np.minimum(_as_steps(step), total) / total
        return _out(np.clip(peak * (1.0 - x) ** p, 0.0, peak), step)

    return schedule


def warmup_stable_decay(peak_value: float, warmup_steps: int, stable_steps: int,
                        decay_steps: int, end_value: float = 0.0,
                        decay_shape: DecayShape = "linear") -> Schedule:
    """Warmup-stable-decay, joined from a warmup ramp, a plateau and a decay ramp.

    With ``W, S, D`` the three step counts, ``η̂ = peak_value``, ``η_end = end_value``
    and ``x = min(t − W − S, D)/D``::

        η_t = η̂ t / W                       for 0 <= t < W
        η_t = η̂                             for W <= t < W + S
        η_t = η_end + (η̂ − η_end) w(x)      for t >= W + S

    with ``w(x) = 1 − x`` (``"linear"``), ``(1 + cos πx)/2`` (``"cosine"``) or
    ``1 − √x`` (``"sqrt"``, the cooldown of Hägele et al., arXiv:2405.18392).
    WSD as in Hu et al. (MiniCPM, arXiv:2404.06395); ``W + S + D = T`` spans a run of
    ``T`` updates, ending with the small nonzero ``η_{T−1}`` of the decay's last step.
    """
    f = "warmup_stable_decay"
    peak = _real(f, "peak_value", peak_value, lo=0.0)
    w = _count(f, "warmup_steps", warmup_steps, lo=0)
    s = _count(f, "stable_steps", stable_steps, lo=0)
    d = _count(f, "decay_steps", decay_steps, lo=1)
    end = _end_value(f, peak, end_value)
    if decay_shape not in DECAY_SHAPES:
        raise SpecError("decay_shape", decay_shape, f"choose one of {', '.join(DECAY_SHAPES)}")
    decay = _ramp(peak, end, d, decay_shape)
    if s == 0:
        return _warmup_then(peak, w, [decay], [])
    return _warmup_then(peak, w, [constant(peak), decay], [s])


def join(schedules: Sequence[Schedule], boundaries: Sequence[int]) -> Schedule:
    """Chain schedules: piece ``i`` runs on ``b_{i−1} <= t < b_i`` and sees ``t − b_{i−1}``.

    ``boundaries`` → ``b_0 <= b_1 <= ...`` (one fewer than ``schedules``; ``b_{−1} = 0``
    and the last piece runs for ever). A step equal to a boundary belongs to the
    piece that starts there, at its relative step 0; equal boundaries give a piece
    that is never used. Like ``optax.join_schedules``, but each piece is evaluated
    only on its own steps, so it never sees a negative step.
    """
    pieces = list(schedules)
    if not pieces:
        raise SpecError("schedules", schedules, "join needs at least one schedule")
    for i, s in enumerate(pieces):
        if not callable(s):
            raise SpecTypeError(f"schedules[{i}]", s, "a schedule(step) callable")
    bounds = [_count("join", f"boundaries[{i}]", b, lo=0) for i, b in enumerate(boundaries)]
    if len(bounds) != len(pieces) - 1:
        raise SpecError("boundaries", list(boundaries),
                        f"join needs len(boundaries) = len(schedules) - 1 = {len(pieces) - 1}")
    if any(b1 < b0 for b0, b1 in itertools.pairwise(bounds)):
        raise SpecError("boundaries", list(boundaries), "must be non-decreasing")
    edges = np.asarray(bounds, dtype=np.int64)
    starts = np.concatenate([[0], edges])

    def schedule(step: StepLike) -> float | np.ndarray:
        t = _as_steps(step)
        piece = np.searchsorted(edges, t, side="right")  # boundaries <= t
        out = np.empty(t.shape)
        for i, s in enumerate(pieces):
            mask = piece == i
            if mask.any():
                out[mask] = np.asarray(s(t[mask] - starts[i]), dtype=float)
        return _out(out, step)

    return schedule


def sample(schedule: Schedule, T: int) -> np.ndarray:
    """The per-update rates ``[η_0, ..., η_{T−1}]`` of a run of ``T`` updates."""
    n = _count("sample", "T", T, lo=1)
    return np.asarray(schedule(np.arange(n)), dtype=float)
