"""Recipes: the closed-form schedule closest to an optimum, in each framework's own terms.

A recipe is a stable phase at the peak followed by a decay to the end of the run, in a
form that Hugging Face (``get_wsd_schedule``, ``get_polynomial_decay_schedule_with_warmup``),
torch (``ConstantLR`` then ``LinearLR``/``CosineAnnealingLR``/``PolynomialLR`` in a
``SequentialLR``) and optax (``join_schedules``) each build natively, so a user can adopt a
solved schedule without shipping a table. With ``S`` stable steps, ``D = T − S`` decay
steps, peak ``η̂``, progress ``p = (t − S)/D`` and end ratio ``r``::

    η_t = η̂                                  for t < S
    η_t = η̂ (r + (1 − r) f(p))               for S <= t < T

with ``f(p) = 1 − p`` (``linear``), ``(1 + cos πp)/2`` (``cosine``) or ``(1 − p)^q``
(``polynomial``), the formulas of those frameworks (torch's ``PolynomialLR`` decays to 0,
so a polynomial recipe with ``r > 0`` is written as a ``LambdaLR`` of the same formula). "Closest" is measured by
what matters: each shape's parameters are tuned to minimise the model's final loss
``L_T`` (exact per-step replay, MODEL.md §2), like the baselines
(:mod:`optctl.baselines.tune`), and the best shape is the recipe; its ``L_T`` is reported
next to the optimum's. On the two reference cases of MODEL.md §5 the recipe is within 1%
of the optimum (measured 0.14% easy, 0.49% hard; tests/test_recipes.py), where the best
tuned baselines are 8.1% above it. Hugging Face builds only linear and cosine stable-decay schedules
(and a polynomial one without a stable phase) natively; :func:`best_recipe` picks the best
of those shapes for its code when the overall best is not among them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from optctl.errors import SpecError
from optctl.model.replay import final_loss
from optctl.spec import ProblemSpec

SHAPES: tuple[str, ...] = ("linear", "cosine", "polynomial")
RECIPE_MARGIN = 0.01  # the recipe's L_T within 1% of the optimum's on the reference cases
_PEAKS = (1.0, 0.5, 0.25)  # starting peaks, relative to the optimum's largest rate
_DECAYS = (-1.5, -1.0, -0.5, 0.0)  # starting log10(D/T)
_MAXFEV = 400
_XATOL = 1e-4


@dataclass(frozen=True)
class Recipe:
    """A closed-form schedule: ``stable_steps`` at ``peak`` then a ``shape`` decay over the rest.

    ``peak`` is in model units (``η``); ``lr_scale`` turns it into real learning rates in
    the code a recipe writes. ``end_ratio`` is ``r``, ``power`` is ``q`` (polynomial; 1
    otherwise). ``final_loss`` is the replayed ``L_T`` of :meth:`rates`.
    """

    shape: str
    T: int
    peak: float
    stable_steps: int
    end_ratio: float
    power: float
    final_loss: float

    @property
    def decay_steps(self) -> int:
        return self.T - self.stable_steps

    @property
    def hf_native(self) -> bool:
        """Whether a Hugging Face schedule factory builds it (stable-decay: linear, cosine;
        polynomial only without a stable phase)."""
        return self.shape in ("linear", "cosine") or self.stable_steps == 0

    def rates(self) -> np.ndarray:
        """``η_0..η_{T−1}`` of the recipe (model units), the formula of the module docstring."""
        return _rates(self.shape, self.T, self.peak, self.stable_steps, self.end_ratio, self.power)

    # --- the code each framework runs ----------------------------------------------------

    def huggingface(self, lr_scale: float = 1.0) -> str:
        """Hugging Face: the schedule factory call, or why there is none."""
        peak, S, D = self.peak * lr_scale, self.stable_steps, self.decay_steps
        if self.shape in ("linear", "cosine"):
            return (f"from transformers import get_wsd_schedule\n\n"
                    f"optimizer = torch.optim.SGD(model.parameters(), lr={peak!r})\n"
                    f"scheduler = get_wsd_schedule(optimizer, num_warmup_steps=0, num_stable_steps={S},\n"
                    f"                             num_decay_steps={D}, decay_type={self.shape!r},\n"
                    f"                             min_lr_ratio={self.end_ratio!r})\n")
        if S == 0:
            return (f"from transformers import get_polynomial_decay_schedule_with_warmup\n\n"
                    f"optimizer = torch.optim.SGD(model.parameters(), lr={peak!r})\n"
                    f"scheduler = get_polynomial_decay_schedule_with_warmup(\n"
                    f"    optimizer, num_warmup_steps=0, num_training_steps={self.T},\n"
                    f"    lr_end={peak * self.end_ratio!r}, power={self.power!r})\n")
        return ("# transformers has no stable-then-polynomial schedule: pass the torch scheduler\n"
                "# below to Trainer(optimizers=(optimizer, scheduler)).\n")

    def torch(self, lr_scale: float = 1.0) -> str:
        """torch: ``SequentialLR(ConstantLR, decay)`` (just the decay when there is no stable phase)."""
        peak, S, D = self.peak * lr_scale, self.stable_steps, self.decay_steps
        if self.shape == "linear":
            decay = f"LinearLR(optimizer, start_factor=1.0, end_factor={self.end_ratio!r}, total_iters={D})"
            name = "LinearLR"
        elif self.shape == "cosine":
            decay = f"CosineAnnealingLR(optimizer, T_max={D}, eta_min={peak * self.end_ratio!r})"
            name = "CosineAnnealingLR"
        elif self.end_ratio == 0.0:
            decay = f"PolynomialLR(optimizer, total_iters={D}, power={self.power!r})"
            name = "PolynomialLR"
        else:  # PolynomialLR decays to 0: the same formula with its end ratio, as a LambdaLR
            r, q = self.end_ratio, self.power
            return ("from torch.optim.lr_scheduler import LambdaLR\n\n"
                    f"optimizer = torch.optim.SGD(model.parameters(), lr={peak!r})\n"
                    f"scheduler = LambdaLR(optimizer, lambda t: 1.0 if t < {S} else\n"
                    f"                     {r!r} + {1.0 - r!r} * (1 - min(t - {S}, {D}) / {D}) ** {q!r})\n")
        head = f"optimizer = torch.optim.SGD(model.parameters(), lr={peak!r})\n"
        if S == 0:
            return f"from torch.optim.lr_scheduler import {name}\n\n{head}scheduler = {decay}\n"
        return (f"from torch.optim.lr_scheduler import ConstantLR, {name}, SequentialLR\n\n{head}"
                f"scheduler = SequentialLR(optimizer, [\n"
                f"    ConstantLR(optimizer, factor=1.0, total_iters={S}),\n"
                f"    {decay},\n"
                f"], milestones=[{S}])\n")

    def optax(self, lr_scale: float = 1.0) -> str:
        """optax: ``join_schedules([constant_schedule, decay], boundaries=[S])``."""
        peak, S, D = self.peak * lr_scale, self.stable_steps, self.decay_steps
        if self.shape == "linear":
            decay = f"optax.linear_schedule({peak!r}, {peak * self.end_ratio!r}, {D})"
        elif self.shape == "cosine":
            decay = f"optax.cosine_decay_schedule({peak!r}, {D}, alpha={self.end_ratio!r})"
        else:
            decay = f"optax.polynomial_schedule({peak!r}, {peak * self.end_ratio!r}, {self.power!r}, {D})"
        if S == 0:
            return f"import optax\n\nschedule = {decay}\n"
        return (f"import optax\n\nschedule = optax.join_schedules(\n"
                f"    [optax.constant_schedule({peak!r}), {decay}], boundaries=[{S}])\n")


def _rates(shape: str, T: int, peak: float, S: int, r: float, q: float) -> np.ndarray:
    t = np.arange(T, dtype=float)
    p = np.clip((t - S) / (T - S), 0.0, None)
    if shape == "linear":
        f = 1.0 - p
    elif shape == "cosine":
        f = 0.5 * (1.0 + np.cos(np.pi * p))
    else:
        f = (1.0 - p) ** q
    return np.where(t < S, peak, peak * (r + (1.0 - r) * f))


def _params(shape: str, x: np.ndarray, T: int, eta_max: float) -> tuple[float, int, float, float]:
    """Tuning coordinates ``(log10 η̂/η_max, log10 D/T, r[, q])`` to ``(η̂, S, r, q)``."""
    peak = float(eta_max * 10.0 ** min(float(x[0]), 0.0))
    D = int(np.clip(np.rint(T * 10.0 ** min(float(x[1]), 0.0)), 1, T))
    r = float(np.clip(float(x[2]), 0.0, 1.0))
    q = float(np.clip(float(x[3]), 0.1, 8.0)) if shape == "polynomial" else 1.0
    return peak, T - D, r, q


def _seeds(shape: str, baselines: Mapping[str, Mapping[str, float]], T: int, hi: float) -> list[np.ndarray]:
    """Tuned baselines that are special cases of ``shape``, as its coordinates (nested starts)."""
    nested = {"linear": ("linear_decay", "wsd"), "cosine": ("cosine",), "polynomial": ("linear_decay", "wsd")}
    out = []
    for name in nested[shape]:
        params = baselines.get(name)
        if params is None or not params.get("peak_value", 0) > 0:
            continue
        D = float(params.get("decay_steps", T))
        x = [np.log10(min(float(params["peak_value"]), hi) / hi), np.log10(max(D, 1.0) / T), 0.0]
        out.append(np.array(x + ([1.0] if shape == "polynomial" else [])))
    return out


def fit_recipes(spec: ProblemSpec, optimum: np.ndarray, shapes: tuple[str, ...] = SHAPES, *,
                baselines: Mapping[str, Mapping[str, float]] | None = None) -> dict[str, Recipe]:
    """Per shape, the recipe of least replayed ``L_T`` for ``spec``: a coarse grid, then Nelder-Mead.

    ``optimum`` (the optimal rates, length ``T``) sets the starting peaks. Each shape's
    coordinates (``log10 η̂/η_max``, ``log10 D/T``, ``r``, and ``q`` for the polynomial)
    are searched as the two-parameter baselines are (:mod:`optctl.baselines.tune`).
    ``baselines`` (name → tuned parameters, as a run saves them) adds the tuned linear
    decay, WSD and cosine as starts of the shapes that contain them, so a recipe never
    loses to a baseline it contains.
    """
    if not isinstance(spec, ProblemSpec):
        raise SpecError("spec", type(spec).__name__, "pass the ProblemSpec the optimum was solved for")
    eta = np.asarray(optimum, dtype=float)
    if eta.shape != (spec.T,) or not np.all(np.isfinite(eta)) or eta.max() <= 0:
        raise SpecError("optimum", f"array of shape {eta.shape}",
                        f"pass the optimum's {spec.T} finite per-update rates (ScheduleResult.eta)")
    if isinstance(shapes, str) or not shapes:
        raise SpecError("shapes", shapes, f"pass a non-empty tuple of shapes from {', '.join(SHAPES)}")
    for s in shapes:
        if s not in SHAPES:
            raise SpecError("shape", s, f"choose from {', '.join(SHAPES)}")
    T, hi = spec.T, float(spec.eta_max)
    cache: dict[tuple[str, float, int, float, float], float] = {}

    def loss(shape: str, x: np.ndarray) -> float:
        key = (shape, *_params(shape, x, T, hi))
        if key not in cache:
            f = final_loss(spec, np.clip(_rates(shape, T, *key[1:]), 0.0, hi))
            cache[key] = f if np.isfinite(f) else 1e100
        return cache[key]

    out: dict[str, Recipe] = {}
    top = float(eta.max())
    for shape in shapes:
        extra = [2.0] if shape == "polynomial" else []
        starts = [np.array([np.log10(min(c * top, hi) / hi), v, 0.0, *extra]) for c in _PEAKS for v in _DECAYS]
        starts += _seeds(shape, baselines or {}, T, hi)
        x0 = min(starts, key=lambda x: loss(shape, x))  # noqa: B023 - evaluated at once
        res = minimize(lambda x: loss(shape, x), x0, method="Nelder-Mead",  # noqa: B023
                       options={"maxfev": _MAXFEV, "xatol": _XATOL, "fatol": 1e-10 * loss(shape, x0)})
        x = res.x if loss(shape, res.x) <= loss(shape, x0) else x0
        peak, S, r, q = _params(shape, x, T, hi)
        out[shape] = Recipe(shape=shape, T=T, peak=peak, stable_steps=S, end_ratio=r, power=q,
                            final_loss=loss(shape, x))
    return out


def best_recipe(recipes: dict[str, Recipe], *, hf_native: bool = False) -> Recipe:
    """The recipe of least ``L_T`` (among those Hugging Face builds natively, with ``hf_native``)."""
    found = [r for r in recipes.values() if r.hf_native or not hf_native]
    if not found:
        raise SpecError("recipes", ", ".join(recipes), "fit the linear or cosine shape too (fit_recipes)")
    return min(found, key=lambda r: r.final_loss)
