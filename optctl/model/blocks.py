"""Closed-form propagation of the SGD recursion over a block of constant controls.

Over ``Δ`` updates with constant ``η, m`` the diagonal part of the recursion of
MODEL.md §2 is exact: ``c_Δ = d^Δ c_0 + q Σ_j d^(Δ−1−j) u_j`` with ``q = η² λ / m``
and ``u_j = L_j + σ²``. Only the loss ``u_j`` inside the block is unknown; taking it
linear in ``j`` between ``u_0`` and ``u_Δ`` leaves one scalar linear equation for
``u_Δ``. Exact for ``Δ = 1``; for longer blocks the error is second order in the
curvature of ``L_t`` inside the block. Written with a small ops table (:class:`Ops`)
so the same code runs on numpy arrays (:data:`NUMPY`) and on CasADi symbols (the solve
layer builds the CasADi table).

The second half propagates any per-mode 3×3 linear map with a scalar forcing over a block
(:func:`linear_block_kernel`, binary doubling): EMA momentum's (MODEL.md §3) and the momentum
families' second moments (:func:`optctl.model.families.moment_block_kernel`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
SERIES = 1e-4
# Below this Δ log d the factor d^Δ (< 2e-22) is taken as 0. Kept, it changes nothing
# next to the block's other terms, but products of such factors (the state of a strongly
# contracted mode, and the adjoints of a gradient, block after block) reach the subnormal
# range, where arithmetic is many times slower (with it the phase diagram's solves at
# T = 10^5 run faster: README, Performance).
Z_FLUSH = -50.0


def block_weights(x: Any, n: Any, ops: Ops) -> tuple[Any, Any, Any]:
    """Geometric sums of ``d = 1 + x`` over a block of ``n`` updates.

    Returns ``P = d^n``, ``S = Σ_{i<n} d^i`` and ``W = (1/n) Σ_{j<n} j d^(n−1−j)``,
    the weight of the loss change inside the block under linear interpolation.
    ``x = d − 1`` is passed instead of ``d`` to avoid cancellation for small ``ηλ``.
    """
    ell = ops.log1p(x)
    z = n * ell
    flush = z < Z_FLUSH
    P = ops.where(flush, 0.0, ops.exp(ops.where(flush, Z_FLUSH, z)))
    small = ops.fabs(z) < SERIES
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


def block_weights_numpy(x: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`block_weights` on numpy arrays, bit for bit, with fewer passes over memory.

    ``x`` has one row per block and ``n`` (one column) broadcasts against it. The Taylor
    series are evaluated only on the entries that need them (the same expressions, in the
    same order, so every entry is the same float), and the closed forms reuse buffers.
    """
    ell = np.log1p(x)
    z = n * ell
    P = np.exp(z)
    P[z < Z_FLUSH] = 0.0
    small = np.abs(z) < SERIES
    any_small = bool(small.any())
    x_safe = np.where(small, 1.0, x) if any_small else x
    em = np.expm1(z)
    S = em / x_safe
    nW = n * x_safe
    np.subtract(em, nW, out=nW)
    np.divide(nW, np.multiply(x_safe, x_safe, out=em), out=nW)
    if any_small:
        nb = np.broadcast_to(n, z.shape)[small]
        el = ell[small]
        s1 = nb * (nb - 1) / 2
        s2 = (nb - 1) * nb * (2 * nb - 1) / 6
        s3 = s1 * s1
        S[small] = nb + el * s1 + el * el * s2 / 2
        nW[small] = (nb - 1) * nb - s1 + el * ((nb - 1) * s1 - s2) + el * el / 2 * ((nb - 1) * s2 - s3)
    np.divide(nW, n, out=nW)
    return P, S, nW


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


