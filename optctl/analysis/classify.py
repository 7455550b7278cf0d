"""Easy/hard phase labels for optimal schedules, with fitted shape parameters and a confidence.

Bordelon & Mori (arXiv:2602.04774), section 5 (MODEL.md §5):

- **easy phase** (``b < a``): ``η*_T(t) ≈ A T^(−ξ) (1 − t/T)^δ`` with ``ξ = 1 − b/a``;
  the whole schedule sinks as the horizon grows. Close to the boundary the prefactor
  exceeds ``η_max`` at the horizons one can reach, so the schedule is clipped to a
  plateau at ``η_max`` that *erodes* as ``T`` grows.
- **hard phase** (``b > a``): warmup-stable-decay. The plateau stays at ``η_max`` for
  every ``T`` while the annealing fraction ``1 − t_s/T`` *shrinks*.

One curve cannot tell a clipped easy schedule from a hard one; the horizon dependence
can. :func:`classify` therefore takes a family of optimal schedules over horizons and
uses two pieces of evidence:

- **the plateau**: a family that never reaches ``η_max`` (an *interior optimum*), or
  whose peak falls below ``η_max`` at the longer horizons (an *eroding plateau*), is
  easy: a hard-phase optimum sits at ``η_max`` at every horizon. The confidence grows
  with ``log(η_max / peak)`` at the longest horizon.
- **the decay window**: for the levels ``c η_max`` (``c`` in :data:`CROSSING_LEVELS`)
  the window ``w_c(T) = T − t_c`` after which the schedule stays below ``c η_max``
  grows like ``T^p``. In the hard phase the annealing fraction ``w/T`` shrinks, so
  ``p < 1``; in the easy phase the whole schedule sinks and the window takes a growing
  fraction of training, ``p > 1`` (asymptotically ``p = 1 + ξ/δ``). Near the boundary
  both phases drift towards ``p > 1`` before their asymptotics set in, so the
  boundary is measured, not ``1``: :data:`WINDOW_BOUNDARY` (calibration in
  ``docs/scaling.md``). The confidence is ``Φ(|p − p_0|/s)`` with ``s`` the
  measurement noise (:data:`WINDOW_NOISE`, combined with the spread of the local
  exponents).

The label is the side of the more confident piece of evidence; below
:data:`CONFIDENCE_MIN` the answer is ``"unsure"``.

The continuum theory needs ``N → ∞``: once ``η_max T λ_N > 1`` every mode of the
model is learned and even a hard-phase optimum starts to decay. Horizons past that
point (:data:`FINITE_N_MAX`) are not used for the label when a spec is given.

For every horizon the easy form (``ξ``, ``δ``, residual) and the WSD form (plateau,
switch step ``t_s``, annealing fraction, warmup length, decay power, residual) are
fitted and reported, whatever the label.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
from scipy.special import ndtr

from optctl.errors import SpecError, SpecTypeError
from optctl.solver.piecewise import BlockSchedule
from optctl.solver.result import ScheduleResult
from optctl.spec import ProblemSpec

Label = Literal["easy", "hard", "unsure"]

# A learning rate within this relative distance of η_max counts as "at the bound"
# (IPOPT leaves bound-active controls a few 1e-7 inside; block averages at the
# plateau's edge are well below 0.99).
AT_BOUND_RTOL = 0.01
# Horizons with η_max T λ_N above this are in the finite-N regime (all modes learned).
FINITE_N_MAX = 1.0
# Levels c (times η_max) whose crossing times u_c(T) are followed across horizons.
CROSSING_LEVELS: tuple[float, ...] = (0.9, 0.5)
# Exponent p of the decay window w_c(T) = T - t_c ∝ T^p separating the phases, and its
# measurement noise. Calibrated on a 4 x 5 grid of (a, b) at |a - b| >= 0.3 (N = 1000,
# T = 10^3..10^5; docs/scaling.md): hard points measured p <= 1.020, easy points with a
# plateau at every horizon p >= 1.053; the boundary is the middle. A K = 100 refined
# grid resolves t_c/T to about 0.01, i.e. p to about 0.005 over two decades.
WINDOW_BOUNDARY = 1.036
WINDOW_NOISE = 0.005
# Confidence below which the label is "unsure" (at 0.9 one point at |a − b| = 0.05
# of the benchmark diagram was labelled wrongly with confidence 0.92).
CONFIDENCE_MIN = 0.95
# Interior optimum or eroding plateau: confidence Φ(log(η_max/peak) / INTERIOR_SCALE),
# the peak taken at the longest horizon used.
INTERIOR_SCALE = 0.05
# One curve only: hard if the plateau at η_max covers much of training.
SINGLE_PLATEAU_BOUNDARY = 0.65
SINGLE_PLATEAU_SCALE = 0.1
SINGLE_CONFIDENCE_CAP = 0.95
# Easy-form fit window in u = t/T (the last updates follow the noise, not f(u)).
EASY_FIT_U = (0.02, 0.95)


@dataclass(frozen=True)
class EasyFit:
    """``η ≈ A T^(−ξ) (1 − t/T)^δ`` fitted (weighted least squares in ``log η``).

    ``xi`` is ``None`` for a single horizon; ``residual`` is the rms of ``log η``
    (weighted by block length) over the points used: below the bound, after the
    peak and inside :data:`EASY_FIT_U`. ``n_points = 0`` means nothing to fit.
    """

    A: float
    xi: float | None
    delta: float
    residual: float
    n_points: int


@dataclass(frozen=True)
class WSDFit:
    """Warmup-stable-decay description of one schedule.

    ``plateau_value``: the maximum rate; ``warmup_steps``: updates before the plateau
    (within :data:`AT_BOUND_RTOL` of it) is reached; ``switch_step`` ``t_s``: end of the
    plateau; ``anneal_fraction = 1 − t_s/T``; ``decay_power`` ``p`` of
    ``η ≈ plateau (1 − (t − t_s)/(T − t_s))^p`` after ``t_s`` with ``residual`` the
    rms of ``log η`` of that fit.
    """

    plateau_value: float
    warmup_steps: int
    switch_step: int
    anneal_fraction: float
    decay_power: float
    residual: float


@dataclass(frozen=True)
class ScheduleShape:
    """Measurements of one schedule of horizon ``T``."""

    T: int
    peak: float
    mean: float
    at_bound_fraction: float
    crossings: dict[float, float]
    easy: EasyFit
    wsd: WSDFit
    finite_n: bool = False


@dataclass(frozen=True)
class Classification:
    """Phase label of a family of optimal schedules, with the evidence behind it.

    ``label``: ``"easy"``, ``"hard"`` or ``"unsure"``. ``confidence`` in ``[0.5, 1]``:
    how sure the evidence is of its side (``side``); ``"unsure"`` whenever it is below
    :data:`CONFIDENCE_MIN`. ``evidence``: ``"decay window"``, ``"eroding plateau"``,
    ``"interior optimum"`` or ``"single curve"``; ``score`` the statistic behind it (the
    window exponent ``p``, ``log(η_max/peak)`` at the longest horizon, or the plateau
    fraction). ``horizons`` are all the
    horizons given and ``used`` those before the finite-``N`` regime.
    ``easy`` is the easy form fitted jointly over the used horizons,
    ``peak_exponent`` the fitted exponent of the peak rate ``max_t η ∝ T^(−ξ)``,
    ``anneal_trend`` the change of the WSD annealing fraction per decade of ``T``.
    """

    label: Label
    side: Literal["easy", "hard"]
    confidence: float
    evidence: str
    score: float
    horizons: tuple[int, ...]
    used: tuple[int, ...]
    shapes: tuple[ScheduleShape, ...]
    easy: EasyFit
    peak_exponent: float | None
    anneal_trend: float | None
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["shapes"] = [{**asdict(s), "crossings": {str(k): v for k, v in s.crossings.items()}}
                       for s in self.shapes]
        return d


ScheduleLike = ScheduleResult | BlockSchedule | np.ndarray


def _as_blocks(s: ScheduleLike) -> BlockSchedule:
    if isinstance(s, ScheduleResult):
        return s.schedule()
    if isinstance(s, BlockSchedule):
        return s
    if isinstance(s, np.ndarray):
        return BlockSchedule.from_per_step(s)
    raise SpecTypeError("schedule", s, "a ScheduleResult, a BlockSchedule or a per-step array")


# --- one schedule -----------------------------------------------------------------------


def crossing(s: BlockSchedule, level: float) -> float:
    """Fraction of training ``u`` after which the schedule stays below ``level``.

    The last block at or above ``level`` and the next one bound the crossing, which is
    interpolated linearly in ``log η`` between their midpoints, so it moves
    continuously with the block values (and ignores dips during a warmup). ``0`` if
    the schedule never reaches ``level``, ``1`` if it ends above it.
    """
    v = s.values
    mid = 0.5 * (s.grid[:-1] + s.grid[1:]) / s.T
    above = np.flatnonzero(v >= level)
    if above.size == 0:
        return 0.0
    j = int(above[-1])
    if j == v.size - 1:
        return 1.0
    hi, lo = max(v[j], 1e-300), max(v[j + 1], 1e-300)
    w = (math.log(hi) - math.log(level)) / (math.log(hi) - math.log(lo)) if hi > lo else 0.0
    return float(mid[j] + w * (mid[j + 1] - mid[j]))


def fit_wsd(s: BlockSchedule) -> WSDFit:
    """Plateau, warmup, switch step, annealing fraction and decay power of one schedule."""
    v, g, T = s.values, s.grid, s.T
    peak = float(v.max())
    at = v >= (1.0 - AT_BOUND_RTOL) * peak
    j0 = int(np.argmax(at))
    j1 = j0
    while j1 + 1 < v.size and at[j1 + 1]:
        j1 += 1
    t_s = int(g[j1 + 1])
    p, resid = float("nan"), float("nan")
    if t_s < T and peak > 0:
        mid = 0.5 * (g[:-1] + g[1:])
        sel = np.arange(v.size) > j1
        x = np.log(np.clip(1.0 - (mid[sel] - t_s) / (T - t_s), 1e-300, None))
        y = np.log(np.clip(v[sel] / peak, 1e-300, None))
        w = np.diff(g)[sel].astype(float)
        if float((w * x * x).sum()) > 0:
            p = float((w * x * y).sum() / (w * x * x).sum())
            resid = float(np.sqrt((w * (y - p * x) ** 2).sum() / w.sum()))
    return WSDFit(plateau_value=peak, warmup_steps=int(g[j0]), switch_step=t_s,
                  anneal_fraction=1.0 - t_s / T, decay_power=p, residual=resid)


def _easy_points(s: BlockSchedule, eta_max: float | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(u, η, weight) of the blocks the easy form is fitted on."""
    v, g, T = s.values, s.grid, s.T
    mid = 0.5 * (g[:-1] + g[1:]) / T
    cap = (1.0 - AT_BOUND_RTOL) * (eta_max if eta_max is not None else np.inf)
    sel = (mid >= max(EASY_FIT_U[0], mid[int(np.argmax(v))])) & (mid <= EASY_FIT_U[1])
    sel &= (v < cap) & (v > 0)
    return mid[sel], v[sel], np.diff(g)[sel] / T


