"""Run folders: resolved config, arrays (``.npz``), ``summary.json``, figures.

A run is written into a temporary sibling folder and renamed into place only once
everything is on disk, so a failed or interrupted run never leaves a folder that
looks complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optctl.errors import OptctlError


class ResultsError(OptctlError, OSError):
    """A run folder cannot be written or read."""


@contextlib.contextmanager
def staged_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` on success.

    On any exception the temporary folder is removed and ``final`` is untouched.
    """
    final = Path(final)
    if final.exists() and not overwrite:
        raise ResultsError(f"{final} already exists; pass --out with a new folder or --overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; results are shared
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(_jsonable(data), indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path) as fh:
            out = json.load(fh)
    except FileNotFoundError as err:
        raise ResultsError(f"{path} not found; is this a run folder written by `optctl solve`?") from err
    except json.JSONDecodeError as err:
        raise ResultsError(f"{path} is not valid JSON ({err}); re-run the job that wrote it") from err
    if not isinstance(out, dict):
        raise ResultsError(f"{path} does not hold a JSON object")
    return out


def write_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    """Save named arrays as ``.npz`` (no pickle) through a temporary file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".npz", dir=path.parent)
    os.close(fd)
    try:
        np.savez_compressed(tmp, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as err:
        raise ResultsError(f"{path} not found; is this a run folder written by `optctl solve`?") from err
