"""Figures. Every function takes results and returns a matplotlib Figure; :func:`save` writes one.

The only module that imports matplotlib. It builds figures with the object-oriented
API (:class:`matplotlib.figure.Figure`), not pyplot, so it needs no GUI backend and
leaves matplotlib's global state (the backend, the figure registry) alone.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends import backend_agg  # noqa: F401  (savefig's PNG backend, loaded with the module)
from matplotlib.figure import Figure

from optctl import theory

_OPT_STYLE = {"color": "black", "lw": 2.2, "zorder": 5}


def _thin(n: int, max_points: int = 4000) -> np.ndarray:
    """Indices ``0..n-1`` thinned log-uniformly, keeping both ends dense."""
    if n <= max_points:
        return np.arange(n)
    head = np.unique(np.geomspace(1, n, max_points // 2).astype(int) - 1)
    tail = n - 1 - head
    return np.unique(np.concatenate([head, tail, np.linspace(0, n - 1, max_points // 4).astype(int)]))


def merge_equal(curves: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Curves that are equal drawn once, under their names joined (``"linear_decay = wsd"``):
    a tuned WSD with no stable phase is linear decay, and a second line on top of the first
    would be listed in the legend but could not be seen."""
    groups: list[tuple[list[str], np.ndarray]] = []
    for name, curve in curves.items():
        same = next((g for g in groups if g[1].shape == curve.shape and np.array_equal(g[1], curve)), None)
        if same is None:
            groups.append(([name], curve))
        else:
            same[0].append(name)
    return {" = ".join(names): curve for names, curve in groups}


