"""How to fit: :class:`FitOptions`, the ``fit:`` section of a fit config."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

from optctl.errors import SpecError
from optctl.validate import check_bool, check_choice, check_int, check_real


@dataclass(frozen=True)
class FitOptions:
    """How to fit: the fixed model size, the search, and the uncertainty estimate.

    ``N`` features (fixed, not fitted) and ``tail`` (add the unrepresented teacher
    power ``Σ_{k>N} k^(−a)``, MODEL.md §1); ``modes``: ``"exact"`` keeps all ``N``
    modes, ``"grouped"`` uses quadrature nodes, ``"auto"`` groups when ``N > 256``;
    ``starts`` refined starts after screening; ``bootstrap`` resampled refits (0: none);
    ``bootstrap_method`` ``"auto"``, ``"residual"``, ``"runs"`` or ``"both"``; ``block`` points per resampled
    residual block (1, the default: residuals resampled one by one, which matched the
    spread of estimates over independent noise draws in our checks; longer blocks keep
    serial correlation but came out too narrow there); ``level`` the interval's coverage; ``max_iter`` residual evaluations per refinement.
    """

    N: int = 1000
    tail: bool = False
    modes: Literal["auto", "exact", "grouped"] = "auto"
    starts: int = 4
    bootstrap: int = 30
    bootstrap_method: Literal["auto", "residual", "runs", "both"] = "auto"
    block: int = 1
    level: float = 0.95
    max_iter: int = 400
    seed: int = 0
    progress: bool = False

    def __post_init__(self) -> None:
        for name, lo in (("N", 1), ("starts", 1), ("bootstrap", 0), ("block", 1), ("max_iter", 1)):
            v = check_int(f"fit.{name}", getattr(self, name))
            if v < lo:
                raise SpecError(f"fit.{name}", v, f"must be >= {lo}")
            object.__setattr__(self, name, v)
        check_int("fit.seed", self.seed)
        check_bool("fit.tail", self.tail)
        check_bool("fit.progress", self.progress)
        check_choice("fit.modes", self.modes, ("auto", "exact", "grouped"))
        check_choice("fit.bootstrap_method", self.bootstrap_method,
                      ("auto", "residual", "runs", "both"))
        level = check_real("fit.level", self.level)
        if not 0.5 <= level < 1.0:
            raise SpecError("fit.level", self.level, "must lie in [0.5, 1), e.g. 0.95")
        object.__setattr__(self, "level", level)
        if self.bootstrap > 0 and self.bootstrap < 10:
            raise SpecError("fit.bootstrap", self.bootstrap,
                            "use 0 (no uncertainty) or at least 10 resamples for an interval")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
