"""The real-training benchmark's protocol: probe, ladder, pilot budget, paired prefixes."""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from real_training import methods as M  # noqa: E402
from real_training.tasks import TASKS  # noqa: E402
from real_training.training import train  # noqa: E402


def _probe(loss: list[float], n_rates: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A probe's record: the loss after each update (update s used rate s − 1)."""
    rates = np.geomspace(1e-3, 10.0, n_rates or len(loss) - 1)
    steps = np.arange(len(loss))
    return rates, steps, np.asarray(loss, dtype=float)


def test_a_single_spike_is_not_divergence_but_three_steps_above_are() -> None:
    base = [4.0] + [3.0 - 0.05 * i for i in range(1, 30)]
    spike = base.copy()
    spike[10] = 100.0  # one noisy measurement
    rates, steps, loss = _probe(spike)
    assert M.divergent_rate(rates, steps, loss) == rates[-1]  # ran to the end: never diverged
    blown = base[:20] + [50.0, 60.0, 70.0, 80.0]
    rates, steps, loss = _probe(blown)
    assert M.divergent_rate(rates, steps, loss) == rates[19]  # the first of the three steps above
    stopped = base[:12] + [1e5]  # the training loop stopped the run here, 30 rates planned
    rates, steps, loss = _probe(stopped, n_rates=30)
    assert M.divergent_rate(rates, steps, loss) == rates[11]


@pytest.mark.parametrize(("loss", "diverged", "stable"), [
    ([2.5, 1.0, 0.7], False, True),
    ([2.5, 6.0, 2.0], False, True),     # a spike within 3x the start
    ([2.5, 8.0, 2.0], False, False),    # above 3x the start
    ([2.5, 2.4, 2.6], False, False),    # ends above its start
    ([2.5, 1.0, 0.7], True, False),
    ([2.5, np.nan, 0.7], False, False),
])
def test_a_ladder_rung_is_stable_only_when_it_neither_explodes_nor_ends_worse(
        loss: list[float], diverged: bool, stable: bool) -> None:
    assert M.is_stable(np.asarray(loss), diverged) is stable


@pytest.mark.parametrize("trunk_decay", [0.0, 0.25])
@pytest.mark.parametrize("rungs", [1, 3, 5])
def test_the_pilots_spend_a_quarter_of_a_run_and_share_their_prefixes(rungs: int, trunk_decay: float) -> None:
    task = TASKS["mlp_teacher"]
    S = M.ladder_length(task)
    P = M.probe_rates(task).size
    trunk, branch = M.pilot_design(task, 0.2, rungs * S, seed=7, rung=S, trunk_decay=trunk_decay)
    assert P + rungs * S + trunk.cost + branch.cost == round(M.PILOT_FRACTION * task.T)
    if trunk_decay:  # the trunk's own anneal: after the branch leaves, to 0, measured densely
        d = round(trunk_decay * trunk.lr.size)
        assert trunk.lr[-1] == 0.0 and np.all(np.diff(trunk.lr[-d:]) < 0) and np.all(trunk.lr[:-d] == 0.2)
        assert trunk.lr.size - d >= branch.prefix and np.sum(trunk.steps >= trunk.lr.size - d) >= min(d, 20)
        trunk = replace(trunk, lr=np.full(trunk.lr.size, 0.2))
    assert trunk.prefix == S and np.all(trunk.lr == 0.2)
    mid = branch.prefix
    np.testing.assert_array_equal(branch.lr[:mid], trunk.lr[:mid])  # it leaves the trunk there
    assert branch.lr[-1] == 0.0 and np.all(np.diff(branch.lr[mid:]) < 0)
    assert {S, mid} <= set(trunk.steps) and mid in branch.steps
    assert np.all(np.diff(branch.steps[1:]) == 1)  # the decay is measured at every step


def test_the_closed_loop_run_is_measured_densely_over_its_last_fifth() -> None:
    """Every hundredth of the run over its last fifth, besides the usual steps and the
    model's time 0: a re-solve at the anneal's start has points in the decay."""
    st = np.asarray(M.closed_loop_record(3000, 67))
    assert set(M.record_steps(3000)) | {67} <= set(st.tolist())
    late = st[st >= 2400]
    assert late[0] == 2400 and late[-1] == 3000 and np.all(np.diff(late) <= 30)


def test_record_steps_weigh_the_late_run() -> None:
    st = M.record_steps(2000)
    assert st[0] == 0 and st[-1] == 2000
    assert np.sum(st >= 1000) >= 20  # at least half the evenly spaced points in the second half


def test_a_continued_run_repeats_its_prefix_bit_for_bit() -> None:
    """What lets the benchmark count a trunk's or a branch's shared updates once."""
    task = replace(TASKS["rf_hard"], T=60)
    short = train(task, 3, np.full(30, 0.5), [10, 30])
    longer = train(task, 3, np.concatenate([np.full(30, 0.5), np.full(30, 0.1)]), [10, 30, 60])
    assert short.loss.tolist() == longer.loss[:3].tolist()


def test_a_controller_asked_at_every_measured_step_splices_where_it_says() -> None:
    """``checkpoints`` as a function: asked after every measured step before T (not at
    the others), and the table it returns there is what the run follows from then on."""
    from optctl.table import ScheduleTable

    task = replace(TASKS["rf_hard"], T=60)
    asked: list[int] = []

    def due(step: int) -> bool:
        asked.append(step)
        return step == 40

    def controller(step: int, steps: np.ndarray, losses: np.ndarray) -> ScheduleTable:
        assert steps[-1] == step == 40 and losses.size == steps.size
        return ScheduleTable(lr=np.concatenate([np.full(40, 0.5), np.full(20, 0.05)]))

    log = train(task, 3, np.full(60, 0.5), [10, 20, 40, 45, 60], controller=controller, checkpoints=due)
    assert asked == [10, 20, 40, 45] and log.tables == 2
    assert np.all(log.lr[:40] == 0.5) and np.all(log.lr[40:] == 0.05)


@pytest.mark.slow
def test_the_quick_benchmark_writes_every_method(tmp_path: Path) -> None:
    pytest.importorskip("schedulefree")
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_real_training.py"), "--quick",
                          "--tasks", "rf_hard", "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    report = (tmp_path / "quick" / "report.md").read_text()
    for method in ("optctl (open loop)", "optctl (closed loop)", "cosine (full grid)", "wsd (equal budget)",
                   "Schedule-Free", "refined", "Multi-Power Law"):
        assert f"| {method} |" in report
    assert "Horizon transfer" in report and (tmp_path / "quick" / "rf_hard.png").exists()


@pytest.mark.slow
def test_the_partial_rerun_replays_the_accepted_model_and_rejudges_the_gate() -> None:
    """A record of closed-loop runs of a 'network' that is the model itself, measured with
    30% log noise: the pilots' fit is the truth and every refit is 25% too low. The replayed
    prediction of the accepted model is the truth's (no refit beats it beyond the noise),
    the latest refit's is 25% off; a gate judged with fixed thresholds is judged again net
    of each pilot's noise, its edge and phase reasons carried over."""
    from real_training.partial import rejudge, replay_predictions

    from optctl.calibrate.params import predict

    truth = {"a": 2.0, "b": 2.8, "sigma": 0.5, "lr_scale": 0.5, "loss_scale": 1.0, "loss_offset": 0.0}
    low = {**truth, "loss_scale": 0.75}
    T, m, N = 400, 4, M.FIT_OPTIONS.N
    lr = np.concatenate([np.full(300, 0.2), np.linspace(0.2, 0.0, 100)])
    st = M.record_steps(T)
    rng = np.random.default_rng(0)
    runs = []
    for seed in range(3):
        y = predict(truth, lr, m, N)[st] * np.exp(0.3 * rng.standard_normal(st.size))
        hist = [{"step": k, "params": low, "predicted_final_loss": float(predict(low, lr, m, N)[-1])}
                for k in (100, 200, 300)]
        runs.append({"seed": seed, "final": float(predict(truth, lr, m, N)[-1]), "steps": st.tolist(),
                     "loss": y.tolist(), "lr": lr.tolist(), "history": hist})
    pst = np.arange(0, 101, 2)
    pilots = []
    for name, rate in (("trunk", 0.2), ("rung", 0.1)):
        pilot_lr = np.full(100, rate)
        pilot = predict(truth, pilot_lr, m, N)[pst] * np.exp(0.3 * rng.standard_normal(pst.size))
        pilots.append({"name": name, "steps": pst.tolist(), "loss": pilot.tolist(), "lr": pilot_lr.tolist()})
    quality = {"ok": False, "held_out_rms_log_error": {"trunk": 0.33, "rung": 0.31},
               "reasons": ["the fitted model misses curve 'trunk' (rms log error 0.320 > 0.1)",
                           "the intervals of a and b do not fix the phase (easy or hard)"]}
    rec = {"main_phase_start": 0, "batch_size": m, "runs": runs, "pilots": pilots,
           "fit": {"params": truth, "rms_log_error": {"trunk": 0.32, "rung": 0.3}, "phase": "unsure",
                   "quality": quality}}
    preds = replay_predictions(rec)
    assert [p["refit_error"] for p in preds] == pytest.approx([-0.25] * 3, abs=1e-9)
    assert [p["accepted_error"] for p in preds] == pytest.approx([0.0] * 3, abs=1e-9)
    rejudge(rec)
    q = rec["fit"]["quality"]
    assert q["rejudged"] and q["noise"]["trunk"] == pytest.approx(0.3, rel=0.45)
    assert q["noise"]["rung"] == pytest.approx(0.3, rel=0.45)  # 51 points: relative SE 0.2
    assert not any("misses curve" in r or "fitted without" in r for r in q["reasons"])
    assert q["reasons"] == ["the intervals of a and b do not fix the phase (easy or hard)"] and not q["ok"]


@pytest.mark.parametrize("s0", [0, 40])
def test_the_diagnosis_splits_a_prediction_into_level_and_drop(s0: int) -> None:
    """A run measured exactly on the model's curve (from its time ``s0``): the split at the
    re-solve finds no level error and the measured drop equal to the predicted one; a model
    25% too high everywhere has a +25% level error and the same drop; a larger offset
    predicts a smaller drop (positive sensitivity), a larger noise a larger one. The decay
    step is the first measured step past T/2 whose rate is below half the peak."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_closed_loop_diagnosis import decay_step, split

    from optctl.calibrate.params import predict

    truth = {"a": 2.0, "b": 2.8, "sigma": 0.5, "lr_scale": 0.5, "loss_scale": 1.0, "loss_offset": 0.05}
    T, m, N = 400, 4, M.FIT_OPTIONS.N
    lr = np.concatenate([np.full(300, 0.2), np.linspace(0.2, 0.0, 100)])
    st = M.record_steps(T)
    st = st[st >= s0]
    model = predict(truth, lr[s0:], m, N)
    run = {"seed": 0, "final": float(model[-1]), "steps": st.tolist(), "loss": model[st - s0].tolist(),
           "lr": lr.tolist()}
    rec = {"T": T, "main_phase_start": s0, "batch_size": m}
    s = split(rec, run, truth, 300)
    assert s["level_predicted"] == pytest.approx(s["level_measured"], rel=1e-9)
    assert s["drop_predicted"] == pytest.approx(s["drop_measured"], rel=1e-9)
    assert s["drop_measured"] < 0.9  # the decay removes part of the loss
    high = split(rec, run, {**truth, "loss_scale": 1.25, "loss_offset": 0.0625}, 300)
    assert high["level_predicted"] / high["level_measured"] == pytest.approx(1.25, rel=1e-9)
    assert high["drop_predicted"] == pytest.approx(s["drop_measured"], rel=1e-9)
    assert s["sens_loss_offset"] > 0 and s["sens_sigma"] < 0
    assert decay_step(run, T) == next(int(k) for k in st if k > 200 and lr[min(k, T - 1)] < 0.1)


def test_the_fit_takes_only_the_stable_rungs_below_the_chosen_rate() -> None:
    """The ladder of the character-level task: 0.5 unstable, 0.25 and 0.125 stable but
    ending worse than 0.0625 (the choice), 0.0312 below it. Only 0.0312 joins the fit;
    a ladder whose choice is its first stable rung keeps every other stable rung."""
    rates = [0.5, 0.25, 0.125, 0.0625, 0.03125]
    stable = [False, True, True, True, True]
    ladder = [{"rate": r, "stable": s} for r, s in zip(rates, stable, strict=True)]
    assert M.rungs_to_fit(ladder, 3) == [4]
    assert M.rungs_to_fit(ladder, 1) == [2, 3, 4]
    ladder[4]["stable"] = False
    assert M.rungs_to_fit(ladder, 3) == []


def test_the_truth_split_simulates_the_task_and_separates_luck_from_misfit() -> None:
    """rf_hard's simulation (the task's SGD, sample by sample) averages to the per-step
    replay of its true parameters within a few standard errors, and a single run's final
    loss scatters around it; the split of a stored run puts the measured final's distance
    from the expectation in the fluctuation and the prediction's in the misfit."""
    from bench_closed_loop_truth import simulate, split_truth, true_params

    from optctl.calibrate.params import predict

    p, N = true_params()
    assert (p["a"], p["b"], N) == (TASKS["rf_hard"].options["a"], TASKS["rf_hard"].options["b"],
                                   TASKS["rf_hard"].options["N"])
    lr = np.concatenate([np.full(60, 0.8), np.linspace(0.8, 0.0, 40)])
    L = simulate(lr, 4, 300, seed=1)
    E = predict(p, lr, 4, N)
    se = L.std(axis=0, ddof=1) / np.sqrt(L.shape[0])
    z = (L.mean(axis=0) - E) / np.maximum(se, 1e-12)
    assert L.shape == (300, 101) and L[0, 0] == pytest.approx(E[0])
    assert np.abs(z[[20, 60, 100]]).max() < 4
    assert L[:, -1].std() > 0
    run = {"seed": 3, "final": 1.1 * E[-1], "lr": lr.tolist(),
           "history": [{"step": 60, "predicted_final_loss": 1.21 * E[-1]}]}
    row = split_truth({"batch_size": 4, "runs": [run]})[0]
    assert row["fluctuation"] == pytest.approx(0.1)
    assert row["checkpoints"][0]["misfit"] == pytest.approx(0.21)
    assert row["checkpoints"][0]["error"] == pytest.approx(0.1)


