"""The copy-pasteable snippets of the ecosystem pages in docs/ run, and do what the page says.

Each page's ```python blocks are run in order in one namespace (from the repository
root, as a reader would paste them); the test then checks the values the snippets
computed against the table.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import LINEAR_WARMUP_RTOL, MOMENTUM_EMA_RTOL, TABLE_EXACT_RTOL

ROOT = Path(__file__).resolve().parents[1]


def run_page(name: str) -> dict[str, Any]:
    text = (ROOT / "docs" / name).read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert blocks, f"docs/{name} has no python snippet"
    namespace: dict[str, Any] = {"__name__": f"docs_{name}"}
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        for i, block in enumerate(blocks):
            exec(compile(block, f"docs/{name}[block {i}]", "exec"), namespace)
    finally:
        os.chdir(cwd)
    return namespace


def test_torch_page() -> None:
    pytest.importorskip("torch")
    ns = run_page("torch.md")
    table = ns["table"]
    assert table.T == 300 and ns["seen"] == list(table.lr)
    warm = np.array(ns["warm_seen"])
    np.testing.assert_allclose(warm[:10], table.lr[0] * (0.1 + 0.09 * np.arange(10)),
                               rtol=LINEAR_WARMUP_RTOL)
    np.testing.assert_allclose(warm[10:], table.lr, rtol=TABLE_EXACT_RTOL, atol=0)
    assert ns["sched2"]._schedulers[1].position == table.T  # restored at the end of the run
    assert ns["sizes"] == [table.batch_size_at(t) for t in range(table.T)]


def test_jax_page() -> None:
    pytest.importorskip("optax")
    ns = run_page("jax.md")
    assert ns["max_diff"] == 0.0
    # the EMA recursion of the table, in numpy: v = μ v + (1 − μ) g, p −= lr v
    table, h = ns["table_m"], np.array([1.0, 0.3, 0.05])
    p, v = np.ones(3), np.zeros(3)
    for t in range(table.T):
        v = table.momentum[t] * v + (1 - table.momentum[t]) * h * p
        p = p - table.lr[t] * v
    np.testing.assert_allclose(ns["final"], p, rtol=MOMENTUM_EMA_RTOL)


@pytest.mark.slow
def test_hugging_face_page() -> None:
    """A real transformers Trainer, a few hundred updates on CPU, the table's lr at each."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    ns = run_page("huggingface.md")
    table = ns["table"]
    assert len(ns["record"].lrs) == table.T
    np.testing.assert_allclose(ns["record"].lrs, table.lr, rtol=TABLE_EXACT_RTOL, atol=0)
    assert ns["sched"].position == table.T


@pytest.mark.slow
def test_lightning_page() -> None:
    """A real Lightning Trainer with interval 'step': the table's lr at each update."""
    pytest.importorskip("lightning")
    ns = run_page("lightning.md")
    table = ns["table"]
    assert len(ns["module"].lrs) == table.T
    np.testing.assert_allclose(ns["module"].lrs, table.lr, rtol=TABLE_EXACT_RTOL, atol=0)


@pytest.mark.slow
def test_hugging_face_page_create_scheduler_override() -> None:
    """The page's Trainer subclass: the Trainer builds its own optimizer, the table its scheduler."""
    pytest.importorskip("transformers")
    pytest.importorskip("accelerate")
    ns = run_page("huggingface.md")
    table = ns["table"]
    record = ns["RecordLR"]()
    trainer = ns["TableTrainer"](model=ns["TinyRegressor"](), args=ns["args"], train_dataset=ns["Points"](),
                                 callbacks=[record])
    trainer.train()
    np.testing.assert_allclose(record.lrs, table.lr, rtol=TABLE_EXACT_RTOL, atol=0)
