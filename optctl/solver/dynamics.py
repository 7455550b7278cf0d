"""The model's dynamics as CasADi functions, for the NLP.

Built from the same arithmetic-only functions that the exact replays run on numpy
(:mod:`optctl.model.spectrum`, :mod:`optctl.model.blocks`, :mod:`optctl.model.momentum`,
:mod:`optctl.model.families`),
so the transcription and the ground truth share one statement of the recursion. Each
function maps a scalar per-mode kernel over the modes and keeps the dot products that
couple the modes outside it, so the generated code is a few small loops whatever ``N``.
"""

from __future__ import annotations

import casadi as ca
import numpy as np

from optctl.model.blocks import Ops, block_weights, momentum_block_kernel
from optctl.model.families import moment_block_kernel, moment_step, point_moment
from optctl.model.momentum import momentum_position, momentum_velocity
from optctl.model.spectrum import sgd_step

CASADI = Ops(ca.exp, ca.expm1, ca.log1p, ca.if_else, ca.fabs, ca.dot)


def sgd_subblock(n_modes: int, propagator: str) -> ca.Function:
    """One integration sub-block of SGD as a CasADi Function.

    Inputs ``(c, η, m, n, λ, wλ, σ²)``, outputs ``(c_next, L_next)``: one exact update
    (``propagator="step"``, ``n = 1``) or ``n`` updates at constant ``(η, m)`` with the
    closed-form block propagator (``"block"``, MODEL.md §2).
    """
    lam, c, e, m, n, u0 = (ca.SX.sym(s) for s in ("lam", "c", "eta", "m", "n", "u0"))
    if propagator == "step":
        kernel = ca.Function("sgd_step", [lam, c, e, m, n, u0],
                             [sgd_step(c, u0, e, m, lam, 0.0), ca.SX(0)])
    else:
        x = e * lam * (-2 + (1 + 1 / m) * e * lam)
        P, S, W = block_weights(x, n, CASADI)
        q = e * e / m * lam
        kernel = ca.Function("block_kernel", [lam, c, e, m, n, u0], [P * c + q * S * u0, q * W])
    kmap = kernel.map(n_modes)

    cM, lamM, lwM = ca.MX.sym("c", n_modes), ca.MX.sym("lam", n_modes), ca.MX.sym("lw", n_modes)
    eM, mM, nM, s2M = ca.MX.sym("eta"), ca.MX.sym("m"), ca.MX.sym("n"), ca.MX.sym("s2")
    u0M = ca.dot(lwM, cM) + s2M
    free, qW = kmap(lamM.T, cM.T, eM, mM, nM, u0M)
    free, qW = free.T, qW.T
    if propagator == "step":
        c_next = free
        loss_next = ca.dot(lwM, c_next)
    else:
        alpha = ca.dot(lwM, qW)
        u_end = (ca.dot(lwM, free) - alpha * u0M + s2M) / (1 - alpha)
        c_next = free + qW * (u_end - u0M)
        loss_next = u_end - s2M
    return ca.Function("subblock", [cM, eM, mM, nM, lamM, lwM, s2M], [c_next, loss_next])


def momentum_update(n_modes: int) -> ca.Function:
    """One EMA-momentum update (MODEL.md §3) on the stacked moments ``(C, R, V)``.

    Inputs ``((C, R, V), η, β, m, λ, wλ, σ²)``, outputs ``((C, R, V)_next, L_next)``.
    """
    n = n_modes
    C, R, V = ca.MX.sym("C", n), ca.MX.sym("R", n), ca.MX.sym("V", n)
    lam, lw = ca.MX.sym("lam", n), ca.MX.sym("lw", n)
    e, b, m, s2 = ca.MX.sym("eta"), ca.MX.sym("beta"), ca.MX.sym("m"), ca.MX.sym("s2")
    C1 = momentum_position(C, R, V, e)
    L1 = ca.dot(lw, C1)
    R1, V1 = momentum_velocity(C1, R, V, L1, e, b, m, lam, s2)
    return ca.Function("momentum_step", [ca.vertcat(C, R, V), e, b, m, lam, lw, s2],
                       [ca.vertcat(C1, R1, V1), L1])


def momentum_subblock(n_modes: int, n_bits: int) -> ca.Function:
    """``n`` EMA-momentum updates at constant ``(η, β)`` with the closed-form block
    propagator of :mod:`optctl.model.blocks` (the loss linear in ``t`` inside the block).

    Inputs ``((C, R, V), η, β, m, n, bits, λ, wλ, σ²)`` with ``bits`` the ``n_bits`` binary
    digits of ``n`` (most significant first); outputs ``((C, R, V)_next, L_next)``.
    Exact for ``n = 1``.
    """
    lam, C, R, V, u0, e, b, m, n = (ca.SX.sym(s) for s in ("lam", "C", "R", "V", "u0", "eta", "beta", "m", "n"))
    bits = ca.SX.sym("bits", n_bits)
    free, w = momentum_block_kernel(C, R, V, u0, e, b, m, n, [bits[i] for i in range(n_bits)], lam)
    kernel = ca.Function("momentum_block_kernel", [lam, C, R, V, u0, e, b, m, n, bits],
                         [ca.vertcat(*free), ca.vertcat(*w)])
    kmap = kernel.map(n_modes)
    nm = n_modes
    x = ca.MX.sym("x", 3 * nm)
    lamM, lwM = ca.MX.sym("lam", nm), ca.MX.sym("lw", nm)
    eM, bM, mM, nM, s2M = (ca.MX.sym(s) for s in ("eta", "beta", "m", "n", "s2"))
    bitsM = ca.MX.sym("bits", n_bits)
    Cm, Rm, Vm = x[:nm], x[nm:2 * nm], x[2 * nm:]
    u0M = ca.dot(lwM, Cm) + s2M
    freeM, wM = kmap(lamM.T, Cm.T, Rm.T, Vm.T, u0M, eM, bM, mM, nM, bitsM)  # 3 × n_modes each
    alpha = ca.dot(lwM, wM[0, :].T)
    u_end = (ca.dot(lwM, freeM[0, :].T) - alpha * u0M + s2M) / (1 - alpha)
    nxt = freeM + wM * (u_end - u0M)
    x_next = ca.vertcat(nxt[0, :].T, nxt[1, :].T, nxt[2, :].T)
    return ca.Function("momentum_subblock", [x, eM, bM, mM, nM, bitsM, lamM, lwM, s2M], [x_next, u_end - s2M])