def test_the_part_reports_each_seeds_interval_and_the_coverage() -> None:
    """Two seeds, one measured inside its interval and one outside: 1/2 per task and
    over all seeds; the last re-solve's trigger and the anneal's start are shown. Without
    its model-error term (sd 0.04 of 0.058) the interval is narrower and holds neither."""
    from real_training.partial import interval_markdown

    def run(seed: int, final: float, trigger: str) -> dict:
        iv = {"prediction": 1.0, "low": 1 / 1.1, "high": 1.1, "level": 0.9,
              "sd_log": float(np.log(1.1) / 1.6448536), "sd_model": 0.04}
        return {"seed": seed, "final": final, "history": [
            {"step": 900, "predicted_final_loss": 1.0, "interval": iv, "trigger": "checkpoint", "anneal_step": 950},
            {"step": 960, "predicted_final_loss": 1.0, "interval": iv, "trigger": trigger, "anneal_step": 950}]}

    md = "\n".join(interval_markdown([{"task": "t", "T": 1000, "runs": [run(0, 1.08, "anneal"),
                                                                         run(1, 1.2, "checkpoint")]}]))
    assert ("| t | 0.960 T a (anneal 0.950), -7.4% ± 9.5% ✓; 0.960 T c (anneal 0.950), -16.7% ± 9.5% ✗ "
            "| 1/2 | 0/2 |") in md
    assert "Coverage over all 2 seeds: 1/2 (50%; nominal 90%); without the model-error term 0/2." in md


