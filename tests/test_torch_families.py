"""Momentum-family tables driven through torch (optctl.torch, docs/momentum_families.md §6).

Three checks: the optimizers' iterates equal the literal update of each paper
(:func:`optctl.model.families.simulate_iterates`) step by step; the coefficients each
update used are the table's rows; and real minibatch runs in torch on a linear-regression
problem match the exact expected loss curve within Monte-Carlo error, which a recursion
without the cross moment does not. The EMA ``(η, β)`` table of a joint solve goes through
torch's own SGD (:class:`TableScheduler`) and is checked the same way; a family whose
state SGD cannot hold is refused by name.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import MC_ABS_FLOOR, MC_SE_MULTIPLIER

torch = pytest.importorskip("torch")

from optctl.errors import ExportError  # noqa: E402
from optctl.model import families as F  # noqa: E402
from optctl.model.momentum import momentum_curve  # noqa: E402
from optctl.model.spectrum import spectrum  # noqa: E402
from optctl.spec import ProblemSpec  # noqa: E402
from optctl.table import FamilyTable, ScheduleTable, family_table_from_dict, momentum_from_beta  # noqa: E402
from optctl.torch import GenMomSGD, ScheduleFreeSGD, TableScheduler, family_optimizer  # noqa: E402

F64 = torch.float64
SPEC = ProblemSpec(a=2.5, b=1.5, N=30, sigma=0.5, batch_size=4, T=60)
CHECKPOINTS = np.array([1, 5, 10, 20, 30, 40, 50, 60])
N_RUNS = 3000


def _tables(T: int) -> dict[str, FamilyTable]:
    return {"dana-decaying": F.to_table(F.dana(SPEC, T, 0.2, 0.15), SPEC),
            "dana-constant": F.to_table(F.dana(SPEC, T, 0.2, 0.05, decaying=False), SPEC),
            "log-time": F.to_table(F.log_time(SPEC, T, 0.3, 1.0), SPEC),
            "schedule-free": F.to_table(F.schedule_free(T, 0.5, 0.9), SPEC)}


def _optimizer(name: str, T: int) -> F.LinearOptimizer:
    return {"dana-decaying": F.dana(SPEC, T, 0.2, 0.15),
            "dana-constant": F.dana(SPEC, T, 0.2, 0.05, decaying=False),
            "log-time": F.log_time(SPEC, T, 0.3, 1.0),
            "schedule-free": F.schedule_free(T, 0.5, 0.9)}[name]


@pytest.mark.parametrize("name", F.FAMILIES)
def test_torch_iterates_are_the_papers_update(name: str) -> None:
    """Deterministic gradients ``λ ∘ p + noise_t`` (noise fixed per step): torch and the literal update agree."""
    T, N = 25, 6
    rng = np.random.default_rng(3)
    lam, noise = rng.uniform(0.2, 1.5, N), rng.normal(size=(T, N))
    opt = _optimizer(name, T)
    table = F.to_table(opt)
    w0 = rng.normal(size=N)
    s = (w0[None].copy(), w0[None].copy() if opt.start == "copy" else np.zeros((1, N)))
    expected = []
    for t in range(T):
        s = F.simulate_iterates(opt, t, s, lambda p, t=t: lam * p + noise[t])
        expected.append(s[opt.readout][0].copy())
    w = torch.nn.Parameter(torch.tensor(w0, dtype=F64))
    tor = family_optimizer([w], table)
    got = []
    for t in range(T):
        tor.zero_grad()
        loss = 0.5 * (torch.tensor(lam) * w**2).sum() + (torch.tensor(noise[t]) * w).sum()
        loss.backward()
        tor.step()
        row = table.row(t)
        assert all(tor.param_groups[0][k] == v for k, v in row.items())  # the table's coefficients
        if isinstance(tor, ScheduleFreeSGD):
            tor.eval()
            got.append(w.detach().numpy().copy())
            tor.train()
        else:
            got.append(w.detach().numpy().copy())
    np.testing.assert_allclose(np.array(got), np.array(expected), rtol=1e-12, atol=1e-13)
    with pytest.raises(ExportError, match="outside the family table"):
        tor.zero_grad()
        (w**2).sum().backward()
        tor.step()


def _regression_runs(step: object, T: int, read: object, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``N_RUNS`` independent minibatch runs of linear regression on the model's features.

    Features ``x ~ N(0, diag λ)``, teacher ``±√c₀`` with random signs, label noise ``σ``,
    student from 0, a fresh batch of ``m`` samples per update (the setting of
    MODEL.md §1). Returns the mean and standard error of ``Σ λ_k e_k²`` at ``t = 0..T``.
    """
    sp = spectrum(SPEC)
    g = torch.Generator().manual_seed(seed)
    lam = torch.tensor(sp.lam, dtype=F64)
    signs = torch.randint(0, 2, (N_RUNS, SPEC.N), generator=g, dtype=F64) * 2 - 1
    teacher = signs * torch.tensor(np.sqrt(sp.c0), dtype=F64)
    w = torch.nn.Parameter(torch.zeros(N_RUNS, SPEC.N, dtype=F64))
    opt, sched = step(w)  # type: ignore[operator]
    out = np.empty((T + 1, N_RUNS))
    out[0] = (((w.detach() - teacher) ** 2) @ lam).numpy()
    m = int(SPEC.batch_size)
    for t in range(T):
        x = torch.randn(N_RUNS, m, SPEC.N, generator=g, dtype=F64) * lam.sqrt()
        y = x @ teacher.unsqueeze(-1) + float(np.sqrt(sp.sigma2)) * torch.randn(N_RUNS, m, 1, generator=g,
                                                                               dtype=F64)
        opt.zero_grad()
        loss = 0.5 * ((x @ w.unsqueeze(-1) - y) ** 2).mean(dim=(1, 2)).sum()  # per run: mean over the batch
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        out[t + 1] = (((read(opt, w) - teacher) ** 2) @ lam).numpy()  # type: ignore[operator]
    return out.mean(axis=1), out.std(axis=1, ddof=1) / np.sqrt(N_RUNS)


