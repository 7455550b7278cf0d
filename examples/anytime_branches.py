"""An anytime plan in training: one shared run, a checkpoint at every leave point, a branch each.

The optimal branching plan (a shared trunk and one decay branch per horizon,
:func:`optctl.solver.branching.solve_branching`) is solved for a random-feature model
with power-law spectrum ``λ_k = k^(−b)`` and teacher ``(w*_k)² = k^(−(a−b))`` in ``d``
dimensions, at the horizons ``T_1 < T_2 < T_3``. A small two-layer network is then
trained online on data drawn from that model (``x ~ N(0, diag λ)``, ``y = w*·x + σ z``)
with ``torch.optim.SGD`` through the documented workflow (docs/anytime.md):

1. train the trunk with :func:`optctl.torch.trunk_scheduler`, saving a checkpoint (model,
   optimizer, scheduler state) when the run reaches each leave point ``t_i``;
2. for each horizon, load the checkpoint at ``t_i`` and train the branch with
   :func:`optctl.torch.branch_scheduler` up to ``T_i``.

The plan is used only when its minimax certificate holds (the table's ``success``):
an uncertified plan is refused unless ``--allow-uncertified`` is given, and then a warning
is printed. Every learning rate the optimizer used is checked against the plan's table, and the
test loss at each ``T_i`` is printed next to the model's prediction for the linear
model (the network is not linear, so the two agree only roughly).

    python examples/anytime_branches.py            # about a minute on 2 cores

Writes ``results/examples/anytime_branches.json`` and the branching table it used.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from optctl.io.tables import export_branching_table, load_branching_table
from optctl.solver.branching import solve_branching
from optctl.spec import ProblemSpec
from optctl.torch import branch_scheduler, trunk_scheduler

ROOT = Path(__file__).resolve().parent.parent


def make_data(spec: ProblemSpec, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The spectrum's standard deviations and the teacher of the random-feature model."""
    k = np.arange(1, spec.N + 1, dtype=float)
    lam = k ** (-spec.b)
    w = np.sqrt(k ** (-(spec.a - spec.b))) * np.random.default_rng(seed).choice([-1.0, 1.0], spec.N)
    return torch.tensor(np.sqrt(lam)), torch.tensor(w)


def batch(std: torch.Tensor, w: torch.Tensor, sigma: float, m: int, gen: torch.Generator
          ) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randn(m, std.numel(), generator=gen, dtype=torch.float64) * std
    return x, x @ w + sigma * torch.randn(m, generator=gen, dtype=torch.float64)


def network(d: int, width: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(d, width), torch.nn.ReLU(), torch.nn.Linear(width, 1)).double()


def test_loss(model: torch.nn.Module, std: torch.Tensor, w: torch.Tensor, sigma: float) -> float:
    gen = torch.Generator().manual_seed(12345)
    x, _ = batch(std, w, sigma, 4000, gen)
    with torch.no_grad():  # excess loss E[(f(x) − w*·x)²], the model's L
        return float(torch.mean((model(x).squeeze(-1) - x @ w) ** 2))


def update(model: torch.nn.Module, opt: torch.optim.Optimizer, sched: torch.optim.lr_scheduler.LRScheduler,
           xy: tuple[torch.Tensor, torch.Tensor]) -> float:
    """One SGD update on the batch ``xy`` (half the mean squared error), then the scheduler's
    step; returns the learning rate the update used."""
    lr = float(opt.param_groups[0]["lr"])
    x, y = xy
    opt.zero_grad()
    (0.5 * torch.mean((model(x).squeeze(-1) - y) ** 2)).backward()
    opt.step()
    sched.step()
    return lr


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--horizons", type=int, nargs="+", default=[200, 800, 3200])
    ap.add_argument("--out", default=str(ROOT / "results" / "examples"))
    ap.add_argument("--allow-uncertified", action="store_true",
                    help="train from the plan even when its minimax certificate does not hold")
    args = ap.parse_args(argv)
    spec = ProblemSpec(a=2.5, b=1.5, N=64, sigma=0.3, batch_size=8, T=max(args.horizons), eta_max=0.5)
    plan_result = solve_branching(spec, args.horizons, fractions=(0.1, 0.3, 0.6))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    export_branching_table(plan_result.to_table(), out / "anytime_branches_table.json", overwrite=True)
    plan = load_branching_table(out / "anytime_branches_table.json")
    if not plan.certified:
        why = (f"the branching plan is not certified (status {plan.source.get('status')}, minimax gap "
               f"{plan.source.get('gap')}): its worst regret may be above the best plan's")
        if not args.allow_uncertified:
            raise SystemExit(f"{why}; pass --allow-uncertified to train from it anyway")
        print(f"warning: {why}; training from it (--allow-uncertified)", file=sys.stderr)

    std, w = make_data(spec, 0)
    gen = torch.Generator().manual_seed(1)
    model = network(spec.N, 64, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)
    sched = trunk_scheduler(opt, plan)
    used_trunk: list[float] = []
    with tempfile.TemporaryDirectory() as ckdir:
        for t in range(plan.trunk.size + 1):
            if t in plan.leave:  # checkpoint before update t: the state after t updates
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "gen": gen.get_state()},
                           Path(ckdir) / f"trunk-{t}.pt")
            if t == plan.trunk.size:
                break
            used_trunk.append(update(model, opt, sched, batch(std, w, spec.sigma, int(spec.batch_size), gen)))
        if not np.array_equal(used_trunk, plan.trunk):
            raise SystemExit("the trunk's learning rates differ from the plan's table")
        rows = []
        for i, (t0, T) in enumerate(zip(plan.leave, plan.horizons, strict=True)):
            ck = torch.load(Path(ckdir) / f"trunk-{t0}.pt")
            model = network(spec.N, 64, 2)
            model.load_state_dict(ck["model"])
            opt = torch.optim.SGD(model.parameters(), lr=0.0)
            opt.load_state_dict(ck["opt"])
            gen.set_state(ck["gen"])
            sched = branch_scheduler(opt, plan, i)
            used = []
            for _ in range(t0, T):
                used.append(update(model, opt, sched, batch(std, w, spec.sigma, int(spec.batch_size), gen)))
            if not np.array_equal(used, plan.branches[i]):
                raise SystemExit(f"branch {i}'s learning rates differ from the plan's table")
            rows.append({"T": T, "leave": t0, "test_excess_loss": test_loss(model, std, w, spec.sigma),
                         "model_loss": float(plan_result.losses[i]), "model_regret": float(plan_result.regret[i])})
            print(f"T = {T:6d}  leaves the trunk at {t0:6d}  network test excess loss "
                  f"{rows[-1]['test_excess_loss']:.4g}  (linear model: {plan_result.losses[i]:.4g}, "
                  f"regret {100 * plan_result.regret[i]:.2f}%)")
    (out / "anytime_branches.json").write_text(json.dumps({"spec": spec.to_dict(), "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