def test_the_part_pairs_the_loops_final_losses_with_the_previous_version() -> None:
    """Per task, new / old − 1 of the final loss on the seeds both versions ran; a task run
    by the same version, or missing before, is left out."""
    from real_training.partial import paired_markdown

    new = [{"task": "t", "prediction_version": 5, "runs": [{"seed": s, "final": f} for s, f in ((0, 1.1), (1, 0.9),
                                                                                                 (2, 1.0))]},
           {"task": "u", "prediction_version": 5, "runs": [{"seed": 0, "final": 1.0}, {"seed": 1, "final": 1.0}]}]
    old = {"t": {"prediction_version": 4, "runs": [{"seed": s, "final": 1.0} for s in (0, 1, 7)]},
           "u": {"prediction_version": 5, "runs": [{"seed": 0, "final": 2.0}, {"seed": 1, "final": 2.0}]}}
    md = "\n".join(paired_markdown(new, old))
    assert "| t | 4 → 5 | 2 | +0.00% ± 10.00% | +10.00%, -10.00% |" in md
    assert "| u |" not in md and paired_markdown(new, {}) == []


def test_a_methods_mean_curve_is_taken_where_every_seed_measured() -> None:
    # the closed loop measures more often near its re-solves, at different steps per seed
    from real_training.pipeline import _mean_curve

    runs = [{"steps": [0, 5, 8, 10], "loss": [3.0, 2.0, 1.7, 1.0]},
            {"steps": [0, 5, 7, 10], "loss": [5.0, 4.0, 9.0, 3.0]}]
    assert _mean_curve(runs) == {"curve_steps": [0, 5, 10], "curve_mean": [4.0, 3.0, 2.0]}