def fit_easy(schedules: Sequence[BlockSchedule], eta_max: float | None = None) -> EasyFit:
    """Fit ``log η = log A − ξ log T + δ log(1 − u)`` over one or more horizons.

    Block values are the data, weighted by their length in ``u``; blocks at the bound,
    before the peak (warmup) or outside :data:`EASY_FIT_U` are left out. With one
    horizon ``ξ`` is not identifiable and is reported as ``None``.
    """
    rows: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    Ts = {s.T for s in schedules}
    for s in schedules:
        u, v, w = _easy_points(s, eta_max)
        cols = [np.ones(u.size), np.log1p(-u)]
        if len(Ts) > 1:
            cols.insert(1, np.full(u.size, -math.log(s.T)))
        rows.append(np.stack(cols, axis=1))
        ys.append(np.log(v))
        ws.append(w)
    X, y, w = np.concatenate(rows), np.concatenate(ys), np.concatenate(ws)
    n_par = X.shape[1]
    if y.size <= n_par:
        return EasyFit(A=float("nan"), xi=None, delta=float("nan"), residual=float("nan"),
                       n_points=int(y.size))
    sw = np.sqrt(w)
    coef, *_ = np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)
    resid = float(np.sqrt((w * (y - X @ coef) ** 2).sum() / w.sum()))
    xi = float(coef[1]) if n_par == 3 else None
    return EasyFit(A=float(np.exp(coef[0])), xi=xi, delta=float(coef[-1]), residual=resid,
                   n_points=int(y.size))