def plot_schedule(eta: np.ndarray, baselines: Mapping[str, np.ndarray], *, title: str = "",
                  label: str = "optimal") -> Figure:
    """Learning rate against step: the optimum and every tuned baseline. ``label`` names the
    solved schedule (``ScheduleResult.label``: not "optimal" when the solve did not converge).

    Left: linear axes. Right: the same against the steps left ``T − t`` on log axes,
    where an easy-phase decay ``(1 − t/T)^δ`` is a straight line and a hard-phase
    annealing window is easy to read.
    """
    T = eta.size
    idx = _thin(T)
    t = np.arange(T)
    fig = _figure((11, 4))
    ax0, ax1 = fig.subplots(1, 2)
    for name, e in merge_equal(baselines).items():
        ax0.plot(t[idx], e[idx], lw=1.2, label=name)
        ax1.loglog((T - t)[idx], np.maximum(e[idx], 1e-300), lw=1.2, label=name)
    ax0.plot(t[idx], eta[idx], label=label, **_OPT_STYLE)
    ax1.loglog((T - t)[idx], np.maximum(eta[idx], 1e-300), label=label, **_OPT_STYLE)
    ax0.set(xlabel="step t", ylabel="learning rate η(t)")
    ax1.set(xlabel="steps left T − t", ylabel="η(t)")
    ax1.invert_xaxis()
    # one legend for both panels, outside them: inside it would cover the curves
    handles, labels = ax0.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right center", fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_loss(loss: np.ndarray, baselines: Mapping[str, np.ndarray], *, bias: np.ndarray | None = None,
              variance: np.ndarray | None = None, title: str = "", label: str = "optimal") -> Figure:
    """Replayed loss ``L_t`` on log-log axes: the optimum (with its bias/variance split) and
    baselines; ``label`` names the solved schedule (as in :func:`plot_schedule`)."""
    idx = _thin(loss.size)
    t = np.arange(loss.size) + 1.0
    fig = _figure((6.5, 4.5))
    ax = fig.subplots()
    for name, curve in merge_equal(baselines).items():
        ax.loglog(t[idx], curve[idx], lw=1.2, label=f"{name}  L_T={curve[-1]:.4g}")
    ax.loglog(t[idx], loss[idx], label=f"{label}  L_T={loss[-1]:.4g}", **_OPT_STYLE)
    if bias is not None and variance is not None:
        ax.loglog(t[idx], bias[idx], "k--", lw=1, label=f"{label}: bias")
        ax.loglog(t[idx], variance[idx], "k:", lw=1, label=f"{label}: variance")
    ax.set(xlabel="step t + 1", ylabel="excess loss L_t (replayed)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    return fig


def _figure(figsize: tuple[float, float]) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def save(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Write ``fig`` as PNG to ``path`` atomically (a temporary file, then a rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=130)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# --- sweeps: horizons, exponents, phase diagrams, compute frontiers ----------------------

_SERIES_COLORS = {"optimal": "black", "constant": "tab:blue", "power_law": "tab:orange",
                  "linear_decay": "tab:green", "cosine": "tab:purple", "wsd": "tab:red"}


def _horizon_colors(n: int) -> list[tuple[float, float, float, float]]:
    cmap = matplotlib.colormaps["viridis"]
    return [cmap(x) for x in np.linspace(0.0, 0.85, max(n, 1))]


def plot_schedule_family(horizons: Sequence[int], etas: Sequence[np.ndarray], *, a: float, b: float,
                         eta_max: float, title: str = "", law: Sequence[np.ndarray] | None = None) -> Figure:
    """Optimal schedules of one model over horizons (MODEL.md §5).

    Left: ``η`` against ``t/T``. Right, easy phase (``b < a``): the collapse
    ``η T^ξ`` (``ξ = 1 − b/a``) against the fraction left ``1 − t/T``, with the
    reference decay ``(1 − t/T)^(2b−1)``; hard phase: ``η`` against the steps left
    ``T − t``, where the annealing window stays put in steps while its fraction of
    ``T`` shrinks. ``law``: the finite-horizon law's schedule at each horizon
    (:mod:`optctl.solver.law`), drawn dashed over the solved one.
    """
    easy = theory.phase(a, b) == "easy"
    xi = theory.xi(a, b)
    fig = _figure((11, 4.2))
    ax0, ax1 = fig.subplots(1, 2)
    cols = _horizon_colors(len(etas))
    curves = [(e, col, "-", 1.4) for e, col in zip(etas, cols, strict=True)]
    curves += [(e, col, "--", 1.0) for e, col in zip(law or [], cols, strict=False)]
    for k, (eta, col, ls, lw) in enumerate(curves):
        T = eta.size
        idx = _thin(eta.size)
        u = (np.arange(eta.size) + 0.5) / eta.size
        label = f"T = {T:,}" if k < len(etas) else ("finite-horizon law (dashed)" if k == len(etas) else None)
        ax0.semilogy(u[idx], np.maximum(eta[idx], 1e-300), color=col, ls=ls, lw=lw, label=label)
        if easy:
            ax1.loglog((1 - u)[idx], np.maximum(eta[idx], 1e-300) * T ** xi, color=col, ls=ls, lw=lw)
        else:
            ax1.loglog((T - np.arange(eta.size))[idx], np.maximum(eta[idx], 1e-300), color=col, ls=ls, lw=lw)
    ax0.axhline(eta_max, color="gray", ls=":", lw=1)
    ax0.set(xlabel="t / T", ylabel="optimal η(t)")
    ax0.legend(fontsize=8)
    if easy:
        # The reference decay is drawn through the collapsed curves at 1 − t/T = 0.2,
        # inside the decaying part, so that slopes can be compared by eye.
        x = np.geomspace(1e-2, 1, 50)
        top = max(float(np.max(e) * T ** xi) for T, e in zip(horizons, etas, strict=True))
        anchor = float(np.median([e[int(0.8 * e.size)] * T ** xi for T, e in zip(horizons, etas, strict=True)]))
        ax1.loglog(x, anchor * (x / 0.2) ** (2 * b - 1), "k--", lw=1,
                   label=f"(1 − t/T)^(2b−1), 2b−1 = {2 * b - 1:g} (MODEL.md §5)")
        ax1.set(xlabel="1 − t/T", ylabel=f"η(t) · T^ξ,  ξ = 1 − b/a = {xi:.3f}",
                ylim=(top * 1e-4, top * 3))
        ax1.legend(fontsize=8)
    else:
        ax1.set(xlabel="steps left T − t", ylabel="optimal η(t)")
        ax1.invert_xaxis()
    fig.suptitle(title or f"a = {a:g}, b = {b:g} ({'easy' if easy else 'hard'} phase)")
    return fig


def plot_constant_rates(curves: Mapping[int, tuple[np.ndarray, np.ndarray]], best: tuple[np.ndarray, np.ndarray], *,
                        a: float, b: float, eta_max: float, title: str = "") -> Figure:
    """The paper's figure 1(b): the final loss of constant rates at several horizons.

    Left: ``L_T`` against the constant ``η`` for each ``T`` in ``curves`` (``T → (η, L_T)``),
    the best marked. Right: the best constant ``η*(T)`` of ``best`` (``(T, η*)``, the tuned
    baselines) with the slope ``−(a−1)/(a+b−1)`` through its last point below the bound.
    """
    fig = _figure((11, 4.3))
    ax0, ax1 = fig.subplots(1, 2)
    for (T, (eta, L)), col in zip(sorted(curves.items()), _horizon_colors(len(curves)), strict=True):
        ax0.loglog(eta, L, "-", color=col, lw=1.4, label=f"T = {T:,}")
        i = int(np.argmin(L))
        ax0.loglog(eta[i], L[i], "o", color=col, ms=5)
    ax0.axvline(eta_max, color="gray", ls=":", lw=1)
    ax0.set(xlabel="constant learning rate η", ylabel="final excess loss L_T")
    ax0.legend(fontsize=8)
    Ts, eta_best = (np.asarray(x, float) for x in best)
    exp = -theory.zeta_constant(a, b)
    free = eta_best < 0.999 * eta_max
    ax1.loglog(Ts, eta_best, "o", color="tab:blue", ms=4, label="best constant η*(T)")
    if free.any():
        T0, e0 = Ts[free][-1], eta_best[free][-1]
        ax1.loglog(Ts[free], e0 * (Ts[free] / T0) ** exp, ":", color="gray",
                   label=f"T^{exp:.3f}: −(a−1)/(a+b−1)")
        if free.sum() > 2:
            last = slice(-3, None)
            slope = np.polyfit(np.log(Ts[free][last]), np.log(eta_best[free][last]), 1)[0]
            ax1.set_title(f"fitted slope over the last three: {slope:.3f}")
    ax1.axhline(eta_max, color="gray", ls=":", lw=1)
    ax1.set(xlabel="horizon T", ylabel="best constant η*")
    ax1.legend(fontsize=8)
    fig.suptitle(title or f"a = {a:g}, b = {b:g} ({theory.phase(a, b)} phase): constant learning rates")
    return fig


def plot_decay_window(solved: Mapping[str, Sequence[float]], law: Mapping[str, Sequence[float]], *,
                      a: float, b: float, title: str = "") -> Figure:
    """The hard phase's decay window and last rate against the horizon.

    ``solved`` and ``law`` map ``T``, ``window`` (updates below the bound at the end) and
    ``last`` (the last update's rate) to one value per horizon: points for the solved
    optima, lines for the finite-horizon law, dotted the asymptotic slopes
    ``(a+b−1)/(2b−1)`` and ``−(a+b−1)/(2b)`` (:mod:`optctl.theory`) through the law's last
    point.
    """
    fig = _figure((11, 4.3))
    ax0, ax1 = fig.subplots(1, 2)
    w_exp, r_exp = theory.window_exponent(a, b), -theory.final_rate_exponent(a, b)
    for ax, key, exp, name in ((ax0, "window", w_exp, "decay window T − t_s"),
                               (ax1, "last", r_exp, "last rate η_T")):
        T_law, y_law = np.asarray(law["T"], float), np.asarray(law[key], float)
        ax.loglog(solved["T"], solved[key], "o", color="black", ms=4, label="solved optimum")
        ax.loglog(T_law, y_law, "-", color="tab:red", lw=1.5, label="finite-horizon law")
        ax.loglog(T_law, y_law[-1] * (T_law / T_law[-1]) ** exp, ":", color="gray", lw=1.2,
                  label=f"asymptote T^{exp:+.3f}")
        slopes = np.diff(np.log(y_law)) / np.diff(np.log(T_law))
        ax.set(xlabel="horizon T", ylabel=name,
               title=f"law's local slope {slopes[0]:.3f} → {slopes[-1]:.3f}")
        ax.legend(fontsize=8)
    fig.suptitle(title or f"a = {a:g}, b = {b:g} (hard phase): the decay window")
    return fig


def plot_loss_family(horizons: Sequence[int], losses: Sequence[np.ndarray], *, title: str = "",
                     baseline: Mapping[str, Sequence[np.ndarray]] | None = None) -> Figure:
    """Replayed loss curves ``L_t`` of the optimum at each horizon (and optional baselines, dashed)."""
    fig = _figure((6.5, 4.5))
    ax = fig.subplots()
    cols = _horizon_colors(len(losses))
    for T, L, col in zip(horizons, losses, cols, strict=True):
        idx = _thin(L.size)
        ax.loglog(np.arange(L.size)[idx] + 1.0, L[idx], color=col, lw=1.5, label=f"optimal, T = {T:,}")
    for name, curves in (baseline or {}).items():
        for k, (L, col) in enumerate(zip(curves, cols, strict=True)):
            idx = _thin(L.size)
            ax.loglog(np.arange(L.size)[idx] + 1.0, L[idx], color=col, lw=1, ls="--",
                      label=f"best {name}" if k == len(curves) - 1 else None)
    ax.set(xlabel="step t + 1", ylabel="excess loss L_t")
    ax.legend(fontsize=7)
    if title:
        ax.set_title(title)
    return fig


def plot_boundary_windows(rows: Sequence[Mapping[str, Any]], *, boundary: float) -> Figure:
    """Near the phase boundary: the local exponent ``p`` of the decay window per decade of
    ``T`` (solved optimum solid, finite-horizon law dashed), its value as ``T → ∞``
    (dotted, at the right edge), the classifier's boundary ``p_0`` and ``p = 1``."""
    fig = _figure((7.5, 4.8))
    ax = fig.subplots()
    cmap = matplotlib.colormaps["coolwarm"]
    bs = [float(r["b"]) for r in rows]
    lo, hi = min(bs), max(bs)
    for r in rows:
        col = cmap(0.0 if hi == lo else (float(r["b"]) - lo) / (hi - lo))
        T = np.asarray(r["T"], float)
        mid = np.sqrt(T[:-1] * T[1:])
        ax.semilogx(mid, r["local_p"], "o-", color=col, lw=1.5,
                    label=f"b = {r['b']:g} ({r['theory_phase']}), T → ∞: {r['p_asymptotic']:.3f}")
        ax.semilogx(mid, r["law_local_p"], "--", color=col, lw=1)
        ax.plot([T[-1] * 3], [r["p_asymptotic"]], "<", color=col, ms=7)
    ax.axhline(1.0, color="black", lw=1, ls=":", label="p = 1 (the asymptotic boundary)")
    ax.axhline(boundary, color="gray", lw=1, label=f"classifier's p_0 = {boundary}")
    ax.set(xlabel="horizon T (geometric midpoint of a decade)", ylabel="local window exponent p",
           title=f"a = {rows[0]['a']:g}: solved (solid), law (dashed), T → ∞ (◀)")
    ax.legend(fontsize=7)
    return fig


def plot_exponents(study: Any, *, title: str = "") -> Figure:
    """``L_T`` against ``T`` with fitted and theory power laws; local slopes against ``T``.

    ``study`` is an :class:`optctl.study.HorizonStudy`. Solid lines: the fit over the
    largest horizons; dotted: the theory exponent of MODEL.md §5 through the last point.
    Right: local slopes ``−Δ log L_T / Δ log T`` with the theory values dashed, so that
    pre-asymptotic drift is visible.
    """
    fig = _figure((11, 4.3))
    ax0, ax1 = fig.subplots(1, 2)
    for name, f in study.fits.items():
        col = _SERIES_COLORS.get(name, "gray")
        ax0.loglog(f.x, f.y, "o", color=col, ms=4)
        xs = np.geomspace(f.fit_range[0], f.fit_range[1], 20)
        theory_txt = "" if f.theory is None else f" (theory {f.theory:.3f})"
        ax0.loglog(xs, f.predict(xs), "-", color=col, lw=1.5, label=f"{name}: ζ = {f.exponent:.3f}{theory_txt}")
        if f.theory is not None:
            ax0.loglog(f.x, f.y[-1] * (f.x / f.x[-1]) ** (-f.theory), ":", color=col, lw=1)
            ax1.axhline(f.theory, color=col, ls="--", lw=1)
        ax1.semilogx(f.local_x, f.local_slopes, "o-", color=col, ms=4, label=name)
    ax0.set(xlabel="horizon T", ylabel="final excess loss L_T")
    ax0.legend(fontsize=7)
    ax1.set(xlabel="horizon T (geometric midpoint)", ylabel="local exponent −Δlog L_T / Δlog T")
    ax1.legend(fontsize=7)
    fig.suptitle(title or f"a = {study.spec.a:g}, b = {study.spec.b:g} ({study.spec.phase} phase)")
    return fig


def plot_bias_variance(cases: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]], *,
                       T: int) -> Figure:
    """Bias and variance parts of the loss, one panel per case (e.g. easy, hard).

    ``cases[case][schedule] = (bias, variance)`` curves (``T + 1`` values). Solid: bias,
    dashed: variance.
    """
    fig = _figure((5.5 * len(cases), 4.3))
    axes = fig.subplots(1, len(cases), squeeze=False)
    for ax, (case, curves) in zip(axes[0], cases.items(), strict=True):
        for name, (bias, var) in curves.items():
            col = _SERIES_COLORS.get(name, "gray")
            idx = _thin(bias.size)
            t = np.arange(bias.size)[idx] + 1.0
            ax.loglog(t, bias[idx], "-", color=col, lw=1.5, label=f"{name}: bias (L_T part {bias[-1]:.2e})")
            ax.loglog(t, np.maximum(var[idx], 1e-300), "--", color=col, lw=1.5,
                      label=f"{name}: variance ({var[-1]:.2e})")
        low = min(min(float(c[0][-1]), float(c[1][-1])) for c in curves.values())
        high = max(float(c[0][0]) for c in curves.values())
        ax.set(xlabel="step t + 1", ylabel="loss part", title=f"{case}, T = {T:,}",
               ylim=(low / 10, high * 3))
        ax.legend(fontsize=7)
    return fig


