"""The package's exceptions: one base class, subclasses of the built-in kinds."""

from __future__ import annotations


class OptctlError(Exception):
    """Base class of every error optctl raises on purpose."""


class SpecError(OptctlError, ValueError):
    """A specification or config value is invalid.

    The message names the field, the offending value and how to fix it.
    """

    def __init__(self, field: str, value: object, fix: str) -> None:
        self.field = field
        self.value = value
        self.fix = fix
        super().__init__(f"{field} = {value!r}: {fix}")


class SpecTypeError(OptctlError, TypeError):
    """A specification or config value has the wrong type."""

    def __init__(self, field: str, value: object, expected: str) -> None:
        self.field = field
        self.value = value
        super().__init__(
            f"{field} = {value!r} has type {type(value).__name__}; expected {expected}"
        )


class SolverError(OptctlError, RuntimeError):
    """The NLP could not be built or solved at all (not a mere non-convergence)."""


class ExportError(OptctlError, ValueError):
    """A schedule table is invalid, corrupt, truncated, or does not match what was expected.

    The message says what is wrong with which file or column and how to fix it.
    """
