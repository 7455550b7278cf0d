"""Analyses of finished sweeps: horizon scaling, phase diagrams, compute-optimal frontiers.

Numbers only (no files, no figures): each function takes the records of
:func:`optctl.studies.sweep.load_sweep` and returns a small result object that
:mod:`optctl.plots` draws and :mod:`optctl.studies.report` writes. The theory values
are those of MODEL.md §5 (:mod:`optctl.theory`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from optctl import theory
from optctl.analysis.classify import Classification, classify
from optctl.analysis.scaling import ExponentFit, Frontier, compute_frontier, fit_power_law
from optctl.solver.result import record_schedule, record_spec
from optctl.spec import ProblemSpec
from optctl.studies.sweep import SweepData

# Asymptotic exponents are fitted over the horizons within this many decades of the
# largest one reached (at least two horizons).
FIT_DECADES = 1.0
# The phase diagram's agreement check leaves out the band |a − b| < this.
BOUNDARY_BAND = 0.3


def _n_fit(T: np.ndarray, decades: float = FIT_DECADES) -> int:
    return max(2, int(np.sum(T >= T.max() / 10.0 ** decades - 1e-9)))


@dataclass(frozen=True)
class HorizonStudy:
    """Scaling of one model's optimum and baselines with the horizon ``T``.

    ``fits`` maps ``"optimal"`` and each baseline tuned at two horizons or more to its
    loss fit ``L_T ∝ T^(−ζ)`` (theory attached); ``mean_lr``/``peak_lr`` are fits of
    the mean and the maximum learning rate of the optimum against ``T`` (theory:
    ``ξ = 1 − b/a`` in the easy phase, ``0`` in the hard phase);
    ``anneal_fraction`` the WSD annealing fraction ``1 − t_s/T`` per horizon.
    """

    key: str
    spec: ProblemSpec
    horizons: np.ndarray
    losses: dict[str, np.ndarray]
    fits: dict[str, ExponentFit]
    mean_lr: ExponentFit | None
    peak_lr: ExponentFit | None
    anneal_fraction: np.ndarray
    classification: Classification
    theory: dict[str, float] = field(default_factory=dict)

    def table_rows(self) -> list[dict[str, Any]]:
        rows = []
        for name, f in self.fits.items():
            rows.append({"quantity": f"ζ ({name})", **_fit_row(f)})
        for name, g in (("ξ (mean η)", self.mean_lr), ("ξ (peak η)", self.peak_lr)):
            if g is not None:
                rows.append({"quantity": name, **_fit_row(g)})
        return rows


def _fit_row(f: ExponentFit) -> dict[str, Any]:
    return {"fitted": f.exponent, "theory": f.theory, "deviation": f.deviation,
            "fit_range": f.fit_range, "local_slopes": f.local_slopes.tolist(),
            "local_T": f.local_x.tolist()}


def horizon_study(data: SweepData, key: str, *, decades: float = FIT_DECADES) -> HorizonStudy:
    """Fit the loss exponents, learning-rate exponents and trends of one point."""
    recs = data.records[key]
    Ts = np.array(sorted(recs), dtype=float)
    spec = record_spec(recs[int(Ts[-1])])
    th = theory.exponents(spec.a, spec.b)
    # dtype=float: a non-finite loss is saved as the string "nan" (strict JSON)
    losses: dict[str, np.ndarray] = {"optimal": np.array([recs[int(T)]["final_loss"] for T in Ts], dtype=float)}
    for name in data.sweep.baselines:
        have = [T for T in Ts if name in recs[int(T)]["baselines"]]
        if len(have) >= 2 and len(have) == len(Ts):
            losses[name] = np.array([recs[int(T)]["baselines"][name]["final_loss"] for T in Ts], dtype=float)
    fits: dict[str, ExponentFit] = {}
    if Ts.size >= 2:
        n = _n_fit(Ts, decades)
        for name, L in losses.items():
            fits[name] = fit_power_law(Ts, L, n_fit=n, theory=th.get(name))
    blocks = [record_schedule(recs[int(T)]) for T in Ts]
    cls = classify(blocks, spec=spec)
    mean_lr: ExponentFit | None = None
    peak_lr: ExponentFit | None = None
    if Ts.size >= 2:
        n = _n_fit(Ts, decades)
        means = np.array([s.mean for s in cls.shapes])
        peaks = np.array([s.peak for s in cls.shapes])
        mean_lr = fit_power_law(Ts, means, n_fit=n, theory=th["peak_lr"])
        peak_lr = fit_power_law(Ts, peaks, n_fit=n, theory=th["peak_lr"])
    anneal = np.array([s.wsd.anneal_fraction for s in cls.shapes])
    return HorizonStudy(key=key, spec=spec, horizons=Ts, losses=losses, fits=fits, mean_lr=mean_lr,
                        peak_lr=peak_lr, anneal_fraction=anneal, classification=cls, theory=th)


# --- phase diagram ----------------------------------------------------------------------


@dataclass(frozen=True)
class PhaseDiagram:
    """Maps over the ``(a, b)`` grid (arrays of shape ``(len(a), len(b))``).

    ``label``/``side``/``confidence``: :func:`optctl.classify.classify` of each point's
    schedules; ``theory``: ``"easy"`` iff ``b < a``; ``zeta``: the optimum's loss
    exponent fitted over all horizons (``zeta_theory`` its MODEL.md value); ``xi``: the
    exponent of the optimum's mean learning rate (theory ``max(0, 1 − b/a)``);
    ``gain``: ``(L_best baseline − L_optimal)/L_best baseline`` at the largest horizon
    with baselines, ``best`` the name of that baseline. ``finite_n``: the largest
    horizon has ``η_max T λ_N > 1`` (all modes learned; the continuum exponents do not
    apply there). Missing points are NaN/"".
    """

    a: np.ndarray
    b: np.ndarray
    label: np.ndarray
    side: np.ndarray
    confidence: np.ndarray
    theory: np.ndarray
    zeta: np.ndarray
    zeta_theory: np.ndarray
    xi: np.ndarray
    xi_theory: np.ndarray
    gain: np.ndarray
    best: np.ndarray
    gain_T: int | None
    finite_n: np.ndarray

    def agreement(self, band: float = BOUNDARY_BAND) -> dict[str, Any]:
        """Counts of agreeing, wrong and unsure labels outside and inside ``|a − b| < band``."""
        A, B = np.meshgrid(self.a, self.b, indexing="ij")
        have = self.label != ""
        far = (np.abs(A - B) >= band - 1e-9) & have
        near = (np.abs(A - B) < band - 1e-9) & have
        out: dict[str, Any] = {"band": band}
        for name, m in (("far", far), ("near", near)):
            lab, th = self.label[m], self.theory[m]
            out[name] = {"points": int(m.sum()), "agree": int((lab == th).sum()),
                         "unsure": int((lab == "unsure").sum()),
                         "wrong": int(((lab != th) & (lab != "unsure")).sum())}
        wrong = (self.label != self.theory) & (self.label != "unsure") & have
        out["wrong_points"] = [(float(A[i]), float(B[i])) for i in zip(*np.nonzero(wrong), strict=True)]
        unsure_far = (self.label == "unsure") & far
        out["unsure_far_points"] = [(float(A[i]), float(B[i]))
                                    for i in zip(*np.nonzero(unsure_far), strict=True)]
        return out


def phase_diagram(data: SweepData) -> PhaseDiagram:
    """Assemble the maps of a ``phase_diagram`` sweep (incomplete points are left blank)."""
    a_vals = np.array(data.sweep.axes["a"])
    b_vals = np.array(data.sweep.axes["b"])
    shape = (a_vals.size, b_vals.size)
    label = np.full(shape, "", dtype=object)
    side = np.full(shape, "", dtype=object)
    phase = np.full(shape, "", dtype=object)
    best = np.full(shape, "", dtype=object)
    conf, zeta, zeta_th, xi, xi_th, gain = (np.full(shape, np.nan) for _ in range(6))
    finite_n = np.zeros(shape, dtype=bool)
    gain_T = max(data.sweep.baseline_horizons) if data.sweep.baseline_horizons else None
    for i, a in enumerate(a_vals):
        for j, b in enumerate(b_vals):
            th = theory.exponents(float(a), float(b))
            zeta_th[i, j], xi_th[i, j] = th["optimal"], th["peak_lr"]
            phase[i, j] = theory.phase(float(a), float(b))
            key = next((k for k in data.records if data.values(k) == {"a": a, "b": b}), None)
            if key is None or len(data.records[key]) < len(data.sweep.horizons):
                continue
            st = horizon_study(data, key, decades=np.inf)
            finite_n[i, j] = st.classification.shapes[-1].finite_n
            label[i, j], side[i, j] = st.classification.label, st.classification.side
            conf[i, j] = st.classification.confidence
            zeta[i, j] = st.fits["optimal"].exponent if "optimal" in st.fits else np.nan
            xi[i, j] = st.mean_lr.exponent if st.mean_lr is not None else np.nan
            if gain_T is not None:
                rec = data.records[key][gain_T]
                if rec["baselines"]:
                    name = min(rec["baselines"], key=lambda n: float(rec["baselines"][n]["final_loss"]))
                    lb = float(rec["baselines"][name]["final_loss"])
                    gain[i, j], best[i, j] = (lb - float(rec["final_loss"])) / lb, name
    return PhaseDiagram(a=a_vals, b=b_vals, label=label, side=side, confidence=conf, theory=phase,
                        zeta=zeta, zeta_theory=zeta_th, xi=xi, xi_theory=xi_th, gain=gain, best=best,
                        gain_T=gain_T, finite_n=finite_n)


# --- compute-optimal frontier -----------------------------------------------------------


@dataclass(frozen=True)
class ComputeStudy:
    """Loss against compute ``C = N T`` for one ``(a, b)``: every run and the frontier."""

    a: float
    b: float
    N: np.ndarray
    T: np.ndarray
    loss: np.ndarray
    frontier: Frontier
    theory: float


def compute_studies(data: SweepData) -> list[ComputeStudy]:
    """One frontier per combination of the non-``N`` axes of a compute-optimal sweep."""
    groups: dict[tuple[tuple[str, float], ...], list[dict[str, Any]]] = {}
    for by_T in data.records.values():
        for rec in by_T.values():
            other = tuple(sorted((k, v) for k, v in rec["values"].items() if k != "N"))
            groups.setdefault(other, []).append(rec)
    out = []
    for _, group in sorted(groups.items()):
        N = np.array([float(r["spec"]["N"]) for r in group])
        T = np.array([float(r["T"]) for r in group])
        L = np.array([float(r["final_loss"]) for r in group])
        a, b = float(group[0]["spec"]["a"]), float(group[0]["spec"]["b"])
        nu = theory.compute_exponent(a, b)
        if np.unique(N).size < 2:
            continue
        out.append(ComputeStudy(a=a, b=b, N=N, T=T, loss=L,
                                frontier=compute_frontier(N, T, L, theory=nu), theory=nu))
    return out
