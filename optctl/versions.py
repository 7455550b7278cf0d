"""Versions of the packages that produced a result, recorded in every summary."""

from __future__ import annotations

import platform
from importlib import metadata


def versions() -> dict[str, str]:
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
