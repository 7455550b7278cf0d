"""Exact per-step replay of a schedule: the ground truth every solver is checked against.

The recursion of :func:`optctl.model.spectrum.sgd_step` is run for every update with
all ``N`` modes in float64. The default backend is one fused loop compiled from C
(:mod:`optctl.model.ckernel`, built once per machine and loaded with ctypes): each update
computes the decay, updates the state and accumulates the next loss in a single pass over
the modes, with the bias and variance runs interleaved, so the state stays in the L1
cache and the loop runs at close to the machine's floating-point speed
(``benchmarks/bench_cli.py`` compares it with the other backends). It sums the loss in
another order than numpy's dot product and may fuse multiply-adds (nothing that changes
how inf or NaN propagate), which moves results by about 1e-12 relative at 10⁶ updates
(tested). Without a C compiler the same loop runs compiled by numba (``reassoc`` and
``contract`` flags; its kernels cached on disk by numba); ``OPTCTL_REPLAY=numba`` asks
for that one.

Without either (or with ``OPTCTL_REPLAY=reference``) the reference backends run: a
numpy loop up to ``NUMPY_MAX_T`` updates, beyond that a compiled ``jax.lax.scan``. jax
is imported on the first long replay, and 64-bit mode is switched on only around that
call (``jax.enable_x64``), so importing or using this module leaves jax's global
settings alone.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from optctl.model import ckernel
from optctl.model.spectrum import Spectrum, sgd_decay, sgd_step, spectrum
from optctl.spec import ProblemSpec
from optctl.validate import per_step


@dataclass(frozen=True)
class Replay:
    """Loss curve of a schedule: ``loss[t] = L_t`` for ``t = 0..T`` (``T + 1`` values).

    ``bias`` and ``variance`` split the excess loss exactly (the recursion is
    linear in ``(c, σ²)``): bias starts at ``c_0`` without noise, variance starts at
    zero with the noise forcing. ``tail`` is the constant ``tail(N)`` that reported
    losses include when the spec asks for it; ``loss`` already contains it.
    """

    loss: np.ndarray
    bias: np.ndarray
    variance: np.ndarray
    tail: float

    @property
    def final(self) -> float:
        return float(self.loss[-1])


# Below this many updates a numpy loop beats compiling the jax scan.
NUMPY_MAX_T = 10_000


@functools.cache
def _compiled_scan() -> Callable[..., np.ndarray]:
    """The jitted scan of the recursion; jax is a heavy import, made on first use."""
    import jax
    import jax.numpy as jnp

    def scan(lam_w: jax.Array, lam: jax.Array, c0: jax.Array, sigma2: jax.Array,
             eta: jax.Array, m: jax.Array) -> jax.Array:
        def body(c: jax.Array, u: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
            e, mm = u
            loss = c @ lam_w
            return sgd_step(c, loss[:, None], e, mm, lam, sigma2[:, None]), loss

        c_T, losses = jax.lax.scan(body, c0, (eta, m), unroll=8)
        return jnp.concatenate([losses, (c_T @ lam_w)[None]], axis=0)

    jitted = jax.jit(scan)

    def run(*arrays: np.ndarray) -> np.ndarray:
        with jax.enable_x64(True):
            return np.asarray(jitted(*(jnp.asarray(x, dtype=jnp.float64) for x in arrays)))

    return run


def bucket_length(T: int) -> int:
    """Pad lengths to 1.25^k so that a sweep over horizons compiles a few scans only."""
    return int(np.ceil(1.25 ** np.ceil(np.log(T) / np.log(1.25))))


_FUSED_LOCK = threading.Lock()


def _backend() -> str:
    """``$OPTCTL_REPLAY``: ``fused`` (default: C, else numba), ``numba`` or ``reference``."""
    return os.environ.get("OPTCTL_REPLAY", "fused")


def preload() -> threading.Thread:
    """Load the replay's compiled kernels in a background thread and return it (started).

    The C kernels load in about a millisecond once built (the first command on a machine
    builds them, well under a second); numba's import and its on-disk kernel cache, where
    numba runs the replay, take about 0.75 s of interpreter time. A solve starts this
    before IPOPT runs (CasADi releases the interpreter lock while it computes), so that
    either is ready when IPOPT is done. Joining the thread is optional: the first replay
    waits for the load either way.
    """
    thread = threading.Thread(target=_warm, name="optctl-replay-preload", daemon=True)
    thread.start()
    return thread


def _warm() -> None:
    kernels = _fused()
    if kernels is None:
        return
    single, pair = kernels
    one = np.ones(1)
    single(one, one, one, 0.0, one, one, np.empty(2))
    pair(one, one, one, one, 0.0, 0.0, one, one, np.empty(2), np.empty(2))


def _fused() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """The fused kernels (one state, two states interleaved): C (:mod:`optctl.model.ckernel`),
    else numba, else None; ``OPTCTL_REPLAY=numba`` skips C, ``=reference`` both. Loaded once
    per process (a lock keeps :func:`preload`'s thread and a replay from both doing it)."""
    mode = _backend()
    if mode == "reference":
        return None
    with _FUSED_LOCK:
        found = None if mode == "numba" else _load_c()
        return found if found is not None else _load_fused()


@functools.cache
def _load_c() -> tuple[Callable[..., None], Callable[..., None]] | None:
    """The C kernels behind the same signatures as the numba ones (``c0`` is copied, not changed)."""
    lib = ckernel.kernels()
    if lib is None:
        return None

    def single(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, sigma2: float,
               eta: np.ndarray, m: np.ndarray, out: np.ndarray) -> None:
        lib.replay1(lam_w, lam, c0.copy(), sigma2, eta, m, out)

    def pair(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, v0: np.ndarray, s0: float,
             s1: float, eta: np.ndarray, m: np.ndarray, out0: np.ndarray, out1: np.ndarray) -> None:
        lib.replay2(lam_w, lam, c0.copy(), v0.copy(), s0, s1, eta, m, out0, out1)

    return single, pair


def numba_jit(**options: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]] | None:
    """``numba.njit(cache=True, nogil=True, **options)``, or None without numba or with
    ``OPTCTL_REPLAY=reference`` (then the caller runs its numpy reference)."""
    if _backend() == "reference":
        return None
    try:
        import numba
    except ImportError:
        return None
    return numba.njit(cache=True, nogil=True, **options)  # type: ignore[no-any-return]