def describe(schedule: ScheduleLike, eta_max: float, *, finite_n: bool = False) -> ScheduleShape:
    """Measure one schedule: peak, mean, time at the bound, crossings, easy and WSD fits."""
    s = _as_blocks(schedule)
    lengths = np.diff(s.grid)
    return ScheduleShape(
        T=s.T, peak=float(s.values.max()), mean=float((s.values * lengths).sum() / s.T),
        at_bound_fraction=float(lengths[s.values >= (1.0 - AT_BOUND_RTOL) * eta_max].sum() / s.T),
        crossings={c: crossing(s, c * eta_max) for c in CROSSING_LEVELS},
        easy=fit_easy([s], eta_max), wsd=fit_wsd(s), finite_n=finite_n)


# --- a family over horizons -------------------------------------------------------------


def _trend(Ts: np.ndarray, values: np.ndarray) -> tuple[float, np.ndarray]:
    """Least-squares slope of ``values`` against ``log10 T`` and the local slopes."""
    x = np.log10(Ts)
    local = np.diff(values) / np.diff(x)
    slope = float(np.polyfit(x, values, 1)[0])
    return slope, local


def decay_window_exponent(shapes: Sequence[ScheduleShape]) -> tuple[float, float]:
    """Exponent ``p`` of the decay window ``T − t_c ∝ T^p`` over horizons, and its confidence.

    ``t_c`` is the step after which the schedule stays below ``c η_max`` (mean of
    ``log(T − t_c)`` over :data:`CROSSING_LEVELS`, at least one step). The confidence
    of the side of :data:`WINDOW_BOUNDARY` that ``p`` falls on is ``Φ(|p − p_0|/s)``,
    ``s = hypot(WINDOW_NOISE, standard error of the mean of the local exponents)``.
    """
    Ts = np.array([s.T for s in shapes], dtype=float)
    window = np.array([[max(s.T * (1.0 - s.crossings[c]), 1.0) for c in CROSSING_LEVELS]
                       for s in shapes])
    p, local = _trend(Ts, np.log10(window).mean(axis=1))
    # Standard error of the mean local exponent (half their range for three horizons).
    spread = float(np.std(local, ddof=1) / math.sqrt(local.size)) if local.size > 1 else 0.0
    z = (p - WINDOW_BOUNDARY) / math.hypot(WINDOW_NOISE, spread)
    return p, float(ndtr(abs(z)))


