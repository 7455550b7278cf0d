"""The power-law random-feature model and its per-step SGD recursion.

Bordelon & Mori, *Theory of Optimal Learning Rate Schedules and Scaling Laws for a
Random Feature Model* (arXiv:2602.04774), section 2. The recursion is written once,
with arithmetic only, so the same function runs on numpy arrays, jax arrays and
CasADi symbols.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from optctl.spec import ProblemSpec

X = TypeVar("X")


@dataclass(frozen=True)
class Spectrum:
    """Mode data of a :class:`ProblemSpec`.

    ``lam[k]`` is ``λ_k``, ``c0[k]`` the initial second moment ``c_{0,k}``,
    ``weight[k]`` how many true modes the entry stands for (all ones unless
    the modes are grouped), ``sigma2`` the effective noise ``σ² + tail(N)`` the
    dynamics see, and ``tail`` the loss offset ``tail(N)`` added to reports.
    """

    lam: np.ndarray
    c0: np.ndarray
    weight: np.ndarray
    sigma2: float
    tail: float

    @property
    def n_modes(self) -> int:
        return int(self.lam.size)

    def loss(self, c: np.ndarray) -> np.ndarray:
        """Excess loss ``Σ_k w_k λ_k c_k`` of states ``c`` (last axis = modes)."""
        return np.asarray(c) @ (self.weight * self.lam)


def tail_loss(a: float, N: int) -> float:
    """``Σ_{k>N} k^(-a)``: the teacher power ``N`` features cannot represent (a Hurwitz zeta)."""
    from scipy.special import zeta  # heavy (0.15 s), and only needed with the tail on

    return float(zeta(a, N + 1))


def spectrum(spec: ProblemSpec) -> Spectrum:
    """Eigenvalues ``λ_k = k^(-b)`` and initial errors ``c_{0,k} = k^(-(a-b))``."""
    k = np.arange(1, spec.N + 1, dtype=float)
    lam = k ** (-spec.b)
    c0 = k ** (-(spec.a - spec.b))
    if spec.normalize_init:
        c0 = c0 / float(lam @ c0)
    tail = tail_loss(spec.a, spec.N) if spec.tail else 0.0
    return Spectrum(lam=lam, c0=c0, weight=np.ones_like(lam),
                    sigma2=spec.sigma**2 + tail, tail=tail)


def sgd_decay(eta: X, m: X, lam: X) -> X:
    """Per-mode contraction ``d = 1 − 2ηλ + (1 + 1/m) η² λ²``."""
    return 1 - 2 * eta * lam + (1 + 1 / m) * eta**2 * lam**2  # type: ignore[operator]


def sgd_step(c: X, loss: X, eta: X, m: X, lam: X, sigma2: Any) -> X:
    """One SGD update of the per-mode second moments (MODEL.md §2).

    ``c_{t+1,k} = d_{t,k} c_{t,k} + (η_t² / m_t) λ_k (L_t + σ²)``, with ``loss`` the
    current excess loss ``L_t = Σ_k λ_k c_{t,k}`` (computed by the caller, since a
    dot product is spelled differently in numpy, jax and CasADi).
    """
    return sgd_decay(eta, m, lam) * c + (eta**2 / m) * lam * (loss + sigma2)  # type: ignore[operator]


def stability_limit(m: float) -> float:
    """Largest ``η`` for which the top mode (``λ = 1``) contracts: ``2m/(m+1)``."""
    return 2 * m / (m + 1)


def stable_rate(sp: Spectrum, m: float) -> float:
    """Largest constant ``η`` under which the SGD recursion of ``sp`` stays bounded.

    Without noise the state evolves by ``M = diag(d) + (η²/m) λ (wλ)ᵀ`` (``d`` from
    :func:`sgd_decay`), a non-negative matrix: its Perron root is below 1 iff every
    ``d_k < 1`` (``η < 2m/((m+1) λ_max)``) and ``(η/m) Σ_k w_k λ_k / (2 − (1 + 1/m) η λ_k)
    < 1`` (where ``1 − e^T (I − diag(d))^{-1} u`` of the rank-one update changes sign).
    The second condition, the modes' shared gradient noise, binds first when
    ``Σ λ_k / m`` is not small. Found by bisection to 1e-10 relative.
    """
    lam, w = sp.lam, sp.weight
    hi = 2 * m / ((m + 1) * float(lam.max()))

    def stable(eta: float) -> bool:
        return float(np.sum(w * lam / (2 - (1 + 1 / m) * eta * lam))) * eta / m < 1

    lo = 0.0
    while hi - lo > 1e-10 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if stable(mid) else (lo, mid)
    return lo


def _gauss_nodes(x: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray]:
    """``p``-point Gauss quadrature of the counting measure on the points ``x``.

    Lanczos on ``diag(x)`` from the uniform vector gives the Jacobi matrix whose
    eigenvalues are the nodes; the weights are ``len(x)`` times the squared first
    components of its eigenvectors. Exact for polynomials of degree ``2p − 1``.
    """
    n = x.size
    p = min(p, n)
    scale = x.mean()
    xs = x / scale
    Q = np.zeros((n, p))
    alpha = np.zeros(p)
    beta = np.zeros(max(p - 1, 0))
    q = np.full(n, 1.0 / np.sqrt(n))
    for j in range(p):
        Q[:, j] = q
        v = xs * q
        alpha[j] = q @ v
        v -= Q[:, : j + 1] @ (Q[:, : j + 1].T @ v)  # full reorthogonalisation
        if j + 1 < p:
            beta[j] = np.linalg.norm(v)
            q = v / beta[j]
    theta, vecs = np.linalg.eigh(np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1))
    return theta * scale, n * vecs[0] ** 2


def group_modes(sp: Spectrum, spec: ProblemSpec, n_exact: int = 32, ratio: float = 1.25,
                nodes: int = 3) -> Spectrum:
    """Replace the dense tail of the spectrum by Gauss quadrature nodes (approximate).

    Modes ``k <= n_exact`` stay as they are. The rest are cut into consecutive bins
    whose last index grows by ``ratio``; each bin becomes ``nodes`` representative
    modes at the Gauss nodes of its eigenvalues, carrying the quadrature weights, with
    the initial state ``c_0(λ) = λ^((a−b)/b)`` evaluated at the node (times the
    ``normalize_init`` factor). Because every mode's trajectory is a smooth function
    of its eigenvalue, the bin sums of the loss are integrated to high order. Replay
    the resulting schedule exactly to measure the error.
    """
    N = sp.n_modes
    if N <= n_exact + nodes:
        return sp
    norm = sp.c0[0] / 1.0  # c_{0,1} = 1 before normalisation
    lam_out = [sp.lam[:n_exact]]
    c0_out = [sp.c0[:n_exact]]
    w_out = [sp.weight[:n_exact]]
    start = n_exact
    while start < N:
        stop = min(N, max(start + nodes + 1, int(np.ceil(start * ratio))))
        if N - stop < nodes + 1:
            stop = N
        x, w = _gauss_nodes(sp.lam[start:stop], nodes)
        lam_out.append(x)
        c0_out.append(norm * x ** ((spec.a - spec.b) / spec.b))
        w_out.append(w)
        start = stop
    return Spectrum(lam=np.concatenate(lam_out), c0=np.concatenate(c0_out),
                    weight=np.concatenate(w_out), sigma2=sp.sigma2, tail=sp.tail)
