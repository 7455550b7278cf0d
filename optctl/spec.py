"""Frozen, self-validating specifications: the problem, and how to solve it.

Variants come from :func:`dataclasses.replace`, which re-runs the validation.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from optctl import theory
from optctl.errors import SpecError, SpecTypeError
from optctl.validate import check_bool, check_choice, check_int, check_real

GridKind = Literal["auto", "per_step", "uniform", "refined"]
ModesKind = Literal["auto", "exact", "grouped"]
PropagatorKind = Literal["auto", "step", "block"]


# Largest horizon: the per-step replay keeps a few float64 arrays of T + 1 values.
MAX_T = 100_000_000
# Largest label noise: sigma^2 (and the loss that holds it) must stay a finite float64.
MAX_SIGMA = 1e100
# Largest log initial error of a mode, log k^(b-a), that float64 holds with room for the loss.
MAX_LOG_C0 = 600.0


@dataclass(frozen=True)
class ProblemSpec:
    """The power-law random-feature model and the control problem on it.

    Bordelon & Mori (arXiv:2602.04774), section 2: eigenvalues ``λ_k = k^(-b)``,
    initial errors ``c_{0,k} = k^(-(a-b))`` for ``k = 1..N``, label noise ``σ``,
    batch size ``m``, horizon ``T`` updates, learning rate bounded by ``η_max``.

    Args map to symbols as: ``a`` → a (task power), ``b`` → b (spectral decay),
    ``N`` → N, ``sigma`` → σ, ``batch_size`` → m, ``T`` → T, ``eta_max`` → η_max.
    ``normalize_init`` rescales ``c_0`` so that the initial loss is 1; ``tail``
    adds the unrepresented teacher power ``Σ_{k>N} k^(-a)`` as extra label noise.
    """

    a: float
    b: float
    N: int = 1000
    sigma: float = 0.5
    batch_size: float = 1.0
    T: int = 1000
    eta_max: float = 1.0
    normalize_init: bool = False
    tail: bool = False

    def __post_init__(self) -> None:
        a = check_real("model.a", self.a)
        b = check_real("model.b", self.b)
        if a <= 1.0:
            raise SpecError("model.a", self.a, "must be > 1 so that the initial loss is finite")
        if b <= 0.0:
            raise SpecError("model.b", self.b, "must be > 0 (the spectrum is k^(-b))")
        n = check_int("model.N", self.N)
        if n < 1:
            raise SpecError("model.N", self.N, "must be a positive number of features")
        sigma = check_real("model.sigma", self.sigma)
        if sigma < 0:
            raise SpecError("model.sigma", self.sigma, "must be >= 0 (a standard deviation)")
        if sigma > MAX_SIGMA:
            raise SpecError("model.sigma", self.sigma, f"must be <= {MAX_SIGMA:.0e}: the loss "
                            "holds sigma^2, which must stay a finite float64")
        if b > a and (b - a) * math.log(n) > MAX_LOG_C0:
            raise SpecError("model.b", self.b, f"with a = {a:g} and N = {n} the initial error "
                            f"N^(b-a) of the last mode overflows float64; keep (b - a) ln N <= "
                            f"{MAX_LOG_C0:g} (a smaller b or N)")
        m = check_real("training.batch_size", self.batch_size)
        if m < 1:
            raise SpecError("training.batch_size", self.batch_size, "must be >= 1")
        t = check_int("training.T", self.T)
        if t < 1:
            raise SpecError("training.T", self.T, "must be >= 1 (number of SGD updates)")
        if t > MAX_T:
            raise SpecError("training.T", self.T,
                            f"must be <= {MAX_T:.0e}: every result is replayed step by step and "
                            "stores O(T) arrays")
        eta_max = check_real("training.eta_max", self.eta_max)
        if eta_max <= 0:
            raise SpecError("training.eta_max", self.eta_max, "must be > 0")
        for name, val in (("a", a), ("b", b), ("sigma", sigma), ("batch_size", m),
                          ("eta_max", eta_max)):
            object.__setattr__(self, name, val)
        object.__setattr__(self, "N", n)
        object.__setattr__(self, "T", t)
        check_bool("model.normalize_init", self.normalize_init)
        check_bool("model.tail", self.tail)

    @property
    def phase(self) -> theory.Phase:
        """Theory label: ``"easy"`` if ``b < a``, ``"hard"`` if ``b > a``, else ``"boundary"``."""
        return theory.phase(self.a, self.b)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """A stable short hash of the spec, for file names and tables."""
        return digest(self.to_dict())


@dataclass(frozen=True)
class SolverOptions:
    """How to transcribe and solve the control problem.

    ``grid``: ``"per_step"`` (one control per update, exact), ``"uniform"`` (``K``
    piecewise-constant blocks), ``"refined"`` (``K`` blocks, fine at both ends of
    training, so the cost grows like ``log T``), or ``"auto"`` (per step up to
    ``per_step_max_T`` updates, refined beyond).

    ``propagator``: ``"step"`` unrolls the exact per-step recursion; ``"block"``
    propagates each block in closed form with the loss linear in ``t`` inside
    sub-blocks (approximate, cost independent of ``T``); ``"auto"`` picks ``step``
    for per-step grids and short horizons, ``block`` otherwise.

    ``modes``: ``"exact"`` keeps all ``N`` modes; ``"grouped"`` replaces the dense
    tail of the spectrum by a Gauss quadrature (approximate, far fewer modes);
    ``"auto"`` groups when ``N`` exceeds ``group_min_N``.

    Every approximate transcription is replayed step by step; the result reports
    the replay gap and users see the replayed loss.
    """

    grid: GridKind = "auto"
    K: int = 100
    propagator: PropagatorKind = "auto"
    modes: ModesKind = "auto"
    per_step_max_T: int = 500
    group_min_N: int = 200
    max_iter: int = 3000
    round_iter: int = 200
    tol: float = 1e-10
    hessian: Literal["limited-memory", "exact"] = "limited-memory"
    warm_start: bool = True
    precondition: bool = True
    polish: bool = True
    progress: bool = False
    ipopt: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_choice("solver.grid", self.grid, ("auto", "per_step", "uniform", "refined"))
        check_choice("solver.propagator", self.propagator, ("auto", "step", "block"))
        check_choice("solver.modes", self.modes, ("auto", "exact", "grouped"))
        check_choice("solver.hessian", self.hessian, ("limited-memory", "exact"))
        k = check_int("solver.K", self.K)
        if k < 1:
            raise SpecError("solver.K", self.K, "must be >= 1 control blocks")
        object.__setattr__(self, "K", k)
        for name in ("per_step_max_T", "group_min_N", "max_iter", "round_iter"):
            v = check_int(f"solver.{name}", getattr(self, name))
            if v < 1:
                raise SpecError(f"solver.{name}", v, "must be >= 1")
            object.__setattr__(self, name, v)
        tol = check_real("solver.tol", self.tol)
        if tol <= 0:
            raise SpecError("solver.tol", self.tol, "must be > 0")
        object.__setattr__(self, "tol", tol)
        check_bool("solver.warm_start", self.warm_start)
        check_bool("solver.precondition", self.precondition)
        check_bool("solver.polish", self.polish)
        check_bool("solver.progress", self.progress)
        if not isinstance(self.ipopt, dict):
            raise SpecTypeError("solver.ipopt", self.ipopt, "a mapping of IPOPT options")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Options that change how a solve is reported, never the schedule it finds. They are left
# out of everything that identifies a solve's answer (schedule tables, their hashes).
REPORTING_OPTIONS: tuple[str, ...] = ("progress",)
# IPOPT options (under ``solver.ipopt``) that only control IPOPT's own output.
IPOPT_REPORTING_OPTIONS: tuple[str, ...] = ("sb", "output_file", "file_print_level", "file_append")


def _ipopt_reporting(key: object) -> bool:
    return isinstance(key, str) and (key.startswith("print_") or key in IPOPT_REPORTING_OPTIONS)


def solver_identity(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` (a :meth:`SolverOptions.to_dict`) without what never changes the answer.

    Drops :data:`REPORTING_OPTIONS` (``progress``) and IPOPT's output options
    (``print_*``, ``sb``, ``output_file``, ``file_print_level``, ``file_append``) from
    ``ipopt``; two solves whose options differ only there find the same schedule.
    """
    out = {k: v for k, v in options.items() if k not in REPORTING_OPTIONS}
    ipopt = out.get("ipopt")
    if isinstance(ipopt, Mapping):
        out["ipopt"] = {k: v for k, v in ipopt.items() if not _ipopt_reporting(k)}
    return out