def test_the_report_is_written_again_from_the_stored_results(tmp_path: Path) -> None:
    import json
    import subprocess

    root = Path(__file__).resolve().parents[1]
    stored = json.loads((root / "results" / "real_training" / "results.json").read_text())
    stored["tasks"] = stored["tasks"][-1:]  # one task keeps it short
    (tmp_path / "results.json").write_text(json.dumps(stored))
    out = subprocess.run([sys.executable, str(root / "benchmarks" / "bench_real_training.py"), "--report-only",
                          "--out", str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    report = (tmp_path / "report.md").read_text()
    task = stored["tasks"][0]["task"]
    assert f"## {task}" in report and "Why, as measured" in report and "## What was tried" in report
    assert f"{stored['cost']['runs']} training runs" in report and (tmp_path / f"{task}.png").exists()


def test_the_run_cache_is_named_by_the_code_too(monkeypatch: pytest.MonkeyPatch) -> None:
    from real_training import jobs

    train = {"kind": "train", "task": "rf_hard", "seed": 0, "lr": np.full(10, 0.1)}
    loop = {"kind": "closed_loop", "task": "rf_hard", "seed": 0}
    before = jobs._digest(train), jobs._digest(loop)
    monkeypatch.setattr(jobs, "OPTCTL_CODE", "changed")
    assert jobs._digest(train) == before[0] and jobs._digest(loop) != before[1]
    monkeypatch.setattr(jobs, "TRAINING_CODE", "changed")
    assert jobs._digest(train) != before[0]
