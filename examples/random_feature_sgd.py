"""Train the power-law random-feature model with real torch SGD driven by an exported table.

The model of Bordelon & Mori (arXiv:2602.04774) and MODEL.md §1-2, in the eigenbasis of
its Gaussian features: ``x ~ N(0, diag λ)`` with ``λ_k = k^(−b)``, a teacher
``y = w*·x + σ z`` with ``w*_k = ±k^(−(a−b)/2)`` (an independent random sign per mode and
run), a linear student started at ``w = 0`` and trained by one-pass minibatch SGD on
``½ (x·w − y)²`` (fresh batches, ``torch.optim.SGD``). ``R`` independent runs are trained
at once as the rows of one ``(R, N)`` parameter: the summed loss makes each row's
gradient its own run's.

Steps: solve the optimal schedule → export it to a safetensors table → load it → drive
``torch.optim.SGD`` through :class:`optctl.torch.TableScheduler` (tensor learning rate).
The tuned cosine baseline (:func:`optctl.baselines.tune_baselines`) is trained the same
way with the same random numbers. The measured mean population excess loss
``Σ_k λ_k (w_k − w*_k)²`` is compared with the exact prediction of the recursion
(:func:`optctl.model.replay.replay`) and between the two schedules.

    python examples/random_feature_sgd.py            # about a minute on 2 cores
    python examples/random_feature_sgd.py --runs 500 --T 300   # a quick look

Writes ``results/examples/random_feature_sgd.{json,png}`` and the table it used.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from optctl import ProblemSpec, ScheduleTable, SolverOptions, solve  # noqa: E402
from optctl.baselines.tune import tune_baselines  # noqa: E402
from optctl.io.tables import export_table, load_table  # noqa: E402
from optctl.model.replay import replay  # noqa: E402
from optctl.model.spectrum import spectrum  # noqa: E402
from optctl.torch import TableScheduler  # noqa: E402

OUT = Path("results") / "examples"
# |measured − predicted| below this many standard errors counts as "within Monte-Carlo
# error" (two-sided p ≈ 0.0027 for a correct prediction).
Z_AGREE = 3.0


@dataclass(frozen=True)
class Measured:
    """Mean excess loss of R runs at the checkpoints, with its standard error, and each run's final loss."""

    steps: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray
    final_per_run: np.ndarray
    wall_s: float