def family_step(n_modes: int) -> ca.Function:
    """One update of a linear momentum family (:mod:`optctl.model.families`) on the stacked
    per-mode second moments ``(M₀₀, M₀₁, M₁₁)``.

    Inputs ``(x, c, m, λ, wλ, σ²)`` with ``c`` the update's eight coefficients
    ``(A₀₀, A₀₁, A₁₀, A₁₁, b₀, b₁, u₀, u₁)``; output ``x_next``. The arithmetic is
    :func:`~optctl.model.families.moment_step`, the same function the exact replay runs;
    the loss at the gradient's point couples the modes through ``wλ`` (grouped modes
    carry their weight there, the per-mode noise only ``λ``).
    """
    n = n_modes
    x, c = ca.SX.sym("x", 3 * n), ca.SX.sym("c", 8)
    lam, lw = ca.SX.sym("lam", n), ca.SX.sym("lw", n)
    m, s2 = ca.SX.sym("m"), ca.SX.sym("s2")
    S00, S01, S11 = x[:n], x[n:2 * n], x[2 * n:]
    A00, A01, A10, A11, b0, b1, u0, u1 = (c[i] for i in range(8))
    P = ca.dot(lw, point_moment(S00, S01, S11, u0, u1))
    N00, N01, N11 = moment_step(S00, S01, S11, P, A00, A01, A10, A11, b0, b1, u0, u1, lam, m, s2)
    return ca.Function("family_step", [x, c, m, lam, lw, s2], [ca.vertcat(N00, N01, N11)])


def family_subblock(n_modes: int, n_bits: int) -> ca.Function:
    """``n`` updates of a linear momentum family with its eight coefficients held, by the
    closed-form propagator of :func:`~optctl.model.families.moment_block_kernel` (the loss at
    the gradient's point taken linear in ``t`` inside the sub-block). Exact for ``n = 1``.

    Inputs ``(x, c, m, n, bits, λ, wλ, σ²)`` as :func:`family_step`, with ``n`` and its
    ``n_bits`` binary digits ``bits`` (most significant first); output ``x_next``.
    """
    lam, S00, S01, S11, u0, m, n = (ca.SX.sym(s) for s in ("lam", "S00", "S01", "S11", "u0", "m", "n"))
    c, bits = ca.SX.sym("c", 8), ca.SX.sym("bits", n_bits)
    free, w = moment_block_kernel(S00, S01, S11, u0, [c[i] for i in range(8)], n,
                                  [bits[i] for i in range(n_bits)], lam, m)
    kernel = ca.Function("family_block_kernel", [lam, S00, S01, S11, u0, c, m, n, bits],
                         [ca.vertcat(*free), ca.vertcat(*w)])
    kmap = kernel.map(n_modes)
    nm = n_modes
    x, cM = ca.MX.sym("x", 3 * nm), ca.MX.sym("c", 8)
    lamM, lwM = ca.MX.sym("lam", nm), ca.MX.sym("lw", nm)
    mM, nM, s2M, bitsM = ca.MX.sym("m"), ca.MX.sym("n"), ca.MX.sym("s2"), ca.MX.sym("bits", n_bits)
    X = [x[:nm], x[nm:2 * nm], x[2 * nm:]]
    p0, p1 = cM[6], cM[7]

    def at_point(v: list[ca.MX]) -> ca.MX:  # Σ wλ E[p²] of per-mode moments v
        return ca.dot(lwM, point_moment(v[0], v[1], v[2], p0, p1))

    u0M = at_point(X) + s2M
    freeM, wM = kmap(lamM.T, X[0].T, X[1].T, X[2].T, u0M, cM, mM, nM, bitsM)  # 3 × n_modes each
    F = [freeM[i, :].T for i in range(3)]
    W = [wM[i, :].T for i in range(3)]
    alpha = at_point(W)
    u_end = (at_point(F) - alpha * u0M + s2M) / (1 - alpha)
    x_next = ca.vertcat(*[F[i] + W[i] * (u_end - u0M) for i in range(3)])
    # Schedules that make the recursion diverge overflow the powers Aⁿ, and the closure can then
    # turn them into a huge *negative* loss (measured: −8.7e269 where the per-step chain gives
    # nan), which IPOPT would accept. A sub-block whose closure is singular (1 − α ≤ 0) or whose
    # end loss is negative or not finite is an evaluation error (nan), so IPOPT cuts its step back.
    ok = ca.logic_and(ca.logic_and(1 - alpha > 0, u_end >= s2M), ca.fabs(u_end) < np.inf)
    x_next = ca.if_else(ok, x_next, np.nan * ca.DM.ones(3 * nm), True)
    return ca.Function("family_subblock", [x, cM, mM, nM, bitsM, lamM, lwM, s2M], [x_next])
