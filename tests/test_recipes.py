"""`optctl export RUN --format recipe`: the closest closed-form schedule, as code that runs.

The code blocks of the recipe file are run with the real frameworks and must produce the
recipe's rates at every step; the recipe's predicted loss is compared with the tuned
baselines it contains and, on the two reference cases (slow), with the optimum.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import RECIPE_NESTED_RTOL, RECIPE_OPTAX_RTOL, RECIPE_TORCH_RTOL

from optctl.baselines.recipes import RECIPE_MARGIN, Recipe, best_recipe, fit_recipes
from optctl.cli.main import main
from optctl.errors import SpecError
from optctl.io.runs import read_run
from optctl.model.replay import final_loss

ROOT = Path(__file__).resolve().parents[1]
SMALL = """schema_version: 1
name: small
model: {a: 2.5, b: 1.5, N: 30, sigma: 0.5}
training: {T: 120, batch_size: 4, eta_max: 1.0}
solver: {grid: uniform, K: 24}
baselines: [linear_decay, cosine, wsd]
"""


def _blocks(text: str) -> dict[str, str]:
    """The code block under each '## <framework>' heading of a recipe file."""
    out = {}
    for head, code in re.findall(r"## (\w[\w ]*)\n.*?```python\n(.*?)```", text, flags=re.S):
        out[head.strip()] = code
    return out


def _torch_rates(code: str, T: int) -> list[float]:
    torch = pytest.importorskip("torch")
    model = torch.nn.Linear(2, 1, dtype=torch.float64)
    ns: dict[str, Any] = {"torch": torch, "model": model}
    exec(code, ns)
    opt, sched = ns["optimizer"], ns["scheduler"]
    seen = []
    for _ in range(T):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return seen


def _optax_rates(code: str, T: int) -> np.ndarray:
    pytest.importorskip("optax")
    import jax
    import jax.numpy as jnp

    ns: dict[str, Any] = {}
    exec(code, ns)
    with jax.enable_x64(True):
        return np.array([float(ns["schedule"](jnp.asarray(t))) for t in range(T)])


def _check_code(text: str, recipe_rates: np.ndarray, scale: float) -> None:
    blocks = _blocks(text)
    assert set(blocks) == {"Hugging Face", "torch", "optax"}
    want = recipe_rates * scale
    np.testing.assert_allclose(_torch_rates(blocks["torch"], want.size), want, rtol=RECIPE_TORCH_RTOL)
    np.testing.assert_allclose(_optax_rates(blocks["optax"], want.size), want, rtol=RECIPE_OPTAX_RTOL)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("recipe")
    (tmp / "cfg.yaml").write_text(SMALL)
    assert main(["solve", str(tmp / "cfg.yaml"), "--out", str(tmp / "run"), "--quiet"]) == 0
    return tmp / "run"


def _spy(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Recipe]]:
    """Keep what the command's fit_recipes returned (so the test does not fit a second time)."""
    import optctl.baselines.recipes as module

    seen: list[dict[str, Recipe]] = []
    real = module.fit_recipes

    def spy(*args: Any, **kwargs: Any) -> dict[str, Recipe]:
        seen.append(real(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(module, "fit_recipes", spy)
    return seen


def test_export_recipe_writes_code_that_gives_the_recipe_rates(small_run: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    out = small_run.parent / "recipe.md"
    seen = _spy(monkeypatch)
    assert main(["export", str(small_run), "--format", "recipe", "--lr-scale", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "predicted L_T" in printed and str(out) in printed
    text = out.read_text()
    run = read_run(small_run)
    recipes = seen[0]
    best = best_recipe(recipes)
    for r in recipes.values():  # the reported losses are the replays of the recipes' rates
        assert r.final_loss == final_loss(run.config.problem, r.rates())
    assert f"Best: a {best.shape} schedule" in text and "real units: lr = 0.5 x model rate" in text
    _check_code(text, best.rates(), 0.5)
    # each recipe contains tuned baselines: it never loses to them
    base = {n: b.final_loss for n, b in run.report.baselines.items()}
    assert recipes["linear"].final_loss <= min(base["linear_decay"], base["wsd"]) * (1 + RECIPE_NESTED_RTOL)
    assert recipes["cosine"].final_loss <= base["cosine"] * (1 + RECIPE_NESTED_RTOL)
    assert best.final_loss <= min(base.values())
    # an existing file is kept without --overwrite
    assert main(["export", str(small_run), "--format", "recipe", "--out", str(out)]) == 2


@pytest.mark.parametrize("recipe", [
    Recipe("linear", 50, 0.4, 20, 0.1, 1.0, 0.0),
    Recipe("cosine", 50, 0.4, 0, 0.05, 1.0, 0.0),
    Recipe("polynomial", 50, 0.4, 10, 0.0, 2.5, 0.0),
    Recipe("polynomial", 50, 0.4, 10, 0.2, 1.7, 0.0),
], ids=["linear-stable", "cosine-no-stable", "poly-to-zero", "poly-end-ratio"])
def test_every_shape_s_code_matches_its_closed_form(recipe: Recipe) -> None:
    t = np.arange(recipe.T)
    p = np.clip((t - recipe.stable_steps) / recipe.decay_steps, 0, None)
    f = {"linear": 1 - p, "cosine": (1 + np.cos(np.pi * p)) / 2, "polynomial": (1 - p) ** recipe.power}
    want = np.where(t < recipe.stable_steps, recipe.peak,
                    recipe.peak * (recipe.end_ratio + (1 - recipe.end_ratio) * f[recipe.shape]))
    np.testing.assert_allclose(recipe.rates(), want, rtol=RECIPE_OPTAX_RTOL)
    np.testing.assert_allclose(_torch_rates(recipe.torch(2.0), recipe.T), 2 * want, rtol=RECIPE_TORCH_RTOL)
    np.testing.assert_allclose(_optax_rates(recipe.optax(2.0), recipe.T), 2 * want, rtol=RECIPE_OPTAX_RTOL)


def test_recipe_errors(small_run: Path, tmp_path: Path) -> None:
    run = read_run(small_run)
    with pytest.raises(SpecError, match=r"optimum = .*120 finite per-update rates"):
        fit_recipes(run.config.problem, np.ones(5))
    with pytest.raises(SpecError, match="shape = 'step'"):
        fit_recipes(run.config.problem, run.report.result.eta, ("step",))
    assert main(["export", str(small_run), "--format", "recipe", "--out", str(tmp_path / "r.txt")]) == 2


def _hf_rates(code: str, T: int) -> list[float]:
    pytest.importorskip("transformers")
    return _torch_rates(code, T)


@pytest.mark.slow
@pytest.mark.parametrize("config", ["easy_phase", "hard_phase"])
def test_reference_cases_recipe_within_the_margin(config: str, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """MODEL.md §5's reference cases: the recipe's predicted L_T within RECIPE_MARGIN of the optimum."""
    run_dir = tmp_path / "run"
    assert main(["solve", str(ROOT / "configs" / f"{config}.yaml"), "--out", str(run_dir), "--quiet"]) == 0
    seen = _spy(monkeypatch)
    assert main(["export", str(run_dir), "--format", "recipe"]) == 0
    run = read_run(run_dir)
    text = (run_dir / "recipe.md").read_text()
    recipes = seen[0]
    best = best_recipe(recipes)
    gap = best.final_loss / run.report.result.final_loss - 1
    print(f"{config}: recipe {best.shape}, L_T {best.final_loss:.6e} vs optimum "
          f"{run.report.result.final_loss:.6e}: +{100 * gap:.2f}%")
    assert gap <= RECIPE_MARGIN
    _check_code(text, best.rates(), 1.0)
    hf = best if best.hf_native else best_recipe(recipes, hf_native=True)
    np.testing.assert_allclose(_hf_rates(_blocks(text)["Hugging Face"], best.T), hf.rates(),
                               rtol=RECIPE_TORCH_RTOL)
