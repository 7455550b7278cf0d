"""Writing and reading result files atomically: folders, text, JSON, ``.npz`` arrays.

Every file is written to a temporary name and renamed into place; a folder is assembled
under a temporary sibling name and renamed once complete (:func:`staged_dir`), so a
failed or interrupted job never leaves a file or a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optctl.errors import ResultsError


def check_new(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out``, or one that cannot be written, before any work is done
    (:func:`staged_dir` checks again when the folder is renamed into place)."""
    if Path(out).exists() and not overwrite:
        raise ResultsError(f"--out {out} already exists; choose a new folder or pass --overwrite")
    check_writable(out)


def check_writable(out: Path, *, folder: bool = True) -> None:
    """Refuse an ``out`` that could not be created, before any work is done: a file where
    a folder is needed on its path, or a place where nothing can be written (probed by
    creating and removing a temporary folder in its nearest existing ancestor).
    ``folder``: ``out`` is a folder (else a file, which may exist and be replaced)."""
    out = Path(out)
    if out.exists() and folder != out.is_dir():
        kind = "a folder" if folder else "a file"
        raise ResultsError(f"--out {out} exists and is not {kind}; choose another path")
    if out.is_dir():
        base = out
    else:
        base = out.parent
        while not base.exists() and base != base.parent:
            base = base.parent
    if not base.is_dir():
        raise ResultsError(f"--out {out}: {base} is a file, so no folder can be made there; "
                           "choose another path")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".optctl-probe.", dir=base))
    except OSError as err:
        raise ResultsError(f"--out {out}: cannot write under {base} ({err.strerror}); "
                           "choose a writable folder") from None


@contextlib.contextmanager
def staged_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` on success.

    On any exception the temporary folder is removed and ``final`` is untouched.
    """
    final = Path(final)
    check_new(final, overwrite)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; results are shared
        yield tmp
        if final.exists():
            if not overwrite:  # appeared while this job ran: never replace another's work
                raise ResultsError(f"{final} was created by another job while this one ran; "
                                   "nothing was replaced. Choose another --out")
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a synced temporary file and a rename, so the
    file is either complete or absent."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; results are shared
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (:func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode())


def _jsonable(obj: Any) -> Any:
    """Plain JSON values; a non-finite number becomes the string ``"nan"``, ``"inf"`` or ``"-inf"``.

    JSON has no NaN or infinity (bare ``NaN`` is a Python extension other readers refuse),
    so they are written as strings, which ``float()`` reads back; numpy scalars and arrays
    are converted first, so their non-finite values are caught too.
    """
    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return _jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return str(obj)
    return obj


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    """Write ``data`` as strict JSON (no bare NaN/Infinity: see :func:`_jsonable`), atomically."""
    write_text_atomic(path, json.dumps(_jsonable(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


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
    """Save named arrays as ``.npz`` (no pickle), atomically."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})  # type: ignore[arg-type]
    write_bytes_atomic(Path(path), buf.getvalue())


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as err:
        raise ResultsError(f"{path} not found; is this a run folder written by `optctl solve`?") from err