def _read_output(opt: object, w: object) -> object:
    if isinstance(opt, ScheduleFreeSGD):
        opt.eval()
        x = w.detach().clone()  # type: ignore[attr-defined]
        opt.train()
        return x
    return w.detach()  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("name", F.FAMILIES)
def test_torch_minibatch_runs_match_the_expected_loss(name: str) -> None:
    T = SPEC.T
    opt = _optimizer(name, T)
    table = F.to_table(opt)
    mean, se = _regression_runs(lambda w: (family_optimizer([w], table), None), T, _read_output)
    exact = F.family_curve(SPEC, opt)
    wrong = F.family_curve(SPEC, opt, drop_cross=True)
    band = MC_SE_MULTIPLIER * se[CHECKPOINTS] + MC_ABS_FLOOR
    z = np.abs(mean[CHECKPOINTS] - exact[CHECKPOINTS]) / se[CHECKPOINTS]
    assert np.all(np.abs(mean[CHECKPOINTS] - exact[CHECKPOINTS]) <= band), z
    # power: the recursion without the cross moment leaves the band
    assert np.any(np.abs(mean[CHECKPOINTS] - wrong[CHECKPOINTS]) > band)


@pytest.mark.slow
def test_ema_table_through_torch_sgd_matches_the_momentum_model() -> None:
    """An (η, β) schedule as a table through torch's SGD: minibatch runs match MODEL.md §3."""
    T = SPEC.T
    rng = np.random.default_rng(5)
    eta, beta = rng.uniform(0.3, 1.2, T), rng.uniform(0.1, 0.9, T)
    table = ScheduleTable(lr=eta, momentum=momentum_from_beta(beta))
    seen: list[tuple[float, float, float]] = []

    def make(w: object) -> tuple[object, object]:
        opt = torch.optim.SGD([w], lr=1.0, momentum=0.5)  # type: ignore[list-item]
        return opt, TableScheduler(opt, table)

    def read(opt: object, w: object) -> object:
        g = opt.param_groups[0]  # type: ignore[attr-defined]
        seen.append((g["lr"], g["momentum"], g["dampening"]))
        return w.detach()  # type: ignore[attr-defined]

    mean, se = _regression_runs(make, T, read, seed=1)
    # the values the optimizer held after scheduler step t are row t + 1's
    assert [s[0] for s in seen[:-1]] == list(table.lr[1:])
    assert [s[1] for s in seen[:-1]] == [s[2] for s in seen[:-1]] == list(table.momentum[1:])
    exact = momentum_curve(SPEC, eta, beta)
    band = MC_SE_MULTIPLIER * se[CHECKPOINTS] + MC_ABS_FLOOR
    assert np.all(np.abs(mean[CHECKPOINTS] - exact[CHECKPOINTS]) <= band)
    # power: the heavy-ball reading of the same column (dampening 0) is another optimizer
    heavy = momentum_curve(SPEC, eta / beta, beta)
    assert np.any(np.abs(mean[CHECKPOINTS] - heavy[CHECKPOINTS]) > band)