# --- EMA momentum (MODEL.md §3) over a block of constant (η, β) -------------------------
#
# Per mode, one update maps x = (C, R, V) linearly, x' = A x + q u' e₃, with q = β² λ / m and
# u' = L' + σ² the loss after the update (the only coupling between modes). Over n updates
# x_n = Aⁿ x₀ + q Σ_{j=1..n} A^(n−j) e₃ u_j; with u_j linear in j between u₀ and u_n this is
# x_n = Aⁿ x₀ + q S₀ e₃ u₀ + q (S₀ − S₁/n) e₃ (u_n − u₀), S₀ = Σ_{i<n} Aⁱ, S₁ = Σ_{i<n} i Aⁱ,
# and u_n solves one scalar linear equation, as for SGD. The powers and sums are built by
# binary doubling over the bits of n, so the same arithmetic runs on numpy arrays (every
# mode at once) and on CasADi scalars, with n an input (its bits), exact for every n.

Mat3 = list[list[Any]]


def momentum_matrix(eta: Any, beta: Any, m: Any, lam: Any) -> Mat3:
    """The per-mode update matrix ``A`` of ``(C, R, V)`` at constant ``(η, β)`` (noise
    forcing left out): the rows of MODEL.md §3 with ``C_{t+1}`` substituted."""
    keep = 1 - beta
    g2 = (1 + 1 / m) * lam * lam
    row_c = [1.0 + 0 * lam, -2 * eta + 0 * lam, eta * eta + 0 * lam]
    row_r = [beta * lam * row_c[0], keep + beta * lam * row_c[1], -keep * eta + beta * lam * row_c[2]]
    row_v = [beta * beta * g2 * row_c[0],
             2 * beta * keep * lam + beta * beta * g2 * row_c[1],
             keep * keep - 2 * beta * keep * lam * eta + beta * beta * g2 * row_c[2]]
    return [row_c, row_r, row_v]


def _mm(X: Mat3, Y: Mat3) -> Mat3:
    return [[X[i][0] * Y[0][j] + X[i][1] * Y[1][j] + X[i][2] * Y[2][j] for j in range(3)] for i in range(3)]


def _axpy(X: Mat3, a: Any, Y: Mat3) -> Mat3:
    return [[X[i][j] + a * Y[i][j] for j in range(3)] for i in range(3)]


def bits_of(n: int, n_bits: int) -> list[float]:
    """The ``n_bits`` binary digits of ``n``, most significant first."""
    if not 0 <= n < 2**n_bits:
        raise ValueError(f"{n} does not fit in {n_bits} bits")
    return [float((n >> (n_bits - 1 - i)) & 1) for i in range(n_bits)]


def _times(X: Mat3, v: Sequence[Any]) -> list[Any]:
    """``X v``, skipping the terms of ``v``'s structural zeros (Python numbers equal to 0), so a
    unit vector picks a column without any arithmetic on the others."""
    out = []
    for row in X:
        terms = [row[j] * v[j] for j in range(3) if not (isinstance(v[j], (int, float)) and v[j] == 0)]
        acc = terms[0] if terms else 0 * row[0]
        for term in terms[1:]:
            acc = acc + term
        out.append(acc)
    return out


def block_sums_times(A: Mat3, bits: Any, x: Sequence[Any], e: Sequence[Any]) -> tuple[list[Any], list[Any], list[Any]]:
    """``(Aⁿ x, S₀ e, S₁ e)`` with ``S₀ = Σ_{i<n} Aⁱ``, ``S₁ = Σ_{i<n} i Aⁱ``, for any 3×3 matrix
    ``A`` and ``n`` given by its ``bits`` (most significant first), by doubling:
    ``S₀(2k) = S₀ + Aᵏ S₀``, ``S₁(2k) = S₁ + Aᵏ (S₁ + k S₀)``, and one more update adds ``Aᵏ``
    to ``S₀`` and ``k Aᵏ`` to ``S₁``. Only the power ``Aᵏ`` is kept as a matrix (two 3×3
    products a bit); the sums are carried as the vectors ``S e``. For a unit ``e`` (structural
    zeros) every entry is the same float as the matching column of the full matrix sums."""
    one, zero = 1.0 + 0 * A[0][0], 0 * A[0][0]
    P = [[one if i == j else zero for j in range(3)] for i in range(3)]
    s0 = [zero] * 3
    s1 = [zero] * 3
    k: Any = 0.0
    for b in bits:
        Pv = _times(P, [s1[i] + k * s0[i] for i in range(3)])
        s1 = [s1[i] + 1.0 * Pv[i] for i in range(3)]
        Pv = _times(P, s0)
        s0 = [s0[i] + 1.0 * Pv[i] for i in range(3)]
        P = _mm(P, P)
        k = 2 * k
        Pe = _times(P, e)
        s0 = [s0[i] + b * Pe[i] for i in range(3)]
        s1 = [s1[i] + b * k * Pe[i] for i in range(3)]
        P = _axpy(P, b, _axpy(_mm(A, P), -1.0, P))
        k = k + b
    return _times(P, x), s0, s1


