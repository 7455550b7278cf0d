"""Every exception and warning optctl raises on purpose: one base class, built-in kinds.

Catch :class:`OptctlError` to handle them all; each subclass also derives from the
built-in kind it resembles (``ValueError``, ``TypeError``, ``OSError``, ``RuntimeError``),
so code written against the built-ins keeps working.
"""

from __future__ import annotations


class OptctlError(Exception):
    """Base class of every error optctl raises on purpose."""


# An error message echoes at most this many characters of an offending value.
MAX_ECHO = 200


def echo(value: object, limit: int = MAX_ECHO) -> str:
    """``repr(value)`` for a message, shortened to ``limit`` characters (a 1 MB grid is
    named by its start, its length and its type, not printed whole)."""
    try:
        text = repr(value)
    except Exception:  # a repr that fails must not hide the error being reported
        text = f"<{type(value).__name__}>"
    if len(text) <= limit:
        return text
    size = f", {len(value)} items" if isinstance(value, (list, tuple, dict, str)) else ""
    return f"{text[:limit]}... ({type(value).__name__}{size}, {len(text)} characters)"


class SpecError(OptctlError, ValueError):
    """A specification or config value is invalid.

    The message names the field, the offending value and how to fix it.
    """

    def __init__(self, field: str, value: object, fix: str) -> None:
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(f"{field} = {echo(value)}: {fix}")


class SpecTypeError(OptctlError, TypeError):
    """A specification or config value has the wrong type."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        super().__init__(
            f"{field} = {echo(value)} has type {type(value).__name__}; expected {expected}"
        )


class ConfigError(SpecError):
    """A config is malformed: a bad value, a missing or unknown key, an unreadable file.

    Like :class:`SpecError` (and so a ``ValueError``), the message names the dotted
    field, the offending value and how to fix it.
    """


class SolverError(OptctlError, RuntimeError):
    """IPOPT could not be set up or run at all (an invalid option, say), as opposed to a
    solve that ran and did not converge, which is reported in the result's ``status``."""


class ResourceError(OptctlError, ValueError):
    """A job would need more memory than this machine has; refused before it starts.

    The message gives the estimate, the limit and what to change (grouped modes, a block
    grid, a smaller ``N`` or ``T``).
    """


class ExportError(OptctlError, ValueError):
    """A schedule table is invalid, corrupt, truncated, or does not match what was expected.

    The message says what is wrong with which file or column and how to fix it.
    """


class ResultsError(OptctlError, OSError):
    """A results folder (run, fit or sweep) cannot be written or read."""


class SweepError(OptctlError, RuntimeError):
    """A sweep folder belongs to another sweep, a Dask scheduler cannot be reached, or
    points failed."""


class CurveError(OptctlError, ValueError):
    """A loss-curve file is missing, malformed, or holds values the fit cannot use."""


class HorizonWarning(UserWarning):
    """A table was adapted to a horizon it was not solved for; the message says how."""


class AssumptionWarning(UserWarning):
    """A config is valid but lies outside the assumptions of the theory it is compared
    with (for example ``b <= 1``, where ``Σ_k λ_k`` diverges with ``N``); the message
    names the field, the value and what follows."""