@functools.cache
def _load_fused() -> tuple[Callable[..., None], Callable[..., None]] | None:
    # reassoc: the loss may be summed in any order (vectorised), like a BLAS dot product;
    # contract: multiply-adds may be fused. Neither changes how inf and NaN propagate.
    jit = numba_jit(fastmath={"reassoc", "contract"})
    if jit is None:
        return None

    def single(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, sigma2: float,
               eta: np.ndarray, m: np.ndarray, out: np.ndarray) -> None:
        n, T = lam.size, eta.size
        c = c0.copy()
        lam2 = lam * lam
        acc = 0.0
        for k in range(n):
            acc += c[k] * lam_w[k]
        out[0] = acc
        for t in range(T):
            e, mm = eta[t], m[t]
            a, b, g = 2.0 * e, (1.0 + 1.0 / mm) * e * e, e * e / mm
            f = g * (out[t] + sigma2)
            acc = 0.0
            for k in range(n):
                x = (1.0 - a * lam[k] + b * lam2[k]) * c[k] + f * lam[k]
                c[k] = x
                acc += x * lam_w[k]
            out[t + 1] = acc

    def pair(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, v0: np.ndarray, s0: float,
             s1: float, eta: np.ndarray, m: np.ndarray, out0: np.ndarray, out1: np.ndarray) -> None:
        n, T = lam.size, eta.size
        c, v = c0.copy(), v0.copy()
        lam2 = lam * lam
        acc0, acc1 = 0.0, 0.0
        for k in range(n):
            acc0 += c[k] * lam_w[k]
            acc1 += v[k] * lam_w[k]
        out0[0], out1[0] = acc0, acc1
        for t in range(T):
            e, mm = eta[t], m[t]
            a, b, g = 2.0 * e, (1.0 + 1.0 / mm) * e * e, e * e / mm
            f0, f1 = g * (out0[t] + s0), g * (out1[t] + s1)
            acc0, acc1 = 0.0, 0.0
            for k in range(n):
                d = 1.0 - a * lam[k] + b * lam2[k]
                x = d * c[k] + f0 * lam[k]
                y = d * v[k] + f1 * lam[k]
                c[k], v[k] = x, y
                acc0 += x * lam_w[k]
                acc1 += y * lam_w[k]
            out0[t + 1], out1[t + 1] = acc0, acc1

    return jit(single), jit(pair)


