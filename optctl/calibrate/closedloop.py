"""Closed-loop schedules: refit on the run's own loss curve, re-solve the rest of the horizon.

An open-loop table is solved once from the pilots' fit. In the closed loop (model
predictive control), at a few checkpoints of the real run the model is refitted on the
pilots *and* the run's held-out loss so far, and the remaining updates are re-solved
from the state the updates already taken lead to (:func:`optctl.solver.solve.solve` with
``prefix=``). The training job continues on the new table without restarting
(:meth:`optctl.torch.TableScheduler.splice`)::

    loop = ClosedLoop(pilots, fit_result, table, eta_max=peak_lr)
    logged_steps, logged_losses = [0], [loss_at_step_0]  # the run's loss at step 0 is required
    for t in range(T):
        ...  # one update, the held-out loss logged (appended) at some steps
        if logged_steps[-1] == t + 1 and loop.due(t + 1, checkpoints):
            scheduler.splice(loop.update(t + 1, logged_steps, logged_losses))

Every re-solve records the refitted parameters and the final loss it predicts
(:attr:`ClosedLoop.history`), so how well the loop predicted the run can be checked.

**How the refit weighs the run.** A run near its stability edge scatters by 30-50% from
point to point while its rate is large and by 1-2% once the rate has decayed. Weighted
equally, the scattered plateau outvoted the precise late points: on two real networks
(docs/real_training.md) the refit put the held-out floor too low, attributed the plateau
to noise a decay removes, and predicted the final loss 11-21% too low even at 9/10 of the
run, after the loss had levelled off.
The refits therefore weigh each point by the inverse of its local noise variance
(``fit.weights: noise``, :func:`~optctl.calibrate.fitmodel.local_noise`; every curve
still counts equally), and the loop's prediction of the final loss is the latest refit's.

**The last re-solve sees the anneal.** In the hard phase the solved schedule holds its
largest rate until the last few percent of the run; at 9/10 of the run nothing in the
run's curve says how its loss responds to the decay, which is what the final loss depends
on (docs/real_training.md). :meth:`ClosedLoop.due` therefore asks for one more re-solve
after the last fixed checkpoint, at the first measured step at which the rate has fallen
for good to :data:`ANNEAL_FRACTION` of the largest rate the table has from that checkpoint
on (:meth:`ClosedLoop.anneal_step`). For a table that holds its largest rate past the
checkpoint this is where its anneal begins. A table that began to anneal earlier is still
decaying there, and a single run's loss then still strays from its expectation by as much
as the rate allows (on rf_hard seen 6.5% below it at 9/10 of the run, a deviation that was
gone at the end, as the rate fell): its extra re-solve comes once the rate has halved
again, where the run's loss strays less (up to version 4 it got none). Either way, the
loop's prediction at every re-solve is recorded, not only at the last.

**How far to trust the prediction.** Every re-solve records an interval of the final
loss (:func:`~optctl.calibrate.fitting.final_loss_interval`: the refit's
autocorrelation-robust parameter covariance, linearised, and the noise of a loss
measured after an anneal) at :data:`INTERVAL_LEVEL`. Neither part sees the model's own
error, and up to version 4 the interval covered the measured final loss on 15 of 24
network runs. From version 5 it also holds a model-error term: how far the previous
model (the previous refit, or the pilots' fit at the first re-solve) missed the run's
points it had not seen, net of their noise (:func:`held_out_error`).

**The accepted model.** Each re-solve also records the final loss predicted by the
*accepted* model: at first the pilots' fit; at each checkpoint the previous refit replaces
it only if it predicts the run's points measured since that refit (held out from it)
better, by more than :data:`ACCEPT_Z` standard errors of the paired difference of squared
log errors (:func:`refit_wins`). Up to version 2 of the loop this was its prediction (a
refit with equal weights followed one run's noise); it never sees the points after the
previous checkpoint, so it cannot see a floor that the run reaches late.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from optctl.calibrate.curves import LossCurve, curve_from_arrays
from optctl.calibrate.fitmodel import local_noise
from optctl.calibrate.fitting import final_loss_interval, fit
from optctl.calibrate.params import FitOptions, FitResult, model_eta_bound, model_spec, predict
from optctl.errors import SpecError
from optctl.solver.solve import solve
from optctl.spec import ProblemSpec, SolverOptions
from optctl.table import ScheduleTable

# Bumped whenever the loop's refit or prediction changes, so cached runs are not reused.
PREDICTION_VERSION = 5
# The anneal has begun when the table's rate has fallen to this fraction of its largest
# rate (from the last checkpoint on, for the extra re-solve) for good
# (:meth:`ClosedLoop.anneal_step`).
ANNEAL_FRACTION = 0.5
# The coverage of the interval of the final loss recorded at every re-solve.
INTERVAL_LEVEL = 0.9
# A refit replaces the model that predicts the run only when, on the run's points measured
# since that refit (which it has not seen), its squared log errors are lower than the
# current model's by more than this many standard errors of the paired difference.
ACCEPT_Z = 1.645


class ClosedLoop:
    """Model predictive control of one training run's learning rate.

    ``pilots`` are the curves the first fit used, ``result`` that fit, ``table`` the
    open-loop table the run starts on (real learning rates), ``eta_max`` the largest real
    learning rate any re-solve may use, ``batch_size`` the run's batch. Refits use
    ``fit_options`` (default: the first fit's, without bootstrap or hold-out, warm-started
    from the previous parameters) with ``refit_weights`` (default ``"noise"``, see the
    module's text); re-solves use ``solver``. ``anneal_fraction`` (``None``: off) defines
where the table's anneal begins (:meth:`anneal_step`, :meth:`due`); ``level`` the
interval of the predicted final loss. ``start``: the run's step at
    which the model's time 0 lies, when the fit leaves out an initial transient
    (:func:`~optctl.calibrate.curves.main_phase_start`; the pilots are then curves from
    their own start, and the run must measure its loss at ``start``).
    """

    def __init__(self, pilots: Sequence[LossCurve], result: FitResult, table: ScheduleTable, *,
                 eta_max: float, batch_size: float, solver: SolverOptions | None = None,
                 fit_options: FitOptions | None = None, name: str = "run", start: int = 0,
                 refit_weights: Literal["curve", "noise"] = "noise",
                 anneal_fraction: float | None = ANNEAL_FRACTION, level: float = INTERVAL_LEVEL) -> None:
        if not eta_max > 0:
            raise SpecError("eta_max", eta_max, "give the largest real learning rate a re-solve may use (> 0)")
        if not 0 <= start < table.T:
            raise SpecError("start", start, f"give the run's step where the model's time 0 is, in [0, {table.T})")
        if anneal_fraction is not None and not 0 < anneal_fraction < 1:
            raise SpecError("anneal_fraction", anneal_fraction,
                            "give the fraction of the largest rate at which the anneal has begun, in (0, 1), or None")
        if not 0.5 <= level < 1:
            raise SpecError("level", level, "give the interval's coverage in [0.5, 1), e.g. 0.9")
        self.anneal_fraction = anneal_fraction
        self.level = float(level)
        self.annealed = False  # the extra re-solve at the anneal has been asked for
        self._trigger = "checkpoint"  # why the next re-solve happens
        self._checkpoints_done: set[int] = set()  # the checkpoints :meth:`due` has answered
        self.start = int(start)
        self.pilots = list(pilots)
        self.table = table
        self.eta_max = float(eta_max)
        self.batch_size = float(batch_size)
        self.solver = SolverOptions() if solver is None else solver
        self.options = dataclasses.replace(result.options if fit_options is None else fit_options,
                                           bootstrap=0, holdout=False, progress=False, weights=refit_weights)
        self.params = dict(result.params)
        self.accepted = dict(result.params)  # the model that predicts the run
        self.since = self.start  # the last step the latest refit saw
        self.name = name
        self.history: list[dict[str, Any]] = []

    def spec(self, params: dict[str, float]) -> ProblemSpec:
        """The fitted model for the run's horizon, its bound in the fit's model units."""
        m = self.batch_size
        return model_spec(params, self.options, self.table.T - self.start, m,
                          model_eta_bound(params, self.options, m, self.eta_max))

    def anneal_step(self, after: int | None = None) -> int:
        """Where the current table's anneal begins: the first step after which its rate
        stays at or below ``anneal_fraction`` of its largest rate from step ``after`` on
        (default: over the model's part of the run, from ``start``); ``T`` if it never
        falls that far."""
        f = ANNEAL_FRACTION if self.anneal_fraction is None else self.anneal_fraction
        s = self.start if after is None else max(int(after), self.start)
        return s + anneal_begins(self.table.lr[s:], f)

    def due(self, step: int, checkpoints: Sequence[int]) -> bool:
        """Whether to re-solve after update ``step`` (call it at every measured step):
        at each of ``checkpoints`` (at the first measured step at or after it, so that a
        checkpoint between two measurements is not lost), and once more after the last of them at the first
        step at which the rate has fallen for good to ``anneal_fraction`` of the table's
        largest rate from that checkpoint on (:meth:`anneal_step` with ``after``), so
        that the last refit sees the loss respond to part of the remaining decay. A
        table that holds its largest rate past the last checkpoint gets it where its
        anneal begins; one that anneals earlier, once its rate has fallen that far again;
        one whose rate stays above it, none."""
        passed = {c for c in checkpoints if c <= step} - self._checkpoints_done
        if passed:
            self._checkpoints_done |= passed
            return True
        if self.anneal_fraction is None or self.annealed or not checkpoints:
            return False
        last = max(checkpoints)
        if step <= last or step >= self.table.T:
            return False
        begins = self.anneal_step(last)
        if last < begins <= step:
            self.annealed, self._trigger = True, "anneal"
            return True
        return False

    def update(self, step: int, steps: np.ndarray, losses: np.ndarray) -> ScheduleTable:
        """Refit on the pilots and the run's losses at ``steps`` (``≤ step``, starting at 0),
        re-solve updates ``step..T−1``, and return the table to continue on."""
        steps, losses = np.asarray(steps), np.asarray(losses, dtype=float)
        keep = steps <= step
        run = self._run_curve(steps[keep], losses[keep])
        # the previous model (the pilots' fit at first), on the run's points it has not seen
        missed = held_out_error(self.params, run, self.since - self.start, self.batch_size, self.options)
        verdict = None
        if self.history:
            verdict = refit_wins(self.accepted, self.params, run, self.since - self.start, self.batch_size,
                                 self.options)
            if verdict["accepted"]:
                self.accepted = dict(self.params)
        res = fit([*self.pilots, run], self.options, start=self.params)
        p = res.params
        spec = self.spec(p)
        s0 = self.start
        past = self.table.lr[s0:step]  # the updates the model has seen
        rest = solve(spec, self.solver, prefix=past / p["lr_scale"],
                     init=np.minimum(self.table.lr[step:] / p["lr_scale"], spec.eta_max))
        lr = np.concatenate([self.table.lr[:step],
                             np.minimum(rest.eta[step - s0:] * p["lr_scale"], self.eta_max)])
        predicted, accepted = (float(predict(q, lr[s0:], self.batch_size, self.options.N,
                                             tail=self.options.tail)[-1]) for q in (p, self.accepted))
        interval = final_loss_interval([*self.pilots, run], self.options, p, lr[s0:], self.batch_size,
                                       self.level, model_sd=missed["sd"])
        self.history.append({"step": step, "params": p, "rms_log_error": res.rms_log_error,
                             "predicted_final_loss": predicted, "refit_predicted_final_loss": predicted,
                             "accepted_predicted_final_loss": accepted,
                             "accepted_params": dict(self.accepted), "validation": verdict,
                             "weights": self.options.weights, "status": rest.status,
                             "interval": interval, "held_out_error": missed,
                             "anneal_step": s0 + anneal_begins(lr[s0:], self.anneal_fraction or ANNEAL_FRACTION),
                             "trigger": self._trigger})
        self._trigger = "checkpoint"
        self.since = step
        source = {**self.table.source, "closed_loop": self.history}
        # with a transient before the model's time 0 the model covers the rows from start on
        solved = s0 == 0
        self.table = dataclasses.replace(self.table, lr=lr, lr_scale=p["lr_scale"],
                                         spec=spec.to_dict() if solved else {},
                                         solver=self.solver.to_dict(), source=source,
                                         horizon={"mode": "solved" if solved else "given"}, controls={})
        self.params = p
        return self.table

    def _run_curve(self, steps: np.ndarray, losses: np.ndarray) -> LossCurve:
        """The run so far as a loss curve from ``start`` on, with the rate of every update."""
        T = self.table.T
        if self.start not in steps:
            raise SpecError("steps", f"{steps.size} measured steps",
                            f"the run must measure its loss at step {self.start} (the model's time 0)")
        keep = steps >= self.start
        steps, losses = steps[keep], losses[keep]
        lr_rows = self.table.lr[np.minimum(steps, T - 1)]
        curve = curve_from_arrays(self.name, steps - self.start, lr_rows, losses, self.batch_size)
        # the rates the run used at every update, not only at the measured rows
        used = self.table.lr[self.start:int(steps[-1])].copy()
        used.setflags(write=False)
        return dataclasses.replace(curve, lr=used)


def anneal_begins(lr: np.ndarray, fraction: float) -> int:
    """The first step after which ``lr`` stays at or below ``fraction`` of its largest value
    (``len(lr)`` if it ends above it)."""
    lr = np.asarray(lr, dtype=float)
    above = np.flatnonzero(lr > fraction * lr.max())
    return int(above[-1]) + 1 if above.size else 0


def refit_wins(current: dict[str, float], refit: dict[str, float], run: LossCurve, since: int,
               batch_size: float, options: FitOptions, z: float = ACCEPT_Z) -> dict[str, Any]:
    """Whether ``refit`` predicts the points of ``run`` after step ``since`` (in the run's
    model time; the points the refit has not seen) better than ``current``: the mean
    paired difference of squared log errors, its standard error, and ``accepted`` when
    the mean exceeds ``z`` standard errors. With fewer than 3 such points nothing is
    accepted."""
    keep = run.steps > since
    st, y = run.steps[keep], run.loss[keep]
    if st.size < 3:
        return {"accepted": False, "gain": 0.0, "se": float("inf"), "points": int(st.size)}
    lr = np.concatenate([run.lr, run.lr[-1:]])[: int(st[-1])]
    err = [np.log(predict(p, lr, batch_size, options.N, tail=options.tail)[st] / y) ** 2
           for p in (current, refit)]
    d = err[0] - err[1]
    gain, se = float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))
    return {"accepted": bool(gain > z * se), "gain": gain, "se": se, "points": int(st.size)}


def held_out_error(params: dict[str, float], run: LossCurve, since: int, batch_size: float,
                   options: FitOptions) -> dict[str, float]:
    """How far the model ``params`` misses the points of ``run`` after step ``since`` (in
    the run's model time; points it has not seen), beyond their noise: ``mean``, the mean
    log error ``log(predicted / measured)`` weighted by the inverse of each point's local
    noise variance (:func:`~optctl.calibrate.fitmodel.local_noise` of the whole run), its
    standard error ``se`` (the points taken as independent), and ``sd = √max(mean² − se², 0)``,
    the model error used by the closed loop's interval. With fewer than 3 such points
    ``sd`` is 0 (nothing measured)."""
    keep = run.steps > since
    st, y = run.steps[keep], run.loss[keep]
    if st.size < 3:
        return {"mean": 0.0, "se": math.inf, "sd": 0.0, "points": int(st.size)}
    w = local_noise(np.log(run.loss))[keep] ** -2.0
    lr = np.concatenate([run.lr, run.lr[-1:]])[: int(st[-1])]
    r = np.log(predict(params, lr, batch_size, options.N, tail=options.tail)[st] / y)
    mean, se = float(np.sum(w * r) / np.sum(w)), float(1.0 / np.sqrt(np.sum(w)))
    return {"mean": mean, "se": se, "sd": math.sqrt(max(mean * mean - se * se, 0.0)), "points": int(st.size)}
