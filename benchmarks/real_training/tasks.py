"""The benchmark's training tasks: CPU-sized, data shipped with installed packages or generated.

Each :class:`Task` builds, for a seed, a fresh network, a stream of training batches and
a held-out loss; :func:`train` runs it for one schedule and records the held-out loss at
the requested steps. A seed fixes the initial weights and the order of the data, so two
schedules run on the same seed are a paired comparison.

- ``mlp_teacher``: a two-layer ReLU network learns, online with SGD, a generated teacher
  (power-law inputs, a linear part with random-feature coefficients, a random tanh part,
  label noise): the network of ``examples/calibrate_mlp.py``. Held-out: test excess loss.
- ``digits``: scikit-learn's bundled 8×8 digit images (1797), a ReLU MLP trained with SGD
  on minibatches of the training split; held-out: cross-entropy on a fixed test split.
- ``charlm``: a small character-level transformer language model trained with AdamW on
  the running Python's own standard-library source files; held-out: cross-entropy (nats
  per byte) on held-out files.
- ``rf_hard``: linear regression on power-law random features in the hard phase
  (``b > a``) with online SGD: the model optctl solves, on sampled data. Held-out: the
  exact population excess loss of the weights.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

Batch = tuple[torch.Tensor, torch.Tensor]


@dataclass
class Setup:
    """One seeded instance of a task: the network, its batches, its losses."""

    model: nn.Module
    batch: Callable[[], Batch]
    loss: Callable[[nn.Module, Batch], torch.Tensor]
    heldout: Callable[[nn.Module], float]


@dataclass(frozen=True)
class Task:
    """A training task with its budget and its optimizer.

    ``T`` updates of batch ``batch_size``; ``optimizer`` is ``"sgd"`` (plain SGD, the
    dynamics optctl models) or ``"adamw"``; ``lr_range`` brackets the learning rates worth
    trying (the probe sweeps it, the baselines' grids start inside it).
    """

    name: str
    T: int
    batch_size: int
    optimizer: str
    lr_range: tuple[float, float]
    description: str
    make: Callable[[Task, int], Setup] = field(repr=False, compare=False)
    options: dict[str, Any] = field(default_factory=dict, compare=False)

    def setup(self, seed: int) -> Setup:
        torch.manual_seed(seed)
        return self.make(self, seed)


# --- the teacher-student MLP ---------------------------------------------------------------


class _Teacher:
    """Power-law linear part plus a random tanh network, plus label noise (fixed by its seed)."""

    def __init__(self, d: int, a: float, b: float, hidden: int, sigma: float, seed: int) -> None:
        gen = torch.Generator().manual_seed(seed)
        k = torch.arange(1, d + 1, dtype=torch.float32)
        self.sqrt_lam = k ** (-b / 2)
        signs = torch.randint(0, 2, (d,), generator=gen).float() * 2 - 1
        self.w = signs * k ** (-(a - b) / 2)
        self.u = torch.randn(hidden, d, generator=gen)
        self.v = torch.randn(hidden, generator=gen) / hidden**0.5
        self.sigma = sigma

    def clean(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w + torch.tanh(x @ self.u.T) @ self.v

    def sample(self, n: int, gen: torch.Generator) -> Batch:
        x = torch.randn(n, self.sqrt_lam.numel(), generator=gen) * self.sqrt_lam
        return x, self.clean(x) + self.sigma * torch.randn(n, generator=gen)


def _mlp_teacher(task: Task, seed: int) -> Setup:
    o = task.options
    teacher = _Teacher(o["d"], o["a"], o["b"], 16, o["sigma"], seed=1234)
    x_test = torch.randn(4096, o["d"], generator=torch.Generator().manual_seed(99)) * teacher.sqrt_lam
    y_test = teacher.clean(x_test)
    gen = torch.Generator().manual_seed(10_000 + seed)
    model = nn.Sequential(nn.Linear(o["d"], o["width"]), nn.ReLU(), nn.Linear(o["width"], 1))

    def loss(m: nn.Module, batch: Batch) -> torch.Tensor:
        x, y = batch
        return 0.5 * ((m(x)[:, 0] - y) ** 2).mean()

    def heldout(m: nn.Module) -> float:
        with torch.no_grad():
            return float(((m(x_test)[:, 0] - y_test) ** 2).mean())

    return Setup(model, lambda: teacher.sample(task.batch_size, gen), loss, heldout)


# --- digits ------------------------------------------------------------------------------


def _digits(task: Task, seed: int) -> Setup:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.data / 16.0, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(0))  # a fixed split
    test, train = order[:397], order[397:]
    gen = torch.Generator().manual_seed(20_000 + seed)
    width = task.options["width"]
    model = nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
                          nn.Linear(width, 10))
    state = {"perm": torch.empty(0, dtype=torch.long), "at": 0}

    def batch() -> Batch:  # epochs of the training split in a seeded order
        if state["at"] + task.batch_size > len(state["perm"]):
            state["perm"], state["at"] = train[torch.randperm(len(train), generator=gen)], 0
        idx = state["perm"][state["at"]: state["at"] + task.batch_size]
        state["at"] += task.batch_size
        return x[idx], y[idx]

    def loss(m: nn.Module, b: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(m(b[0]), b[1])

    def heldout(m: nn.Module) -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(m(x[test]), y[test]))

    return Setup(model, batch, loss, heldout)


# --- a character-level transformer on the standard library's source -------------------------


_CORPUS: dict[str, tuple[torch.Tensor, torch.Tensor, str]] = {}


def stdlib_corpus(max_bytes: int = 3_000_000) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Bytes of the running Python's top-level standard-library modules (sorted by name):
    every tenth file held out. Returns (train bytes, held-out bytes, a hash of both)."""
    if "stdlib" not in _CORPUS:
        root = Path(os.__file__).parent
        files = sorted(p for p in root.glob("*.py") if p.is_file())
        train, held = bytearray(), bytearray()
        for i, p in enumerate(files):
            (held if i % 10 == 9 else train).extend(p.read_bytes())
            if len(train) + len(held) >= max_bytes:
                break
        digest = hashlib.sha256(bytes(train) + bytes(held)).hexdigest()[:16]
        _CORPUS["stdlib"] = (torch.tensor(list(train), dtype=torch.long),
                             torch.tensor(list(held), dtype=torch.long), digest)
    return _CORPUS["stdlib"]


class _TinyGPT(nn.Module):
    """A decoder-only transformer on bytes: token and position embeddings, pre-norm blocks
    with causal self-attention, tied output embedding."""

    def __init__(self, ctx: int, d: int, layers: int, heads: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(256, d)
        self.pos = nn.Parameter(torch.zeros(ctx, d))
        block = nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True,
                                           norm_first=True, activation="gelu")
        self.blocks = nn.TransformerEncoder(block, layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(ctx), persistent=False)
        nn.init.normal_(self.tok.weight, std=0.02)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        n = idx.shape[1]
        h = self.tok(idx) + self.pos[:n]
        h = self.blocks(h, mask=self.mask[:n, :n], is_causal=True)
        return self.norm(h) @ self.tok.weight.T


def _charlm(task: Task, seed: int) -> Setup:
    o = task.options
    train, held, _ = stdlib_corpus()
    ctx = o["ctx"]
    gen = torch.Generator().manual_seed(30_000 + seed)
    starts = torch.randint(0, len(held) - ctx - 1, (o["eval_sequences"],),
                           generator=torch.Generator().manual_seed(7))
    held_x = torch.stack([held[s: s + ctx] for s in starts])
    held_y = torch.stack([held[s + 1: s + ctx + 1] for s in starts])
    model = _TinyGPT(ctx, o["d"], o["layers"], o["heads"])

    def batch() -> Batch:
        s = torch.randint(0, len(train) - ctx - 1, (task.batch_size,), generator=gen)
        return (torch.stack([train[i: i + ctx] for i in s]), torch.stack([train[i + 1: i + ctx + 1] for i in s]))

    def loss(m: nn.Module, b: Batch) -> torch.Tensor:
        return nn.functional.cross_entropy(m(b[0]).reshape(-1, 256), b[1].reshape(-1))

    def heldout(m: nn.Module) -> float:
        with torch.no_grad():
            return float(nn.functional.cross_entropy(m(held_x).reshape(-1, 256), held_y.reshape(-1)))

    return Setup(model, batch, loss, heldout)


# --- power-law random features, hard phase ------------------------------------------------------


class _Linear(nn.Module):
    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w


def _rf_hard(task: Task, seed: int) -> Setup:
    o = task.options
    k = torch.arange(1, o["N"] + 1, dtype=torch.float64)
    lam = k ** (-o["b"])
    gen = torch.Generator().manual_seed(40_000 + seed)
    signs = torch.randint(0, 2, (o["N"],), generator=gen).double() * 2 - 1
    w_star = signs * k ** (-(o["a"] - o["b"]) / 2)
    model = _Linear(o["N"])

    def batch() -> Batch:
        x = torch.randn(task.batch_size, o["N"], generator=gen, dtype=torch.float64) * lam.sqrt()
        return x, x @ w_star + o["sigma"] * torch.randn(task.batch_size, generator=gen, dtype=torch.float64)

    def loss(m: nn.Module, b: Batch) -> torch.Tensor:
        return 0.5 * ((m(b[0]) - b[1]) ** 2).mean()

    def heldout(m: nn.Module) -> float:
        with torch.no_grad():
            return float((m.w - w_star) ** 2 @ lam)  # exact population excess loss

    return Setup(model, batch, loss, heldout)


TASKS: dict[str, Task] = {t.name: t for t in (
    Task("mlp_teacher", T=2000, batch_size=8, optimizer="sgd", lr_range=(1e-3, 10.0),
         description="two-layer ReLU MLP (width 64), online SGD, batch 8, generated teacher "
                     "(d = 32, spectrum k^-1.5, task power 2.5, tanh part, noise 0.5); test excess loss",
         make=_mlp_teacher, options={"d": 32, "a": 2.5, "b": 1.5, "sigma": 0.5, "width": 64}),
    Task("digits", T=1500, batch_size=32, optimizer="sgd", lr_range=(1e-3, 10.0),
         description="scikit-learn digits (1400 train / 397 test 8x8 images), MLP 64-128-128-10, "
                     "SGD, batch 32; test cross-entropy",
         make=_digits, options={"width": 128}),
    Task("charlm", T=800, batch_size=16, optimizer="adamw", lr_range=(1e-5, 1.0),
         description="byte-level transformer (2 layers, d = 64, 4 heads, context 64), AdamW, batch 16, "
                     "on the Python standard library's source; held-out cross-entropy (nats/byte)",
         make=_charlm, options={"ctx": 64, "d": 64, "layers": 2, "heads": 4, "eval_sequences": 64}),
    Task("rf_hard", T=3000, batch_size=4, optimizer="sgd", lr_range=(1e-3, 10.0),
         description="linear regression on N = 400 power-law random features, a = 1.5, b = 2.5 "
                     "(hard phase), sigma = 0.5, online SGD, batch 4; exact population excess loss",
         make=_rf_hard, options={"N": 400, "a": 1.5, "b": 2.5, "sigma": 0.5}),
)}


def optimizer(task: Task, params: Any, lr: float) -> torch.optim.Optimizer:
    """The task's optimizer: plain SGD, or AdamW (betas 0.9, 0.95; weight decay 0.01)."""
    if task.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=lr, betas=(0.9, 0.95), weight_decay=0.01)
    return torch.optim.SGD(params, lr=lr)


def grad_norm(model: nn.Module, p: float) -> float:
    """The ``p``-norm of the gradient over all parameters (2 for SGD, 1 for Adam: refinement)."""
    total = 0.0
    for w in model.parameters():
        if w.grad is not None:
            total += float(w.grad.abs().pow(p).sum())
    return total ** (1.0 / p)

