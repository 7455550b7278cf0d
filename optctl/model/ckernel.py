"""The replay's loops in C, compiled once per machine and loaded with :mod:`ctypes`.

The exact replay (:mod:`optctl.model.replay`) runs the recursion of MODEL.md §2 for every
update and every mode. Its loops are the three functions of ``SOURCE``: one state, two
states interleaved (bias and variance), and the discrete adjoint of ``L_T`` (the exact
gradient the polish uses). Each update computes the decay, updates the state and sums the
next loss in one pass over the modes; the compiler may sum the loss in vector lanes
(``-fassociative-math``, fixed at compile time, so a result never depends on the run) and
fuse multiply-adds (``-ffp-contract=fast``); nothing changes how inf and NaN propagate.
Results agree with the numpy reference to about 1e-12 relative (tested).

Why C and not numba: the same loops under numba cost a command about 0.75 CPU seconds to
import numba and load its cached kernels, more than a ``T = 1000`` solve spends in IPOPT.
A shared library built by the C compiler that builds the NLPs loads in about a
millisecond. It is compiled on first use (well under a second), stored under
``cache_root()/kernels`` keyed by the source, the flags and the processor (``-march=native``)
and checked by its checksum on every load; a process that cannot store it builds it in a
scratch folder. Without a C compiler, :func:`kernels` returns None and the replay falls
back to numba, then to numpy.

ctypes releases the interpreter lock during a call, so a replay runs beside CasADi and the
figure helper without holding up other threads.
"""

from __future__ import annotations

import atexit
import ctypes
import functools
import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

# Environment: OPTCTL_CACHE_DIR moves every on-disk cache of optctl (the NLPs' too).
CACHE_DIR_ENV = "OPTCTL_CACHE_DIR"
# -fassociative-math (with the two flags it needs) lets the compiler sum a loss in vector
# lanes, like numba's ``reassoc``. None of these flags changes how inf and NaN propagate.
FLAGS = ("-O3", "-march=native", "-fassociative-math", "-fno-signed-zeros", "-fno-trapping-math",
         "-ffp-contract=fast", "-shared", "-fPIC")

SOURCE = r"""
/* One state: out[t] = lam_w . c_t for t = 0..T; c (length n) starts as c_0 and ends as c_T. */
void optctl_replay1(long n, long T, const double *restrict lam_w, const double *restrict lam,
                    double *restrict c, double s2,
                    const double *restrict eta, const double *restrict m, double *restrict out) {
    double s = 0.0;
    for (long k = 0; k < n; k++) s += c[k] * lam_w[k];
    out[0] = s;
    for (long t = 0; t < T; t++) {
        const double e = eta[t], mm = m[t];
        const double a = 2.0 * e, b = (1.0 + 1.0 / mm) * e * e, f = e * e / mm * (s + s2);
        s = 0.0;
        for (long k = 0; k < n; k++) {
            const double l = lam[k], x = (1.0 - a * l + b * (l * l)) * c[k] + f * l;
            c[k] = x;
            s += x * lam_w[k];
        }
        out[t + 1] = s;
    }
}

/* Two independent states sharing the decay of each update (bias and variance). */
void optctl_replay2(long n, long T, const double *restrict lam_w, const double *restrict lam,
                    double *restrict c, double *restrict v, double s0,
                    double s1, const double *restrict eta, const double *restrict m,
                    double *restrict out0, double *restrict out1) {
    double s = 0.0, r = 0.0;
    for (long k = 0; k < n; k++) {
        s += c[k] * lam_w[k];
        r += v[k] * lam_w[k];
    }
    out0[0] = s;
    out1[0] = r;
    for (long t = 0; t < T; t++) {
        const double e = eta[t], mm = m[t];
        const double a = 2.0 * e, b = (1.0 + 1.0 / mm) * e * e, g = e * e / mm;
        const double f0 = g * (s + s0), f1 = g * (r + s1);
        s = 0.0;
        r = 0.0;
        for (long k = 0; k < n; k++) {
            const double l = lam[k], d = 1.0 - a * l + b * (l * l);
            const double x = d * c[k] + f0 * l, y = d * v[k] + f1 * l;
            c[k] = x;
            v[k] = y;
            s += x * lam_w[k];
            r += y * lam_w[k];
        }
        out0[t + 1] = s;
        out1[t + 1] = r;
    }
}

static double dot(const double *restrict x, const double *restrict w, long n) {
    double s = 0.0;
    for (long k = 0; k < n; k++) s += x[k] * w[k];
    return s;
}

/* L_T = lam . c_T and dL_T/deta_t for every t (MODEL.md section 2's discrete adjoint).
   states: (T + 1) x n, row 0 holding c_0 on entry; p: n values of work space. */
double optctl_gradient(long n, long T, const double *restrict lam, double *restrict states, double s2, const double *restrict eta,
                       const double *restrict m, double *restrict p, double *restrict grad) {
    for (long t = 0; t < T; t++) {
        const double *restrict c = states + t * n;
        double *restrict x = states + (t + 1) * n;
        const double e = eta[t], mm = m[t];
        const double a = 2.0 * e, b = (1.0 + 1.0 / mm) * e * e;
        const double f = e * e / mm * (dot(c, lam, n) + s2);
        for (long k = 0; k < n; k++) {
            const double l = lam[k];
            x[k] = (1.0 - a * l + b * (l * l)) * c[k] + f * l;
        }
    }
    for (long k = 0; k < n; k++) p[k] = lam[k];
    for (long t = T - 1; t >= 0; t--) {
        const double *restrict c = states + t * n;
        const double e = eta[t], mm = m[t];
        const double u = dot(c, lam, n) + s2, q = dot(p, lam, n);
        const double a = 2.0 * e, b = (1.0 + 1.0 / mm) * e * e;
        const double h = 2.0 * (1.0 + 1.0 / mm) * e, w = 2.0 * e / mm * u, g = e * e / mm * q;
        double s = 0.0;
        for (long k = 0; k < n; k++) {
            const double l = lam[k];
            s += p[k] * ((h * (l * l) - 2.0 * l) * c[k] + w * l);
            p[k] = (1.0 - a * l + b * (l * l)) * p[k] + g * l;
        }
        grad[t] = s;
    }
    return dot(states + T * n, lam, n);
}
"""

