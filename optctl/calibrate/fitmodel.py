"""The differentiable forward model behind ``optctl fit``: curves predicted from parameters.

The reduced SGD dynamics of Bordelon & Mori (arXiv:2602.04774), section 2 (MODEL.md §2),
with unknown ``(a, b, σ)``, joined to measurements by three maps between theory and
practice (the parameter vector, in this order):

- ``a``, ``b``: task-power and spectral exponents (``λ_k = k^(−b)``, ``λ_k c_{0,k} = k^(−a)``);
- ``sigma``: label-noise level ``σ`` of the model;
- ``lr_scale`` ``s_η``: real learning rate = ``s_η`` × model ``η``;
- ``loss_scale`` ``s_L`` and ``loss_offset`` ``L_∞``: measured loss =
  ``L_∞ + s_L (L_t + tail(N))`` with ``L_t`` the model's excess loss.

The per-step recursion :func:`optctl.model.spectrum.sgd_step` is run with ``jax.lax.scan`` over
all curves at once (padded with ``η = 0`` steps, which leave the state unchanged), so
:func:`misfit` and its exact gradient come from jax autodiff through the replay. Modes
beyond ``n_exact`` may be grouped: each bin of integer modes becomes a few Gauss–Legendre
nodes in ``log k`` whose weights integrate ``Σ_k f(k) ≈ ∫ f(x) dx`` over the bin. The
nodes do not depend on ``(a, b)``, so the grouped model stays differentiable in them;
tests check it against the exact per-step replay.

The fit needs float64. optctl never switches jax's 64-bit mode on globally: the public
functions here and the fit's entry points run under :func:`float64`, which turns it on
(``jax.enable_x64``) for the duration of the call only.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import jax
import jax.numpy as jnp
import numpy as np

from optctl.calibrate.curves import LossCurve
from optctl.model.spectrum import sgd_step

P = ParamSpec("P")
R = TypeVar("R")


def float64(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with jax's 64-bit mode on, restoring the previous setting afterwards."""
    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with jax.enable_x64(True):
            return fn(*args, **kwargs)
    return wrapper

# The state is clipped here so that an unstable trial (η beyond the coupled stability
# limit) gives a huge misfit instead of inf/nan gradients.
_STATE_CAP = 1e150
_LOSS_FLOOR = 1e-300


@dataclass(frozen=True)
class Modes:
    """Mode positions ``x_j`` (continuous indices ``k``) and weights ``w_j`` standing for ``N`` modes."""

    x: np.ndarray
    w: np.ndarray
    N: int


def mode_nodes(N: int, grouped: bool, n_exact: int = 48, ratio: float = 1.12,
               nodes: int = 3) -> Modes:
    """Exact modes ``k = 1..N``, or the first ``n_exact`` exact and the rest grouped.

    A bin of integer modes ``lo..hi`` is replaced by ``nodes`` Gauss–Legendre points of
    ``∫_{lo−½}^{hi+½} f(x) dx`` in ``u = log x`` (the midpoint-sum identity, accurate
    because each mode's trajectory is a smooth power law in ``k``).
    """
    k = np.arange(1, N + 1, dtype=float)
    if not grouped or N <= n_exact + nodes:
        return Modes(x=k, w=np.ones(N), N=N)
    gx, gw = np.polynomial.legendre.leggauss(nodes)
    xs, ws = [k[:n_exact]], [np.ones(n_exact)]
    lo = n_exact + 1
    while lo <= N:
        hi = min(N, max(lo + nodes, int(np.ceil(lo * ratio))))
        if N - hi < nodes:
            hi = N
        u0, u1 = np.log(lo - 0.5), np.log(hi + 0.5)
        u = 0.5 * (u1 - u0) * gx + 0.5 * (u1 + u0)
        xs.append(np.exp(u))
        ws.append(0.5 * (u1 - u0) * gw * np.exp(u))  # dx = x du
        lo = hi + 1
    return Modes(x=np.concatenate(xs), w=np.concatenate(ws), N=N)


def tail_approx(a: Any, N: int) -> Any:
    """``Σ_{k>N} k^(−a)`` by Euler–Maclaurin (differentiable in ``a``; error ~ ``N^(−a−3)``)."""
    n1 = N + 1.0
    return n1 ** (1 - a) / (a - 1) + 0.5 * n1 ** (-a) + a / 12 * n1 ** (-a - 1)


@dataclass(frozen=True)
class FitData:
    """Curves padded to one length for a vectorised scan.

    ``lr[r, t]`` and ``m[r, t]`` the per-update schedule of run ``r`` (zeros and ones
    past its end), ``idx[r, i]`` the measured steps, ``logy[r, i]`` their log losses,
    ``mask[r, i]`` which entries are real, ``weight[r, i]`` each point's weight in the
    misfit (0 where ``mask`` is not set; every run's weights sum to 1).
    """

    names: tuple[str, ...]
    lr: np.ndarray
    m: np.ndarray
    idx: np.ndarray
    logy: np.ndarray
    mask: np.ndarray
    weight: np.ndarray

    @property
    def n_runs(self) -> int:
        return len(self.names)

    @property
    def max_lr(self) -> float:
        return float(self.lr.max())

    @property
    def min_batch(self) -> float:
        return float(self.m.min())

    @property
    def min_loss(self) -> float:
        return float(np.exp(self.logy[self.mask]).min())


# Local noise of a curve's log loss (:func:`local_noise`): points on either side of each
# point whose second differences are pooled, and the floor of the estimate (a curve
# measured on a large held-out set is smooth to far below 1%, and a weight without a
# floor would let a single point decide the fit).
NOISE_HALF_WINDOW = 4
NOISE_FLOOR = 0.01


