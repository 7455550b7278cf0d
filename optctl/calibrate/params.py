"""A fit's parameters, options and result, and predictions from it. Needs numpy, not jax.

The parameters (:data:`PARAMS`) are the exponents ``a, b`` and noise ``σ`` of Bordelon &
Mori (arXiv:2602.04774), section 2, and the practice maps ``lr_scale`` (real lr =
``lr_scale`` × model ``η``), ``loss_scale`` and ``loss_offset`` (measured loss =
``loss_offset`` + ``loss_scale`` × model loss). :class:`FitOptions` is the ``fit:``
section of a fit config; :class:`FitResult` what :func:`optctl.calibrate.fitting.fit`
returns; :func:`predict` the measured loss a fit predicts for a schedule.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from optctl.errors import SpecError
from optctl.model.replay import loss_curve
from optctl.model.spectrum import spectrum, stable_rate
from optctl.spec import ProblemSpec
from optctl.validate import check_bool, check_choice, check_int, check_real

# The fitted parameters, in the order of every parameter vector.
PARAMS: tuple[str, ...] = ("a", "b", "sigma", "lr_scale", "loss_scale", "loss_offset")
# Search box of the exponents; outside it the power-law model is not what a curve shows.
A_BOUNDS = (1.05, 8.0)
B_BOUNDS = (0.3, 8.0)
# Model rates are kept between these fractions of the top mode's stability limit.
ETA_FRAC_BOUNDS = (1e-4, 0.98)
SIGMA_BOUNDS = (1e-4, 1e2)
LOSS_SCALE_LOG_BOUNDS = (-40.0, 40.0)
# The offset may exceed the smallest measured loss: noise puts points below the true floor
# (a bound at that point excluded the truth in our recovery study); the prediction stays
# above the offset, so a larger bound only widens the search.
OFFSET_FRAC_MAX = 2.0
# Where an interval is clipped: the exponents' search box; σ, the scales and the offset ≥ 0.
PARAM_RANGE: dict[str, tuple[float, float]] = {
    "a": A_BOUNDS, "b": B_BOUNDS, "sigma": (0.0, math.inf), "lr_scale": (0.0, math.inf),
    "loss_scale": (0.0, math.inf), "loss_offset": (0.0, math.inf)}


@dataclass(frozen=True)
class FitOptions:
    """How to fit: the fixed model size, the search, and the uncertainty estimate.

    ``N`` features (fixed, not fitted) and ``tail`` (add the unrepresented teacher
    power ``Σ_{k>N} k^(−a)``, MODEL.md §1); ``modes``: ``"exact"`` keeps all ``N``
    modes, ``"grouped"`` uses quadrature nodes, ``"auto"`` groups when ``N > 256``;
    ``starts`` refined starts after screening; ``bootstrap`` resampled refits (0: none);
    ``holdout``: refit without each curve in turn and predict it (the fit-quality check of
    :class:`FitQuality`; needs two curves or more);
    ``bootstrap_method`` ``"auto"``, ``"residual"``, ``"runs"`` or ``"both"``; ``block`` points per resampled
    residual block (1, the default: residuals resampled one by one, which matched the
    spread of estimates over independent noise draws in our checks; longer blocks keep
    serial correlation but came out too narrow there); ``level`` the interval's coverage; ``max_iter`` residual evaluations per refinement.
    ``weights``: every curve counts equally in the misfit; within a curve ``"curve"``
    (default) weighs every point equally, ``"noise"`` by the inverse of its local noise
    variance (:func:`~optctl.calibrate.fitmodel.local_noise`; for curves whose scatter
    changes along the run, e.g. a run whose rate decays).
    """

    N: int = 1000
    tail: bool = False
    modes: Literal["auto", "exact", "grouped"] = "auto"
    starts: int = 4
    bootstrap: int = 30
    bootstrap_method: Literal["auto", "residual", "runs", "both"] = "auto"
    block: int = 1
    level: float = 0.95
    max_iter: int = 400
    seed: int = 0
    holdout: bool = True
    progress: bool = False
    weights: Literal["curve", "noise"] = "curve"

    def __post_init__(self) -> None:
        for name, lo in (("N", 1), ("starts", 1), ("bootstrap", 0), ("block", 1), ("max_iter", 1)):
            v = check_int(f"fit.{name}", getattr(self, name))
            if v < lo:
                raise SpecError(f"fit.{name}", v, f"must be >= {lo}")
            object.__setattr__(self, name, v)
        check_int("fit.seed", self.seed)
        check_bool("fit.tail", self.tail)
        check_bool("fit.progress", self.progress)
        check_bool("fit.holdout", self.holdout)
        check_choice("fit.modes", self.modes, ("auto", "exact", "grouped"))
        check_choice("fit.weights", self.weights, ("curve", "noise"))
        check_choice("fit.bootstrap_method", self.bootstrap_method,
                      ("auto", "residual", "runs", "both"))
        level = check_real("fit.level", self.level)
        if not 0.5 <= level < 1.0:
            raise SpecError("fit.level", self.level, "must lie in [0.5, 1), e.g. 0.95")
        object.__setattr__(self, "level", level)
        if self.bootstrap > 0 and self.bootstrap < 10:
            raise SpecError("fit.bootstrap", self.bootstrap,
                            "use 0 (no uncertainty) or at least 10 resamples for an interval")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def bootstrap_method(options: FitOptions, n_runs: int) -> str:
    """The bootstrap method of ``options`` with ``"auto"`` resolved: ``"both"`` with at
    least 3 runs, else ``"residual"``."""
    if options.bootstrap_method == "auto":
        return "both" if n_runs >= 3 else "residual"
    return options.bootstrap_method


# The fit-quality gate. A curve the fitted model misses by more than this rms log error
# (about the relative error) is not described by it; a curve the fit without it predicts
# worse than HELD_OUT_MAX says the curves do not constrain the model beyond themselves.
# Both apply to the part of the error that the curve's own noise does not explain
# (``fitting.systematic_error``): a single run near its stability edge scatters by 30-50%
# from point to point, and no model of its expected curve can miss it by less.
RMS_MAX = 0.1
HELD_OUT_MAX = 0.15
QUALITY_ADVICE = ("pilots that reach further into training (longer, or at larger rates, until their "
                  "loss falls well below its start), pilots at more distinct rates, or the closed "
                  "loop that refits on the run itself (docs/calibration.md, 'When the fit is poor')")


@dataclass(frozen=True)
class FitQuality:
    """Whether a fit can be trusted to predict other schedules, and why not.

    ``held_out`` maps each curve to the rms log error with which the fit *without* it
    predicts it, ``noise`` each curve's own noise (``fitting.noise_level``); ``reasons``
    lists every failed check (empty when ``ok``): a curve missed in-sample
    (:data:`RMS_MAX`) or held out (:data:`HELD_OUT_MAX`) by more than its noise explains,
    an exponent at the edge of its search box, a phase the intervals cannot fix.
    """

    ok: bool
    reasons: tuple[str, ...]
    held_out: dict[str, float]
    noise: dict[str, float] = field(default_factory=dict)
    advice: str = QUALITY_ADVICE

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "reasons": list(self.reasons), "held_out_rms_log_error": self.held_out,
                "noise": self.noise,
                "thresholds": {"rms_log_error": RMS_MAX, "held_out_rms_log_error": HELD_OUT_MAX},
                "advice": None if self.ok else self.advice}


@dataclass(frozen=True)
class FitResult:
    """Fitted parameters, their bootstrap intervals and the phase verdict.

    ``params`` maps :data:`PARAMS` to the best fit on all data; ``intervals`` to
    ``(low, high)`` normal bootstrap intervals at ``options.level`` (empty without bootstrap);
    ``samples`` the bootstrap fits (rows, columns in :data:`PARAMS` order); ``misfit``
    the objective; ``rms_log_error`` the root-mean-square log residual per run (about the
    relative error); ``phase``/``p_easy``/``confidence`` the verdict; ``asymptotic_sd``
    the linearised (sandwich) standard deviation of each parameter at the fit, with each
    run's noise taken from its residuals (:func:`pilot_sd` explains the formula);
    ``quality`` the fit-quality gate (:class:`FitQuality`).
    """

    params: dict[str, float]
    intervals: dict[str, tuple[float, float]]
    samples: np.ndarray
    misfit: float
    rms_log_error: dict[str, float]
    phase: str
    p_easy: float
    confidence: float
    success: bool
    message: str
    n_iter: int
    starts: list[dict[str, Any]]
    options: FitOptions
    wall_time: float
    n_bootstrap_failed: int = 0
    widening: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = field(default_factory=tuple)
    asymptotic_sd: dict[str, float] = field(default_factory=dict)
    quality: FitQuality | None = None

    @property
    def method(self) -> str:
        """The bootstrap method used (``"auto"`` resolved)."""
        return bootstrap_method(self.options, len(self.rms_log_error))

    @property
    def bootstrap_fraction_easy(self) -> float | None:
        """Fraction of bootstrap refits with ``b < a`` (``None`` without a bootstrap)."""
        if self.samples.shape[0] == 0:
            return None
        return float(np.mean(self.samples[:, 1] < self.samples[:, 0]))

    def spec(self, T: int, batch_size: float = 1.0, eta_max: float | None = None) -> ProblemSpec:
        """The fitted model as a :class:`ProblemSpec` for a horizon ``T``; ``eta_max``
        (model units) defaults to :meth:`eta_bound` without a real-rate cap."""
        return model_spec(self.params, self.options, T, batch_size,
                          self.eta_bound(batch_size) if eta_max is None else eta_max)

    def eta_bound(self, batch_size: float, lr_max: float | None = None) -> float:
        """The largest model rate a schedule of the fitted model may use: 0.98 of the
        model's own stability limit (:func:`~optctl.model.spectrum.stable_rate`, which
        counts the modes' shared gradient noise), and at most ``lr_max`` real units."""
        return model_eta_bound(self.params, self.options, batch_size, lr_max)

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params,
                "quality": None if self.quality is None else self.quality.to_dict(),
                "intervals": {k: list(v) for k, v in self.intervals.items()},
                "level": self.options.level, "asymptotic_sd": self.asymptotic_sd, "misfit": self.misfit,
                "rms_log_error": self.rms_log_error,
                "phase": {"label": self.phase, "p_easy": self.p_easy,
                          "bootstrap_fraction_easy": self.bootstrap_fraction_easy,
                          "confidence": self.confidence, "rule": "easy iff b < a (MODEL.md §1)"},
                "success": self.success, "message": self.message, "n_iter": self.n_iter,
                "bootstrap": {"n": int(self.samples.shape[0]), "failed": self.n_bootstrap_failed,
                              "widening_per_run": self.widening,
                              "method": self.method},
                "starts": self.starts, "options": self.options.to_dict(),
                "wall_time_s": self.wall_time, "notes": list(self.notes)}


