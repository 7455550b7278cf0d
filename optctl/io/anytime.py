"""Files of the anytime study and of branching plans: tables, summaries, schedules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from optctl.io.files import write_arrays, write_json, write_text_atomic
from optctl.studies.anytime import AnytimeReport


def write_anytime(folder: Path, report: AnytimeReport) -> dict[str, Any]:
    """``<name>.md`` (the regret table), ``<name>.json`` (every number) and
    ``<name>.npz`` (the trunk and the branches) under ``folder``, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    data = report.to_dict()
    data["times_s"] = {k: round(v, 2) for k, v in report.times.items()}
    write_json(folder / f"{report.name}.json", data)
    write_text_atomic(folder / f"{report.name}.md", report.markdown())
    b = report.branching
    arrays = {"trunk": b.trunk, "leave": np.asarray(b.leave), "horizons": np.asarray(b.horizons)}
    arrays.update({f"branch_{i}": br for i, br in enumerate(b.branches)})
    write_arrays(folder / f"{report.name}.npz", arrays)
    return data