def plot_phase_diagram(pd: Any, *, title: str = "") -> Figure:
    """Maps over ``(a, b)`` of an :class:`optctl.study.PhaseDiagram`.

    Label (easy/hard/unsure, shaded by confidence, crosses where it contradicts the
    theory), the optimum's loss exponent ``ζ`` and mean-learning-rate exponent ``ξ``
    with their theory contours, and the gain over the best tuned baseline. The theory
    boundary ``a = b`` is drawn on every map.
    """
    from matplotlib.colors import ListedColormap

    A, B = np.meshgrid(pd.a, pd.b, indexing="ij")
    fig = _figure((11, 9))
    axes = fig.subplots(2, 2)
    code = np.select([pd.label == "easy", pd.label == "hard", pd.label == "unsure"], [0.0, 1.0, 0.5],
                     default=np.nan).astype(float)
    ax = axes[0, 0]
    cmap = ListedColormap(["tab:blue", "lightgray", "tab:red"])
    ax.pcolormesh(pd.a, pd.b, code.T, cmap=cmap, vmin=-0.25, vmax=1.25, shading="nearest",
                  alpha=0.85)
    for i, j in zip(*np.nonzero(pd.label != ""), strict=True):
        c = float(pd.confidence[i, j])
        ax.text(pd.a[i], pd.b[j], "1" if c >= 0.995 else f"{c:.2f}".lstrip("0"),
                ha="center", va="center", fontsize=6)
        if pd.label[i, j] not in ("unsure", pd.theory[i, j]):
            ax.plot(pd.a[i], pd.b[j], "kx", ms=10, mew=2)
    ag = pd.agreement()
    ax.set_title(f"label (blue easy, red hard, gray unsure; text = confidence)\n"
                 f"|a−b| ≥ {ag['band']}: {ag['far']['agree']}/{ag['far']['points']} agree, "
                 f"{ag['far']['unsure']} unsure, {ag['far']['wrong']} wrong; "
                 f"near: {ag['near']['unsure']}/{ag['near']['points']} unsure, "
                 f"{ag['near']['wrong']} wrong", fontsize=9)
    panels = [(axes[0, 1], pd.zeta, pd.zeta_theory, "loss exponent ζ of the optimum (fit over all T)"),
              (axes[1, 0], pd.xi, pd.xi_theory, "exponent ξ of the optimum's mean η (theory max(0, 1−b/a))")]
    for ax, val, th, name in panels:
        vmin, vmax = float(np.nanmin(th)), float(np.nanmax(th))
        m = ax.pcolormesh(pd.a, pd.b, val.T, shading="nearest", cmap="viridis", vmin=vmin, vmax=vmax)
        fig.colorbar(m, ax=ax)
        fine_a = np.linspace(pd.a.min(), pd.a.max(), 200)
        fine_b = np.linspace(pd.b.min(), pd.b.max(), 200)
        FA, FB = np.meshgrid(fine_a, fine_b, indexing="ij")
        if th is pd.zeta_theory:
            fth = np.minimum((FA - 1) / FA, (FA - 1) / FB)
        else:
            fth = np.maximum(0.0, 1 - FB / FA)
        if vmax > vmin:  # one point (or a constant theory value) has no contours to draw
            cs = ax.contour(FA, FB, fth, levels=np.linspace(vmin, vmax, 7)[1:-1], colors="white",
                            linewidths=1, linestyles="--")
            ax.clabel(cs, fontsize=7, fmt="%.2f")
        fi, fj = np.nonzero(pd.finite_n)
        ax.plot(pd.a[fi], pd.b[fj], "w.", ms=4)
        ax.set_title(f"{name}\n(dashed: theory contours; dots: finite N at the largest T)", fontsize=9)
    ax = axes[1, 1]
    m = ax.pcolormesh(pd.a, pd.b, 100 * pd.gain.T, shading="nearest", cmap="magma")
    fig.colorbar(m, ax=ax, label="%")
    ax.set_title(f"gain of the optimum over the best tuned baseline at T = {pd.gain_T:,}" if pd.gain_T
                 else "gain over the best baseline (no baselines)", fontsize=9)
    for ax in axes.ravel():
        ax.axline((1.0, 1.0), slope=1.0, color="white", lw=2.5)
        ax.axline((1.0, 1.0), slope=1.0, color="black", lw=1)
        ax.set(xlabel="task power a", ylabel="spectral exponent b")
    fig.suptitle(title or "phase diagram: easy iff b < a (below the line)")
    return fig