def _fused_pair(kernels: tuple[Callable[..., None], Callable[..., None]], lam_w: np.ndarray,
                lam: np.ndarray, c0: np.ndarray, sigma2: np.ndarray, eta: np.ndarray,
                m: np.ndarray) -> np.ndarray:
    """The recursion by the fused kernels (C or numba): states two at a time (the runs are
    independent)."""
    single, pair = kernels
    S, T = c0.shape[0], eta.size
    out = np.empty((S, T + 1))
    args = [np.ascontiguousarray(x, dtype=np.float64) for x in (lam_w, lam, c0, eta, m)]
    lw, lm, start, e, mm = args
    s = 0
    while s + 1 < S:
        pair(lw, lm, start[s], start[s + 1], float(sigma2[s]), float(sigma2[s + 1]), e, mm,
             out[s], out[s + 1])
        s += 2
    if s < S:
        single(lw, lm, start[s], float(sigma2[s]), e, mm, out[s])
    return out.T


def _recurse(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, sigma2: np.ndarray,
             eta: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Run the recursion from several initial states at once; losses of shape ``(T+1, S)``.

    ``c0`` has shape ``(S, N)`` and ``sigma2`` shape ``(S,)``. The fused loop (C, else numba;
    module docstring) when there is one, else :func:`_recurse_reference`.
    """
    kernels = _fused()
    if kernels is not None:
        return _fused_pair(kernels, lam_w, lam, c0, sigma2, eta, m)
    return _recurse_reference(lam_w, lam, c0, sigma2, eta, m)


def _recurse_reference(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, sigma2: np.ndarray,
                       eta: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The reference backends: a numpy loop up to ``NUMPY_MAX_T`` updates, then jax.

    Padding steps with ``η = 0`` leave the state unchanged, which is how the jax path
    reuses one compiled scan for nearby horizons.
    """
    T = eta.size
    if T <= NUMPY_MAX_T:
        # An unstable schedule (η beyond 2m/(m+1)) overflows to inf: a valid answer.
        with np.errstate(over="ignore", invalid="ignore"):
            return _recurse_numpy(lam_w, lam, c0, sigma2, eta, m)
    P = bucket_length(T)
    eta_p = np.concatenate([eta, np.zeros(P - T)])
    m_p = np.concatenate([m, np.ones(P - T)])
    return _compiled_scan()(lam_w, lam, c0, sigma2, eta_p, m_p)[: T + 1]


def _recurse_numpy(lam_w: np.ndarray, lam: np.ndarray, c0: np.ndarray, sigma2: np.ndarray,
                   eta: np.ndarray, m: np.ndarray) -> np.ndarray:
    T = eta.size
    out = np.empty((T + 1, c0.shape[0]))
    c = c0.copy()
    s2 = sigma2[:, None]
    for t in range(T):
        loss = c @ lam_w
        out[t] = loss
        c = sgd_step(c, loss[:, None], eta[t], m[t], lam, s2)
    out[T] = c @ lam_w
    return out


def loss_curve(spec: ProblemSpec, eta: np.ndarray | float, batch_size: np.ndarray | float | None = None,
               *, sp: Spectrum | None = None, c0: np.ndarray | None = None,
               sigma2: float | None = None) -> np.ndarray:
    """Excess loss ``L_t`` (without tail) for ``t = 0..T`` under per-step ``η_t`` and ``m_t``."""
    sp = spectrum(spec) if sp is None else sp
    T = spec.T if np.ndim(eta) == 0 else int(np.size(eta))
    eta_t = per_step("eta", eta, T, "learning rate")
    m_t = per_step("batch_size", spec.batch_size if batch_size is None else batch_size, T, "batch size")
    start = sp.c0 if c0 is None else np.asarray(c0, dtype=float)
    s2 = sp.sigma2 if sigma2 is None else float(sigma2)
    return _recurse(sp.weight * sp.lam, sp.lam, start[None, :], np.array([s2]), eta_t, m_t)[:, 0]


def replay(spec: ProblemSpec, eta: np.ndarray | float,
           batch_size: np.ndarray | float | None = None) -> Replay:
    """Replay a per-step schedule exactly and split its loss into bias and variance."""
    sp = spectrum(spec)
    T = spec.T if np.ndim(eta) == 0 else int(np.size(eta))
    eta_t = per_step("eta", eta, T, "learning rate")
    m_t = per_step("batch_size", spec.batch_size if batch_size is None else batch_size, T, "batch size")
    both = _recurse(sp.lam, sp.lam, np.stack([sp.c0, np.zeros_like(sp.c0)]),
                    np.array([0.0, sp.sigma2]), eta_t, m_t)
    bias, variance = both[:, 0], both[:, 1]
    return Replay(loss=bias + variance + sp.tail, bias=bias, variance=variance, tail=sp.tail)


def final_loss(spec: ProblemSpec, eta: np.ndarray | float,
               batch_size: np.ndarray | float | None = None) -> float:
    """``L_T`` of a per-step schedule, tail included: the number users are shown."""
    sp = spectrum(spec)
    return float(loss_curve(spec, eta, batch_size, sp=sp)[-1]) + sp.tail


def state_after(spec: ProblemSpec, eta: np.ndarray, batch_size: np.ndarray | float | None = None,
                *, sp: Spectrum | None = None) -> np.ndarray:
    """The per-mode second moments ``c_t`` after the updates ``eta`` (``t = len(eta)``).

    Starts from the spectrum's ``c_0`` (``sp``, default the spec's exact spectrum; a
    grouped spectrum gives the state of its own modes) and runs the recursion of MODEL.md
    §2 step by step.
    """
    sp = spectrum(spec) if sp is None else sp
    eta_t = np.asarray(eta, dtype=float)
    m_t = per_step("batch_size", spec.batch_size if batch_size is None else batch_size, eta_t.size,
                   "batch size")
    c, lam_w = sp.c0.copy(), sp.weight * sp.lam
    with np.errstate(over="ignore", invalid="ignore"):
        for e, m in zip(eta_t, m_t, strict=True):
            c = sgd_step(c, c @ lam_w, e, m, sp.lam, sp.sigma2)
    return c


def gradient(spec: ProblemSpec, eta: np.ndarray, batch_size: np.ndarray | float | None = None,
             *, c0: np.ndarray | None = None) -> tuple[float, np.ndarray]:
    """``L_T`` and its exact gradient with respect to every ``η_t`` (discrete adjoint).

    MODEL.md §2: ``p_T = λ``, ``p_t = d_t ⊙ p_{t+1} + (η_t²/m_t) λ (λ · p_{t+1})`` and
    ``∂L_T/∂η_t = Σ_k p_{t+1,k} [(−2λ_k + 2(1 + 1/m_t) η_t λ_k²) c_{t,k}
    + (2η_t/m_t) λ_k (L_t + σ²)]``, from the spectrum's ``c_0`` or the given state ``c0``.
    Stores the ``T × N`` trajectory, so it is meant for horizons up to a few ten thousand
    updates. ``L_T`` includes the tail. The C kernel (:mod:`optctl.model.ckernel`) computes
    it where the replay uses C; else this numpy loop (the reference).
    """
    sp = spectrum(spec)
    eta_t = per_step("eta", eta, spec.T, "learning rate")
    m_t = per_step("batch_size", spec.batch_size if batch_size is None else batch_size, spec.T, "batch size")
    start = np.ascontiguousarray(sp.c0 if c0 is None else c0, dtype=np.float64)
    lib = ckernel.kernels() if _backend() == "fused" else None
    if lib is not None:
        loss, grad = lib.gradient(sp.lam, start, sp.sigma2, np.ascontiguousarray(eta_t, dtype=np.float64),
                                  np.ascontiguousarray(m_t, dtype=np.float64))
        return loss + sp.tail, grad
    lam = sp.lam
    states = np.empty((spec.T + 1, lam.size))
    states[0] = start
    for t in range(spec.T):
        c = states[t]
        states[t + 1] = sgd_step(c, float(lam @ c), eta_t[t], m_t[t], lam, sp.sigma2)
    grad = np.empty(spec.T)
    p = lam.copy()
    for t in range(spec.T - 1, -1, -1):
        c, e, m = states[t], eta_t[t], m_t[t]
        u = float(lam @ c) + sp.sigma2
        grad[t] = p @ ((-2 * lam + 2 * (1 + 1 / m) * e * lam**2) * c + (2 * e / m) * lam * u)
        p = sgd_decay(e, m, lam) * p + (e * e / m) * lam * float(lam @ p)
    return float(lam @ states[-1]) + sp.tail, grad
