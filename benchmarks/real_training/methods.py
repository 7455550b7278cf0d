"""The methods compared on each task, how each is tuned, and what each costs in updates.

Every method ends in one schedule that is run on the same evaluation seeds (paired).
Its cost is every update spent before that run — probe, pilots, tuning runs — plus the
run itself. Tuning runs use a seed of their own (:data:`TUNE_SEED`), pilots another
(:data:`PILOT_SEED`), so no method has seen the evaluation seeds.

- ``optctl``: a learning-rate range probe, then a rate ladder: short constant runs from
  half the probe's divergent rate down by halves, until one ends worse than the one
  before; the rung with the lowest loss gives the largest rate any schedule may use. That
  rung is continued (the trunk) and a linear decay branches from the trunk's middle;
  probe, rungs, trunk and branch spend a quarter of one run's updates. The fit
  (``optctl.calibrate.fitting.fit``) sees every stable rung, the trunk and the branch; the
  run config of the fitted model takes the best rung's rate as ``lr_max``
  (``optctl.io.fits.run_config``, what ``optctl fit`` writes), then ``solve`` and the
  table in real units. Closed loop: the same start, re-solved at a quarter, half, three
  quarters and nine tenths of the run from a refit on the run's own held-out loss, and
  once more when the table's anneal begins after nine tenths (``ClosedLoop.due``)
  (``optctl.calibrate.closedloop.ClosedLoop``).
- ``cosine``, ``linear``, ``wsd``: the peak (and WSD's decay fraction) tuned by grid search,
  (i) with full-length runs (the probe's divergent rate times 2^-k, extended by an octave
  past an end of the grid while that end wins), (ii) with the updates optctl spent before its run: the probe
  and four short runs at four peaks (the family compressed to the short horizon).

A continued or branching run (the trunk continuing the stable ladder run, the branch
leaving the trunk) is recomputed from its seed; on the CPU the shared prefix is
bit-identical (the pipeline checks it), so its updates are counted once, as a run that
saved and restored its state would spend them.
- ``schedule_free``: Schedule-Free SGD/AdamW (Defazio et al., 2024), its learning rate tuned
  on the full-length grid (extended the same way).
- ``refined``: the schedule refined from the gradient norms of the tuned linear-decay run
  (Defazio et al., 2023), its peak tuned on the grid.
- ``mpl``: the Multi-Power Law (Luo et al., 2025) fitted to optctl's pilots and its own
  optimal schedule under that law, with optctl's bound on the peak.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optctl import schedules as S
from optctl.calibrate.curves import LossCurve, curve_from_arrays
from optctl.calibrate.params import FitOptions

from .tasks import Task

EVAL_SEEDS = tuple(range(8))
TUNE_SEED = 100
PILOT_SEED = 200
# The learning-rate range probe: this fraction of the run's updates, rates swept
# geometrically across the task's range; divergence when the held-out loss exceeds this
# multiple of its lowest value so far at PROBE_CONFIRM consecutive steps (one noisy
# spike is not divergence).
PROBE_FRACTION = 1 / 40
PROBE_BLOWUP = 4.0
PROBE_CONFIRM = 3
# The rate ladder: constant runs of this fraction of T, at most LADDER_MAX rungs. A rung
# is stable when its loss ends below where it started and never exceeds LADDER_BLOWUP
# times the start; the ladder stops at the first stable rung that ends worse than the
# best so far (the short-run optimum is passed).
LADDER_FRACTION = 1 / 40
LADDER_BLOWUP = 3.0
LADDER_MAX = 6
# Pilots (and the equal-budget tuning runs) spend this fraction of one run, probe included.
PILOT_FRACTION = 0.25
# Share of what the ladder leaves that continues the best rung (the trunk); the rest is
# the branch's decay.
TRUNK_SHARE = 0.7
# Peaks tried by the full-length grids: the probe's divergent rate times 2^-k.
GRID_OCTAVES = 8
# A grid whose best peak is at its end is extended by up to this many octaves past it.
GRID_EXTEND = 4
WSD_FRACTIONS = (0.1, 0.2, 0.4)
WSD_DEFAULT_FRACTION = 0.2
# The closed loop re-solves at these fractions of the run. The last at 9/10: on the
# networks the held-out loss levels off during the decay, and the refit that predicts the
# final loss within 10% needs to have seen it (the error at every checkpoint is reported).
# A table whose anneal begins later gets one more re-solve there (ClosedLoop.due).
CHECKPOINTS = (0.25, 0.5, 0.75, 0.9)
# The fit: the model size and the bootstrap for the intervals behind the phase verdict.
FIT_OPTIONS = FitOptions(N=1000, bootstrap=20, starts=4)


def record_steps(T: int, n: int = 40, early: int = 8) -> np.ndarray:
    """Where a run's held-out loss is measured: 0, ``early`` log-spaced steps and ``n + 1``
    evenly spaced ones up to ``T``. Evenly spaced points give the late part of a run — the
    part a schedule decides — its weight in a fit; log-spaced ones alone would spend most
    of the points on the first few percent."""
    return np.unique(np.concatenate([[0], np.round(np.geomspace(1, T, early)).astype(int),
                                     np.round(np.linspace(0, T, n + 1)).astype(int)]))


# The closed loop's run is measured every LATE_EVERY · T over its last LATE_FROM of the
# run besides :func:`record_steps`: the anneal of a solved schedule often falls in the last
# few percent, and the re-solve once it has begun (ClosedLoop.due) needs points in it.
LATE_FROM, LATE_EVERY = 0.2, 0.01


def closed_loop_record(T: int, start: int = 0) -> list[int]:
    """Where the closed loop's run measures its held-out loss: :func:`record_steps`, the
    model's time 0 ``start``, and every ``LATE_EVERY · T`` over the last ``LATE_FROM``."""
    late = np.round(np.linspace((1 - LATE_FROM) * T, T, round(LATE_FROM / LATE_EVERY) + 1)).astype(int)
    return [int(x) for x in np.union1d(np.union1d(record_steps(T), [start]), late)]


