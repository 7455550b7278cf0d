"""Versions of the packages that produced a result, recorded in every summary."""

from __future__ import annotations

import functools
import platform
from importlib import metadata


def versions() -> dict[str, str]:
    """The versions of Python and of the packages behind a result (a fresh dict each call)."""
    return dict(_versions())


@functools.cache
def _versions() -> dict[str, str]:
    # Read once per process: each metadata lookup parses a METADATA file (about 5 ms
    # for the six, paid by every solve of a sweep otherwise).
    out = {"python": platform.python_version()}
    for name in ("optctl", "casadi", "numpy", "scipy", "jax", "numba"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def optctl_version() -> str:
    """The installed optctl's version (``optctl --version``)."""
    try:
        return metadata.version("optctl")
    except metadata.PackageNotFoundError:
        return "(not installed)"