def local_noise(logy: np.ndarray) -> np.ndarray:
    """Each point's noise (sd of its log loss) from the curve itself: ``1.4826 MAD / √6``
    of the second differences ``Δ²log y`` within :data:`NOISE_HALF_WINDOW` points of it
    (for independent noise of sd ``s``, ``Δ²`` has sd ``√6 s``; the smooth trend hardly
    enters it), at least :data:`NOISE_FLOOR`. A run at a large rate scatters by 30-50%
    from point to point and by 1-2% once its rate has decayed; weighted by the inverse
    variance the precise points are not outvoted by the scattered ones. With fewer than
    5 points every point gets the floor."""
    n = logy.size
    if n < 5:
        return np.full(n, NOISE_FLOOR)
    d2 = logy[2:] - 2 * logy[1:-1] + logy[:-2]  # centred on points 1..n-2
    s = np.empty(n)
    for i in range(n):
        win = d2[max(0, i - 1 - NOISE_HALF_WINDOW): max(0, min(n - 2, i + NOISE_HALF_WINDOW))]
        if win.size < 3:
            win = d2[:3] if i < n // 2 else d2[-3:]
        s[i] = 1.4826 * np.median(np.abs(win - np.median(win))) / math.sqrt(6)
    return np.maximum(s, NOISE_FLOOR)


def fit_data(curves: list[LossCurve], weights: str = "curve") -> FitData:
    """Stack curves. Every run counts equally (its weights sum to 1); within a run,
    ``weights="curve"`` weighs every point equally and ``"noise"`` by the inverse of its
    local noise variance (:func:`local_noise`)."""
    R = len(curves)
    T = max(c.T for c in curves)
    P = max(c.steps.size for c in curves)
    lr, m = np.zeros((R, T)), np.ones((R, T))
    idx, logy, mask = np.zeros((R, P), np.int64), np.zeros((R, P)), np.zeros((R, P), bool)
    weight = np.zeros((R, P))
    for r, c in enumerate(curves):
        # past its end a shorter run is padded with rate 0 (nothing moves) and its own last
        # batch size, so that the padding never becomes the smallest batch of the data
        lr[r, : c.T], m[r, : c.T], m[r, c.T:] = c.lr, c.batch_size, c.batch_size[-1]
        n = c.steps.size
        idx[r, :n], logy[r, :n], mask[r, :n] = c.steps, np.log(c.loss), True
        v = np.ones(n) if weights == "curve" else local_noise(logy[r, :n]) ** -2.0
        weight[r, :n] = v / v.sum()
    return FitData(names=tuple(c.name for c in curves), lr=lr, m=m, idx=idx, logy=logy,
                   mask=mask, weight=weight)


@float64
def model_losses(theta: Any, lr: Any, m: Any, modes: Modes, tail: bool) -> Any:
    """Excess losses ``L_t`` (``t = 0..T``) of every run, shape ``(R, T + 1)``, plus the tail."""
    a, b, sigma, s_eta = theta[0], theta[1], theta[2], theta[3]
    x = jnp.asarray(modes.x)
    lam = x ** (-b)
    c0 = x ** (-(a - b))
    lam_w = jnp.asarray(modes.w) * lam
    t_loss = tail_approx(a, modes.N) if tail else 0.0
    sigma2 = sigma**2 + t_loss
    R = lr.shape[0]
    eta = jnp.asarray(lr).T / s_eta
    mm = jnp.asarray(m).T

    def body(c: jax.Array, u: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        e, mb = u
        loss = c @ lam_w
        c_next = sgd_step(c, loss[:, None], e[:, None], mb[:, None], lam, sigma2)
        return jnp.clip(c_next, 0.0, _STATE_CAP), loss

    c_T, losses = jax.lax.scan(body, jnp.broadcast_to(c0, (R, c0.size)), (eta, mm))
    return jnp.concatenate([losses, (c_T @ lam_w)[None]], axis=0).T + t_loss


@float64
def log_prediction(theta: Any, lr: Any, m: Any, idx: Any, modes: Modes, tail: bool) -> Any:
    """Log of the predicted measured loss ``L_∞ + s_L (L_t + tail)`` at the steps ``idx``
    (one row per run) of the schedules ``lr``, ``m`` (rows padded as in :class:`FitData`)."""
    L = model_losses(theta, lr, m, modes, tail)
    at = jnp.take_along_axis(L, jnp.asarray(idx), axis=1)
    pred = theta[5] + theta[4] * at
    return jnp.log(jnp.maximum(pred, _LOSS_FLOOR))


def predict_log(theta: Any, data: FitData, modes: Modes, tail: bool) -> Any:
    """:func:`log_prediction` at the measured steps of ``data``, shape of ``data.idx``."""
    return log_prediction(theta, data.lr, data.m, data.idx, modes, tail)


@float64
def residuals(theta: Any, data: FitData, modes: Modes, tail: bool) -> Any:
    """``log(predicted) − log(measured)`` at each measured point (zero where masked)."""
    return jnp.where(jnp.asarray(data.mask), predict_log(theta, data, modes, tail) - data.logy, 0.0)


@float64
def misfit(theta: Any, data: FitData, modes: Modes, tail: bool) -> Any:
    """``J(θ) = Σ_r mean_i (log ŷ_{r,i} − log y_{r,i})²``: each run weighs the same."""
    res = residuals(theta, data, modes, tail)
    return jnp.sum(jnp.asarray(data.weight) * res**2)
