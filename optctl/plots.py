"""Figures. Every function takes results and returns a matplotlib Figure."""

from __future__ import annotations

from collections.abc import Mapping

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

_OPT_STYLE = {"color": "black", "lw": 2.2, "zorder": 5}


def _thin(n: int, max_points: int = 4000) -> np.ndarray:
    """Indices ``0..n-1`` thinned log-uniformly, keeping both ends dense."""
    if n <= max_points:
        return np.arange(n)
    head = np.unique(np.geomspace(1, n, max_points // 2).astype(int) - 1)
    tail = n - 1 - head
    return np.unique(np.concatenate([head, tail, np.linspace(0, n - 1, max_points // 4).astype(int)]))


def plot_schedule(eta: np.ndarray, baselines: Mapping[str, np.ndarray], *, title: str = "") -> Figure:
    """Learning rate against step: the optimum and every tuned baseline.

    Left: linear axes. Right: the same against the steps left ``T − t`` on log axes,
    where an easy-phase decay ``(1 − t/T)^δ`` is a straight line and a hard-phase
    annealing window is easy to read.
    """
    T = eta.size
    idx = _thin(T)
    t = np.arange(T)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for name, e in baselines.items():
        ax0.plot(t[idx], e[idx], lw=1.2, label=name)
        ax1.loglog((T - t)[idx], np.maximum(e[idx], 1e-300), lw=1.2, label=name)
    ax0.plot(t[idx], eta[idx], label="optimal", **_OPT_STYLE)
    ax1.loglog((T - t)[idx], np.maximum(eta[idx], 1e-300), label="optimal", **_OPT_STYLE)
    ax0.set(xlabel="step t", ylabel="learning rate η(t)")
    ax1.set(xlabel="steps left T − t", ylabel="η(t)")
    ax1.invert_xaxis()
    ax0.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_loss(loss: np.ndarray, baselines: Mapping[str, np.ndarray], *, bias: np.ndarray | None = None,
              variance: np.ndarray | None = None, title: str = "") -> Figure:
    """Replayed loss ``L_t`` on log-log axes: the optimum (with its bias/variance split) and baselines."""
    idx = _thin(loss.size)
    t = np.arange(loss.size) + 1.0
    fig, ax = plt.subplots(figsize=(6.5, 4.5), constrained_layout=True)
    for name, curve in baselines.items():
        ax.loglog(t[idx], curve[idx], lw=1.2, label=f"{name}  L_T={curve[-1]:.4g}")
    ax.loglog(t[idx], loss[idx], label=f"optimal  L_T={loss[-1]:.4g}", **_OPT_STYLE)
    if bias is not None and variance is not None:
        ax.loglog(t[idx], bias[idx], "k--", lw=1, label="optimal: bias")
        ax.loglog(t[idx], variance[idx], "k:", lw=1, label="optimal: variance")
    ax.set(xlabel="step t + 1", ylabel="excess loss L_t (replayed)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def save(fig: Figure, path: str) -> None:
    fig.savefig(path, dpi=130)
    plt.close(fig)