_D = ctypes.POINTER(ctypes.c_double)
_L, _F = ctypes.c_long, ctypes.c_double
_SIGNATURES = {
    "optctl_replay1": (None, [_L, _L, _D, _D, _D, _F, _D, _D, _D]),
    "optctl_replay2": (None, [_L, _L, _D, _D, _D, _D, _F, _F, _D, _D, _D, _D]),
    "optctl_gradient": (_F, [_L, _L, _D, _D, _F, _D, _D, _D, _D]),
}


def cache_root() -> Path:
    """Where optctl keeps what it compiles: ``$OPTCTL_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/optctl`` (``~/.cache/optctl`` when ``XDG_CACHE_HOME`` is unset)."""
    if os.environ.get(CACHE_DIR_ENV):
        return Path(os.environ[CACHE_DIR_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")) / "optctl"


def compiler() -> str | None:
    """The C compiler (``gcc``, else ``cc``), or None."""
    return shutil.which("gcc") or shutil.which("cc")


def _processor() -> str:
    """What ``-march=native`` compiles for: the CPU's model and feature flags (Linux), else
    the platform's description."""
    try:
        with open("/proc/cpuinfo") as fh:
            lines = [ln for ln in fh.read().splitlines() if ln.startswith(("model name", "flags"))][:2]
        return "\n".join(lines)
    except OSError:
        return f"{platform.machine()} {platform.processor()}"


def sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class BuildError(OSError):
    """The C compiler failed (its message is the error's text)."""


def stored(lib: Path) -> bool:
    """True when the library ``lib`` and its record (``lib`` with ``.json``) exist and the
    record's checksum is the library's: what :func:`store_library` left complete."""
    try:
        record = json.loads(lib.with_suffix(".json").read_text())
        return bool(lib.is_file() and record.get("sha256") == sha256_file(lib))
    except (OSError, ValueError, AttributeError):
        return False


def store_library(cc: str, flags: Sequence[str], source: Path, lib: Path, record: dict[str, Any]) -> None:
    """Compile the C file ``source`` into the shared library ``lib`` with ``flags``, atomically:
    the library and its record (``record`` and the library's checksum) are written under
    temporary names and renamed, the library first, so that a record never names a missing
    or partial library and concurrent builders of the same ``lib`` leave one whole copy.
    Raises :class:`BuildError` when the compiler fails, OSError when ``lib``'s folder cannot
    be written."""
    lib.parent.mkdir(parents=True, exist_ok=True)
    tmp = lib.parent / f".{lib.stem}.{os.getpid()}.{threading.get_ident()}.tmp"
    meta = tmp.with_suffix(".json.tmp")
    try:
        done = subprocess.run([cc, *flags, str(source), "-o", str(tmp)], capture_output=True, text=True)
        if done.returncode != 0:
            raise BuildError(done.stderr.strip()[-300:])
        meta.write_text(json.dumps({"sha256": sha256_file(tmp), **record}))
        os.replace(tmp, lib)
        os.replace(meta, lib.with_suffix(".json"))
    finally:
        tmp.unlink(missing_ok=True)
        meta.unlink(missing_ok=True)


class Kernels:
    """The loaded library: :meth:`replay1`, :meth:`replay2`, :meth:`gradient` take numpy arrays."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        for name, (restype, argtypes) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.restype, fn.argtypes = restype, argtypes
        self._lib = lib

    def replay1(self, lam_w: np.ndarray, lam: np.ndarray, c: np.ndarray, s2: float, eta: np.ndarray,
                m: np.ndarray, out: np.ndarray) -> None:
        """``out[t] = L_t`` of one state; ``c`` (float64, contiguous) is overwritten with ``c_T``."""
        self._lib.optctl_replay1(lam.size, eta.size, _p(lam_w), _p(lam), _p(c), s2, _p(eta), _p(m), _p(out))

    def replay2(self, lam_w: np.ndarray, lam: np.ndarray, c: np.ndarray, v: np.ndarray, s0: float,
                s1: float, eta: np.ndarray, m: np.ndarray, out0: np.ndarray, out1: np.ndarray) -> None:
        """Two states at once (``c``, ``v`` overwritten with their states after ``T`` updates)."""
        self._lib.optctl_replay2(lam.size, eta.size, _p(lam_w), _p(lam), _p(c), _p(v), s0, s1, _p(eta), _p(m),
                                 _p(out0), _p(out1))

    def gradient(self, lam: np.ndarray, c0: np.ndarray, s2: float, eta: np.ndarray,
                 m: np.ndarray) -> tuple[float, np.ndarray]:
        """``L_T = λ · c_T`` (no tail) and ``∂L_T/∂η_t`` for every update (stores the
        ``(T + 1) × N`` trajectory)."""
        n, T = lam.size, eta.size
        states = np.empty((T + 1, n))
        states[0] = c0
        grad, p = np.empty(T), np.empty(n)
        loss = self._lib.optctl_gradient(n, T, _p(lam), _p(states), s2, _p(eta), _p(m), _p(p), _p(grad))
        return float(loss), grad


def _p(x: np.ndarray) -> ctypes._Pointer[ctypes.c_double]:
    if x.dtype != np.float64 or not x.flags.c_contiguous:
        raise TypeError("a C kernel takes contiguous float64 arrays")
    return x.ctypes.data_as(_D)


@functools.cache
def _scratch_dir() -> str:
    path = tempfile.mkdtemp(prefix="optctl-kernels-")
    atexit.register(shutil.rmtree, path, True)
    return path


def _digest(cc: str) -> str:
    return hashlib.sha256(repr((SOURCE, FLAGS, cc, _processor())).encode()).hexdigest()[:32]


def _load(lib: Path) -> Kernels | None:
    """The library at ``lib`` if it and its checksum record are there and agree."""
    try:
        return Kernels(ctypes.CDLL(str(lib))) if stored(lib) else None
    except OSError:
        return None


def _build(cc: str, lib: Path) -> None:
    """Compile ``SOURCE`` into ``lib`` (:func:`store_library`)."""
    lib.parent.mkdir(parents=True, exist_ok=True)
    src = lib.parent / f".{lib.stem}.{os.getpid()}.{threading.get_ident()}.c"
    try:
        src.write_text(SOURCE)
        store_library(cc, FLAGS, src, lib, {"flags": list(FLAGS)})
    finally:
        src.unlink(missing_ok=True)


_LOCK = threading.Lock()


def kernels() -> Kernels | None:
    """The compiled kernels (built and stored on first use), or None without a C compiler or
    when they cannot be built (then the replay uses numba or numpy)."""
    with _LOCK:  # a background preload and a replay never both build
        return _kernels()


@functools.cache
def _kernels() -> Kernels | None:
    cc = compiler()
    if cc is None:
        return None
    name = f"{_digest(cc)}.so"
    lib = cache_root() / "kernels" / name
    found = _load(lib) or _built(cc, lib)
    if found is None:  # the cache folder cannot hold it: a scratch folder, this process only
        found = _built(cc, Path(_scratch_dir()) / name)
    return found


def _built(cc: str, lib: Path) -> Kernels | None:
    """Build ``lib`` and load it; None if the folder cannot be written or the build fails."""
    try:
        _build(cc, lib)
    except OSError:
        return None
    return _load(lib)