def family(name: str, peak: float, T: int, fraction: float = WSD_DEFAULT_FRACTION) -> np.ndarray:
    """The per-update rates of a baseline family: cosine or linear decay to 0 over ``T``,
    or WSD (constant, then a linear decay to 0 over the last ``fraction`` of ``T``)."""
    if name == "cosine":
        return S.sample(S.cosine(peak, T), T)
    if name == "linear":
        return S.sample(S.linear_decay(peak, T), T)
    if name == "wsd":
        d = max(1, round(fraction * T))
        return S.sample(S.warmup_stable_decay(peak, 0, T - d, d), T)
    raise ValueError(f"unknown family {name!r}")


def probe_rates(task: Task) -> np.ndarray:
    P = max(20, round(PROBE_FRACTION * task.T))
    return np.geomspace(task.lr_range[0], task.lr_range[1], P)


def divergent_rate(rates: np.ndarray, steps: np.ndarray, loss: np.ndarray) -> float:
    """The rate at which the probe's held-out loss starts a run of :data:`PROBE_CONFIRM`
    steps above :data:`PROBE_BLOWUP` × its lowest value so far, or stops being finite, or
    the probe stopped as diverged (its last step short of the last rate); the largest
    rate if none of these happens."""
    best, above = np.inf, 0
    for s, value in zip(steps[1:], loss[1:], strict=True):
        if not np.isfinite(value):
            return float(rates[max(s - 1 - above, 0)])
        if value > PROBE_BLOWUP * best:
            above += 1
            if above == PROBE_CONFIRM:
                return float(rates[s - PROBE_CONFIRM])
            continue
        above = 0
        best = min(best, value)
    if steps[-1] < rates.size:  # the run stopped: it exploded by its last step
        first_above = steps[-1] - above + 1 if above else steps[-1]
        return float(rates[max(first_above - 1, 0)])
    return float(rates[-1])


def ladder_length(task: Task) -> int:
    return max(10, round(LADDER_FRACTION * task.T))


def is_stable(loss: np.ndarray, diverged: bool) -> bool:
    """A ladder rung is stable: finite, ending below its start, never above
    :data:`LADDER_BLOWUP` × its start."""
    loss = np.asarray(loss, dtype=float)
    return bool(not diverged and np.all(np.isfinite(loss)) and loss[-1] < loss[0]
                and float(loss[1:].max()) <= LADDER_BLOWUP * loss[0])


