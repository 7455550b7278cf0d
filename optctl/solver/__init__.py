"""The solve layer: control problems → IPOPT → :class:`~optctl.solver.result.ScheduleResult`.

- :mod:`~optctl.solver.solve`: ``solve``, the one verb for every control set;
- :mod:`~optctl.solver.controls`: the control sets (learning rate; with batch size; with
  momentum): bounds, dynamics, starts, replay;
- :mod:`~optctl.solver.plan` resolves ``auto`` options; :mod:`~optctl.solver.grid` holds
  control grids; :mod:`~optctl.solver.dynamics` the CasADi dynamics;
  :mod:`~optctl.solver.transcribe` builds the NLP; :mod:`~optctl.solver.ipopt` drives IPOPT;
- :mod:`~optctl.solver.result`: the result and the formats it owns;
- :mod:`~optctl.solver.job`: the solve job (optimum plus tuned baselines);
  :mod:`~optctl.solver.horizon`: a table re-solved for another horizon;
  :mod:`~optctl.solver.evaluate`: the fast approximate loss used to tune baselines.

``grid``, ``plan``, ``result`` and ``evaluate`` import neither CasADi nor jax.
"""