def linear_block_kernel(A: Mat3, e: Sequence[Any], x: Sequence[Any], u0: Any, q: Any, n: Any, bits: Any,
                        *, after: bool) -> tuple[list[Any], list[Any]]:
    """``n`` updates of one mode's linear map ``x' = A x + q e u`` with the scalar forcing ``u``
    taken linear in the update index between its values ``u₀`` and ``u_n`` at the block's ends.

    ``after=True``: update ``j = 1..n`` is forced by ``u_j``, the value after it (EMA momentum:
    the loss after the position step), ``Σ_j A^(n−j) e u_j = S₀ e u₀ + (S₀ − S₁/n) e (u_n − u₀)``;
    ``after=False``: update ``j = 0..n−1`` by ``u_j``, the value before it (the momentum
    families: the loss at the gradient's point), ``Σ_j A^(n−1−j) e u_j = S₀ e u₀ +
    ((n − 1) S₀ − S₁)/n e (u_n − u₀)``. Returns ``free = Aⁿ x + q S₀ e u₀`` and ``w``, so that
    the state after the block is ``free + w (u_n − u₀)``; exact for ``n = 1``.
    """
    Px, S0e, S1e = block_sums_times(A, bits, x, e)
    free = [Px[i] + q * S0e[i] * u0 for i in range(3)]
    if after:
        w = [q * (S0e[i] - S1e[i] / n) for i in range(3)]
    else:
        w = [q * ((n - 1) * S0e[i] - S1e[i]) / n for i in range(3)]
    return free, w


def momentum_block_kernel(C: Any, R: Any, V: Any, u0: Any, eta: Any, beta: Any, m: Any, n: Any,
                          bits: Any, lam: Any) -> tuple[list[Any], list[Any]]:
    """Per mode: ``free = Aⁿ x₀ + q S₀ e₃ u₀`` and ``w = q (S₀ − S₁/n) e₃``, so that the
    state after the block is ``free + w (u_n − u₀)`` (see the section comment above)."""
    return linear_block_kernel(momentum_matrix(eta, beta, m, lam), (0, 0, 1), (C, R, V), u0,
                               beta * beta * lam / m, n, bits, after=True)


def propagate_momentum_block(C: np.ndarray, R: np.ndarray, V: np.ndarray, eta: float, beta: float,
                             m: float, n: int, lam: np.ndarray, lam_w: np.ndarray,
                             sigma2: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """``(C, R, V)`` after ``n`` updates at constant ``(η, β)`` and the end loss ``L_n``
    (numpy; the loss taken linear in ``t`` inside the block, exact for ``n = 1``)."""
    u0 = float(lam_w @ C) + sigma2
    free, w = momentum_block_kernel(C, R, V, u0, eta, beta, m, float(n), bits_of(n, max(int(n).bit_length(), 1)),
                                    lam)
    alpha = float(lam_w @ w[0])
    u_end = (float(lam_w @ free[0]) - alpha * u0 + sigma2) / (1 - alpha)
    C1, R1, V1 = (free[i] + w[i] * (u_end - u0) for i in range(3))
    return C1, R1, V1, u_end - sigma2