def rung_worse(finals: list[float]) -> bool:
    """The last stable rung ended worse than the best before it."""
    return finals[-1] > min(finals[:-1])


def rungs_to_fit(ladder: list[dict[str, Any]], best_rung: int) -> list[int]:
    """The ladder rungs the fit takes besides the best one: the stable rungs at rates
    *below* the chosen rate. A stable rung above it ended worse than the lower rate the
    ladder chose, after the same updates: a run past the short-run optimum, where the
    loss no longer responds to the rate as in stable SGD (the model). Fitted with them,
    the character-level model's fit attributed its plateau to noise a decay removes and
    predicted the closed loop's final loss 20-23% too low (docs/real_training.md)."""
    top = ladder[best_rung]["rate"]
    return [i for i, rung in enumerate(ladder) if rung["stable"] and i != best_rung and rung["rate"] < top]


@dataclass(frozen=True)
class Pilot:
    """A pilot run: its rates, where its loss is measured, its seed, and the updates it
    shares with a run it continues (``prefix``; not paid again)."""

    name: str
    lr: np.ndarray
    steps: np.ndarray
    seed: int
    prefix: int = 0

    @property
    def cost(self) -> int:
        return int(self.lr.size - self.prefix)


def pilot_design(task: Task, top: float, spent: int, seed: int, rung: int,
                 trunk_decay: float = 0.0) -> list[Pilot]:
    """The trunk and the branch, in what is left of a quarter of one run after the probe
    and the ladder's ``spent`` updates: the trunk continues the best rung (``rung``
    updates at ``top`` on ``seed``) at the same rate; the branch leaves the trunk at its
    middle and decays linearly to 0 (its loss measured at every step of the decay).
    ``trunk_decay`` > 0: the trunk's last ``trunk_decay`` of its updates decay linearly to
    0 too (measured at 20 points or more): a second response to an anneal, from a later
    state, at no extra cost in updates."""
    if not 0.0 <= trunk_decay < 0.5:
        raise ValueError(f"trunk_decay must lie in [0, 0.5), not {trunk_decay!r}")
    left = max(2 * rung, round(PILOT_FRACTION * task.T) - probe_rates(task).size - spent)
    Lt = rung + round(TRUNK_SHARE * left)
    Lb = max(rung, left - (Lt - rung))
    mid = Lt // 2
    d = min(round(trunk_decay * Lt), Lt - max(rung, mid))
    trunk_lr = np.full(Lt, top)
    trunk_steps = np.union1d(record_steps(Lt), [rung, mid])
    if d > 0:
        trunk_lr[Lt - d:] = top * (1 - (np.arange(d) + 1) / d)
        trunk_steps = np.union1d(trunk_steps, np.round(np.linspace(Lt - d, Lt, min(d, 20) + 1)).astype(int))
    trunk = Pilot("trunk", trunk_lr, trunk_steps, seed, prefix=rung)
    decay = top * (1 - (np.arange(Lb) + 1) / Lb)
    branch = Pilot("branch", np.concatenate([np.full(mid, top), decay]),
                   np.concatenate([[0], np.arange(mid, mid + Lb + 1)]), seed, prefix=mid)
    return [trunk, branch]


def as_curve(name: str, lr: np.ndarray, steps: np.ndarray, loss: np.ndarray, batch: float) -> LossCurve:
    """A measured run as the loss curve ``optctl fit`` takes (each row's rate holds until the next)."""
    T = lr.size
    return curve_from_arrays(name, steps, lr[np.minimum(steps, T - 1)], loss, batch)


def peak_grid(eta_div: float) -> np.ndarray:
    return eta_div * 2.0 ** -np.arange(GRID_OCTAVES)


@dataclass
class Method:
    """A method's final schedule and what it cost (updates before the evaluation run)."""

    name: str
    lr: np.ndarray | None
    cost: int
    info: dict[str, Any] = field(default_factory=dict)
    schedule_free_lr: float | None = None


def best(results: dict[Any, float]) -> Any:
    """The argument with the lowest finite result (ties: the first)."""
    finite = {k: v for k, v in results.items() if np.isfinite(v)}
    if not finite:
        raise RuntimeError("every tuning run diverged; widen the task's learning-rate range")
    return min(finite, key=lambda k: finite[k])


Runner = Callable[[list[dict[str, Any]]], list[Any]]
