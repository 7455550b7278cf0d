"""The baseline families: names, their saved parameters, and their tuning coordinates.

One registry serves both directions. :func:`rates` rebuilds a baseline's per-update
schedule from the parameters a run folder or a sweep record saved; tuning
(:mod:`optctl.baselines.tune`) searches each family in coordinates ``x`` where the loss
is well scaled and maps them to the same parameters with :meth:`Family.params`.

Bordelon & Mori (arXiv:2602.04774), section 4: the best constant ``η``, the best power
law ``η_t = η_0 (t+1)^(−χ)``, and the tuned standard schedules (linear decay and cosine
over the whole run, warmup-stable-decay with a tuned decay fraction). Every schedule is
sampled at ``t = 0..T−1`` and clipped to ``0 <= η_t <= η_max``.

Tuning coordinates: the rate on a log scale ``u = log10(η / η_max) <= 0``; the power
law's ``χ ∈ [0, 1.5]``; the WSD decay fraction on a log scale ``v = log10(D/T)`` (it
shrinks with ``T`` in the hard phase).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from optctl import schedules
from optctl.errors import SpecError

BASELINE_NAMES: tuple[str, ...] = ("constant", "power_law", "linear_decay", "cosine", "wsd")

U_FLOOR = -8.0  # the smallest rate ever tried is 1e-8 η_max
_U_GRID_1D = np.linspace(-4.0, 0.0, 25)  # 1/6 decade apart
_U_GRID_2D = np.linspace(-3.0, 0.0, 10)  # 1/3 decade apart
_CHI_MAX = 1.5
_CHI_GRID = np.linspace(0.0, _CHI_MAX, 7)
_WSD_FRACTIONS = 8  # log-spaced decay fractions from 1/T to 1

Params = dict[str, float]


@dataclass(frozen=True)
class Family:
    """One baseline family.

    ``build(params, T)`` is its schedule from saved parameters; ``coords(x, T, η_max)``
    maps tuning coordinates to parameters; ``bounds(T)`` and ``grid(T)`` are the box and
    the coarse grid (one axis per coordinate) that tuning searches; ``seed`` names the
    nested family whose optimum, at coordinate value ``seed[1]`` for the extra
    coordinate, starts this one's search (a larger family then never loses to it).
    ``sampled(params, T)``, where given, is ``schedules.sample(build(params, T), T)``
    computed piece by piece (the same floats, without the per-step piece masks of
    :func:`optctl.schedules.join`); tuning builds one schedule per candidate.
    """

    name: str
    build: Callable[[Params, int], schedules.Schedule]
    coords: Callable[[np.ndarray, int, float], Params]
    bounds: Callable[[int], list[tuple[float, float]]]
    grid: Callable[[int], list[np.ndarray]]
    seed: tuple[str, float] | None = None
    sampled: Callable[[Params, int], np.ndarray] | None = None


def _rate(u: float, eta_max: float) -> float:
    return float(eta_max * 10.0 ** min(float(u), 0.0))


def _wsd_decay_steps(v: float, T: int) -> int:
    return int(np.clip(np.rint(T * 10.0 ** min(float(v), 0.0)), 1, T))


def _wsd(params: Params, T: int) -> schedules.Schedule:
    d = int(round(params["decay_steps"]))
    return schedules.warmup_stable_decay(params["peak_value"], 0, T - d, d, 0.0, "linear")


def _wsd_sampled(params: Params, T: int) -> np.ndarray:
    # _wsd's pieces: the plateau (a constant) on t < T − D, then a linear decay to 0
    # over D steps seen from its own step 0, which is linear_decay(peak, D).
    d = int(round(params["decay_steps"]))
    peak = params["peak_value"]
    schedules.warmup_stable_decay(peak, 0, T - d, d, 0.0, "linear")  # the same argument checks
    eta = np.empty(T)
    eta[:T - d] = peak  # what constant(peak) gives at every step
    eta[T - d:] = schedules.sample(schedules.linear_decay(peak, d), d)
    return eta


def _wsd_coords(x: np.ndarray, T: int, eta_max: float) -> Params:
    d = _wsd_decay_steps(x[1], T)
    return {"peak_value": _rate(x[0], eta_max), "decay_fraction": d / T, "decay_steps": float(d),
            "stable_steps": float(T - d)}


def _full_decay(factory: Callable[[float, int], schedules.Schedule]) -> Family:
    return Family(
        name=factory.__name__,
        build=lambda p, T: factory(p["peak_value"], int(round(p["decay_steps"]))),
        coords=lambda x, T, hi: {"peak_value": _rate(x[0], hi), "decay_steps": float(T)},
        bounds=lambda T: [(U_FLOOR, 0.0)], grid=lambda T: [_U_GRID_1D])


FAMILIES: dict[str, Family] = {
    "constant": Family(
        name="constant", build=lambda p, T: schedules.constant(p["value"]),
        coords=lambda x, T, hi: {"value": _rate(x[0], hi)},
        bounds=lambda T: [(U_FLOOR, 0.0)], grid=lambda T: [_U_GRID_1D]),
    "power_law": Family(
        name="power_law", build=lambda p, T: schedules.power_law(p["init_value"], p["exponent"]),
        coords=lambda x, T, hi: {"init_value": _rate(x[0], hi), "exponent": float(x[1])},
        bounds=lambda T: [(U_FLOOR, 0.0), (0.0, _CHI_MAX)], grid=lambda T: [_U_GRID_2D, _CHI_GRID],
        seed=("constant", 0.0)),
    "linear_decay": _full_decay(schedules.linear_decay),
    "cosine": _full_decay(schedules.cosine),
    "wsd": Family(
        name="wsd", build=_wsd, coords=_wsd_coords, sampled=_wsd_sampled,
        bounds=lambda T: [(U_FLOOR, 0.0), (float(np.log10(1.0 / T)), 0.0)],
        grid=lambda T: [_U_GRID_2D, np.linspace(float(np.log10(1.0 / T)), 0.0, _WSD_FRACTIONS)],
        seed=("linear_decay", 0.0)),
}


@dataclass(frozen=True, eq=False, repr=False)
class Baseline:
    """A tuned baseline schedule.

    ``params`` are the tuned arguments of the schedule factory (step counts as floats),
    ``eta`` the per-update rates ``η_0..η_{T−1}`` after clipping to ``[0, η_max]``,
    ``final_loss`` the exact per-step replay ``L_T`` of ``eta`` (tail included, as
    :func:`optctl.model.replay.final_loss` reports it, whatever evaluator tuned it), and
    ``n_evals`` the number of distinct schedules the evaluator was asked to score.
    """

    name: str
    params: dict[str, float]
    eta: np.ndarray
    final_loss: float
    n_evals: int

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v:.6g}" for k, v in self.params.items())
        return (f"Baseline({self.name!r}, {params}, final_loss={self.final_loss:.6g}, "
                f"n_evals={self.n_evals}, eta=<{self.eta.size} steps>)")


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise SpecError("baseline", name, f"unknown baseline; choose from {', '.join(BASELINE_NAMES)}")
    return FAMILIES[name]


def rates(name: str, params: Params, T: int, eta_max: float) -> np.ndarray:
    """The per-update rates ``η_0..η_{T−1}`` of a baseline from its saved parameters."""
    fam = family(name)
    eta = fam.sampled(params, T) if fam.sampled is not None else schedules.sample(fam.build(params, T), T)
    return np.clip(eta, 0.0, eta_max, out=eta)