def plot_compute_frontier(studies: Sequence[Any], *, title: str = "") -> Figure:
    """Loss against compute ``C = N T`` for every ``N`` and the frontier (one panel per case)."""
    fig = _figure((5.8 * len(studies), 4.5))
    axes = fig.subplots(1, len(studies), squeeze=False)
    for ax, st in zip(axes[0], studies, strict=True):
        sizes = np.unique(st.N)
        for n, col in zip(sizes, _horizon_colors(sizes.size), strict=True):
            sel = st.N == n
            order = np.argsort(st.T[sel])
            ax.loglog((st.N * st.T)[sel][order], st.loss[sel][order], "o-", color=col, ms=3, lw=1,
                      label=f"N = {int(n)}")
        fr = st.frontier
        ax.loglog(fr.compute, fr.loss, "k-", lw=2.5, alpha=0.5, label="frontier min_N L")
        if fr.fit is not None:
            xs = np.geomspace(fr.fit.fit_range[0], fr.fit.fit_range[1], 20)
            ax.loglog(xs, fr.fit.predict(xs), "k--", lw=1.5,
                      label=f"fit: L ∝ C^(−{fr.fit.exponent:.3f})")
            ax.loglog(xs, fr.fit.predict(xs[-1]) * (xs / xs[-1]) ** (-st.theory), "r:", lw=1.5,
                      label=f"balance estimate C^(−{st.theory:.3f})")
        ax.set(xlabel="compute C = N T", ylabel="final loss L_T (tail included)",
               title=f"a = {st.a:g}, b = {st.b:g} ({'easy' if st.b < st.a else 'hard'} phase)")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_law_frontier(fronts: Sequence[tuple[str, float, float, Any, float, np.ndarray, np.ndarray]]) -> Figure:
    """The compute-optimal frontier of the finite-horizon law over ``N`` (left: ``L*`` against
    ``C = N T`` with the fitted and theory slopes; right: the local slope along the
    interior of the frontier against ``C``, theory dashed). ``fronts``: (name, a, b,
    :class:`~optctl.analysis.scaling.Frontier`, theory ν, and the slope per decade of ``C``
    at the decades' midpoints)."""
    fig = _figure((12, 4.5))
    ax0, ax1 = fig.subplots(1, 2)
    for (_name, a, b, fr, nu, cx, sl), col in zip(fronts, ("tab:blue", "tab:red", "tab:green"), strict=False):
        ax0.loglog(fr.compute, fr.loss, "-", color=col, lw=1.5, label=f"a = {a:g}, b = {b:g}")
        ins = fr.interior
        ax0.loglog(fr.compute[ins], fr.loss[ins], "o", color=col, ms=3)
        if fr.fit is not None:
            c = fr.fit.x
            ax0.loglog(c, fr.fit.prefactor * c ** (-fr.fit.exponent), "--", color=col, lw=1,
                       label=f"fit ν = {fr.fit.exponent:.3f} (theory {nu:.3f})")
        ax1.semilogx(cx, sl, "o-", color=col, label=f"a = {a:g}, b = {b:g}")
        ax1.axhline(nu, color=col, ls="--", lw=1)
    ax0.set(xlabel="compute C = N T", ylabel="L* (frontier over N)", title="the law's compute frontier, N ≤ 16,384")
    ax0.legend(fontsize=7)
    ax1.set(xlabel="compute C", ylabel="slope −d log L*/d log C per decade", title="local slopes per decade of C (theory dashed)")
    ax1.legend(fontsize=7)
    return fig


