"""Monte-Carlo check of the SGD recursion: real one-pass minibatch SGD on sampled features.

Bordelon & Mori (arXiv:2602.04774), section 2, derive the per-step second-moment
recursion of :func:`optctl.model.spectrum.sgd_step` for Gaussian features. This module runs the
SGD it describes, sample by sample, so that :func:`optctl.model.replay.loss_curve` can be
checked against an independent computation that shares none of its algebra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from optctl.errors import SpecError
from optctl.model.families import LinearOptimizer, simulate_iterates
from optctl.model.spectrum import spectrum
from optctl.spec import ProblemSpec
from optctl.validate import per_step

# Bound on the floats held by one chunk's feature draw (runs x batch x modes),
# about 128 MiB in float64: enough to vectorise, small enough for any laptop.
_CHUNK_ELEMENTS = 1 << 24


@dataclass(frozen=True)
class MonteCarloResult:
    """Mean excess loss of ``n_runs`` independent SGD runs, ``T + 1`` values (``t = 0..T``).

    ``loss[t]`` is the average over runs of ``Σ_k λ_k Δ_{t,k}²`` plus ``tail`` (the
    same convention as :attr:`optctl.model.replay.Replay.loss`), and ``stderr[t]`` its
    standard error ``s_t / √n_runs`` with ``s_t`` the sample standard deviation
    across runs. ``stderr[0]`` is 0 up to rounding: every run starts at the same loss.
    """

    loss: np.ndarray
    stderr: np.ndarray
    n_runs: int
    tail: float
    seed: int

    @property
    def final(self) -> float:
        return float(self.loss[-1])


def _check_eta(eta: np.ndarray | float, T: int) -> np.ndarray:
    arr = per_step("eta", eta, T, "learning rate")
    if not np.all(np.isfinite(arr)):
        raise SpecError("eta", arr[~np.isfinite(arr)][0], "learning rates must be finite")
    return arr


def _check_beta(beta: np.ndarray | float, T: int) -> np.ndarray:
    arr = per_step("beta", beta, T, "momentum weight")
    bad = ~np.isfinite(arr) | (arr < 0) | (arr > 1)
    if np.any(bad):
        t = int(np.argmax(bad))
        raise SpecError(f"beta[{t}]", float(arr[t]), "every β_t must lie in [0, 1] (β = 1 is plain SGD)")
    return arr


def _check_batch_size(batch_size: np.ndarray | float, T: int) -> np.ndarray:
    """Per-step integer batch sizes ``m_t >= 1``, or :class:`SpecError`."""
    arr = np.asarray(batch_size)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer)
                                 or np.issubdtype(arr.dtype, np.floating)):
        raise SpecError("batch_size", batch_size, "pass an integer or an array of integers")
    if arr.ndim == 0:
        arr = np.full(T, arr)
    if arr.shape != (T,):
        raise SpecError("batch_size", f"array of shape {arr.shape}",
                        f"pass a scalar or one batch size per update, shape ({T},)")
    arr = arr.astype(float)
    bad = ~np.isfinite(arr) | (arr != np.round(arr))
    if np.any(bad):
        t = int(np.argmax(bad))
        raise SpecError(
            f"batch_size[{t}]", float(arr[t]),
            "real SGD draws whole samples, so every m_t must be an integer; round the "
            "schedule (or use optctl.model.replay.loss_curve, which accepts fractional m_t)")
    if np.any(arr < 1):
        t = int(np.argmax(arr < 1))
        raise SpecError(f"batch_size[{t}]", int(arr[t]), "every m_t must be >= 1")
    return arr.astype(np.int64)


def _gradient(rng: np.random.Generator, delta: np.ndarray, sqrt_lam: np.ndarray,
              sigma_eff: float, mt: int) -> np.ndarray:
    """Minibatch gradients ``(1/m) Σ_i x_i (x_i·Δ − σ z_i)`` of ``n`` runs at once."""
    n, N = delta.shape
    x = rng.standard_normal((n, mt, N))
    x *= sqrt_lam  # x ~ N(0, diag λ)
    z = rng.standard_normal((n, mt))
    # residual x·w − y = x·Δ − σ z, since y = x·w* + σ z
    resid = (x @ delta[:, :, None])[:, :, 0] - sigma_eff * z
    return (resid[:, None, :] @ x)[:, 0, :] / mt


def _run_chunk(rng: np.random.Generator, n: int, sqrt_lam: np.ndarray, w_abs: np.ndarray,
               sigma_eff: float, eta: np.ndarray, m: np.ndarray,
               beta: np.ndarray | None = None) -> np.ndarray:
    """Excess losses ``(n, T + 1)`` of ``n`` independent runs (EMA momentum if ``beta``)."""
    lam = sqrt_lam**2
    T = eta.size
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n, w_abs.size))
    delta = -signs * w_abs  # student starts at w = 0, so Δ_0 = −w*
    out = np.empty((n, T + 1))
    out[:, 0] = (delta * delta) @ lam
    if beta is None:
        for t in range(T):
            delta -= eta[t] * _gradient(rng, delta, sqrt_lam, sigma_eff, int(m[t]))
            out[:, t + 1] = (delta * delta) @ lam
        return out
    # v_0 = β_0 g_0; then Δ_{t+1} = Δ_t − η_t v_t, v_{t+1} = (1 − β_t) v_t + β_t g_{t+1}.
    v = beta[0] * _gradient(rng, delta, sqrt_lam, sigma_eff, int(m[0]))
    for t in range(T):
        delta -= eta[t] * v
        out[:, t + 1] = (delta * delta) @ lam
        if t + 1 < T:
            g = _gradient(rng, delta, sqrt_lam, sigma_eff, int(m[t + 1]))
            v = (1.0 - beta[t]) * v + beta[t] * g
    return out


def simulate_sgd(spec: ProblemSpec, eta: np.ndarray | float,
                 batch_size: np.ndarray | float | None = None, *, n_runs: int = 1000,
                 seed: int = 0, chunk: int | None = None,
                 beta: np.ndarray | float | None = None) -> MonteCarloResult:
    """Run one-pass minibatch SGD ``n_runs`` times and average its excess loss.

    In the eigenbasis the features are ``x ~ N(0, diag λ)`` with ``λ_k = k^(−b)``, the
    teacher has ``w*_k = ±√c_{0,k}`` (an independent random sign per mode and run, so
    ``E[Δ_{0,k}²] = c_{0,k}`` as the recursion assumes), labels are
    ``y = w*·x + σ_eff z`` with ``z ~ N(0, 1)``, and the student starts at ``w = 0``.
    Each update draws a fresh batch of ``m_t`` samples and takes

        ``w ← w − η_t (1/m_t) Σ_i x_i (x_i·w − y_i)``,

    and the recorded loss is the population excess loss ``Σ_k λ_k Δ_{t,k}²`` of the
    error ``Δ = w − w*``, computed exactly. For Gaussian features its expectation is
    the ``L_t`` of Bordelon & Mori (arXiv:2602.04774), section 2 (MODEL.md §2).

    With ``spec.tail`` on, the teacher power beyond ``N`` features acts as independent
    Gaussian label noise, so ``σ_eff² = σ² + tail(N)`` and ``tail(N)`` is added to the
    reported loss, as in :func:`optctl.model.replay.replay`.

    With ``beta`` given, the runs use EMA momentum instead (MODEL.md §3): the velocity
    starts at ``v_0 = β_0 g_0`` and each update takes ``w ← w − η_t v_t`` followed by
    ``v_{t+1} = (1 − β_t) v_t + β_t g_{t+1}``, with ``g_{t+1}`` the gradient of a fresh
    batch of ``m_{t+1}`` samples at the new weights. Its expected loss is the ``L_t``
    of :func:`optctl.model.momentum.momentum_curve`.

    Args map to symbols as: ``eta`` → ``η_t`` (scalar or shape ``(T,)``),
    ``batch_size`` → ``m_t`` (integer scalar or integer array of shape ``(T,)``;
    defaults to ``spec.batch_size``), ``n_runs`` → the number of independent runs.
    Runs are simulated ``chunk`` at a time (default: as many as fit in about
    128 MiB of features); the same ``seed`` and ``chunk`` give identical results.

    ``stderr`` is meaningful only while the loss has a finite variance across runs.
    The minibatch noise is multiplicative, so with small ``m_t`` and large ``η_t`` the
    fourth moments of ``Δ`` can grow while the second moments contract (for the top
    mode, ``E(1 − η g²)⁴ > 1`` at ``m = 1, η = 0.5``); the per-run loss is then
    heavy-tailed, the mean converges slowly and the standard error underestimates it.

    Raises:
        SpecError: for a non-integer or non-positive batch size, a badly shaped or
            non-finite ``eta``, a ``beta`` outside ``[0, 1]``, ``n_runs < 2`` or ``chunk < 1``.
    """
    T = spec.T if np.ndim(eta) == 0 else int(np.size(eta))
    eta_t = _check_eta(eta, T)
    m_t = _check_batch_size(spec.batch_size if batch_size is None else batch_size, T)
    beta_t = None if beta is None else _check_beta(beta, T)
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 2:
        raise SpecError("n_runs", n_runs, "pass an integer >= 2 (a standard error needs two runs)")
    if chunk is None:
        chunk = max(1, _CHUNK_ELEMENTS // (int(m_t.max()) * spec.N))
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise SpecError("chunk", chunk, "pass a positive integer number of runs per chunk")

    return _simulate(spec, n_runs, seed, chunk, lambda rng, n, sl, wa, se: _run_chunk(
        rng, n, sl, wa, se, eta_t, m_t, beta_t))


def _simulate(spec: ProblemSpec, n_runs: int, seed: int, chunk: int,
              run: Any) -> MonteCarloResult:
    """Average ``run(rng, n, sqrt_lam, w_abs, sigma_eff) -> (n, T + 1)`` losses over chunks."""
    sp = spectrum(spec)
    sqrt_lam, w_abs, sigma_eff = np.sqrt(sp.lam), np.sqrt(sp.c0), float(np.sqrt(sp.sigma2))
    sizes = [min(chunk, n_runs - s) for s in range(0, n_runs, chunk)]
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(len(sizes))]

    # Merge per-chunk means and centred sums of squares (Chan et al.), which
    # avoids the cancellation of a running sum of squares.
    count, mean, m2 = 0, 0.0, 0.0
    for rng, n in zip(rngs, sizes, strict=False):
        losses = run(rng, n, sqrt_lam, w_abs, sigma_eff)
        c_mean = losses.mean(axis=0)
        c_m2 = ((losses - c_mean) ** 2).sum(axis=0)
        diff = c_mean - mean
        total = count + n
        mean = mean + diff * (n / total)
        m2 = m2 + c_m2 + diff**2 * (count * n / total)
        count = total
    stderr = np.sqrt(np.asarray(m2) / (count - 1) / count)
    return MonteCarloResult(loss=np.asarray(mean) + sp.tail, stderr=stderr, n_runs=count,
                            tail=sp.tail, seed=seed)


def _run_family_chunk(rng: np.random.Generator, n: int, sqrt_lam: np.ndarray,
                      w_abs: np.ndarray, sigma_eff: float, opt: LinearOptimizer,
                      m: int) -> np.ndarray:
    """Excess losses ``(n, T + 1)`` of ``n`` runs of a momentum family, read at its output."""
    lam = sqrt_lam**2
    signs = rng.choice(np.array([-1.0, 1.0]), size=(n, w_abs.size))
    s0 = -signs * w_abs
    s1 = s0.copy() if opt.start == "copy" else np.zeros_like(s0)
    out = np.empty((n, opt.T + 1))

    def grad_at(p: np.ndarray) -> np.ndarray:
        return _gradient(rng, p, sqrt_lam, sigma_eff, m)

    out[:, 0] = ((s0 if opt.readout == 0 else s1) ** 2) @ lam
    for t in range(opt.T):
        s0, s1 = simulate_iterates(opt, t, (s0, s1), grad_at)
        out[:, t + 1] = ((s0 if opt.readout == 0 else s1) ** 2) @ lam
    return out


def simulate_family(spec: ProblemSpec, opt: LinearOptimizer, *, n_runs: int = 1000,
                    seed: int = 0, chunk: int | None = None) -> MonteCarloResult:
    """Run a momentum family of :mod:`optctl.model.families` with real minibatches.

    The same sampled model as :func:`simulate_sgd` (``x ~ N(0, diag λ)``, random-sign
    teacher, label noise ``σ_eff``, student at ``w = 0``), a fresh batch of
    ``spec.batch_size`` samples per gradient, and the optimizer's update applied as
    its paper writes it (:func:`optctl.model.families.simulate_iterates`). The
    recorded loss is ``Σ_k λ_k e_k²`` of the optimizer's output (the iterate for
    generalised momentum, the average ``x`` for Schedule-Free); its expectation is
    :func:`optctl.model.families.family_curve`. ``opt`` must hold one candidate
    (scalar hyperparameters).

    Raises:
        SpecError: for several candidates in ``opt``, a fractional batch size,
            ``n_runs < 2`` or ``chunk < 1``.
    """
    if opt.A.ndim != 3:
        raise SpecError("opt", f"{opt.A.shape[3:]} candidates",
                        "Monte Carlo runs one hyperparameter setting: pass scalars to the constructor")
    m = int(_check_batch_size(spec.batch_size, 1)[0])
    if isinstance(n_runs, bool) or not isinstance(n_runs, (int, np.integer)) or n_runs < 2:
        raise SpecError("n_runs", n_runs, "pass an integer >= 2 (a standard error needs two runs)")
    if chunk is None:
        chunk = max(1, _CHUNK_ELEMENTS // (m * spec.N))
    if isinstance(chunk, bool) or not isinstance(chunk, (int, np.integer)) or chunk < 1:
        raise SpecError("chunk", chunk, "pass a positive integer number of runs per chunk")
    return _simulate(spec, n_runs, seed, chunk, lambda rng, n, sl, wa, se: _run_family_chunk(
        rng, n, sl, wa, se, opt, m))
