"""DANA as the paper writes it, in plain numpy, against optctl's model update and torch optimizer.

The Monte-Carlo checks of tests/test_families.py compare the second-moment recursion with
minibatch runs of :func:`optctl.model.families.simulate_iterates`; both read the same
coefficients, so a wrong mapping of the paper (a wrong exponent, ``Δ`` counted from the
wrong step, ``γ₃`` applied to the old velocity) would pass them. Here DANA-decaying and
DANA-constant are written from the update of Paquette, Ferbach, Paquette, Gidel and Everett,
*Dimension-adapted Momentum Outscales SGD* (arXiv:2505.16098), Gen-Mom-SGD,

    y_t     = (1 − Δ(t)) y_{t−1} + γ₁(t) (1/B) Σ_i ∇R(θ_t; x^i_{t+1}),
    θ_{t+1} = θ_t − γ₂(t) (1/B) Σ_i ∇R(θ_t; x^i_{t+1}) − γ₃(t) y_t,

on the power-law features ``x_j = j^(−α) z_j`` with target ``⟨x, b⟩``, ``b_j = j^(−β)``,
``R(θ; x) = ½ (⟨x, θ⟩ − ⟨x, b⟩)²`` (the embedding ``W`` taken as the identity, ``v = d``),
and DANA's schedules ``γ₁ = 1``, ``Δ(t) = (1 + t/δ)^(−1)``, ``γ₃(t) = γ̃₃ (1 + t)^(−1/(2α))``
(decaying) or ``γ̃₃`` (constant), with the paper's own names ``α, β, d, B`` and nothing
imported from optctl. optctl is given only its own parameters (``a = 2α + 2β``, ``b = 2α``,
``N = d``, ``m = B``) and must produce the same iterates, step by step, from the same
samples. (Source of the schedules: docs/momentum_families.md §2, "Where the equations come
from".)
"""

from __future__ import annotations

import numpy as np
import pytest

from optctl.model import families as F
from optctl.spec import ProblemSpec

# The paper's parameters (its names): data and target complexity, dimension, batch.
ALPHA, BETA, D, B = 0.8, 0.35, 7, 2
T = 40


def _paper_dana(x: np.ndarray, gamma_2: float, gamma_3_tilde: float, delta: float,
                decaying: bool) -> np.ndarray:
    """θ_1 … θ_T of DANA from θ_0 = 0 on the batches ``x`` (shape ``(T, B, d)``), as written."""
    j = np.arange(1, D + 1, dtype=float)
    b = j ** (-BETA)
    theta, y = np.zeros(D), np.zeros(D)
    out = []
    for t in range(T):
        batch = x[t]
        grad = batch.T @ (batch @ theta - batch @ b) / B      # (1/B) Σ ∇R(θ_t; x^i_{t+1})
        Delta = 1.0 / (1.0 + t / delta)
        gamma_1 = 1.0
        gamma_3 = gamma_3_tilde * (1.0 + t) ** (-1.0 / (2.0 * ALPHA)) if decaying else gamma_3_tilde
        y = (1.0 - Delta) * y + gamma_1 * grad
        theta = theta - gamma_2 * grad - gamma_3 * y
        out.append(theta.copy())
    return np.array(out)


def _batches(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    j = np.arange(1, D + 1, dtype=float)
    return j ** (-ALPHA) * rng.normal(size=(T, B, D))


def _optctl_dana(gamma_2: float, gamma_3_tilde: float, decaying: bool) -> F.LinearOptimizer:
    spec = ProblemSpec(a=2 * ALPHA + 2 * BETA, b=2 * ALPHA, N=D, sigma=0.0, batch_size=B, T=T)
    return F.dana(spec, T, gamma_2, gamma_3_tilde, decaying=decaying)


def _paper_delta() -> float:
    return 4.0 + (ALPHA + BETA) / ALPHA


@pytest.mark.parametrize("decaying", [True, False])
def test_model_update_is_the_papers_dana(decaying: bool) -> None:
    """optctl's literal update (:func:`simulate_iterates`) on the same samples: the same θ_t."""
    x = _batches(11)
    expected = _paper_dana(x, 0.3, 0.2, _paper_delta(), decaying)
    opt = _optctl_dana(0.3, 0.2, decaying)
    teacher = np.arange(1, D + 1, dtype=float) ** (-BETA)
    s = (-teacher[None].copy(), np.zeros((1, D)))   # errors θ − θ*, velocity
    got = []
    for t in range(T):
        batch = x[t]
        s = F.simulate_iterates(opt, t, s, lambda p, batch=batch: (batch.T @ (batch @ p[0])) / B)
        got.append(s[0][0] + teacher)
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("decaying", [True, False])
def test_torch_optimizer_is_the_papers_dana(decaying: bool) -> None:
    """optctl's torch ``GenMomSGD`` driven by the exported table, autograd gradients: the same θ_t."""
    torch = pytest.importorskip("torch")
    from optctl.torch import family_optimizer

    x = _batches(12)
    expected = _paper_dana(x, 0.3, 0.2, _paper_delta(), decaying)
    table = F.to_table(_optctl_dana(0.3, 0.2, decaying))
    teacher = torch.tensor(np.arange(1, D + 1, dtype=float) ** (-BETA))
    theta = torch.nn.Parameter(torch.zeros(D, dtype=torch.float64))
    opt = family_optimizer([theta], table)
    got = []
    for t in range(T):
        batch = torch.tensor(x[t])
        opt.zero_grad()
        loss = 0.5 * ((batch @ theta - batch @ teacher) ** 2).mean()
        loss.backward()
        opt.step()
        got.append(theta.detach().numpy().copy())
    np.testing.assert_allclose(np.array(got), expected, rtol=1e-11, atol=1e-13)


def test_a_wrong_reading_of_the_paper_fails() -> None:
    """Power: the velocity applied before its update (heavy-ball order) gives other iterates."""
    x = _batches(13)
    right = _paper_dana(x, 0.3, 0.2, _paper_delta(), True)
    j = np.arange(1, D + 1, dtype=float)
    b = j ** (-BETA)
    theta, y, wrong = np.zeros(D), np.zeros(D), []
    for t in range(T):
        grad = x[t].T @ (x[t] @ theta - x[t] @ b) / B
        gamma_3 = 0.2 * (1.0 + t) ** (-1.0 / (2.0 * ALPHA))
        theta = theta - 0.3 * grad - gamma_3 * y              # the old y_{t−1}
        y = (1.0 - 1.0 / (1.0 + t / _paper_delta())) * y + grad
        wrong.append(theta.copy())
    assert np.max(np.abs(np.array(wrong) - right)) > 1e-3