def classify(schedules: ScheduleLike | Sequence[ScheduleLike], *, spec: ProblemSpec | None = None,
             eta_max: float | None = None) -> Classification:
    """Label optimal schedules as easy-phase polynomial decay or hard-phase WSD.

    ``schedules``: one schedule or several of different horizons of the same model
    (``ScheduleResult``, :class:`BlockSchedule` or per-step arrays). ``spec`` (any
    horizon; taken from a ``ScheduleResult`` if not given) supplies ``η_max`` and,
    through ``N`` and ``b``, the finite-``N`` cut-off :data:`FINITE_N_MAX`;
    ``eta_max`` overrides it. See the module docstring for the rule and
    ``docs/scaling.md`` for its calibration.
    """
    items: list[ScheduleLike]
    if isinstance(schedules, (ScheduleResult, BlockSchedule, np.ndarray)):
        items = [schedules]
    else:
        items = list(schedules)
    if not items:
        raise SpecError("schedules", [], "give at least one schedule")
    if spec is None:
        spec = next((s.spec for s in items if isinstance(s, ScheduleResult)), None)
    if eta_max is None:
        if spec is None:
            raise SpecError("eta_max", None, "pass eta_max= or spec= (the bound of the schedules)")
        eta_max = spec.eta_max
    blocks = sorted((_as_blocks(s) for s in items), key=lambda b: b.T)
    Ts = [b.T for b in blocks]
    if len(set(Ts)) != len(Ts):
        raise SpecError("schedules", Ts, "give one schedule per horizon")
    lam_n = spec.N ** (-spec.b) if spec is not None else 0.0
    finite = [eta_max * T * lam_n > FINITE_N_MAX for T in Ts]
    shapes = tuple(describe(b, eta_max, finite_n=f) for b, f in zip(blocks, finite, strict=True))
    notes: list[str] = []
    use = [i for i, f in enumerate(finite) if not f]
    if not use:
        use = [0]
        notes.append(f"every horizon has η_max T λ_N > {FINITE_N_MAX} (finite-N regime); "
                     "labelled from the shortest one")
    elif len(use) < len(Ts):
        dropped = [Ts[i] for i in range(len(Ts)) if i not in use]
        notes.append(f"horizons {dropped} left out: η_max T λ_N > {FINITE_N_MAX} (finite-N regime)")
    used = [shapes[i] for i in use]
    used_T = np.array([s.T for s in used], dtype=float)
    easy = fit_easy([blocks[i] for i in use], eta_max)
    peak_exp = anneal = None
    if len(used) >= 2:
        peaks = np.array([s.peak for s in used])
        peak_exp = -_trend(used_T, np.log10(peaks))[0]
        anneal = _trend(used_T, np.array([s.wsd.anneal_fraction for s in used]))[0]

    cap = (1.0 - AT_BOUND_RTOL) * eta_max
    below = math.log(eta_max / used[-1].peak)  # at the longest horizon used
    side: Literal["easy", "hard"]
    if max(s.peak for s in used) < cap:
        score, conf = below, float(ndtr(below / INTERIOR_SCALE))
        side, evidence = "easy", "interior optimum"
    elif len(used) == 1:
        score = used[0].at_bound_fraction
        z = (score - SINGLE_PLATEAU_BOUNDARY) / SINGLE_PLATEAU_SCALE
        conf = min(float(ndtr(abs(z))), SINGLE_CONFIDENCE_CAP)
        side, evidence = ("hard" if z > 0 else "easy"), "single curve"
    else:
        score, conf = decay_window_exponent(used)
        side, evidence = ("easy" if score > WINDOW_BOUNDARY else "hard"), "decay window"
        if used[-1].peak < cap:  # the plateau sinks below η_max at the longest horizons
            eroding = float(ndtr(below / INTERIOR_SCALE))
            if side == "hard" and eroding > 0.5:
                notes.append(f"the peak falls to {used[-1].peak:.3g} at T = {used[-1].T} (easy-like) "
                             f"while the decay window grows like T^{score:.3f} (hard-like)")
            if eroding > conf:
                score, conf, side, evidence = below, eroding, "easy", "eroding plateau"
    label: Label = side if conf >= CONFIDENCE_MIN else "unsure"
    return Classification(label=label, side=side, confidence=conf, evidence=evidence,
                          score=float(score), horizons=tuple(Ts), used=tuple(int(t) for t in used_T),
                          shapes=shapes, easy=easy, peak_exponent=peak_exp, anneal_trend=anneal,
                          notes=tuple(notes))