def plot_sweep_timing(finish: np.ndarray, total_s: float, *, title: str = "") -> Figure:
    """Points finished against wall time (a benchmark figure)."""
    fig = _figure((6, 4))
    ax = fig.subplots()
    f = np.sort(np.asarray(finish, dtype=float))
    ax.step(f, np.arange(1, f.size + 1), where="post", color="black")
    ax.axvline(total_s, color="tab:red", ls="--", label=f"total {total_s:.0f} s")
    ax.axvline(600, color="gray", ls=":", label="10 min budget")
    ax.set(xlabel="wall time since start (s)", ylabel="points finished")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    return fig


# --- calibration ------------------------------------------------------------------------


def plot_fit(curves: Mapping[str, tuple[np.ndarray, np.ndarray, np.ndarray]], samples: np.ndarray,
             point: tuple[float, float], *, title: str = "",
             truth: tuple[float, float] | None = None) -> Figure:
    """Measured vs fitted loss curves (left) and the bootstrap cloud of ``(a, b)`` (right).

    ``curves`` maps a run name to ``(steps, measured, predicted)`` where ``predicted`` has
    one value per step ``0..T``; ``samples`` are bootstrap fits (columns ``a, b`` first),
    ``point`` the best fit's ``(a, b)``. The dashed line is the phase boundary ``b = a``.
    """
    fig = _figure((11.5, 4.4))
    ax0, ax1 = fig.subplots(1, 2)
    for i, (name, (steps, meas, pred)) in enumerate(curves.items()):
        color = matplotlib.colormaps["tab10"](i % 10)
        ax0.loglog(steps + 1.0, meas, ".", ms=3, color=color, alpha=0.6)
        t = np.arange(pred.size) + 1.0
        idx = _thin(pred.size)
        ax0.loglog(t[idx], pred[idx], "-", lw=1.4, color=color, label=name)
    ax0.set(xlabel="step + 1", ylabel="loss", title="measured (dots) vs fitted (lines)")
    ax0.legend(fontsize=8)
    if samples.shape[0]:
        ax1.plot(samples[:, 0], samples[:, 1], ".", color="tab:blue", alpha=0.5, label="bootstrap")
    ax1.plot(*point, "k*", ms=12, label="best fit")
    if truth is not None:
        ax1.plot(*truth, "r+", ms=14, mew=2, label="truth")
    lo = min(ax1.get_xlim()[0], ax1.get_ylim()[0])
    hi = max(ax1.get_xlim()[1], ax1.get_ylim()[1])
    ax1.plot([lo, hi], [lo, hi], "k--", lw=1, label="b = a (easy below, hard above)")
    ax1.set(xlabel="a (task power)", ylabel="b (spectral decay)", title="fitted exponents")
    ax1.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_momentum_study(records: Sequence[Mapping[str, Any]], summary: Mapping[str, Any], *,
                        title: str = "") -> Figure:
    """Figure 5 of Bordelon & Mori (arXiv:2602.04774): ``L_T`` of optimal SGD and optimal
    ``(η, β)`` against ``T`` with theory slopes, and ``β(t)``, ``η(t)`` against ``t/T``."""
    recs = sorted(records, key=lambda r: r["T"])
    T = np.array([r["T"] for r in recs], dtype=float)
    fig = _figure((15, 4.3))
    ax0, ax1, ax2 = fig.subplots(1, 3)
    ax0.loglog(T, summary["sgd_loss"], "o-", color="tab:blue",
               label=f"optimal SGD, fit ζ = {summary['sgd_exponent']:.3f}")
    ax0.loglog(T, summary["momentum_loss"], "s-", color="black",
               label=f"optimal (η, β), fit ζ = {summary['momentum_exponent']:.3f}")
    anchor = summary["sgd_loss"][0]
    for zeta, name, style in ((summary["theory_hard_sgd"], "(a−1)/b", ":"),
                              (summary["theory_hard_momentum"], "1.5(a−1)/b", "--"),
                              (summary["theory_easy"], "1 − 1/a", "-.")):
        ax0.loglog(T, anchor * (T / T[0]) ** (-zeta), style, color="gray", lw=1,
                   label=f"T^-({name}) = T^-{zeta:.3f}")
    ax0.set(xlabel="horizon T", ylabel="final loss L_T")
    ax0.legend(fontsize=7)
    colors = _horizon_colors(len(recs))
    for r, c in zip(recs, colors, strict=True):
        u = (np.arange(r["T"]) + 0.5) / r["T"]
        ax1.semilogy(u, r["beta"], color=c, lw=1.2, label=f"T = {r['T']}")
        ax2.semilogy(u, r["eta"], color=c, lw=1.2)
    ax1.set(xlabel="t / T", ylabel="β(t)  (1 = plain SGD)")
    ax2.set(xlabel="t / T", ylabel="η(t)")
    ax1.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig


