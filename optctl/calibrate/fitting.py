"""Calibrate the random-feature model from measured loss curves: fit, uncertainty, verdict.

Given loss curves of real training runs (:mod:`optctl.calibrate.curves`), find the
parameters of :mod:`optctl.calibrate.fitmodel` — the exponents ``a, b`` and noise ``σ`` of Bordelon & Mori
(arXiv:2602.04774), section 2, and the practice maps ``lr_scale``, ``loss_scale``,
``loss_offset`` — that minimise the log misfit of all curves jointly:

1. **Screen** a grid of starts (``a``, ``b``, the model's peak rate and ``σ``) with the
   misfit alone; 2. **refine** the best ``starts`` of them by trust-region least squares
   (:func:`scipy.optimize.least_squares`) with the exact Jacobian of the residuals (jax
   forward-mode autodiff through the per-step recursion), inside bounds that keep the
   top mode stable (``η < 2m/(m+1)``); 3. **bootstrap**: refit ``bootstrap`` resampled
   data sets, warm-started from the best fit. ``bootstrap_method`` ``"residual"``
   resamples (centred, leverage-corrected) log residuals within each run, one by one or
   in blocks of ``block`` consecutive points, and adds them to the fitted curves; ``"runs"``
   resamples whole runs with replacement (needs at least 3 runs; coarse with few);
   ``"both"`` does both in every refit, so that errors common to a whole curve (which
   the fit absorbs and its residuals cannot show) widen the interval too; ``"auto"``
   (default) is ``"both"`` with at least 3 runs and ``"residual"`` otherwise.
   The interval of each parameter is the normal bootstrap interval
   ``θ̂ ± z_{(1+level)/2} sd*(θ)`` with ``sd*`` the standard deviation of the refits,
   clipped to the parameter's range (:data:`PARAM_RANGE`):
   with a few dozen resamples it is steadier than percentiles, and it is centred on the
   estimate (percentiles of a residual bootstrap inherit its small shift). Resampling
   residuals one by one treats them as independent; measured curves often are not (an
   ensemble mean or a smoothed loss drifts slowly), so with ``block = 1`` each run's
   resampled residuals are scaled by its Bartlett long-run factor (``f_r ≈ 1`` for
   independent noise; :func:`_long_run_factors`). This is an approximation.

The phase verdict is the theory label of MODEL.md §1 (easy iff ``b < a``). Its
``p_easy = Φ((â − b̂) / sd*(a − b))`` uses the same bootstrap spread of ``a − b``
(``bootstrap_fraction_easy`` reports the raw fraction of refits with ``b < a``);
the confidence is ``max(p_easy, 1 − p_easy)`` and below
:data:`optctl.analysis.classify.CONFIDENCE_MIN` the label is ``"unsure"``.

Alongside the bootstrap, every fit reports the **asymptotic** (sandwich, Gauss–Newton)
standard deviation of each parameter, and :func:`pilot_sd` gives the same quantity for
pilot runs that have not been made yet — at a guessed truth and noise level — so that a
pilot design can be checked before it is paid for. Both are linearisations: in our
recovery checks the spread of estimates over noise draws was up to ~1.4× larger.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import least_squares
from scipy.special import ndtr, ndtri

from optctl.analysis.classify import CONFIDENCE_MIN
from optctl.calibrate import fitmodel as fm
from optctl.calibrate.curves import FLAT_DROP, LossCurve, curve_from_arrays, flat_curves
from optctl.calibrate.params import (
    A_BOUNDS,
    B_BOUNDS,
    ETA_FRAC_BOUNDS,
    HELD_OUT_MAX,
    LOSS_SCALE_LOG_BOUNDS,
    OFFSET_FRAC_MAX,
    PARAM_RANGE,
    PARAMS,
    RMS_MAX,
    SIGMA_BOUNDS,
    FitOptions,
    FitQuality,
    FitResult,
    bootstrap_method,
    measurement_steps,
    predict,
)
from optctl.errors import SpecError
from optctl.model.spectrum import stability_limit
from optctl.solver.resources import BASE_BYTES, Estimate, check_fits

_SCREEN_A = (1.4, 2.2, 3.2, 4.5)
_SCREEN_B = (0.8, 1.4, 2.2, 3.5)
_SCREEN_ETA = (0.03, 0.15, 0.5, 0.9)


# --- the objective in the optimiser's coordinates ---------------------------------------------


@dataclass(frozen=True)
class _Problem:
    """Optimiser coordinates ``z = (a, b, log σ, log s_η, log s_L, offset / min loss)``.

    :meth:`resid`, :meth:`jac` and :meth:`value` take ``(z, logy, w)``: the coordinates,
    the (possibly resampled) log losses and the point weights.
    """

    data: fm.FitData
    modes: fm.Modes
    tail: bool
    bounds: list[tuple[float, float]]

    def theta(self, z: np.ndarray) -> np.ndarray:
        return np.asarray(_theta(jnp.asarray(z), self.data.min_loss))

    def _args(self) -> tuple[Any, ...]:
        d, md = self.data, self.modes
        return (d.lr, d.m, d.idx, d.mask, md.x, md.w, d.min_loss, md.N, self.tail)

    def resid(self, z: Any, logy: Any, w: Any) -> Any:
        """Weighted residuals ``√w_ri (log ŷ − log y)``: their squared sum is the misfit."""
        return _RESID(z, logy, w, *self._args())

    def jac(self, z: Any, logy: Any, w: Any) -> Any:
        return _JAC(z, logy, w, *self._args())

    def value(self, z: Any, logy: Any, w: Any) -> Any:
        return _VALUE(z, logy, w, *self._args())


def _residuals(z: Any, logy: Any, w: Any, lr: Any, m: Any, idx: Any, mask: Any, x: Any,
               weights: Any, min_loss: Any, N: int, tail: bool) -> Any:
    pred = fm.log_prediction(_theta(z, min_loss), lr, m, idx, fm.Modes(x=x, w=weights, N=N), tail)
    return (jnp.sqrt(w) * jnp.where(mask, pred - logy, 0.0)).ravel()


# Compiled once per shape (the data are arguments, not constants), so a second fit in the
# same process, or a bootstrap refit, does not compile again. N and tail are static.
_RESID = jax.jit(_residuals, static_argnums=(10, 11))
_JAC = jax.jit(jax.jacfwd(_residuals), static_argnums=(10, 11))
_VALUE = jax.jit(lambda *args: jnp.sum(_residuals(*args) ** 2), static_argnums=(10, 11))


def _theta(z: Any, min_loss: float) -> Any:
    return jnp.stack([z[0], z[1], jnp.exp(z[2]), jnp.exp(z[3]), jnp.exp(z[4]), z[5] * min_loss])


def _z(theta: np.ndarray, min_loss: float) -> np.ndarray:
    return np.array([theta[0], theta[1], math.log(theta[2]), math.log(theta[3]),
                     math.log(theta[4]), theta[5] / min_loss])


# Copies of every state the fit's gradient keeps (forward scan, its reverse, the batch of starts).
FIT_STATE_COPIES = 3


def fit_modes(N: int, grouped: bool, n_exact: int = 48, ratio: float = 1.12, nodes: int = 3) -> int:
    """How many modes :func:`~optctl.calibrate.fitmodel.mode_nodes` makes (its loop, counted)."""
    if not grouped or N <= n_exact + nodes:
        return N
    count, lo = n_exact, n_exact + 1
    while lo <= N:
        hi = min(N, max(lo + nodes, math.ceil(lo * ratio)))
        if N - hi < nodes:
            hi = N
        count += nodes
        lo = hi + 1
    return count


def check_fit_fits(curves: list[LossCurve], options: FitOptions) -> Estimate:
    """Refuse, before any work, a fit that would not fit in memory (a
    :class:`~optctl.errors.ResourceError` naming the estimate, the limit and the fix). The
    forward model scans every update of the longest curve for all curves and modes, and
    its gradient keeps every state: ``(R × (T + 1) × modes)`` values, a few times over."""
    R, T = len(curves), max(c.T for c in curves)
    grouped = options.modes == "grouped" or (options.modes == "auto" and options.N > 256)
    n_modes = fit_modes(options.N, grouped)
    parts = {"base": BASE_BYTES, "gradient states": FIT_STATE_COPIES * 8.0 * R * (T + 1) * n_modes,
             "schedules": 4 * 8.0 * R * T}
    est = Estimate(total=sum(parts.values()), parts=parts, stages=T, modes=n_modes)
    fixes = ["curves measured in updates with fewer of them (cut or subsample the run)"]
    if not grouped:
        fixes.insert(0, "fit.modes: grouped")
    if options.N > 1000:
        fixes.append("a smaller fit.N")
    check_fits(f"{R} curves of up to {T} updates, fit.N = {options.N}", est, fixes)
    return est


def _problem(curves: list[LossCurve], options: FitOptions) -> _Problem:
    data = fm.fit_data(curves, options.weights)
    grouped = options.modes == "grouped" or (options.modes == "auto" and options.N > 256)
    modes = fm.mode_nodes(options.N, grouped)
    limit = stability_limit(data.min_batch)
    # s_η = max real lr / max model η; the model's largest rate stays inside ETA_FRAC_BOUNDS.
    log_seta = (math.log(data.max_lr / (ETA_FRAC_BOUNDS[1] * limit)),
                math.log(data.max_lr / (ETA_FRAC_BOUNDS[0] * limit)))
    bounds = [A_BOUNDS, B_BOUNDS, (math.log(SIGMA_BOUNDS[0]), math.log(SIGMA_BOUNDS[1])),
              log_seta, LOSS_SCALE_LOG_BOUNDS, (0.0, OFFSET_FRAC_MAX)]
    return _Problem(data=data, modes=modes, tail=options.tail, bounds=bounds)


def _initial(problem: _Problem, a: float, b: float, eta_frac: float, sigma_rel: float) -> np.ndarray:
    """A start: exponents given, the rest from the data (peak rate, initial loss, floor)."""
    data = problem.data
    limit = stability_limit(data.min_batch)
    s_eta = data.max_lr / (eta_frac * limit)
    L0 = float(np.sum(problem.modes.w * problem.modes.x ** (-a)))
    if problem.tail:
        L0 += float(fm.tail_approx(a, problem.modes.N))
    y0 = float(np.exp(np.mean(data.logy[:, 0])))
    offset_frac = 0.5
    s_L = max(y0 - offset_frac * data.min_loss, 1e-12 * y0) / L0
    z = _z(np.array([a, b, sigma_rel * math.sqrt(L0), s_eta, s_L, offset_frac * data.min_loss]),
           data.min_loss)
    lo = np.array([bd[0] for bd in problem.bounds])
    hi = np.array([bd[1] for bd in problem.bounds])
    return np.clip(z, lo, hi)


def _refine(problem: _Problem, z0: np.ndarray, logy: np.ndarray, w: np.ndarray,
            max_iter: int) -> tuple[np.ndarray, float, int, str, bool]:
    """Trust-region least squares inside the bounds with the exact Jacobian (jax ``jacfwd``).

    A Gauss–Newton method rather than a quasi-Newton one: the misfit is a sum of squares
    whose Hessian is badly conditioned (``a`` trades off against the loss scale), and
    L-BFGS stopped early along that valley, which made bootstrap refits from a warm
    start too timid and the intervals too narrow.
    """
    def fun(z: np.ndarray) -> np.ndarray:
        r = np.asarray(problem.resid(jnp.asarray(z), logy, w), dtype=float)
        return np.where(np.isfinite(r), r, 1e10)

    def jac(z: np.ndarray) -> np.ndarray:
        J = np.asarray(problem.jac(jnp.asarray(z), logy, w), dtype=float)
        return np.where(np.isfinite(J), J, 0.0)

    lo = np.array([b[0] for b in problem.bounds])
    hi = np.array([b[1] for b in problem.bounds])
    res = least_squares(fun, np.clip(z0, lo, hi), jac=jac, bounds=(lo, hi), method="trf",
                        x_scale="jac", ftol=1e-12, xtol=1e-12, gtol=1e-12, max_nfev=max_iter)
    return (np.asarray(res.x), float(2 * res.cost), int(res.nfev), str(res.message),
            bool(res.status > 0))


def _log(options: FitOptions, msg: str) -> None:
    if options.progress:
        print(msg, file=sys.stderr, flush=True)


def _fit_from(problem: _Problem, options: FitOptions, logy: np.ndarray, w: np.ndarray,
              starts: list[np.ndarray]) -> tuple[np.ndarray, float, int, str, bool, list[dict[str, Any]]]:
    best: tuple[np.ndarray, float, int, str, bool] | None = None
    log: list[dict[str, Any]] = []
    for i, z0 in enumerate(starts):
        t0 = time.perf_counter()
        z, v, nit, msg, ok = _refine(problem, z0, logy, w, options.max_iter)
        th = problem.theta(z)
        log.append({"start": dict(zip(PARAMS, problem.theta(z0).tolist(), strict=True)),
                    "end": dict(zip(PARAMS, th.tolist(), strict=True)), "misfit": v,
                    "iterations": nit, "converged": ok})
        _log(options, f"  start {i + 1}/{len(starts)}: a={th[0]:.3f} b={th[1]:.3f} misfit={v:.4e} "
                      f"({nit} it, {time.perf_counter() - t0:.1f} s)")
        if best is None or v < best[1]:
            best = (z, v, nit, msg, ok)
    assert best is not None
    return (*best, log)


@fm.float64
def fit(curves: list[LossCurve], options: FitOptions | None = None, *,
        start: Mapping[str, float] | None = None) -> FitResult:
    """Fit the model to all curves jointly, from several starts, with bootstrap intervals
    and the fit-quality gate (:class:`~optctl.calibrate.params.FitQuality`).

    ``start`` (parameters of :data:`PARAMS`, e.g. an earlier fit's) is refined first,
    before the best screened starts: a refit on more data stays near the old answer
    unless the data move it.
    """
    options = FitOptions() if options is None else options
    if options.bootstrap and options.bootstrap_method in ("runs", "both") and len(curves) < 3:
        raise SpecError("fit.bootstrap_method", options.bootstrap_method,
                        f"needs at least 3 curves (got {len(curves)}); use 'residual'")
    check_fit_fits(curves, options)  # before any work
    t_start = time.perf_counter()
    problem = _problem(curves, options)
    data = problem.data
    logy, w = data.logy, data.weight
    _log(options, f"fit: {data.n_runs} curves, {int(data.mask.sum())} points, "
                  f"{problem.modes.x.size} modes (N = {options.N}); screening starts")
    grid = [_initial(problem, a, b, e, s) for a in _SCREEN_A for b in _SCREEN_B
            for e in _SCREEN_ETA for s in (0.05, 0.5)]
    scores = [float(problem.value(jnp.asarray(z), logy, w)) for z in grid]
    order = np.argsort(np.nan_to_num(np.array(scores), nan=np.inf))
    starts = [grid[i] for i in order[: options.starts]]
    if start is not None:
        lo, hi = (np.array([bd[k] for bd in problem.bounds]) for k in (0, 1))
        starts.insert(0, np.clip(_z(np.array([start[k] for k in PARAMS], dtype=float), data.min_loss), lo, hi))
    z, v, nit, msg, ok, start_log = _fit_from(problem, options, logy, w, starts)
    theta = problem.theta(z)
    pred = np.asarray(fm.predict_log(jnp.asarray(theta), data, problem.modes, problem.tail))
    res = np.where(data.mask, pred - logy, 0.0)
    rms = {n: float(np.sqrt(np.sum(res[r] ** 2) / data.mask[r].sum()))
           for r, n in enumerate(data.names)}

    widen = (_long_run_factors(res, data.mask)
             if bootstrap_method(options, data.n_runs) in ("residual", "both") and options.block == 1
             else np.ones(data.n_runs))
    samples, failed, notes = _bootstrap(problem, options, z, res, pred, widen)
    noise = widen * np.array([rms[n] for n in data.names])
    asd = dict(zip(PARAMS, (float(x) for x in _sandwich_sd(problem, z, noise)), strict=True))
    if options.bootstrap and np.any(widen > 1.05):
        notes.append("residuals are serially correlated; resampled residuals widened per run by "
                     + ", ".join(f"{n} {f:.2f}" for n, f in zip(data.names, widen, strict=True)))
    params = dict(zip(PARAMS, (float(x) for x in theta), strict=True))
    intervals: dict[str, tuple[float, float]] = {}
    if samples.shape[0] > 1:
        intervals = normal_intervals(theta, samples, options.level)
        sd_diff = float(np.std(samples[:, 0] - samples[:, 1], ddof=1))
        gap = params["a"] - params["b"]
        p_easy = float(ndtr(gap / sd_diff)) if sd_diff > 0 else float(gap > 0)
    else:
        p_easy = 1.0 if params["b"] < params["a"] else 0.0
        notes.append("no bootstrap: the phase confidence is 1 by construction; set fit.bootstrap")
    side = "easy" if p_easy >= 0.5 else "hard"
    conf = max(p_easy, 1 - p_easy)
    label = side if conf >= CONFIDENCE_MIN else "unsure"
    edges = [f"{name} = {params[name]:.3f} sits at the edge of its search box {bd}; the curves "
             "may not determine it" for name, bd in (("a", A_BOUNDS), ("b", B_BOUNDS))
             if min(abs(params[name] - bd[0]), abs(params[name] - bd[1])) < 1e-3]
    flat = flat_curves(curves)
    if len(flat) == len(curves):
        # No curve learns: the loss's decay, which sets the exponents, is not in the data.
        label = "unsure"
        edges.append(f"no curve's loss falls by {100 * FLAT_DROP:.0f}% or more (constant or rising: "
                     f"{', '.join(flat)}), so the exponents a and b, and the phase, cannot be "
                     "identified from these curves; measure runs that learn")
    notes += edges
    quality = _quality(curves, options, params, rms, edges, label,
                       {n: noise_level(res[r, data.mask[r]]) for r, n in enumerate(data.names)})
    return FitResult(params=params, intervals=intervals, samples=samples, misfit=v,
                     rms_log_error=rms, phase=label, p_easy=p_easy, confidence=conf,
                     success=ok, message=msg, n_iter=nit, starts=start_log, options=options,
                     wall_time=time.perf_counter() - t_start, n_bootstrap_failed=failed,
                     widening=dict(zip(data.names, (float(f) for f in widen), strict=True)),
                     notes=tuple(notes), asymptotic_sd=asd, quality=quality)


# The relative standard error of a second-difference noise estimate is about
# NOISE_REL_SE / √(n − 2) for independent Gaussian noise at n points (1.40 measured by
# simulation, n = 20..300).
NOISE_REL_SE = 1.4
# One-sided normal quantile of the noise's upper bound: the gate blames the model only for
# error the noise cannot explain even at the upper end of its estimate.
NOISE_Z = 1.645
# Lags (in measured points) of the second differences: a run's deviation from its expected
# curve is correlated from one densely measured point to the next (the weights change
# slowly), which a lag of 1 does not see.
NOISE_LAGS = (1, 2, 4)


def _second_difference_noise(r: np.ndarray) -> float:
    d2 = r[2:] - 2 * r[1:-1] + r[:-2]
    return float(1.482602 * np.median(np.abs(d2 - np.median(d2))) / math.sqrt(6.0))


def noise_level(residuals: np.ndarray) -> tuple[float, int]:
    """A robust estimate of a curve's own noise (sd of its log loss per measured point)
    from its fit residuals, and the number of points it rests on.

    ``1.4826 MAD(Δ²r) / √6``: the median absolute deviation of the second differences of
    residuals (for independent noise of sd ``s``, ``Δ²r`` has sd ``√6 s``). The fitted
    trend is already removed, and what the model misses systematically is smooth from
    point to point, so it hardly enters ``Δ²r``; the median ignores a few spikes. The
    differences are taken between every ``L``-th point for ``L`` in :data:`NOISE_LAGS`
    (the median over the ``L`` offsets, at least 5 points); a larger lag's estimate
    replaces a smaller one's only above its 95% upper bound at the larger lag's points
    (:func:`noise_upper`): noise correlated over a few points is seen at the larger lags,
    while independent noise is not inflated by the maximum of noisy estimates. ``(0, 0)``
    with fewer than 5 points."""
    r = np.asarray(residuals, dtype=float)
    best, n = 0.0, 0
    for lag in NOISE_LAGS:
        if r.size < 5 * lag:
            break
        est = float(np.median([_second_difference_noise(r[o::lag]) for o in range(lag)]))
        if n == 0 or est > noise_upper(best, r.size // lag):
            best, n = est, r.size // lag
    return best, n


def noise_upper(noise: float, n: int) -> float:
    """The one-sided 95% upper bound of a :func:`noise_level` estimate from ``n`` points."""
    return noise * (1 + NOISE_Z * NOISE_REL_SE / math.sqrt(max(n - 2, 1)))


def systematic_error(rms: float, noise: float) -> float:
    """The part of an rms log error that a curve's noise ``noise`` does not explain:
    ``√max(rms² − noise², 0)`` (squared errors of independent parts add)."""
    return math.sqrt(max(rms * rms - noise * noise, 0.0)) if math.isfinite(rms) else math.inf


def _quality(curves: list[LossCurve], options: FitOptions, params: dict[str, float],
             rms: dict[str, float], edges: list[str], label: str,
             noise: dict[str, tuple[float, int]]) -> FitQuality:
    """The fit-quality gate: in-sample misfit, leave-one-curve-out prediction (both net of
    each curve's own noise, :func:`noise_level`), the search box's edges, the phase."""
    held_out: dict[str, float] = {}
    if options.holdout and len(curves) >= 2:
        sub_options = dataclasses.replace(options, bootstrap=0, holdout=False, starts=1, progress=False)
        for i, c in enumerate(curves):
            sub = fit([d for j, d in enumerate(curves) if j != i], sub_options, start=params).params
            pred = predict(sub, c.lr, c.batch_size, options.N, tail=options.tail)[c.steps]
            held_out[c.name] = float(np.sqrt(np.mean(np.log(pred / c.loss) ** 2)))
    return gate(rms, held_out, noise, edges, label, holdout=options.holdout)


def gate(rms: Mapping[str, float], held_out: Mapping[str, float], noise: Mapping[str, tuple[float, int]],
         edges: list[str], label: str, *, holdout: bool = True) -> FitQuality:
    """The gate's verdict from its measurements: per curve the in-sample ``rms`` and
    ``held_out`` log errors and ``noise`` (:func:`noise_level`: estimate, points), the
    ``edges`` notes and the phase ``label``."""
    up = {n: noise_upper(*noise[n]) for n in rms}
    reasons = [f"the fitted model misses curve {n!r} (rms log error {e:.3f}, of which "
               f"{systematic_error(e, up[n]):.3f} is more than its own noise, at most {up[n]:.3f}, explains; "
               f"> {RMS_MAX})" for n, e in rms.items() if systematic_error(e, up[n]) > RMS_MAX]
    reasons += [f"fitted without curve {n!r}, the model predicts it with rms log error {e:.3f}, of which "
                f"{systematic_error(e, up[n]):.3f} is more than its own noise explains (> {HELD_OUT_MAX})"
                for n, e in held_out.items() if not systematic_error(e, up[n]) <= HELD_OUT_MAX]
    if holdout and len(rms) < 2:
        reasons.append("one curve only: nothing to hold out, so nothing says the fit predicts "
                       "other schedules")
    reasons += edges
    if label == "unsure":
        reasons.append("the intervals of a and b do not fix the phase (easy or hard)")
    return FitQuality(ok=not reasons, reasons=tuple(reasons), held_out=dict(held_out),
                      noise={n: v[0] for n, v in noise.items()})


def normal_intervals(theta: np.ndarray, samples: np.ndarray, level: float) -> dict[str, tuple[float, float]]:
    """``θ̂ ± z_{(1+level)/2} sd*`` per parameter (``sd*`` the spread of the bootstrap
    ``samples``, rows in :data:`PARAMS` order), clipped to :data:`PARAM_RANGE`."""
    z_level = float(ndtri(0.5 + level / 2))
    sd = samples.std(axis=0, ddof=1)
    out = {}
    for j, name in enumerate(PARAMS):
        lo, hi = PARAM_RANGE[name]
        out[name] = (max(lo, float(theta[j] - z_level * sd[j])), min(hi, float(theta[j] + z_level * sd[j])))
    return out


def _bootstrap(problem: _Problem, options: FitOptions, z: np.ndarray, res: np.ndarray,
               pred: np.ndarray, widen: np.ndarray) -> tuple[np.ndarray, int, list[str]]:
    data = problem.data
    notes: list[str] = []
    B = options.bootstrap
    if B == 0:
        return np.zeros((0, len(PARAMS))), 0, notes
    rng = np.random.default_rng(options.seed)
    out, failed = [], 0
    t0 = time.perf_counter()
    res = _leverage_corrected(problem, z, res)
    method = bootstrap_method(options, data.n_runs)
    for i in range(B):
        logy, w = data.logy.copy(), data.weight.copy()
        if method in ("runs", "both"):
            counts = np.bincount(rng.integers(0, data.n_runs, data.n_runs), minlength=data.n_runs)
            w = w * counts[:, None]
        if method in ("residual", "both"):
            for r in range(data.n_runs):
                n = int(data.mask[r].sum())
                centred = res[r, :n] - res[r, :n].mean()
                draw = _block_resample(centred, options.block, rng)
                logy[r, :n] = pred[r, :n] - widen[r] * draw
        zb, _, _, _, ok = _refine(problem, z, logy, w, options.max_iter)
        th = problem.theta(zb)
        if not np.all(np.isfinite(th)):
            failed += 1
            continue
        out.append(th)
        if (i + 1) % max(1, B // 10) == 0:
            _log(options, f"  bootstrap {i + 1}/{B} [{time.perf_counter() - t0:.0f} s]")
    if failed:
        notes.append(f"{failed} of {B} bootstrap refits failed and were left out")
    return np.array(out).reshape(-1, len(PARAMS)), failed, notes


# Bartlett window (in measured points) of the long-run variance estimate.
LONG_RUN_LAGS = 10


def _newey_west(g: np.ndarray, lags: int) -> np.ndarray:
    """``Σ_{|l|<L} (1 − |l|/L) Γ_l`` for the ``n`` rows of ``g`` (``n × k``; ``Γ_l`` the sum
    of ``g_{t+l} g_tᵀ``, ``L = min(lags, n // 3)``): the long-run second moment of its rows
    with Bartlett weights, ``gᵀg`` alone when ``L < 2``."""
    out = g.T @ g
    L = min(lags, g.shape[0] // 3)
    for lag in range(1, L):
        c = g[lag:].T @ g[:-lag]
        out += (1 - lag / L) * (c + c.T)
    return out


def _long_run_factors(res: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per run ``f_r = √(1 + 2 Σ_{l<L} (1 − l/L) ρ_l)`` (at least 1): the Bartlett long-run
    variance of its residuals over their variance, ``ρ_l`` the lag-``l`` autocorrelation.

    Independent resampling of serially correlated residuals understates the noise of
    slowly drifting curves (ensemble means, smoothed losses); scaling each run's resampled
    residuals by ``f_r`` restores the variance of their sums over windows of ``L`` points.
    """
    out = np.ones(res.shape[0])
    for r in range(res.shape[0]):
        e = res[r, mask[r]]
        e = e - e.mean()
        den = float(e @ e)
        if den <= 0:
            continue
        f2 = float(_newey_west(e[:, None], LONG_RUN_LAGS)[0, 0]) / den
        out[r] = math.sqrt(max(f2, 1.0))
    return out


def _leverage_corrected(problem: _Problem, z: np.ndarray, res: np.ndarray) -> np.ndarray:
    """Residuals ``r_i / √(1 − h_ii)`` with ``h`` the Gauss–Newton hat matrix at the fit.

    Points with high leverage (the first steps, the final floor) pull the fit towards
    themselves, so their fitted residuals understate the noise; resampling the raw
    residuals gave intervals about half as wide as the spread of estimates over noise
    draws. Dividing by ``√(1 − h_ii)`` restores each residual's variance.
    """
    data = problem.data
    J = np.asarray(problem.jac(jnp.asarray(z), data.logy, data.weight), dtype=float)
    keep = data.mask.ravel()
    Jk = J[keep]
    Q, _ = np.linalg.qr(Jk)
    h = np.zeros(keep.size)
    h[keep] = np.sum(Q**2, axis=1)
    h = np.clip(h.reshape(res.shape), 0.0, 0.99)
    return np.where(data.mask, res / np.sqrt(1.0 - h), 0.0)


def _block_resample(res: np.ndarray, block: int, rng: np.random.Generator) -> np.ndarray:
    """Moving-block bootstrap of one run's residuals (keeps their correlation in time)."""
    n = res.size
    block = min(block, n)
    starts = rng.integers(0, n - block + 1, size=int(np.ceil(n / block)))
    return np.concatenate([res[s:s + block] for s in starts])[:n]


def _sandwich_sd(problem: _Problem, z: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Linearised standard deviations of ``θ`` (:data:`PARAMS` order) for the fit's estimator.

    The misfit weighs point ``i`` of run ``r`` by ``w_ri``; if the run's log losses carry
    independent noise of standard deviation ``noise[r]`` (with ``fit.weights: noise`` the
    noise varies along a run and this is an approximation), the weighted least-squares estimate has the
    sandwich covariance ``A⁻¹ B A⁻¹`` in the optimiser's coordinates, with
    ``A = Jᵀ W J`` and ``B = Jᵀ W Σ W J`` (``J`` the Jacobian of the log predictions,
    ``W`` the weights, ``Σ`` the noise variances), mapped to ``θ`` by the delta method.
    A parameter that the curves do not determine gets ``inf``.
    """
    data = problem.data
    J = np.asarray(problem.jac(jnp.asarray(z), data.logy, np.ones_like(data.weight)), dtype=float)
    keep = data.mask.ravel()
    P = data.mask.shape[1]
    w = data.weight.ravel()[keep]
    s2 = np.repeat(np.asarray(noise, dtype=float) ** 2, P)[keep]
    J = J[keep]
    A = J.T @ (w[:, None] * J)
    B = J.T @ ((w**2 * s2)[:, None] * J)
    try:
        A_inv = np.linalg.inv(A)
    except np.linalg.LinAlgError:
        return np.full(len(PARAMS), np.inf)
    D = np.asarray(jax.jacfwd(_theta)(jnp.asarray(z), data.min_loss))
    cov = D @ A_inv @ B @ A_inv @ D.T
    var = np.diag(cov)
    return np.sqrt(np.where(np.isfinite(var) & (var >= 0), var, np.inf))


# Bartlett window (in measured points) of the autocorrelation-robust covariance of
# :func:`final_loss_interval`.
HAC_LAGS = LONG_RUN_LAGS


@fm.float64
def final_loss_interval(curves: list[LossCurve], options: FitOptions, params: Mapping[str, float],
                        lr: np.ndarray, batch_size: float, level: float = 0.9, *,
                        model_sd: float = 0.0) -> dict[str, float]:
    """How far to trust a fit's prediction of the final loss of the schedule ``lr``.

    ``params`` fitted to ``curves`` with ``options`` (its weights, N, tail). The log of the
    predicted final loss is linearised in the fit's coordinates (delta method). Their
    covariance is the sandwich ``A⁻¹ B A⁻¹`` of the weighted least-squares estimate
    (``A = Jᵀ W J``), with ``B`` built from the fit's own leverage-corrected residuals,
    not from an assumed noise: per curve a Newey–West sum over lags up to
    :data:`HAC_LAGS` points with Bartlett weights, so a curve whose residuals vary in
    size along it (a rate that decays) or drift together (serial correlation, model error
    the fit cannot absorb) widens the interval as much as it should. The measured final
    loss also scatters about its expectation: that noise is the smallest local noise at
    any curve's last point (:func:`~optctl.calibrate.fitmodel.local_noise`; the curves
    that end annealed), added in quadrature. A parameter at an edge of its search box is
    held fixed there; one the curves do not determine (a singular direction) adds
    nothing, so such a fit's interval is too narrow. Neither part sees the error of the
    model itself (a curve the model cannot follow, whose refits agree with each other):
    ``model_sd``, an sd of the log final loss measured elsewhere (the closed loop passes
    the previous model's error on the run's points it had not seen,
    :func:`optctl.calibrate.closedloop.held_out_error`), is added in quadrature. Returns
    ``sd_log`` (the total sd of the log final loss), ``sd_params`` (its part from the
    parameters), ``sd_end`` (the end noise), ``sd_model`` (``model_sd``), and
    ``low``/``high`` the interval of the final loss at ``level``
    (``prediction · exp(± z sd_log)``). A linearisation: the spread of refits over noise
    draws can be wider than it says (:func:`pilot_sd`).
    """
    level = float(level)
    if not 0.5 <= level < 1.0:
        raise SpecError("level", level, "must lie in [0.5, 1), e.g. 0.9")
    model_sd = float(model_sd)
    if not (math.isfinite(model_sd) and model_sd >= 0):
        raise SpecError("model_sd", model_sd, "give the model error's sd of the log final loss (>= 0, finite), or 0")
    lr = np.asarray(lr, dtype=float)
    if lr.ndim != 1 or lr.size < 1 or not np.all(np.isfinite(lr)) or np.any(lr < 0):
        raise SpecError("lr", f"{lr.size} rates", "give the schedule's real learning rate per update (>= 0, finite)")
    problem = _problem(curves, options)
    data = problem.data
    theta = np.array([params[k] for k in PARAMS], dtype=float)
    z = _z(theta, data.min_loss)
    ones = np.ones_like(data.weight)
    J = np.asarray(problem.jac(jnp.asarray(z), data.logy, ones), dtype=float)
    pred = np.asarray(fm.predict_log(jnp.asarray(theta), data, problem.modes, problem.tail))
    res = _leverage_corrected(problem, z, np.where(data.mask, pred - data.logy, 0.0))
    R, P = data.mask.shape
    J3 = J.reshape(R, P, -1)
    A = np.einsum("rp,rpi,rpj->ij", data.weight, J3, J3)
    B = np.zeros_like(A)
    for r in range(R):
        n = int(data.mask[r].sum())
        g = (data.weight[r, :n] * res[r, :n])[:, None] * J3[r, :n]
        B += _newey_west(g, HAC_LAGS)
    # the final loss's gradient in the same coordinates, through the fit's own model
    T = lr.size
    one = fm.fit_data([LossCurve(name="final", steps=np.array([0, T]), lr=lr, loss=np.ones(2),
                                 batch_size=np.full(T, float(batch_size)))])
    md = problem.modes
    g_final = np.asarray(_JAC(jnp.asarray(z), jnp.zeros((1, 2)), jnp.ones((1, 2)), one.lr, one.m, one.idx,
                              one.mask, md.x, md.w, data.min_loss, md.N, problem.tail), dtype=float)[-1]
    # a parameter held at an edge of its search box is not free to move: it is fixed there
    lo, hi = (np.array([bd[k] for bd in problem.bounds]) for k in (0, 1))
    free = (z - lo > 1e-6 * np.maximum(1.0, np.abs(lo))) & (hi - z > 1e-6 * np.maximum(1.0, np.abs(hi)))
    Af, Bf, gf = A[np.ix_(free, free)], B[np.ix_(free, free)], g_final[free]
    try:
        Ainv = np.linalg.pinv(Af, rcond=1e-12, hermitian=True)
        var = float(gf @ Ainv @ Bf @ Ainv @ gf)
    except np.linalg.LinAlgError:
        var = math.inf
    sd_params = math.sqrt(var) if math.isfinite(var) and var >= 0 else math.inf
    sd_end = min(float(fm.local_noise(data.logy[r, : int(data.mask[r].sum())])[-1]) for r in range(R))
    sd = math.sqrt(sd_params**2 + sd_end**2 + model_sd**2)
    centre = float(predict(dict(params), lr, batch_size, options.N, tail=options.tail)[-1])
    zq = float(ndtri(0.5 + level / 2))
    return {"prediction": centre, "sd_log": sd, "sd_params": sd_params, "sd_end": sd_end,
            "sd_model": model_sd, "level": level,
            "low": centre * math.exp(-zq * sd), "high": centre * math.exp(zq * sd)}


@fm.float64
def pilot_sd(params: dict[str, float], runs: dict[str, np.ndarray], *, N: int,
             noise: float = 0.02, steps: dict[str, np.ndarray] | None = None,
             batch_size: float = 1.0, tail: bool = False,
             modes: Literal["auto", "exact", "grouped"] = "auto") -> dict[str, float]:
    """How precisely a set of pilot runs would determine each parameter, before running them.

    ``params``: a guess of the truth (:data:`PARAMS`, real learning-rate units, e.g. from
    an earlier fit); ``runs``: name → real learning rate per update; ``steps``: name →
    measured steps (default :func:`measurement_steps` with ``n = 60``); ``noise``: the
    standard deviation of each measured log loss (0.02 ≈ 2% relative noise, independent
    between points). Returns the linearised standard deviation of every parameter that a
    fit of these curves by :func:`fit` would have (the sandwich formula of the fit's own
    weighted misfit). A linearisation: the spread of real estimates can be larger,
    in our recovery checks by up to ~1.4× for a weakly determined exponent.
    """
    if not noise > 0 or not math.isfinite(noise):
        raise SpecError("noise", noise, "must be a positive standard deviation of the log loss, e.g. 0.02")
    if not runs:
        raise SpecError("runs", runs, "give at least one pilot schedule (name -> lr per update)")
    missing = [k for k in PARAMS if k not in params]
    if missing:
        raise SpecError("params", sorted(params), f"give a guess for every parameter; missing {missing}")
    curves = []
    for name, lr in runs.items():
        lr = np.asarray(lr, dtype=float)
        st = measurement_steps(lr.size) if steps is None or name not in steps else np.asarray(steps[name])
        loss = predict(params, lr, batch_size, N, tail=tail)[st]
        curves.append(curve_from_arrays(name, st, np.concatenate([lr, lr[-1:]])[st], loss, batch_size))
    problem = _problem(curves, FitOptions(N=N, tail=tail, modes=modes, bootstrap=0))
    theta = np.array([params[k] for k in PARAMS], dtype=float)
    z = _z(theta, problem.data.min_loss)
    sd = _sandwich_sd(problem, z, np.full(len(curves), noise))
    return dict(zip(PARAMS, (float(x) for x in sd), strict=True))
