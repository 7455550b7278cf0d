"""Writing and reading result files atomically: folders, text, JSON, ``.npz`` arrays.

Every file is written to a temporary name and renamed into place; a folder is assembled
under a temporary sibling name and renamed once complete (:func:`staged_dir`), so a
failed or interrupted job never leaves a file or a folder that looks complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import tempfile
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optctl.errors import ResultsError

# Temporary names carry their writer (a short tag of the host and the process id), so a
# later job can tell the leftovers of a killed writer from the work of a live one.
_HOST_TAG = hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]
_PARTIAL = re.compile(r"^\.(?P<stem>.*)\.[^.]+\.(?P<host>[0-9a-f]{6})-(?P<pid>[0-9]+)\.partial$")
# Temporary names start with (at most) this many characters of the final name, so that the
# temporary name stays within the file system's limit whenever the final name does.
_STEM_CHARS = 64
# Longest file or folder name most file systems take (bytes).
NAME_MAX = 255
_HELD: dict[Path, int] = {}  # claims held by this process: path -> depth


def _stem(name: str) -> str:
    return name[:_STEM_CHARS]


def _owner_suffix() -> str:
    return f".{_HOST_TAG}-{os.getpid()}.partial"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _stale(entry: Path, claimed: str | None) -> bool:
    """``entry`` is a temporary name left by a writer that is gone: one of this host whose
    process no longer runs, or, for the ``claimed`` final name (held by this process, so
    no other job writes it), one of any writer."""
    match = _PARTIAL.match(entry.name)
    mine = claimed is not None and len(claimed) <= _STEM_CHARS
    if match is None:  # written before temporary names carried their writer
        return mine and entry.name.startswith(f".{claimed}.")
    if mine and match["stem"] == claimed:
        return int(match["pid"]) != os.getpid() or match["host"] != _HOST_TAG
    return match["host"] == _HOST_TAG and int(match["pid"]) != os.getpid() \
        and not _alive(int(match["pid"]))


def remove_stale_partials(folder: Path, *, claimed: str | None = None, recursive: bool = False,
                          name: str | None = None) -> int:
    """Remove the temporary files and folders that killed writers left in ``folder``
    (and below it with ``recursive``); return how many were removed.

    A temporary name is removed when its writer (on this host) no longer runs; with
    ``claimed`` (a final name whose claim this process holds, :func:`claim`) every
    temporary name of that final name goes, whoever wrote it. ``name``: only the
    temporary names of this final name are looked at. Live writers are never disturbed.
    """
    folder = Path(folder)
    removed = 0
    try:
        entries = list(folder.iterdir()) if name is None else \
            list(folder.glob(f".{glob.escape(_stem(name))}.*.partial"))
    except OSError:
        return 0
    for entry in entries:
        if entry.name.startswith(".") and entry.name.endswith(".partial"):
            if _stale(entry, claimed):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        entry.unlink()
                removed += 1
        elif entry.name.startswith(".") and entry.name.endswith(".lock") and name is None:
            removed += _remove_free_lock(entry)
        elif recursive and entry.is_dir() and not entry.is_symlink():
            removed += remove_stale_partials(entry, recursive=True)
    return removed


def _remove_free_lock(lock: Path) -> int:
    """Remove the claim file ``lock`` if no job holds it (a killed job's); return 1 if removed.

    The file is locked before it is unlinked, so a job claiming it at the same moment
    either holds it (and it stays) or finds it gone and makes a new one (:func:`_lock`).
    """
    try:
        fd = os.open(lock, os.O_RDWR)
    except OSError:
        return 0
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return 0  # held by a live job
    try:
        if os.fstat(fd).st_ino != os.stat(lock).st_ino:
            return 0
        os.unlink(lock)
        return 1
    except FileNotFoundError:
        return 0
    finally:
        os.close(fd)


def check_new(out: Path, overwrite: bool) -> None:
    """Refuse an existing ``out``, or one that cannot be written, before any work is done
    (:func:`staged_dir` checks again, under its claim, when the folder is renamed into place)."""
    _check_names(Path(out))
    if Path(out).exists() and not overwrite:
        raise ResultsError(f"--out {out} already exists; choose a new folder or pass --overwrite")
    check_writable(out)


def check_writable(out: Path, *, folder: bool = True) -> None:
    """Refuse an ``out`` that could not be created, before any work is done: a file where
    a folder is needed on its path, a name longer than the file system takes, or a place
    where nothing can be written (probed by creating and removing a temporary folder in
    its nearest existing ancestor). ``folder``: ``out`` is a folder (else a file, which
    may exist and be replaced)."""
    out = Path(out)
    _check_names(out)
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


def _check_names(out: Path) -> None:
    for part in out.parts:
        if len(os.fsencode(part)) > NAME_MAX:
            raise ResultsError(f"--out {_short(str(out))}: the name {_short(part)!r} has "
                               f"{len(os.fsencode(part))} bytes, more than the {NAME_MAX} a file "
                               "system takes; choose a shorter name")


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[:limit - 3] + "..."


@contextlib.contextmanager
def claim(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Hold the exclusive right to write ``final`` (a run or fit folder) for the block.

    Two jobs never write one folder: the claim is an exclusive lock on a hidden file
    beside ``final`` (``.<name>.lock``) that the operating system releases when the
    holder ends, even when it is killed, so a claim never goes stale. A second job
    asking for a claimed folder gets a :class:`ResultsError` at once, before any work.
    Under the claim, ``final`` is checked (:func:`check_new`) and the temporary folders
    of killed writers of it are removed. Claims nest within one process.
    """
    final = Path(final)
    check_new(final, overwrite)
    key = final.absolute()
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield final
        finally:
            _HELD[key] -= 1
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    lock = final.parent / f".{_stem(final.name)}.lock"
    fd = _lock(lock, final)
    _HELD[key] = 1
    try:
        check_new(final, overwrite)  # again, now that no other job can create it
        remove_stale_partials(final.parent, claimed=final.name)
        yield final
    finally:
        del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock)
        os.close(fd)