def plot_momentum_curves(horizons: Sequence[int], momentum: Sequence[np.ndarray], sgd: Sequence[np.ndarray],
                         etas: Sequence[np.ndarray], betas: Sequence[np.ndarray], *, title: str = "",
                         momentum_capped: Sequence[bool] | None = None,
                         sgd_capped: Sequence[bool] | None = None) -> Figure:
    """Figure 5 of Bordelon & Mori (arXiv:2602.04774) in the paper's form: the loss ``L_t``
    against ``t`` for each horizon ``T``, optimal ``(η, β)`` solid and optimal SGD dashed
    (same colour per ``T``), with the optimal ``η(t)`` and ``β(t)`` against ``t``.
    ``momentum_capped`` / ``sgd_capped``: per horizon, whether that solve stopped at IPOPT's
    iteration cap (not a converged optimum); such curves are drawn dotted (``(η, β)``) or
    dash-dotted (SGD) and named "(iteration cap)" in the legend."""
    n = len(horizons)
    mcap = [False] * n if momentum_capped is None else list(momentum_capped)
    scap = [False] * n if sgd_capped is None else list(sgd_capped)
    fig = _figure((15, 5.0))
    ax0, ax1, ax2 = fig.subplots(1, 3)
    cols = _horizon_colors(n)
    for k, (T, Lm, Ls, e, bt, col) in enumerate(zip(horizons, momentum, sgd, etas, betas, cols, strict=True)):
        last = k == n - 1
        ls = ":" if mcap[k] else "-"
        idx = _thin(Lm.size)
        ax0.loglog(np.arange(Lm.size)[idx] + 1.0, Lm[idx], color=col, lw=1.5, ls=ls,
                   label=f"T = {T:,}" + (" (iteration cap)" if mcap[k] else ""))
        idx = _thin(Ls.size)
        ax0.loglog(np.arange(Ls.size)[idx] + 1.0, Ls[idx], color=col, lw=1, ls="-." if scap[k] else "--",
                   label=(f"optimal SGD, T = {T:,} (iteration cap)" if scap[k] else
                          ("optimal SGD (dashed)" if last else None)))
        t = np.arange(e.size) + 1.0
        ax1.loglog(t, e, color=col, lw=1.2, ls=ls)
        ax2.loglog(t, bt, color=col, lw=1.2, ls=ls)
    if any(mcap):
        ax0.plot([], [], color="gray", ls=":", label="dotted: (η, β) at IPOPT's iteration cap (an upper bound)")
    ax0.set(xlabel="step t + 1", ylabel="excess loss L_t", title="L(t): optimal (η, β) solid")
    fig.legend(fontsize=7, loc="outside lower center", ncol=5)  # below: the curves fill the panels
    ax1.set(xlabel="step t + 1", ylabel="η(t)", title="optimal learning rate")
    ax2.set(xlabel="step t + 1", ylabel="β(t)  (1 = plain SGD)", title="optimal momentum weight")
    if title:
        fig.suptitle(title)
    return fig


