"""A schedule table re-solved for another horizon, every control column kept."""

from __future__ import annotations

import warnings

import numpy as np

from optctl.errors import ExportError, HorizonWarning
from optctl.solver.solve import solve
from optctl.spec import ControlSpec, ProblemSpec, SolverOptions
from optctl.table import ScheduleTable


def resolve_table(table: ScheduleTable, T: int) -> ScheduleTable:
    """The optimum for horizon ``T`` of the problem a table was solved for.

    Runs :func:`optctl.solver.solve` on the table's stored spec with the new ``T``, its
    stored solver options and its controls (a momentum or batch-size table gets its
    columns re-solved too), in the table's units (``lr_scale``): what
    ``optctl solve CONFIG --T T`` does for a run. A :class:`~optctl.errors.HorizonWarning`
    says what was done. The cheap alternative without a solve is
    :meth:`ScheduleTable.for_horizon` (``mode="rescale"``).
    """
    if isinstance(T, bool) or not isinstance(T, (int, np.integer)) or T < 1:
        raise ExportError(f"T = {T!r}: pass a positive integer number of updates")
    T = int(T)
    if T == table.T:
        return table
    if not table.spec:
        raise ExportError("this table has no model parameters, so it cannot be re-solved; "
                          "build it for the horizon you need")
    spec = ProblemSpec(**{**table.spec, "T": T})
    controls = ControlSpec(**{**table.controls, "controls": tuple(table.controls["controls"])}) \
        if table.controls else ControlSpec()
    result = solve(spec, SolverOptions(**table.solver), controls=controls)
    warnings.warn(f"re-solved the schedule for T = {T} (table was for T = {table.T}): "
                  f"L_T = {result.final_loss:.6e}, IPOPT {result.status}", HorizonWarning,
                  stacklevel=2)
    # the original's provenance (its config name, run, ...) stays, with what was done added
    fresh = ("kind", "final_loss", "status", "success", "versions")  # the new solve's own
    source = {**{k: v for k, v in table.source.items() if k not in fresh},
              "resolved_from_T": table.T, "resolved_from_table": table.content_hash}
    return result.to_table(source=source,
                           lr_scale=table.lr_scale)
