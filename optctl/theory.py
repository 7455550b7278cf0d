"""The closed forms of the theory: the phase and the asymptotic exponents (MODEL.md §5).

Bordelon & Mori, *Theory of Optimal Learning Rate Schedules and Scaling Laws for a
Random Feature Model* (arXiv:2602.04774), for task power ``a`` and spectral exponent
``b`` (``λ_k = k^(−b)``, ``λ_k c_{0,k} = k^(−a)``):

- phase: easy iff ``b < a`` (polynomial decay), hard iff ``b > a`` (warmup-stable-decay);
- the final excess loss falls like ``L_T ∝ T^(−ζ)``, with ``ζ = (a − 1)/(a + b − 1)`` for
  the best constant and the best power law and ``ζ = min((a − 1)/a, (a − 1)/b)`` for the
  optimal schedule;
- the easy-phase optimum scales like ``η*_T(t) ≈ T^(−ξ) f(t/T)`` with ``ξ = 1 − b/a``
  (``ξ = 0`` in the hard phase, whose plateau stays at ``η_max``), and decays like
  ``(1 − t/T)^δ`` with ``δ = 2b − 1``.

Two more follow from the finite-horizon law of the optimum (docs/scaling.md, "The
hard phase's decay window"; :mod:`optctl.solver.law`): in the hard phase the decay
window lasts ``T − t_s ∝ T^((a+b−1)/(2b−1))`` updates and the last rate falls like
``η_T ∝ T^(−(a+b−1)/(2b))``.

Every module that needs one of these numbers takes it from here.
"""

from __future__ import annotations

from typing import Literal

Phase = Literal["easy", "hard", "boundary"]


def phase(a: float, b: float) -> Phase:
    """``"easy"`` if ``b < a``, ``"hard"`` if ``b > a``, ``"boundary"`` if they are equal."""
    if b < a:
        return "easy"
    if b > a:
        return "hard"
    return "boundary"


def xi(a: float, b: float) -> float:
    """``ξ = max(0, 1 − b/a)``: the optimal schedule's rates scale like ``T^(−ξ)``."""
    return max(0.0, 1.0 - b / a)


def zeta_optimal(a: float, b: float) -> float:
    """``ζ = min((a − 1)/a, (a − 1)/b)``: the loss exponent of the optimal schedule."""
    return min((a - 1.0) / a, (a - 1.0) / b)


def zeta_constant(a: float, b: float) -> float:
    """``ζ = (a − 1)/(a + b − 1)``: the loss exponent of the best constant and power law."""
    return (a - 1.0) / (a + b - 1.0)


def exponents(a: float, b: float) -> dict[str, float]:
    """The asymptotic exponents of MODEL.md §5, keyed like the series they describe.

    ``optimal``, ``constant`` and ``power_law``: the loss exponents ``ζ``; ``peak_lr``:
    ``ξ``; ``decay_power``: ``δ = 2b − 1`` of the easy-phase decay ``(1 − t/T)^δ``.
    """
    return {
        "optimal": zeta_optimal(a, b),
        "constant": zeta_constant(a, b),
        "power_law": zeta_constant(a, b),
        "peak_lr": xi(a, b),
        "decay_power": 2.0 * b - 1.0,
    }


def window_exponent(a: float, b: float) -> float:
    """``(a + b − 1)/(2b − 1)``: the hard phase's decay window ``T − t_s`` grows like
    ``T`` to this power (asymptotically; docs/scaling.md derives it from the law)."""
    return (a + b - 1.0) / (2.0 * b - 1.0)


def final_rate_exponent(a: float, b: float) -> float:
    """``(a + b − 1)/(2b)``: the optimum's last rate falls like ``T`` to minus this
    power in the hard phase (the law's constant ``C`` does)."""
    return (a + b - 1.0) / (2.0 * b)


def compute_exponent(a: float, b: float) -> float:
    """Compute-optimal exponent ``L* ∝ C^(−ν)`` of ``C = N T`` from a two-term balance.

    With ``tail`` on, a model of ``N`` features trained for ``T`` steps has
    ``L ≈ A N^(−(a−1)) + B T^(−ζ)``: the unrepresentable tail ``Σ_{k>N} k^(−a)``
    plus the optimal schedule's ``ζ``. Minimising over ``N`` at fixed ``C`` gives
    ``ν = (a−1) ζ / (a − 1 + ζ)``. This is our estimate from MODEL.md's ingredients,
    not a number MODEL.md states (it states only that the frontier follows a power of
    ``C``); ``docs/scaling.md`` compares it with the measured frontier.
    """
    zeta = zeta_optimal(a, b)
    return (a - 1.0) * zeta / (a - 1.0 + zeta)


def assumption_note(b: float) -> str | None:
    """Why a spectral exponent ``b`` lies outside the theory's assumptions, or ``None``.

    The continuum theory (and every exponent above) takes ``N → ∞`` with a trace
    ``Σ_k λ_k = Σ_k k^(−b)`` that stays finite; at ``b <= 1`` it grows with ``N``
    (like ``ln N`` at ``b = 1``, ``N^(1−b)`` below), so the stable learning rate, the
    noise floor and the optimal schedule all depend on ``N``: a finite-``N`` regime the
    paper's exponents do not describe. Solves remain exact for the given ``N``.
    """
    if b > 1.0:
        return None
    return (f"b = {b:g} <= 1 is outside the model's assumptions: Σ_k k^(-b) grows with N (like "
            f"{'ln N' if b == 1.0 else f'N^{1 - b:g}'}), so the optimum depends on N and the paper's "
            "exponents (phase, ζ, ξ, δ) do not apply; solves stay exact for this N. Use b > 1 to "
            "compare with the theory (docs/scaling.md, 'Outside the assumptions: b <= 1')")