def _lock(lock: Path, final: Path) -> int:
    """Take the lock file ``lock`` (created if absent); :class:`ResultsError` if it is held."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                holder = os.read(fd, 64).decode(errors="replace").strip()
            finally:
                os.close(fd)
            who = f" (process {holder})" if holder.isdigit() else ""
            raise ResultsError(f"--out {final} is being written by another optctl job{who}; "
                               "nothing was written. Wait for it to finish, or choose another "
                               "--out") from None
        except BaseException:
            os.close(fd)
            raise
        # The previous holder may have removed the file between our open and our lock:
        # hold the lock only on the file that is still there.
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.write(fd, str(os.getpid()).encode())
            return fd
        os.close(fd)


@contextlib.contextmanager
def staged_dir(final: Path, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary folder beside ``final``; rename it to ``final`` on success.

    The folder is written under a claim (:func:`claim`), so no other job writes
    ``final`` meanwhile; an existing ``final`` is an error unless ``overwrite``, and then
    it is replaced only once the new folder is complete. On any exception the temporary
    folder is removed and ``final`` is untouched; a killed job's temporary folder is
    removed by the next job that writes ``final``.
    """
    final = Path(final)
    with claim(final, overwrite=overwrite):
        tmp = Path(tempfile.mkdtemp(prefix=f".{_stem(final.name)}.", suffix=_owner_suffix(),
                                    dir=final.parent))
        try:
            os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; results are shared
            yield tmp
            if final.exists():
                if not overwrite:  # made by hand meanwhile: never replace another's work
                    raise ResultsError(f"{final} was created while this job ran; nothing was "
                                       "replaced. Choose another --out")
                old = Path(tempfile.mkdtemp(prefix=f".{_stem(final.name)}.",
                                            suffix=_owner_suffix(), dir=final.parent))
                os.replace(final, old)  # aside first: final is never half removed
                os.replace(tmp, final)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.rename(tmp, final)
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
    remove_stale_partials(path.parent, name=path.name)  # a killed writer's leftovers
    fd, tmp = tempfile.mkstemp(prefix=f".{_stem(path.name)}.", suffix=_owner_suffix(),
                               dir=path.parent)
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
    """Save named arrays as ``.npz`` (no pickle), atomically.

    The archive is what ``np.savez_compressed`` writes (``np.load`` reads it), deflated at
    level 1 instead of 6: float64 curves barely compress further, and at 10⁶ updates
    level 6 took seconds. A large array whose first :data:`SAMPLE_BYTES` deflate to more
    than :data:`STORE_ABOVE` of their size (a smooth loss curve: every mantissa bit
    differs) is stored uncompressed: deflating it would cost seconds at 10⁷ updates and
    save a quarter of its size.
    """
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for name, value in arrays.items():
            value = np.asarray(value)
            member: str | zipfile.ZipInfo = f"{name}.npy"
            if _incompressible(value):
                member = zipfile.ZipInfo(f"{name}.npy")
                member.compress_type = zipfile.ZIP_STORED
            with zf.open(member, "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, value, allow_pickle=False)
    write_bytes_atomic(Path(path), buf.getvalue())


SAMPLE_BYTES = 1 << 16
STORE_ABOVE = 0.5


def _incompressible(value: np.ndarray) -> bool:
    if value.nbytes < 4 * SAMPLE_BYTES or value.dtype.hasobject:
        return False
    sample = np.ascontiguousarray(value).reshape(-1).view(np.uint8)[:SAMPLE_BYTES].tobytes()
    return len(zlib.compress(sample, 1)) > STORE_ABOVE * len(sample)


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files}
    except FileNotFoundError as err:
        raise ResultsError(f"{path} not found; is this a run folder written by `optctl solve`?") from err


def special_file(path: str | os.PathLike[str]) -> bool:
    """True for a path that exists but is neither a regular file nor a directory (a FIFO, a
    socket, a device): reading one can block for ever, so readers refuse it first."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))
