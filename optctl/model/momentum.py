"""SGD with EMA momentum: the per-mode second-moment recursion and its exact replay.

Bordelon & Mori, *Theory of Optimal Learning Rate Schedules and Scaling Laws for a
Random Feature Model* (arXiv:2602.04774), momentum section; MODEL.md §3. Per mode,
``Δ_{t+1} = Δ_t − η_t v_t`` and ``v_{t+1} = (1 − β_t) v_t + β_t g_{t+1}`` with
``g_{t+1}`` the minibatch gradient at ``Δ_{t+1}``. The second moments
``C = E[Δ²]``, ``R = E[Δ v]``, ``V = E[v²]`` obey

    C_{t+1} = C_t − 2 η_t R_t + η_t² V_t
    R_{t+1} = (1 − β_t)(R_t − η_t V_t) + β_t λ C_{t+1}
    V_{t+1} = (1 − β_t)² V_t + 2 β_t (1 − β_t) λ (R_t − η_t V_t)
              + β_t² [(1 + 1/m) λ² C_{t+1} + (1/m) λ (L_{t+1} + σ²)]

with ``L_t = Σ_k λ_k C_{t,k}``. With ``β ≡ 1`` this is exactly the SGD recursion of
:func:`optctl.model.spectrum.sgd_step`. Like the SGD step, the functions here use arithmetic
only, so they run on numpy arrays and on CasADi symbols alike; the loss (a dot
product) is computed by the caller.
"""

from __future__ import annotations

from typing import Any, TypeVar

import numpy as np

from optctl.model.replay import Replay
from optctl.model.spectrum import Spectrum, spectrum
from optctl.spec import ProblemSpec
from optctl.validate import per_step

X = TypeVar("X")


def momentum_position(C: X, R: X, V: X, eta: Any) -> X:
    """``C_{t+1} = C_t − 2 η_t R_t + η_t² V_t`` (the position update's second moment)."""
    return C - 2 * eta * R + eta * eta * V  # type: ignore[operator]


def momentum_velocity(C_next: X, R: X, V: X, loss_next: Any, eta: Any, beta: Any, m: Any,
                      lam: Any, sigma2: Any) -> tuple[X, X]:
    """``(R_{t+1}, V_{t+1})`` from the new ``C_{t+1}``, ``L_{t+1}`` and the old ``R_t, V_t``.

    ``loss_next`` is ``L_{t+1} = Σ_j λ_j C_{t+1,j}``; ``m`` the batch size of the
    gradient ``g_{t+1}``; ``sigma2`` the noise ``σ²`` the dynamics see.
    """
    keep = 1 - beta
    cross = R - eta * V  # type: ignore[operator]
    fresh = (1 + 1 / m) * lam * lam * C_next + (lam / m) * (loss_next + sigma2)
    R_next = keep * cross + beta * lam * C_next
    V_next = keep * keep * V + 2 * beta * keep * lam * cross + beta * beta * fresh
    return R_next, V_next  # type: ignore[return-value]


def momentum_start(c0: X, loss0: Any, beta0: Any, m: Any, lam: Any, sigma2: Any) -> tuple[X, X]:
    """``(R_0, V_0)`` for ``v_0 = β_0 g_0``: ``R_0 = β_0 λ C_0``,
    ``V_0 = β_0² [(1 + 1/m) λ² C_0 + (1/m) λ (L_0 + σ²)]``."""
    R0 = beta0 * lam * c0
    V0 = beta0 * beta0 * ((1 + 1 / m) * lam * lam * c0 + (lam / m) * (loss0 + sigma2))
    return R0, V0  # type: ignore[return-value]


def start_weight(init: str, eta: Any, beta: Any, last: int) -> Any:
    """The weight ``w`` of the first gradient in the velocity, ``v_0 = w g_0``.

    ``init`` is ``"model"`` (``w = β_0``, MODEL.md §3), ``"notebook"`` (``w = η_{T−1}``:
    the authors' momentum notebook starts ``R_0, V_0`` from the entry ``[-1, 0]`` of its
    ``(T, 2)`` array of ``(η_t, β_t)``, which is the last update's learning rate) or
    ``"zero"`` (``v_0 = 0``). ``last`` is the index of the last entry of ``eta``.
    """
    if init == "model":
        return beta[0]
    if init == "notebook":
        return eta[last]
    if init == "zero":
        return 0.0
    raise ValueError(f"momentum_init {init!r}: choose model, notebook or zero")


def momentum_curve(spec: ProblemSpec, eta: np.ndarray | float, beta: np.ndarray | float,
                   *, sp: Spectrum | None = None, c0: np.ndarray | None = None,
                   sigma2: float | None = None, init: str = "model") -> np.ndarray:
    """Excess loss ``L_t`` (without tail), ``t = 0..T``, of EMA-momentum SGD, step by step.

    The exact per-step recursion of MODEL.md §3 with every mode; ``β_{T−1}`` only
    shapes ``v_T`` and so does not change ``L_T``. Batch size ``spec.batch_size``;
    ``init`` the velocity's start (:func:`start_weight`).
    """
    sp = spectrum(spec) if sp is None else sp
    T = spec.T if np.ndim(eta) == 0 else int(np.size(eta))
    eta_t = per_step("eta", eta, T, "learning rate")
    beta_t = per_step("beta", beta, T, "momentum weight")
    lam, lw, m = sp.lam, sp.weight * sp.lam, spec.batch_size
    s2 = sp.sigma2 if sigma2 is None else float(sigma2)
    C = (sp.c0 if c0 is None else np.asarray(c0, dtype=float)).copy()
    out = np.empty(T + 1)
    out[0] = float(lw @ C)
    R, V = momentum_start(C, out[0], start_weight(init, eta_t, beta_t, T - 1), m, lam, s2)
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            C_next = momentum_position(C, R, V, eta_t[t])
            out[t + 1] = float(lw @ C_next)
            R, V = momentum_velocity(C_next, R, V, out[t + 1], eta_t[t], beta_t[t], m, lam, s2)
            C = C_next
    return out


def momentum_replay(spec: ProblemSpec, eta: np.ndarray | float, beta: np.ndarray | float,
                    init: str = "model") -> Replay:
    """The loss curve of a momentum schedule, split into bias and variance, tail included.

    ``init``: the velocity's start (:func:`start_weight`).

    The recursion is linear in ``(C, R, V, σ²)``, so bias (start at ``c_0``, no
    noise) and variance (start at zero with the noise forcing) split the loss exactly.
    """
    sp = spectrum(spec)
    bias = momentum_curve(spec, eta, beta, sp=sp, sigma2=0.0, init=init)
    variance = momentum_curve(spec, eta, beta, sp=sp, c0=np.zeros_like(sp.c0), init=init)
    return Replay(loss=bias + variance + sp.tail, bias=bias, variance=variance, tail=sp.tail)