def plot_batch_study(rec: Mapping[str, Any], *, title: str = "") -> Figure:
    """Batch size as a control (MODEL.md §4.2): the joint optimum's ``m_t`` and ``η_t``
    against consumed samples, its ``η/m`` next to the fixed-batch optimum's, and the
    optimal loss against the number of steps for the same samples (ramp vs constant)."""
    d = rec["degeneracy"]
    m, eta, fixed_eta = (np.asarray(d[k]) for k in ("joint_batch", "joint_eta", "fixed_eta"))
    s = (np.cumsum(m) - m / 2) / np.sum(m)
    s_fixed = (np.arange(fixed_eta.size) + 0.5) / fixed_eta.size
    fig = _figure((15, 4.3))
    ax0, ax1, ax2 = fig.subplots(1, 3)
    ax0.plot(s, m, color="tab:red", label="batch m_t")
    ax0.set(xlabel="samples consumed / S", ylabel="batch size m_t")
    ax0b = ax0.twinx()
    ax0b.plot(s, eta, color="black", label="η_t")
    ax0b.set_ylabel("η_t")
    ax0.legend(loc="upper left", fontsize=8)
    ax0b.legend(loc="upper center", fontsize=8)
    ax1.semilogy(s, eta / m, color="black", lw=2, label="optimal (η, m)")
    ax1.semilogy(s_fixed, fixed_eta / d["mean_batch"], "--", color="tab:blue",
                 label=f"optimal η, fixed m = {d['mean_batch']:g}")
    ax1.set(xlabel="samples consumed / S", ylabel="η / m per sample")
    ax1.legend(fontsize=8)
    for key, name, style in (("fewest_steps_ramp", "batch ramp", "s-"), ("fewest_steps_fixed", "constant batch", "o--")):
        ev = rec[key]["evaluated"]
        pts = sorted((int(k.split("-")[1]), v) for k, v in ev.items())
        ax2.plot([p[0] for p in pts], [p[1] for p in pts], style, label=name)
    ax2.axhline(d["fixed_loss"], color="gray", lw=1, label=f"target (fixed m̄, T = {d['T']})")
    ax2.set(xscale="log", yscale="log", xlabel="serial steps T' (same samples)", ylabel="optimal L_T")
    ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return fig


def plot_ramp_savings(summary: Mapping[str, Any]) -> Figure:
    """Serial steps a batch ramp saves against the horizon ``T0`` (same samples, the
    fixed-batch optimum's loss within the tolerance), one line per phase; a convergence
    check's point on a finer grid (``summary["checks"]``) as an open diamond."""
    fig = _figure((6.5, 4.5))
    ax = fig.subplots()
    for (phase, ph), col in zip(summary["phases"].items(), ("tab:blue", "tab:red"), strict=False):
        pts = ph["points"]
        ax.semilogx([p["T0"] for p in pts], [100 * p["saved_fraction"] for p in pts], "o-", color=col,
                    label=f"{phase} (a = {ph['a']:g}, b = {ph['b']:g})")
        for c in summary.get("checks", []):
            if c["phase"] == phase:
                ax.semilogx([c["T0"]], [100 * c["fine"]["saved_fraction"]], "D", mfc="none", color=col,
                            label=f"{phase}, T0 = {c['T0']} on {c['K']} blocks (convergence check)")
    ax.set(xlabel="horizon T0 (fixed-batch reference, m = const)", ylabel="serial steps saved by a ramp (%)",
           title="batch ramps: steps saved at the same samples and loss")
    ax.set_ylim(bottom=0)
    ax.legend(fontsize=8)
    return fig