CONTROL_NAMES: tuple[str, ...] = ("lr", "batch_size", "momentum")
# The bounds and settings of the second controls (config keys under ``training:``).
CONTROL_BOUNDS: tuple[str, ...] = ("m_min", "m_max", "beta_min", "kappa", "momentum_init")
# How the velocity starts (MODEL.md §3; docs/controls.md, "The notebook's setting"):
# "model" v_0 = β_0 g_0, "notebook" v_0 = η_{T−1} g_0 (the authors' notebook), "zero" v_0 = 0.
MOMENTUM_INITS: tuple[str, ...] = ("model", "notebook", "zero")


@dataclass(frozen=True)
class ControlSpec:
    """Which quantities the schedule controls, and their bounds (MODEL.md §4).

    ``controls`` always contains ``"lr"`` (``η_t``); with ``"batch_size"`` the batch
    ``m_t ∈ [m_min, m_max]`` is chosen too, under the sample budget
    ``Σ_t m_t = T m̄`` with ``m̄`` the problem's ``batch_size`` (MODEL.md §4.2); with
    ``"momentum"`` the EMA weight ``β_t ∈ [beta_min, 1]`` of MODEL.md §3 is chosen
    (β = 1 is plain SGD), with an optional smoothness penalty ``κ Σ_t ‖u_{t+1} − u_t‖²``
    on the per-step controls ``u = (η, β)`` (MODEL.md §4.3; on a block grid
    ``κ Σ_j ‖u_{j+1} − u_j‖² / d_j``, ``d_j`` the updates between block midpoints:
    :func:`optctl.solver.controls.penalty_weights`) and
    the velocity's start ``momentum_init`` (one of :data:`MOMENTUM_INITS`, default
    ``"model"``: ``v_0 = β_0 g_0`` as in MODEL.md §3; ``"notebook"``: ``v_0 = η_{T−1} g_0``,
    what the authors' momentum notebook computes; ``"zero"``: ``v_0 = 0``).
    Batch size and momentum together are not supported. Bounds that do not apply to
    the chosen controls must be left unset.
    """

    controls: tuple[str, ...] = ("lr",)
    m_min: float | None = None
    m_max: float | None = None
    beta_min: float | None = None
    kappa: float | None = None
    momentum_init: str | None = None

    def __post_init__(self) -> None:
        c = self.controls
        if isinstance(c, str) or not isinstance(c, (tuple, list)):
            raise SpecTypeError("controls", c, "a list such as [lr], [lr, batch_size] or [lr, momentum]")
        for i, name in enumerate(c):
            if name not in CONTROL_NAMES:
                raise SpecError(f"controls[{i}]", name, f"unknown control; choose from {', '.join(CONTROL_NAMES)}")
        if len(set(c)) != len(c):
            raise SpecError("controls", list(c), "lists a control twice; list each once")
        if "lr" not in c:
            raise SpecError("controls", list(c), "must include lr: every schedule sets the learning rate")
        if "batch_size" in c and "momentum" in c:
            raise SpecError("controls", list(c), "batch_size and momentum together are not supported; "
                            "use [lr, batch_size] or [lr, momentum]")
        object.__setattr__(self, "controls", tuple(CONTROL_NAMES[i] for i in range(3) if CONTROL_NAMES[i] in c))
        self._check_batch()
        self._check_momentum()

    def _check_batch(self) -> None:
        on = "batch_size" in self.controls
        for name in ("m_min", "m_max"):
            v = getattr(self, name)
            if v is None:
                if on:
                    raise SpecError(f"training.{name}", v, "is required with batch_size in controls; "
                                    f"add `{name}: ...` under `training:`")
                continue
            if not on:
                raise SpecError(f"training.{name}", v, "applies only when controls include batch_size; "
                                "add batch_size to controls or remove the key")
            x = check_real(f"training.{name}", v)
            if x < 1:
                raise SpecError(f"training.{name}", v, "must be >= 1 (samples per update)")
            object.__setattr__(self, name, x)
        if on and self.m_min is not None and self.m_max is not None and self.m_min > self.m_max:
            raise SpecError("training.m_min", self.m_min, f"must be <= training.m_max = {self.m_max}")

    def _check_momentum(self) -> None:
        on = "momentum" in self.controls
        for name, default in (("beta_min", 0.0), ("kappa", 0.0)):
            v = getattr(self, name)
            if v is None:
                if on:
                    object.__setattr__(self, name, default)
                continue
            if not on:
                raise SpecError(f"training.{name}", v, "applies only when controls include momentum; "
                                "add momentum to controls or remove the key")
            x = check_real(f"training.{name}", v)
            object.__setattr__(self, name, x)
        if on:
            assert self.beta_min is not None and self.kappa is not None  # set just above
            if not 0.0 <= self.beta_min < 1.0:
                raise SpecError("training.beta_min", self.beta_min,
                                "must lie in [0, 1): β = 1 is plain SGD, smaller β averages more")
            if self.kappa < 0:
                raise SpecError("training.kappa", self.kappa, "must be >= 0 (0 turns the penalty off)")
        if self.momentum_init is None:
            if on:
                object.__setattr__(self, "momentum_init", "model")
        elif not on:
            raise SpecError("training.momentum_init", self.momentum_init, "applies only when controls "
                            "include momentum; add momentum to controls or remove the key")
        else:
            check_choice("training.momentum_init", self.momentum_init, MOMENTUM_INITS)

    def check_problem(self, spec: ProblemSpec) -> None:
        """Cross-checks with the problem: the mean batch must fit the batch bounds."""
        if "batch_size" in self.controls:
            assert self.m_min is not None and self.m_max is not None
            if not self.m_min <= spec.batch_size <= self.m_max:
                raise SpecError("training.batch_size", spec.batch_size,
                                f"is the mean batch m̄ of the sample budget and must lie in "
                                f"[m_min, m_max] = [{self.m_min}, {self.m_max}]")

    def check_options(self, options: SolverOptions) -> None:
        """Cross-checks with the solver options (none today: every control set has both
        propagators)."""

    @property
    def bounds(self) -> dict[str, Any]:
        """The bounds and settings that apply, by name (for configs and summaries);
        ``momentum_init`` only when it is not the default ``"model"`` (so that records
        and table hashes of earlier solves are unchanged)."""
        keys = {"batch_size": ("m_min", "m_max"), "momentum": ("beta_min", "kappa", "momentum_init")}
        out = {k: getattr(self, k) for c in self.controls for k in keys.get(c, ())}
        if out.get("momentum_init") == "model":
            del out["momentum_init"]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"controls": list(self.controls), **self.bounds}


def digest(obj: object) -> str:
    """A stable short hash (16 hex digits) of a JSON-able object, keys sorted."""
    text = json.dumps(obj, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]