def measurement_steps(T: int, n: int = 60, every_step_from: int | None = None) -> np.ndarray:
    """Steps at which to log a loss: 0, ``n`` log-spaced steps up to ``T`` (rounded and
    deduplicated), and every step from ``every_step_from`` on (a decay phase, whose rates
    change at every step)."""
    st = np.unique(np.concatenate([[0], np.round(np.geomspace(1, T, n)).astype(int)]))
    if every_step_from is not None:
        st = np.union1d(st, np.arange(every_step_from, T + 1))
    return st




def predict(params: dict[str, float], lr: np.ndarray, batch_size: np.ndarray | float,
            N: int, tail: bool = False) -> np.ndarray:
    """Measured-loss prediction ``L_∞ + s_L (L_t + tail)`` for ``t = 0..T`` of a real-lr schedule.

    Uses the exact per-step replay (:func:`optctl.model.replay.loss_curve`, all ``N`` modes),
    not the fit's grouped modes.
    """
    lr = np.asarray(lr, dtype=float)
    m = np.broadcast_to(np.asarray(batch_size, dtype=float), lr.shape)
    spec = ProblemSpec(a=params["a"], b=params["b"], N=N, sigma=params["sigma"],
                       batch_size=float(m[0]), T=lr.size, eta_max=1.0, tail=tail)
    sp = spectrum(spec)
    L = loss_curve(spec, lr / params["lr_scale"], m, sp=sp) + sp.tail
    return params["loss_offset"] + params["loss_scale"] * L


def model_spec(params: Mapping[str, float], options: FitOptions, T: int, batch_size: float,
               eta_max: float) -> ProblemSpec:
    """The model of fitted ``params`` as a :class:`ProblemSpec` (``eta_max`` in model units)."""
    return ProblemSpec(a=params["a"], b=params["b"], N=options.N, sigma=params["sigma"],
                       batch_size=batch_size, T=T, eta_max=eta_max, tail=options.tail)


def model_eta_bound(params: Mapping[str, float], options: FitOptions, batch_size: float,
                    lr_max: float | None = None) -> float:
    """See :meth:`FitResult.eta_bound`."""
    probe = model_spec(params, options, 1, batch_size, 1.0)
    bound = ETA_FRAC_BOUNDS[1] * stable_rate(spectrum(probe), batch_size)
    if lr_max is not None:
        bound = min(bound, lr_max / params["lr_scale"])
    return bound