def test_family_tables_that_sgd_cannot_run_say_so() -> None:
    tables = _tables(20)
    w = torch.nn.Parameter(torch.zeros(3, dtype=F64))
    sgd = torch.optim.SGD([w], lr=0.1, momentum=0.9)
    for name in ("dana-decaying", "dana-constant", "log-time"):
        with pytest.raises(ExportError, match="single momentum buffer cannot express.*GenMomSGD"):
            TableScheduler(sgd, tables[name])
    with pytest.raises(ExportError, match="two iterates.*ScheduleFreeSGD"):
        TableScheduler(sgd, tables["schedule-free"])
    with pytest.raises(ExportError, match="drive it with ScheduleFreeSGD"):
        GenMomSGD([w], tables["schedule-free"])
    # log-time momentum without the fresh-gradient term is EMA momentum: SGD runs it exactly
    undamped = F.to_table(F.log_time(SPEC, 20, 0.3, 1.0, gamma2=0.0))
    st = undamped.to_schedule_table()
    np.testing.assert_allclose(st.momentum, 1.0 - undamped.column("Delta"))
    np.testing.assert_allclose(st.lr, undamped.column("gamma3"))


def test_undamped_log_time_through_sgd_is_the_papers_update(sgd_on_quadratic) -> None:  # type: ignore[no-untyped-def]
    T, lam = 30, 0.8
    opt = F.log_time(SPEC, T, 0.3, 1.0, gamma2=0.0)
    s = (np.ones((1, 1)), np.zeros((1, 1)))
    expected = []
    for t in range(T):
        s = F.simulate_iterates(opt, t, s, lambda p: lam * p)
        expected.append(float(s[0][0, 0]))
    np.testing.assert_allclose(sgd_on_quadratic(F.to_table(opt), lam, T), expected, rtol=1e-12)


def test_family_table_round_trips_and_checks() -> None:
    table = _tables(12)["dana-decaying"]
    back = family_table_from_dict(json.loads(json.dumps(table.to_dict())))
    assert back.family == table.family and back.T == 12
    for k in table.columns:
        np.testing.assert_array_equal(back.column(k), table.column(k))
    with pytest.raises(ExportError, match="needs exactly"):
        FamilyTable(family="schedule-free", columns={"lr": [0.1]})
    with pytest.raises(ExportError, match=r"beta\[1\]"):
        FamilyTable(family="schedule-free", columns={"lr": [0.1, 0.1], "beta": [0.5, 1.5]})
    with pytest.raises(ExportError, match="expected one of"):
        FamilyTable(family="adam", columns={})
