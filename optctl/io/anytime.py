"""Files of the anytime study and of branching plans: tables, summaries, run folders.

The study (:mod:`optctl.studies.anytime`) hands over plain data: its summary, its
markdown table, its arrays, the branching table as a mapping and a function that draws
its figure into a path. Every file is written atomically.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from optctl.io.config import RunConfig, dump_config
from optctl.io.files import staged_dir, write_arrays, write_json, write_text_atomic

BRANCHING_TABLE = "branching.json"
Draw = Callable[[Path], None]


def write_anytime(folder: Path, name: str, summary: Mapping[str, Any], markdown: str,
                  arrays: Mapping[str, np.ndarray], draw: Draw) -> None:
    """``<name>.md`` (the regret table), ``<name>.json`` (every number), ``<name>.npz``
    (the trunk and the branches) and ``<name>.png`` under ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    write_json(folder / f"{name}.json", summary)
    write_text_atomic(folder / f"{name}.md", markdown)
    write_arrays(folder / f"{name}.npz", arrays)
    draw(folder / f"{name}.png")


def write_anytime_run(out: Path, cfg: RunConfig, summary: Mapping[str, Any], markdown: str,
                      arrays: Mapping[str, np.ndarray], table: Mapping[str, Any], draw: Draw, *,
                      overwrite: bool = False) -> None:
    """The run folder of ``optctl solve`` on a config with ``horizons``, assembled under a
    temporary name: ``config.yaml``, ``summary.json``, ``regret.md``, ``arrays.npz``, the
    branching table ``branching.json`` and the figure ``anytime.png``."""
    with staged_dir(out, overwrite=overwrite) as tmp:
        write_text_atomic(tmp / "config.yaml", dump_config(cfg))
        write_json(tmp / "summary.json", summary)
        write_text_atomic(tmp / "regret.md", markdown)
        write_arrays(tmp / "arrays.npz", arrays)
        write_text_atomic(tmp / BRANCHING_TABLE, json.dumps(dict(table)))
        draw(tmp / "anytime.png")
