"""A small nonlinear network trained with the exported optimum, cosine, WSD and constant schedules.

Data are generated locally: inputs ``x ~ N(0, diag λ)`` with ``λ_k = k^(−b)`` in ``d``
dimensions, labels ``y = w*·x + g(x) + σ z`` from a fixed teacher whose linear part has
the power-law coefficients of the random-feature model (``(w*_k)² = k^(−(a−b))``) and whose
nonlinear part ``g(x) = Σ_j v_j tanh(u_j·x)`` is a random tanh network. A two-layer ReLU
network is trained online (a fresh batch every update) with ``torch.optim.SGD``; an
ensemble of ``seeds`` independent students is trained at once as batched weights (the
summed loss keeps their gradients separate).

The optimal schedule is solved for the random-feature model with the same ``a, b, d``,
batch size and horizon, exported, loaded, and used in relative mode (its shape, scaled to
the peak). Every schedule runs at the same peak learning rate, for each peak on a grid,
through :class:`optctl.torch.TableScheduler`, with the same data and initial weights
(common random numbers), so differences are paired. The theory says nothing exact about
this network: the example measures how the derived shape transfers.

    python examples/mlp_schedules.py            # about 3 minutes on 2 cores
    python examples/mlp_schedules.py --replot   # redraw the figure from the JSON, no training

Writes ``results/examples/mlp_schedules.{json,png}`` and the table it used. The figure
shows the schedule shapes and each schedule's test loss at its own best peak.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from optctl import ProblemSpec, ScheduleTable, SolverOptions, solve  # noqa: E402
from optctl import schedules as S  # noqa: E402
from optctl.io.tables import export_table, load_table  # noqa: E402
from optctl.torch import TableScheduler  # noqa: E402

OUT = Path("results") / "examples"
SCHEDULES = ("optimal", "cosine", "wsd", "constant")
WSD_DECAY_FRACTION = 0.2  # the common WSD recipe: plateau, then a linear decay over the last 20%


class Teacher:
    """Fixed labels: power-law linear part plus a random tanh network, plus noise σ."""

    def __init__(self, d: int, a: float, b: float, hidden: int, sigma: float, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        k = torch.arange(1, d + 1, dtype=torch.float64)
        self.sqrt_lam = k ** (-b / 2)
        signs = torch.randint(0, 2, (d,), generator=gen, dtype=torch.float64) * 2 - 1
        self.w = signs * k ** (-(a - b) / 2)
        self.u = torch.randn(hidden, d, generator=gen, dtype=torch.float64)
        self.v = torch.randn(hidden, generator=gen, dtype=torch.float64) / hidden**0.5
        self.sigma = sigma

    def sample(self, shape: tuple[int, ...], gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.randn(*shape, self.sqrt_lam.numel(), generator=gen, dtype=torch.float64) * self.sqrt_lam
        clean = x @ self.w + torch.tanh(x @ self.u.T) @ self.v
        return x, clean + self.sigma * torch.randn(*shape, generator=gen, dtype=torch.float64)

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + torch.tanh(x @ self.u.T) @ self.v


def train(teacher: Teacher, table: ScheduleTable, peak: float, seeds: int, width: int,
          x_test: torch.Tensor, y_test: torch.Tensor, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Ensemble of ``seeds`` students; returns the test excess loss curve (mean) and final per seed."""
    gen = torch.Generator().manual_seed(seed)
    d = teacher.sqrt_lam.numel()
    w1 = torch.nn.Parameter(torch.randn(seeds, d, width, generator=gen, dtype=torch.float64) / d**0.5)
    b1 = torch.nn.Parameter(torch.zeros(seeds, 1, width, dtype=torch.float64))
    w2 = torch.nn.Parameter(torch.randn(seeds, width, 1, generator=gen, dtype=torch.float64) / width**0.5)
    opt = torch.optim.SGD([w1, b1, w2], lr=torch.tensor(peak, dtype=torch.float64))
    sched = TableScheduler(opt, table, mode="relative", total_steps=table.T)

    def net(x: torch.Tensor) -> torch.Tensor:
        return (torch.relu(x @ w1 + b1) @ w2)[..., 0]

    def test_excess() -> torch.Tensor:
        with torch.no_grad():
            return ((net(x_test.expand(seeds, -1, -1)) - y_test) ** 2).mean(dim=1)

    curve = [float(test_excess().mean())]
    every = max(1, table.T // 40)
    for t in range(table.T):
        x, y = teacher.sample((seeds, sched.batch_size_at()), gen)
        loss = 0.5 * ((net(x) - y) ** 2).mean(dim=1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (t + 1) % every == 0:
            curve.append(float(test_excess().mean()))
    return np.array(curve), test_excess().numpy()


def tables(spec: ProblemSpec, out: Path) -> dict[str, ScheduleTable]:
    """Peak-1 shapes of the four schedules; the optimum through an exported file."""
    t0 = time.perf_counter()
    result = solve(spec, SolverOptions())
    path = out / "mlp_schedules_table.npz"
    export_table(result, path, overwrite=True)
    print(f"solved the random-feature optimum for a={spec.a}, b={spec.b}, N={spec.N}, T={spec.T} "
          f"({spec.phase} phase, IPOPT {result.status}) [{time.perf_counter() - t0:.1f} s]")
    out_tables = {"optimal": load_table(path, expect_T=spec.T)}
    for name, lr in baseline_shapes(spec.T).items():
        out_tables[name] = ScheduleTable(lr=lr, batch_size=result.batch_size,
                                         source={"kind": "baseline", "name": name})
    return out_tables


def baseline_shapes(T: int) -> dict[str, np.ndarray]:
    """Peak-1 cosine, WSD and constant schedules over ``T`` updates."""
    decay = max(1, round(WSD_DECAY_FRACTION * T))
    return {"cosine": S.sample(S.cosine(1.0, T), T),
            "wsd": S.sample(S.warmup_stable_decay(1.0, 0, T - decay, decay), T),
            "constant": np.ones(T)}


def plot(report: dict, shapes: dict[str, np.ndarray], path: Path) -> None:
    """Schedule shapes (left); each schedule's test loss curve at its own best peak (right).

    A schedule that diverged at every peak has no curve; the legend says so.
    """
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    colors = {"optimal": "black", "cosine": "tab:orange", "wsd": "tab:green", "constant": "tab:blue"}
    for name in SCHEDULES:
        shape = np.asarray(shapes[name], dtype=float)
        ax0.plot(np.arange(shape.size), shape / shape.max(), color=colors[name], label=name)
        best = report["best_peak_per_schedule"][name]
        curve = report["best_curves"].get(name)
        if best["diverged"] or curve is None:
            ax1.plot([], [], color=colors[name], linestyle=":", label=f"{name}: diverged at every peak")
            continue
        curve = np.asarray(curve, dtype=float)
        ax1.semilogy(np.linspace(0, shape.size, curve.size), curve, color=colors[name],
                     label=f"{name}, peak {best['best_peak']}: {best['final_excess_loss']:.4f} "
                           f"± {best['stderr']:.4f}")
    ax0.set(xlabel="step", ylabel="lr / peak", title="schedule shapes (same peak)")
    ax0.legend()
    ax1.set(xlabel="step", ylabel="test excess loss (mean of ensemble)",
            title=f"ReLU MLP, width {report['width']}: each schedule at its best peak")
    ax1.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def replot(out: Path) -> None:
    """Redraw the figure from ``mlp_schedules.json`` and the table file, without training."""
    report = json.loads((out / "mlp_schedules.json").read_text())
    if "best_curves" not in report:
        raise SystemExit(f"{out / 'mlp_schedules.json'} has no curves (written by an older version); "
                         "run the example without --replot")
    for rec in report["best_peak_per_schedule"].values():  # JSON has no infinity: null
        if rec["final_excess_loss"] is None:
            rec["final_excess_loss"] = float("inf")
    table = load_table(out / "mlp_schedules_table.npz", expect_T=report["spec_for_table"]["T"])
    plot(report, {"optimal": table.lr, **baseline_shapes(table.T)}, out / "mlp_schedules.png")
    print(f"wrote {out / 'mlp_schedules.png'}")


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", type=float, default=2.5)
    p.add_argument("--b", type=float, default=1.5)
    p.add_argument("--d", type=int, default=32, help="input dimension")
    p.add_argument("--T", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--sigma", type=float, default=0.5)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--seeds", type=int, default=16, help="students per ensemble")
    p.add_argument("--peaks", type=float, nargs="+", default=[0.025, 0.05, 0.1, 0.2, 0.28, 0.4, 0.57, 0.8])
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: the tensors are small, and extra threads only spin)")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--replot", action="store_true",
                   help="only redraw the figure from the JSON and table in --out (no training)")
    args = p.parse_args(argv)
    if args.replot:
        replot(args.out)
        return {}
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    spec = ProblemSpec(a=args.a, b=args.b, N=args.d, sigma=args.sigma, batch_size=args.batch_size,
                       T=args.T, eta_max=1.0)
    tabs = tables(spec, args.out)
    teacher = Teacher(args.d, args.a, args.b, hidden=16, sigma=args.sigma, seed=1234)
    gen = torch.Generator().manual_seed(99)
    x_test, _ = teacher.sample((4096,), gen)
    y_test = teacher.clean(x_test)  # test loss = excess over the label noise

    results: dict[str, dict[str, dict[str, float]]] = {}
    curves: dict[tuple[str, float], np.ndarray] = {}
    finals: dict[tuple[str, float], np.ndarray] = {}
    t0 = time.perf_counter()
    for peak in args.peaks:
        for name in SCHEDULES:
            curve, final = train(teacher, tabs[name], peak, args.seeds, args.width, x_test, y_test, seed=7)
            curves[name, peak], finals[name, peak] = curve, final
            diverged = not bool(np.isfinite(final).all())
            results.setdefault(str(peak), {})[name] = {
                "final_excess_loss": float("inf") if diverged else float(final.mean()),
                "stderr": float("nan") if diverged else float(final.std(ddof=1) / np.sqrt(final.size)),
                "diverged": diverged}
        row = results[str(peak)]
        opt = finals["optimal", peak]
        for name in SCHEDULES[1:]:
            diff = finals[name, peak] - opt
            row[name]["minus_optimal"] = float(diff.mean())
            row[name]["minus_optimal_stderr"] = float(diff.std(ddof=1) / np.sqrt(diff.size))
        print(f"peak {peak:<5} " + "  ".join(
            f"{n} {row[n]['final_excess_loss']:.4e}±{row[n]['stderr']:.1e}" for n in SCHEDULES)
            + f"  [{time.perf_counter() - t0:.0f} s]")
    best = {n: min(args.peaks, key=lambda pk, n=n: results[str(pk)][n]["final_excess_loss"])
            for n in SCHEDULES}
    summary = {n: {"best_peak": best[n], **results[str(best[n])][n]} for n in SCHEDULES}
    for n in SCHEDULES:
        print(f"best {n:<9} peak {best[n]:<5} final excess test loss "
              f"{summary[n]['final_excess_loss']:.4e} ± {summary[n]['stderr']:.1e}")

    report = {"spec_for_table": spec.to_dict(), "width": args.width, "seeds": args.seeds,
              "peaks": args.peaks, "by_peak": results, "best_peak_per_schedule": summary,
              "best_curves": {n: [float(v) for v in curves[n, best[n]]] for n in SCHEDULES
                              if not summary[n]["diverged"]},
              "wall_s": time.perf_counter() - t0}
    plot(report, {n: tabs[n].lr for n in SCHEDULES}, args.out / "mlp_schedules.png")
    # diverged runs have an infinite loss; JSON has no infinity, so they are written as null
    text = json.dumps(report, indent=2).replace("Infinity", "null").replace("NaN", "null")
    (args.out / "mlp_schedules.json").write_text(text + "\n")
    print(f"wrote {args.out / 'mlp_schedules.png'} and {args.out / 'mlp_schedules.json'}")
    return report


if __name__ == "__main__":
    main()