def plot_controls(eta: np.ndarray, batch_size: np.ndarray, beta: np.ndarray | None, *,
                  title: str = "", label: str = "optimal") -> Figure:
    """A joint schedule: ``η_t`` with the batch ``m_t`` or the momentum weight ``β_t``;
    ``label`` names it (as in :func:`plot_schedule`) above the panels."""
    t = np.arange(eta.size)
    fig = _figure((11, 4))
    ax0, ax1 = fig.subplots(1, 2)
    ax0.plot(t, eta, **_OPT_STYLE)
    ax0.set(xlabel="step t", ylabel="learning rate η(t)", title=label)
    if beta is not None:
        ax1.semilogy(t, beta, color="tab:purple")
        ax1.set(xlabel="step t", ylabel="momentum weight β(t) (1 = SGD)")
    else:
        ax1.plot(t, batch_size, color="tab:red")
        ax1.set(xlabel="step t", ylabel="batch size m(t)")
    if title:
        fig.suptitle(title)
    return fig


def plot_family_study(rec: Mapping[str, Any], families: Sequence[str], *, title: str = "") -> Figure:
    """Final loss ``L_T`` vs ``T`` (log-log) of optimal SGD and each tuned momentum family,
    with the ratio to optimal SGD below."""
    rows = rec["rows"]
    T = np.array([r["T"] for r in rows], dtype=float)
    fig = _figure((7.0, 7.0))
    ax, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
    sgd = np.array([r["sgd"]["loss"] for r in rows])
    ax.loglog(T, sgd, "k-o", label="optimal SGD")
    for f in families:
        if all(f in r for r in rows):
            y = np.array([r[f]["loss"] for r in rows])
            ax.loglog(T, y, "-o", ms=3, label=f)
            ax2.semilogx(T, y / sgd, "-o", ms=3, label=f)
    ax2.axhline(1.0, color="k", lw=0.8)
    ax.set_ylabel("L_T (expected, exact)")
    ax2.set_ylabel("L_T / optimal SGD")
    ax2.set_xlabel("T (updates)")
    ax.legend(fontsize=8)
    ax.set_title(title)
    return fig


def plot_anytime(trunk: np.ndarray, branches: Sequence[np.ndarray], leave: Sequence[int],
                 horizons: Sequence[int], regrets: Mapping[str, Sequence[float] | None], *,
                 wsd_s: Sequence[np.ndarray] | None = None, title: str = "",
                 trunk_label: str = "trunk") -> Figure:
    """An anytime plan and how every method does at every horizon.

    Left: the optimal trunk (black) and its branches (one color per horizon, starting at
    their leave points), against the step on a log axis; the tuned WSD-S schedules are
    dashed in the same colors. Right: the regret ``L_{T_i}/L*_{T_i} − 1`` of every method
    at every horizon (log horizon axis, symmetric-log regret axis; methods not available
    are left out). ``trunk_label`` is the trunk's legend label (it says when the plan is
    not certified).
    """
    fig = _figure((12, 4.5))
    ax0, ax1 = fig.subplots(1, 2)
    colors = _horizon_colors(len(horizons))
    if trunk.size:
        idx = _thin(trunk.size)
        ax0.plot(idx + 1, trunk[idx], label=trunk_label, **_OPT_STYLE)
    for i, (b, t, T) in enumerate(zip(branches, leave, horizons, strict=True)):
        steps = np.arange(t, T)
        idx = _thin(b.size)
        ax0.plot(steps[idx] + 1, b[idx], color=colors[i], lw=1.6, label=f"branch to T = {T} (leaves at {t})")
        if wsd_s is not None:
            w = wsd_s[i]
            j = _thin(w.size)
            ax0.plot(j + 1, w[j], color=colors[i], lw=1.0, ls="--")
    ax0.set_xscale("log")
    ax0.set_xlabel("update t + 1")
    ax0.set_ylabel("learning rate η")
    ax0.set_title("optimal trunk and branches (dashed: tuned WSD-S)")
    ax0.legend(fontsize=7)
    hs = np.asarray(horizons, dtype=float)
    for name, reg in regrets.items():
        if reg is None:
            continue
        r = np.asarray(reg, dtype=float)
        style = _OPT_STYLE if name.startswith("branching") else {}
        ax1.plot(hs, r, marker="o", label=name, **style)
    ax1.set_xscale("log")
    # Symmetric log: regrets span 1e-4 to 1e2, and a method outside the class of SGD
    # schedules (Schedule-Free averages its iterates) can sit below the lower bound.
    ax1.set_yscale("symlog", linthresh=1e-4)
    ax1.axhline(0.0, color="0.6", lw=0.8)
    ax1.set_xlabel("horizon T")
    ax1.set_ylabel("regret L_T / L*_T − 1 (symmetric log, linear below 1e-4)")
    ax1.set_title("regret per horizon")
    ax1.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    return fig