def train(spec: ProblemSpec, table: ScheduleTable, runs: int, seed: int, every: int) -> Measured:
    """R independent one-pass SGD runs of the linear student, learning rate from ``table``."""
    sp = spectrum(spec)
    gen = torch.Generator().manual_seed(seed)
    sqrt_lam = torch.tensor(np.sqrt(sp.lam))
    lam = torch.tensor(sp.lam)
    signs = torch.randint(0, 2, (runs, spec.N), generator=gen, dtype=torch.float64) * 2 - 1
    w_star = signs * torch.tensor(np.sqrt(sp.c0))
    sigma = float(np.sqrt(sp.sigma2))
    w = torch.nn.Parameter(torch.zeros(runs, spec.N, dtype=torch.float64))
    opt = torch.optim.SGD([w], lr=torch.tensor(0.0, dtype=torch.float64))
    sched = TableScheduler(opt, table, total_steps=spec.T)

    def excess() -> torch.Tensor:
        with torch.no_grad():
            return ((w - w_star) ** 2) @ lam

    steps, means, ses = [0], [], []
    first = excess()
    means.append(float(first.mean()))
    ses.append(float(first.std() / np.sqrt(runs)))
    t0 = time.perf_counter()
    for t in range(spec.T):
        m = sched.batch_size_at()
        # Standard normals are drawn in float32 (several times faster than float64 in torch's
        # CPU generator) and the training runs in float64; the rounding of the draws is far
        # below the Monte-Carlo error.
        z = torch.randn(runs, m, spec.N + 1, generator=gen, dtype=torch.float32).to(torch.float64)
        x = z[:, :, :-1] * sqrt_lam
        y = (x @ w_star[:, :, None])[:, :, 0] + sigma * z[:, :, -1]
        pred = (x @ w[:, :, None])[:, :, 0]
        loss = 0.5 * ((pred - y) ** 2).mean(dim=1).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (t + 1) % every == 0 or t + 1 == spec.T:
            e = excess()
            steps.append(t + 1)
            means.append(float(e.mean()))
            ses.append(float(e.std() / np.sqrt(runs)))
    return Measured(np.array(steps), np.array(means), np.array(ses), excess().numpy(),
                    time.perf_counter() - t0)


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", type=float, default=1.5, help="task-power exponent a")
    p.add_argument("--b", type=float, default=2.0, help="spectral exponent b (b > a: hard phase)")
    p.add_argument("--N", type=int, default=100, help="number of features")
    p.add_argument("--T", type=int, default=1000, help="number of SGD updates")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--sigma", type=float, default=0.5)
    # η_max = 0.5 keeps the fourth moments of every mode contracting (for the top mode,
    # E(1 − η χ²_m/m)⁴ ≈ 0.22 at m = 4, against 1.5 at η = 1), so the per-run loss has a
    # finite variance and the standard errors below mean what they say.
    p.add_argument("--eta-max", type=float, default=0.5)
    p.add_argument("--runs", type=int, default=2000, help="independent SGD runs (Monte-Carlo)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)

    spec = ProblemSpec(a=args.a, b=args.b, N=args.N, sigma=args.sigma, batch_size=args.batch_size,
                       T=args.T, eta_max=args.eta_max)
    t0 = time.perf_counter()
    result = solve(spec, SolverOptions())
    cosine = tune_baselines(spec, ("cosine",))["cosine"]
    print(f"solved {spec.phase} phase a={spec.a} b={spec.b} N={spec.N} T={spec.T}: predicted "
          f"L_T = {result.final_loss:.5e} (IPOPT {result.status}); tuned cosine (peak "
          f"{cosine.params['peak_value']:.4f}) L_T = {cosine.final_loss:.5e} "
          f"[{time.perf_counter() - t0:.1f} s]")

    # the optimum goes through a file, as a training job would receive it
    table_path = args.out / "random_feature_sgd_table.safetensors"
    export_table(result, table_path, overwrite=True)
    tables = {"optimal": load_table(table_path, expect_spec_hash=spec.digest(), expect_T=spec.T),
              "cosine": ScheduleTable(lr=cosine.eta, batch_size=result.batch_size,
                                      spec=spec.to_dict(), horizon={"mode": "solved"},
                                      source={"kind": "baseline", "name": "cosine", **cosine.params})}
    every = max(1, spec.T // 50)
    measured: dict[str, Measured] = {}
    predicted: dict[str, np.ndarray] = {}
    for name, table in tables.items():
        # same seed: both schedules see the same teachers, features and noise
        measured[name] = train(spec, table, args.runs, args.seed, every)
        predicted[name] = replay(spec, table.lr).loss

    report: dict[str, object] = {"spec": spec.to_dict(), "runs": args.runs, "seed": args.seed,
                                 "table": str(table_path), "table_hash": tables["optimal"].content_hash}
    for name, meas in measured.items():
        pred = float(predicted[name][-1])
        z = (meas.mean[-1] - pred) / meas.stderr[-1]
        report[name] = {"predicted_final_loss": pred, "measured_final_loss": float(meas.mean[-1]),
                        "stderr": float(meas.stderr[-1]), "z": float(z),
                        "within_mc_error": bool(abs(z) < Z_AGREE), "train_wall_s": meas.wall_s}
        print(f"{name:<8} predicted L_T = {pred:.5e}   measured = {meas.mean[-1]:.5e} ± "
              f"{meas.stderr[-1]:.1e} (z = {z:+.2f}) [{meas.wall_s:.1f} s]")
    diff = measured["cosine"].final_per_run - measured["optimal"].final_per_run
    d_mean, d_se = float(diff.mean()), float(diff.std() / np.sqrt(diff.size))
    report["cosine_minus_optimal"] = {"mean": d_mean, "stderr": d_se, "z": d_mean / d_se,
                                      "relative_gain": d_mean / measured["cosine"].mean[-1],
                                      "optimal_beats_cosine": bool(d_mean / d_se > Z_AGREE)}
    print(f"cosine − optimal (paired over the same runs) = {d_mean:.3e} ± {d_se:.1e} "
          f"(z = {d_mean / d_se:.1f}); the optimum is {100 * d_mean / measured['cosine'].mean[-1]:.1f}% lower")

    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    colors = {"optimal": "black", "cosine": "tab:orange"}
    for name, table in tables.items():
        ax0.plot(np.arange(spec.T), table.lr, color=colors[name], label=name)
        meas = measured[name]
        ax1.loglog(np.arange(spec.T + 1) + 1, predicted[name], color=colors[name], lw=1,
                   label=f"{name}: predicted (recursion)")
        ax1.errorbar(meas.steps + 1, meas.mean, yerr=2 * meas.stderr, fmt="o", ms=3,
                     color=colors[name], label=f"{name}: torch SGD, {args.runs} runs (±2 SE)")
    ax0.set(xlabel="step t", ylabel="learning rate", title="schedules (table → TableScheduler)")
    ax0.legend()
    ax1.set(xlabel="step t + 1", ylabel="excess loss", title=f"{spec.phase} phase, a={spec.a}, b={spec.b}, "
            f"N={spec.N}, m={args.batch_size}")
    ax1.legend(fontsize=8)
    fig.savefig(args.out / "random_feature_sgd.png", dpi=120)
    (args.out / "random_feature_sgd.json").write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out / 'random_feature_sgd.png'} and {args.out / 'random_feature_sgd.json'}")
    return report


if __name__ == "__main__":
    main()
