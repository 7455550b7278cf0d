"""Momentum families beyond EMA momentum: exact per-mode second-moment recursions.

Every optimizer here is *linear* in its iterates with one fresh minibatch gradient per
step. Per eigenmode ``k`` its state is a pair ``s = (s₀, s₁)`` of errors (iterate minus
teacher), the gradient is taken at a fixed linear combination ``p = u₀ s₀ + u₁ s₁`` of
them, and one step is

    s_{t+1} = A_t s_t + b_t g_t,        g_t = λ p_t + ξ_t,

where ``ξ_t`` is the minibatch noise. For Gaussian features with a fresh batch of ``m``
samples, ``E[ξ_{t,k} | s] = 0`` and

    E[ξ_{t,k}² | s] = (1/m) [λ_k² p_k² + λ_k (Σ_j λ_j p_j² + σ²)]

(the same fourth-moment identity as MODEL.md §2). With ``F = A + λ b uᵀ`` the per-mode
second-moment matrix ``M = E[s sᵀ]`` therefore obeys, exactly in expectation,

    M_{t+1} = F M Fᵀ + n_t b bᵀ,    n_t = (1/m) [λ² uᵀ M u + λ (P_t + σ²)],

with ``P_t = Σ_j λ_j u_jᵀ M_j u_j`` the loss at the gradient's point. The recursion
closes on the three entries ``(M₀₀, M₀₁, M₁₁)`` of each mode. The derivation, and
why the cross term ``M₀₁`` cannot be dropped, is in docs/momentum_families.md.

Families (each a constructor returning per-step coefficients, :class:`LinearOptimizer`):

* **Generalised momentum** (Gen-Mom-SGD of Paquette, Ferbach, Paquette, Gidel and
  Everett, *Dimension-adapted Momentum Outscales SGD*, NeurIPS 2025, arXiv:2505.16098):
  ``y_t = (1 − Δ_t) y_{t−1} + γ₁(t) g_t``, ``θ_{t+1} = θ_t − γ₂(t) g_t − γ₃(t) y_t``,
  gradient at ``θ_t``, ``y_{−1} = 0``. State ``(θ − θ*, y)``. DANA-constant and
  DANA-decaying (:func:`dana`) and the log-time momentum of ADANA (:func:`log_time`)
  are instances.
* **Schedule-Free SGD** (Defazio et al., *The Road Less Scheduled*, NeurIPS 2024):
  ``y_t = (1 − β) z_t + β x_t``, ``z_{t+1} = z_t − γ_t g(y_t)``,
  ``x_{t+1} = (1 − c_{t+1}) x_t + c_{t+1} z_{t+1}`` with ``c_{t+1} = 1/(t+1)``
  (1-based ``t``), loss read at ``x``. State ``(z − θ*, x − θ*)``.

The step (:func:`moment_step`) uses arithmetic only, so it runs on numpy and could run
on CasADi symbols, like :mod:`optctl.model.momentum`. Coefficients may carry a
trailing candidate axis: arrays of shape ``(T, K)`` evaluate ``K`` hyperparameter
settings at once (the tuning in :mod:`optctl.baselines.momentum_tune` uses this).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from optctl.errors import SpecError
from optctl.model.blocks import Mat3, bits_of, linear_block_kernel
from optctl.model.replay import bucket_length
from optctl.model.spectrum import Spectrum, spectrum
from optctl.spec import ProblemSpec
from optctl.table import FamilyTable

X = TypeVar("X")

FAMILIES = ("dana-constant", "dana-decaying", "log-time", "schedule-free")


@dataclass(frozen=True)
class LinearOptimizer:
    """Per-step coefficients of a linear optimizer on the two-component state ``s``.

    ``A`` has shape ``(T, 2, 2, *K)``, ``b`` and ``u`` ``(T, 2, *K)``; ``readout`` is
    the component whose error gives the reported loss (0 for the iterate of
    generalised momentum, 1 for Schedule-Free's average ``x``); ``start`` says how
    the second component starts: ``"zero"`` (a velocity, ``y_{−1} = 0``) or
    ``"copy"`` (an iterate equal to the first, ``x_0 = z_0``).
    """

    name: str
    A: np.ndarray
    b: np.ndarray
    u: np.ndarray
    readout: int
    start: str
    params: dict[str, Any]

    @property
    def T(self) -> int:
        return int(self.A.shape[0])


def moment_step(S00: X, S01: X, S11: X, P: Any, A00: Any, A01: Any, A10: Any, A11: Any,
                b0: Any, b1: Any, u0: Any, u1: Any, lam: Any, m: Any,
                sigma2: Any) -> tuple[X, X, X]:
    """One step ``M ← F M Fᵀ + n b bᵀ`` of the per-mode second moments.

    ``(S00, S01, S11)`` are ``E[s₀²], E[s₀ s₁], E[s₁²]`` per mode; ``P`` is
    ``Σ_j λ_j E[p_j²]``, the loss at the point ``p = u₀ s₀ + u₁ s₁`` where the
    gradient is taken (the caller computes it, a dot product); ``F = A + λ b uᵀ``
    and ``n = (1/m) [λ² E[p²] + λ (P + σ²)]``.
    """
    F00 = A00 + lam * b0 * u0
    F01 = A01 + lam * b0 * u1
    F10 = A10 + lam * b1 * u0
    F11 = A11 + lam * b1 * u1
    Q = u0 * u0 * S00 + 2 * u0 * u1 * S01 + u1 * u1 * S11  # type: ignore[operator]
    n = (lam * lam * Q + lam * (P + sigma2)) / m
    N00 = F00 * F00 * S00 + 2 * F00 * F01 * S01 + F01 * F01 * S11 + n * b0 * b0
    N01 = F00 * F10 * S00 + (F00 * F11 + F01 * F10) * S01 + F01 * F11 * S11 + n * b0 * b1
    N11 = F10 * F10 * S00 + 2 * F10 * F11 * S01 + F11 * F11 * S11 + n * b1 * b1
    return N00, N01, N11  # type: ignore[return-value]


def point_moment(S00: X, S01: X, S11: X, u0: Any, u1: Any) -> X:
    """``E[p²]`` per mode for ``p = u₀ s₀ + u₁ s₁``."""
    return u0 * u0 * S00 + 2 * u0 * u1 * S01 + u1 * u1 * S11  # type: ignore[operator,no-any-return]


def moment_matrix(A00: Any, A01: Any, A10: Any, A11: Any, b0: Any, b1: Any, u0: Any, u1: Any, lam: Any,
                  m: Any) -> tuple[Mat3, list[Any], list[Any]]:
    """:func:`moment_step` as a linear map of ``x = (S₀₀, S₀₁, S₁₁)``: ``x' = G x + (λ/m) e (P + σ²)``.

    Returns ``(G, e, h)``: ``G`` the 3×3 map of ``M ← F M Fᵀ`` plus the mode's own noise
    ``(λ²/m) e hᵀ``, ``e = (b₀², b₀ b₁, b₁²)`` where the noise enters, ``h = (u₀², 2 u₀ u₁, u₁²)``
    so that ``E[p²] = h · x``. The cross-mode loss ``P`` is the only coupling between modes.
    """
    F00 = A00 + lam * b0 * u0
    F01 = A01 + lam * b0 * u1
    F10 = A10 + lam * b1 * u0
    F11 = A11 + lam * b1 * u1
    e = [b0 * b0, b0 * b1, b1 * b1]
    h = [u0 * u0, 2 * u0 * u1, u1 * u1]
    own = lam * lam / m
    G = [[F00 * F00, 2 * F00 * F01, F01 * F01],
         [F00 * F10, F00 * F11 + F01 * F10, F01 * F11],
         [F10 * F10, 2 * F10 * F11, F11 * F11]]
    G = [[G[i][j] + own * e[i] * h[j] for j in range(3)] for i in range(3)]
    return G, e, h


def moment_block_kernel(S00: Any, S01: Any, S11: Any, u0: Any, coef: Sequence[Any], n: Any, bits: Any,
                        lam: Any, m: Any) -> tuple[list[Any], list[Any]]:
    """Per mode, ``n`` updates of :func:`moment_step` with its eight coefficients ``coef =
    (A₀₀, A₀₁, A₁₀, A₁₁, b₀, b₁, u₀, u₁)`` held, the forcing ``P + σ²`` (the loss at the
    gradient's point before each update) linear in the update index from ``u0``: ``free`` and
    ``w`` of :func:`~optctl.model.blocks.linear_block_kernel`, the state after the block being
    ``free + w (u_n − u0)``. Exact for ``n = 1``."""
    A00, A01, A10, A11, b0, b1, u0_, u1_ = coef
    G, e, _ = moment_matrix(A00, A01, A10, A11, b0, b1, u0_, u1_, lam, m)
    return linear_block_kernel(G, e, (S00, S01, S11), u0, lam / m, n, bits, after=False)


def held_keep(keep: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """One value per sub-block of a per-step factor ``keep_t ∈ [0, 1]`` (DANA's ``1 − Δ(t)``,
    Schedule-Free's ``1 − c_t``): the geometric mean over the sub-block, so that the held
    value's ``n``-th power is the exact product (a velocity, or the average's weight on its
    past, decays over the sub-block exactly as step by step)."""
    keep = np.asarray(keep, dtype=float)
    lengths = np.asarray(lengths, dtype=np.int64)
    if keep.ndim != 1 or int(lengths.sum()) != keep.size or np.any(lengths < 1):
        raise SpecError("lengths", lengths.tolist()[:8], f"positive sub-block lengths summing to {keep.size}")
    if np.any((keep < 0) | (keep > 1)):
        raise SpecError("keep", float(keep[(keep < 0) | (keep > 1)][0]), "a per-step factor in [0, 1]")
    with np.errstate(divide="ignore"):
        logs = np.log(keep)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    sums = np.add.reduceat(logs, starts)
    return np.exp(sums / lengths)


def blocked_loss(spec: ProblemSpec, opt: LinearOptimizer, lengths: np.ndarray, *,
                 sp: Spectrum | None = None, after: bool = False) -> float:
    """``L_T`` (tail included) of an optimizer whose ``i``-th coefficients are held for
    ``lengths[i]`` updates, propagated sub-block by sub-block in closed form
    (:func:`moment_block_kernel`; numpy, one candidate). With every length 1 it is the exact
    recursion; otherwise the forcing is taken linear inside each sub-block.
    ``after=True`` forces each update by the value after it, a deliberately wrong convention
    for the tests' power check.
    """
    sp = spectrum(spec) if sp is None else sp
    lengths = np.asarray(lengths, dtype=np.int64)
    if opt.A.ndim != 3 or lengths.shape != (opt.T,):
        raise SpecError("lengths", lengths.shape, f"one length per coefficient row ({opt.T}), one candidate")
    lam, lam_w, m, s2 = sp.lam, sp.weight * sp.lam, float(spec.batch_size), sp.sigma2
    S00 = sp.c0.copy()
    S01, S11 = (S00.copy(), S00.copy()) if opt.start == "copy" else (np.zeros_like(S00), np.zeros_like(S00))
    n_bits = max(int(lengths.max()).bit_length(), 1)
    for i, n in enumerate(lengths):
        (A00, A01), (A10, A11) = opt.A[i]
        (b0, b1), (p0, p1) = opt.b[i], opt.u[i]
        G, e, h = moment_matrix(A00, A01, A10, A11, b0, b1, p0, p1, lam, m)
        u_start = float(lam_w @ (h[0] * S00 + h[1] * S01 + h[2] * S11)) + s2
        free, w = linear_block_kernel(G, e, (S00, S01, S11), u_start, lam / m, float(n),
                                      bits_of(int(n), n_bits), after=after)
        alpha = float(lam_w @ (h[0] * w[0] + h[1] * w[1] + h[2] * w[2]))
        u_end = (float(lam_w @ (h[0] * free[0] + h[1] * free[1] + h[2] * free[2])) - alpha * u_start + s2) \
            / (1 - alpha)
        S00, S01, S11 = (free[k] + w[k] * (u_end - u_start) for k in range(3))
    return float((S00 if opt.readout == 0 else S11) @ lam_w) + sp.tail


def _per_step(name: str, value: Any, T: int) -> np.ndarray:
    """``value`` as an array of leading length ``T`` (scalars and ``(K,)`` broadcast)."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0 or (arr.ndim == 1 and arr.shape[0] != T):
        arr = np.broadcast_to(arr, (T, *arr.shape))
    if arr.shape[0] != T:
        raise SpecError(name, f"array of shape {arr.shape}",
                        f"pass a scalar, a (K,) array of candidates or one value per step, ({T}, ...)")
    if not np.all(np.isfinite(arr)):
        raise SpecError(name, "non-finite values", "every coefficient must be finite")
    return np.array(arr, dtype=float)


def _align(*arrays: np.ndarray) -> list[np.ndarray]:
    """Broadcast per-step arrays ``(T, *K)`` against each other, the step axis first."""
    nd = max(a.ndim for a in arrays)
    shaped = [a.reshape(a.shape + (1,) * (nd - a.ndim)) for a in arrays]
    return [np.array(a, dtype=float) for a in np.broadcast_arrays(*shaped)]


def _check_positive(name: str, value: Any) -> None:
    arr = np.asarray(value, dtype=float)
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise SpecError(name, value, "pass a finite value > 0")


def generalized_momentum(T: int, gamma1: Any, gamma2: Any, gamma3: Any, Delta: Any,
                         *, name: str = "gen-mom", params: dict[str, Any] | None = None
                         ) -> LinearOptimizer:
    """Gen-Mom-SGD (arXiv:2505.16098): ``y_t = (1 − Δ_t) y_{t−1} + γ₁ g_t``, ``θ_{t+1} = θ_t − γ₂ g_t − γ₃ y_t``.

    Substituting ``y_t`` into the iterate update gives, for ``s = (θ − θ*, y)``,
    ``A = [[1, −γ₃(1 − Δ)], [0, 1 − Δ]]``, ``b = (−(γ₂ + γ₃ γ₁), γ₁)``, ``u = (1, 0)``.
    Every argument is a scalar, a ``(K,)`` array of candidates or a per-step array.
    """
    g1, g2, g3, D = (_per_step(n, v, T) for n, v in
                     (("gamma1", gamma1), ("gamma2", gamma2), ("gamma3", gamma3), ("Delta", Delta)))
    g1, g2, g3, D = _align(g1, g2, g3, D)
    keep = 1.0 - D
    one, zero = np.ones_like(D), np.zeros_like(D)
    A = np.stack([np.stack([one, -g3 * keep], axis=1), np.stack([zero, keep], axis=1)], axis=1)
    b = np.stack([-(g2 + g3 * g1), g1], axis=1)
    u = np.stack([one, zero], axis=1)
    literal = {"_g1": g1, "_g2": g2, "_g3": g3, "_D": D}  # what the literal update reads
    return LinearOptimizer(name=name, A=A, b=b, u=u, readout=0, start="zero",
                           params={**(params or {}), **literal})


def dana_delta(t: np.ndarray, delta: Any) -> np.ndarray:
    """``Δ(t) = (1 + t/δ)^(−1) = δ / (δ + t)``, the momentum rate of DANA and ADANA."""
    return np.asarray(delta) / (np.asarray(delta) + t)


def dana(spec: ProblemSpec, T: int, gamma2: Any, gamma3: Any, *, delta: Any = None,
         decaying: bool = True, kappa: float | None = None) -> LinearOptimizer:
    """DANA (arXiv:2505.16098): Gen-Mom-SGD with ``γ₁ = 1`` and ``Δ(t) = δ/(δ + t)``.

    *DANA-decaying*: ``γ₃(t) = gamma3 · (1 + t)^(−κ)`` with ``κ = 1/(2α)``;
    *DANA-constant*: ``γ₃ = gamma3`` for every step (the paper scales it as ``B/d``,
    here ``m/N``, which the tuned ``gamma3`` absorbs). ``γ₂ = gamma2`` throughout.
    The paper's ``α`` (data complexity, ``λ_j ∼ j^(−2α)``) is ``b/2`` here and its
    ``β`` (target complexity) is ``(a − b)/2``, so ``κ = 1/b``; ``δ`` defaults to
    ``4 + (α + β)/α = 4 + a/b``, the value of the authors' experiments.

    Sources (docs/momentum_families.md §2, "Where the equations come from"): the update is
    the paper's Gen-Mom-SGD, ``y_t = (1 − Δ(t)) y_{t−1} + γ₁(t; d) ĝ_t``,
    ``θ_{t+1} = θ_t − γ₂(t; d) ĝ_t − γ₃(t; d) y_t`` with ``ĝ_t`` the batch-mean gradient at
    ``θ_t``; the paper's own text (its equation numbers) could not be read for this
    project, only this display as a published summary of arXiv:2505.16098 reproduces it.
    The DANA schedules are the authors' public optax code's: ``y ← (1 − Δ) y + g₁ g``,
    update ``−(g₂ g + g₃ y)``, schedules ``init · (1 + count/time_scale)^power`` read at
    the 0-based step count (``Δ``: ``1, −1, δ``; ``γ₃``: ``γ̃₃, −1/(2α), 1``).
    ``tests/test_dana_paper.py`` runs that algorithm written independently in numpy.
    """
    _check_positive("gamma2", gamma2)
    _check_positive("gamma3", gamma3)
    kap = 1.0 / spec.b if kappa is None else float(kappa)
    dlt = 4.0 + spec.a / spec.b if delta is None else delta
    _check_positive("delta", dlt)
    t = np.arange(T, dtype=float)
    tt = t.reshape((T,) + (1,) * np.ndim(gamma3))
    g3 = np.asarray(gamma3, dtype=float) * ((1.0 + tt) ** (-kap) if decaying else 1.0)
    D = dana_delta(t.reshape((T,) + (1,) * np.ndim(dlt)), dlt)
    name = "dana-decaying" if decaying else "dana-constant"
    return generalized_momentum(T, 1.0, gamma2, g3, D, name=name,
                                params={"gamma2": gamma2, "gamma3": gamma3, "delta": dlt,
                                        "kappa": kap if decaying else 0.0})


def log_time(spec: ProblemSpec, T: int, lr: Any, gamma3: Any, *, gamma2: Any = 1.0,
             delta: Any = 8.0, kappa: float = 1.0) -> LinearOptimizer:
    """EMA momentum with log-time memory and ADANA's damping, without Adam's normalisation.

    ``v_t = (1 − α_t) v_{t−1} + α_t g_t`` with ``α_t = δ/(δ + t)`` (so ``1 − β₁(t) ∝ 1/t``
    and the memory grows like ``t/δ``: "logarithmic time"), and the damped update
    ``θ_{t+1} = θ_t − lr [γ₂ g_t + γ₃ (1 + t)^(1−κ) v_t]``: the fresh-gradient term
    ``γ₂`` and the factor ``(1 + t)^(1−κ)`` are ADANA's damping (Ferbach, Paquette,
    Gidel, Everett and Paquette, *Logarithmic-time Schedules for Scaling Language
    Models with Momentum*, arXiv:2602.05298; ``δ = 8, κ = 1`` are its code defaults).
    The second-moment normalisation of ADANA (its Adam part) would make the dynamics
    nonlinear, so it is left out: this is the log-time momentum of SGD. In Gen-Mom
    form ``Δ = γ₁ = α_t``, ``γ₂ = lr·gamma2``, ``γ₃ = lr·gamma3·(1 + t)^(1−κ)``.
    """
    _check_positive("lr", lr)
    _check_positive("delta", delta)
    t = np.arange(T, dtype=float)
    shape = (T,) + (1,) * max(np.ndim(lr), np.ndim(gamma3))
    tt = t.reshape(shape)
    alpha = dana_delta(t.reshape((T,) + (1,) * np.ndim(delta)), delta)
    lr_a = np.asarray(lr, dtype=float)
    g3 = lr_a * np.asarray(gamma3, dtype=float) * (1.0 + tt) ** (1.0 - kappa)
    return generalized_momentum(T, alpha, lr_a * np.asarray(gamma2, dtype=float), g3, alpha,
                                name="log-time",
                                params={"lr": lr, "gamma2": gamma2, "gamma3": gamma3,
                                        "delta": delta, "kappa": kappa})


def schedule_free(T: int, lr: Any, beta: Any = 0.9) -> LinearOptimizer:
    """Schedule-Free SGD (Defazio et al. 2024): gradient at ``y = (1 − β) z + β x``.

    ``z_{t+1} = z_t − γ_t g_t``, ``x_{t+1} = (1 − c) x_t + c z_{t+1}`` with
    ``c = 1/(t + 2)`` for the 0-based update ``t`` (the paper's ``c_{t+1} = 1/(t+1)``
    counted from 1), so ``x_t`` is the uniform average of ``z_0..z_t``. For
    ``s = (z − θ*, x − θ*)``: ``A = [[1, 0], [c, 1 − c]]``, ``b = (−γ, −c γ)``,
    ``u = (1 − β, β)``. ``lr`` is a scalar, ``(K,)`` candidates or a schedule ``γ_t``.
    """
    g = _per_step("lr", lr, T)
    bt = _per_step("beta", beta, T)
    if np.any(g < 0):
        raise SpecError("lr", float(g.min()), "learning rates must be >= 0")
    if np.any((bt < 0) | (bt > 1)):
        raise SpecError("beta", float(bt[(bt < 0) | (bt > 1)][0]), "β must lie in [0, 1]")
    g, bt = _align(g, bt)
    c = (1.0 / (np.arange(T, dtype=float) + 2.0)).reshape((T,) + (1,) * (g.ndim - 1))
    c = np.broadcast_to(c, g.shape)
    one, zero = np.ones_like(g), np.zeros_like(g)
    A = np.stack([np.stack([one, zero], axis=1), np.stack([c, 1.0 - c], axis=1)], axis=1)
    b = np.stack([-g, -c * g], axis=1)
    u = np.stack([1.0 - bt, bt], axis=1)
    return LinearOptimizer(name="schedule-free", A=A, b=b, u=u, readout=1, start="copy",
                           params={"lr": lr, "beta": beta, "_lr_t": g, "_beta_t": bt})


def effective_step(opt: LinearOptimizer) -> np.ndarray:
    """The effective step of every update, shape ``(T, *K)`` (docs/momentum_families.md §7).

    The total displacement of the iterate that one unit gradient causes when the
    coefficients are held at their current values: ``η`` for SGD and for the EMA momentum
    of MODEL.md §3 (``η Σ_k β (1 − β)^k = η``), ``γ₂ + γ₁ γ₃ / Δ`` for Gen-Mom-SGD (the
    fresh-gradient step plus the velocity's geometric sum), and ``γ_t`` for Schedule-Free
    SGD (the step of ``z``, which the average ``x`` and the gradient point ``y`` follow).
    Bounding it by ``η_max`` compares a family with optimal SGD at equal step bounds.
    """
    p = opt.params
    if opt.name == "schedule-free":
        return np.asarray(p["_lr_t"], dtype=float)
    g1, g2, g3, D = (np.asarray(p[k], dtype=float) for k in ("_g1", "_g2", "_g3", "_D"))
    return np.asarray(g2 + g1 * g3 / D)


def family_curve(spec: ProblemSpec, opt: LinearOptimizer, *, sp: Spectrum | None = None,
                 c0: np.ndarray | None = None, sigma2: float | None = None,
                 every: int = 1, drop_cross: bool = False) -> np.ndarray:
    """Excess loss ``L_t`` (without tail) of a linear optimizer, step by step, exact.

    Returns shape ``(T//every + 1, *K)``: ``L_0, L_every, ...`` (``every`` thins the
    output, not the computation). ``drop_cross`` zeroes the cross moment ``M₀₁``
    after every step: a deliberately wrong recursion for the tests' power check.
    Batch size ``spec.batch_size``. Diverging candidates give ``inf``/``nan``.
    """
    sp = spectrum(spec) if sp is None else sp
    lam, m = sp.lam, float(spec.batch_size)
    s2 = sp.sigma2 if sigma2 is None else float(sigma2)
    c = (sp.c0 if c0 is None else np.asarray(c0, dtype=float))
    K = opt.A.shape[3:]
    ext = (*K, 1)  # coefficients (*K) broadcast against modes on the last axis
    S00 = np.broadcast_to(c, (*K, c.size)).copy()
    S11 = S00.copy() if opt.start == "copy" else np.zeros_like(S00)
    S01 = S00.copy() if opt.start == "copy" else np.zeros_like(S00)
    r = opt.readout
    T = opt.T
    out = np.empty((T // every + 1, *K))
    out[0] = (S00 if r == 0 else S11) @ lam
    A, b, u = opt.A, opt.b, opt.u
    with np.errstate(over="ignore", invalid="ignore"):
        for t in range(T):
            u0, u1 = u[t, 0].reshape(ext), u[t, 1].reshape(ext)
            P = point_moment(S00, S01, S11, u0, u1) @ lam
            S00, S01, S11 = moment_step(
                S00, S01, S11, P[..., None], A[t, 0, 0].reshape(ext), A[t, 0, 1].reshape(ext),
                A[t, 1, 0].reshape(ext), A[t, 1, 1].reshape(ext), b[t, 0].reshape(ext),
                b[t, 1].reshape(ext), u0, u1, lam, m, s2)
            if drop_cross:
                S01 = np.zeros_like(S01)
            if (t + 1) % every == 0:
                out[(t + 1) // every] = (S00 if r == 0 else S11) @ lam
    return out


# Below this many step-candidates a numpy loop beats compiling the jax scan.
NUMPY_MAX_WORK = 20_000


@functools.cache
def _compiled_final() -> Callable[..., np.ndarray]:
    """A jitted scan of :func:`moment_step` returning ``L_T`` per candidate (jax, 64-bit)."""
    import jax
    import jax.numpy as jnp

    def final(lam: jax.Array, S00: jax.Array, S01: jax.Array, S11: jax.Array, m: jax.Array,
              sigma2: jax.Array, A: jax.Array, b: jax.Array, u: jax.Array,
              r: jax.Array) -> jax.Array:
        def body(state: tuple[jax.Array, jax.Array, jax.Array],
                 c: tuple[jax.Array, jax.Array, jax.Array]) -> tuple[Any, None]:
            a, bb, uu = c  # (2, 2, K), (2, K), (2, K)
            x00, x01, x11 = state
            u0, u1 = uu[0][:, None], uu[1][:, None]
            P = point_moment(x00, x01, x11, u0, u1) @ lam
            new = moment_step(x00, x01, x11, P[:, None], a[0, 0][:, None], a[0, 1][:, None],
                              a[1, 0][:, None], a[1, 1][:, None], bb[0][:, None],
                              bb[1][:, None], u0, u1, lam, m, sigma2)
            return new, None

        (x00, _, x11), _ = jax.lax.scan(body, (S00, S01, S11), (A, b, u), unroll=4)
        return (r * x11 + (1 - r) * x00) @ lam

    jitted = jax.jit(final)

    def run(*arrays: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(jitted(*(jnp.asarray(x, dtype=jnp.float64) for x in arrays)))

    return run


def family_loss(spec: ProblemSpec, opt: LinearOptimizer, *, sp: Spectrum | None = None) -> np.ndarray:
    """Final excess loss ``L_T`` (tail included) for every candidate, shape ``K``.

    Short runs use the numpy loop of :func:`family_curve`; long ones a compiled jax
    scan of the same :func:`moment_step`, padded with identity steps (``A = I``,
    ``b = 0`` leave the moments unchanged) to a few bucket lengths. Diverging
    candidates give ``inf`` or ``nan``.
    """
    sp = spectrum(spec) if sp is None else sp
    K = opt.A.shape[3:]
    nK = int(np.prod(K)) if K else 1
    if opt.T * nK <= NUMPY_MAX_WORK:
        return np.asarray(family_curve(spec, opt, sp=sp, every=opt.T)[-1] + sp.tail)
    T, P = opt.T, bucket_length(opt.T)
    A = opt.A.reshape(T, 2, 2, nK)
    b = opt.b.reshape(T, 2, nK)
    u = opt.u.reshape(T, 2, nK)
    if P > T:
        eye = np.zeros((P - T, 2, 2, nK))
        eye[:, 0, 0] = eye[:, 1, 1] = 1.0
        A = np.concatenate([A, eye])
        b = np.concatenate([b, np.zeros((P - T, 2, nK))])
        u = np.concatenate([u, np.broadcast_to(u[-1:], (P - T, 2, nK))])
    c = sp.c0
    S00 = np.broadcast_to(c, (nK, c.size))
    S11 = S00 if opt.start == "copy" else np.zeros_like(S00)
    S01 = S11
    out = _compiled_final()(sp.lam, S00, S01, S11, np.asarray(float(spec.batch_size)),
                            np.asarray(sp.sigma2), A, b, u, np.asarray(float(opt.readout)))
    return out.reshape(K) + sp.tail


def simulate_iterates(opt: LinearOptimizer, t: int, state: tuple[np.ndarray, np.ndarray],
                      grad_at: Any) -> tuple[np.ndarray, np.ndarray]:
    """One literal update of the optimizer on sampled iterates (for Monte Carlo).

    ``state`` holds the errors ``(s₀, s₁)`` of ``n`` runs, shape ``(n, N)``;
    ``grad_at(p)`` returns a fresh minibatch gradient at error ``p``. The update is
    written as the paper states it, not through ``A, b, u``, so a Monte-Carlo run
    checks the coefficient algebra of :func:`generalized_momentum` and
    :func:`schedule_free` as well as :func:`moment_step`.
    """
    s0, s1 = state
    p = opt.params
    if opt.name == "schedule-free":
        gamma = float(np.asarray(p["_lr_t"])[t])
        beta = float(np.asarray(p["_beta_t"])[t])
        y = (1.0 - beta) * s0 + beta * s1
        g = grad_at(y)
        z = s0 - gamma * g
        c = 1.0 / (t + 2.0)
        x = (1.0 - c) * s1 + c * z
        return z, x
    g1, g2, g3, D = (float(np.asarray(p[k])[t]) for k in ("_g1", "_g2", "_g3", "_D"))
    g = grad_at(s0)
    y = (1.0 - D) * s1 + g1 * g
    theta = s0 - g2 * g - g3 * y
    return theta, y


def to_table(opt: LinearOptimizer, spec: ProblemSpec | None = None, *,
             expected_loss: float | None = None, source: dict[str, Any] | None = None) -> FamilyTable:
    """The per-step coefficients of one optimizer (no candidate axis) as a :class:`FamilyTable`.

    Gen-Mom-SGD families store ``γ₁, γ₂, γ₃, Δ`` per update, Schedule-Free ``γ_t, β_t``: what
    its literal update (:func:`simulate_iterates`) reads, so a training loop driven by the
    table runs the same optimizer as the recursion.
    """
    p = opt.params
    if opt.A.ndim != 3:
        raise SpecError("opt", f"{opt.A.ndim - 3} candidate axes", "pass one optimizer (scalar hyperparameters)")
    if opt.name == "schedule-free":
        cols = {"lr": np.asarray(p["_lr_t"], dtype=float), "beta": np.asarray(p["_beta_t"], dtype=float)}
    else:
        cols = {"gamma1": p["_g1"], "gamma2": p["_g2"], "gamma3": p["_g3"], "Delta": p["_D"]}
        cols = {k: np.broadcast_to(np.asarray(v, dtype=float), (opt.T,)).copy() for k, v in cols.items()}
    params = {k: float(v) for k, v in p.items() if not k.startswith("_") and np.ndim(v) == 0}
    return FamilyTable(family=opt.name, columns=cols, params=params,
                       spec={} if spec is None else spec.to_dict(), expected_loss=expected_loss,
                       source=source or {})
