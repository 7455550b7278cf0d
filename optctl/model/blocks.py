"""Closed-form propagation of the SGD recursion over a block of constant controls.

Over ``Δ`` updates with constant ``η, m`` the diagonal part of the recursion of
MODEL.md §2 is exact: ``c_Δ = d^Δ c_0 + q Σ_j d^(Δ−1−j) u_j`` with ``q = η² λ / m``
and ``u_j = L_j + σ²``. Only the loss ``u_j`` inside the block is unknown; taking it
linear in ``j`` between ``u_0`` and ``u_Δ`` leaves one scalar linear equation for
``u_Δ``. Exact for ``Δ = 1``; for longer blocks the error is second order in the
curvature of ``L_t`` inside the block. Written with a small ops table (:class:`Ops`)
so the same code runs on numpy arrays (:data:`NUMPY`) and on CasADi symbols (the solve
layer builds the CasADi table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Ops:
    exp: Callable[[Any], Any]
    expm1: Callable[[Any], Any]
    log1p: Callable[[Any], Any]
    where: Callable[[Any, Any, Any], Any]
    fabs: Callable[[Any], Any]
    dot: Callable[[Any, Any], Any]


NUMPY = Ops(np.exp, np.expm1, np.log1p, np.where, np.abs, lambda u, v: u @ v)

# Below this |Δ log d| the closed forms lose digits; a Taylor series takes over.
_SERIES = 1e-4


def block_weights(x: Any, n: Any, ops: Ops) -> tuple[Any, Any, Any]:
    """Geometric sums of ``d = 1 + x`` over a block of ``n`` updates.

    Returns ``P = d^n``, ``S = Σ_{i<n} d^i`` and ``W = (1/n) Σ_{j<n} j d^(n−1−j)``,
    the weight of the loss change inside the block under linear interpolation.
    ``x = d − 1`` is passed instead of ``d`` to avoid cancellation for small ``ηλ``.
    """
    ell = ops.log1p(x)
    z = n * ell
    P = ops.exp(z)
    small = ops.fabs(z) < _SERIES
    x_safe = ops.where(small, 1.0, x)
    em = ops.expm1(z)
    s1 = n * (n - 1) / 2
    s2 = (n - 1) * n * (2 * n - 1) / 6
    s3 = s1 * s1
    S_series = n + ell * s1 + ell * ell * s2 / 2
    S = ops.where(small, S_series, em / x_safe)
    nW_series = (n - 1) * n - s1 + ell * ((n - 1) * s1 - s2) + ell * ell / 2 * ((n - 1) * s2 - s3)
    nW = ops.where(small, nW_series, (em - n * x_safe) / (x_safe * x_safe))
    return P, S, nW / n


def propagate_block(c: Any, eta: Any, m: Any, n: Any, lam: np.ndarray, lam_w: np.ndarray,
                    sigma2: float, ops: Ops) -> tuple[Any, Any]:
    """State after ``n`` updates at constant ``(η, m)``, and the end loss ``L_n``.

    ``lam_w`` is ``w ⊙ λ`` (mode weights times eigenvalues), the loss functional.
    """
    x = eta * lam * (-2 + (1 + 1 / m) * eta * lam)
    P, S, W = block_weights(x, n, ops)
    q = eta * eta / m * lam
    u0 = ops.dot(lam_w, c) + sigma2
    free = P * c + q * S * u0
    alpha = ops.dot(lam_w, q * W)
    u_end = (ops.dot(lam_w, free) - alpha * u0 + sigma2) / (1 - alpha)
    c_next = free + q * W * (u_end - u0)
    return c_next, u_end - sigma2
