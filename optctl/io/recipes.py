"""Recipe files: ``optctl export RUN --format recipe`` writes ``recipe.md``.

The file states the best recipe (:mod:`optctl.baselines.recipes`) in real learning-rate
units when a scale is given, its model-predicted final loss next to the optimum's and the
tuned baselines', and the code that builds it in Hugging Face, torch and optax (for
Hugging Face the best shape its factories build, when the best overall is not one).
Written atomically (:mod:`optctl.io.files`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from optctl.baselines.recipes import Recipe, best_recipe
from optctl.io.files import write_text_atomic


def _describe(recipe: Recipe, lr_scale: float) -> str:
    end = (f"to {recipe.end_ratio:.4g} of the peak" if recipe.shape != "polynomial"
           else f"with power {recipe.power:.4g} to {recipe.end_ratio:.4g} of the peak")
    return (f"peak learning rate {recipe.peak * lr_scale:.6g} held for {recipe.stable_steps} of "
            f"{recipe.T} updates, then a {recipe.shape} decay over the last {recipe.decay_steps} {end}")


def recipe_text(recipes: Mapping[str, Recipe], *, optimum_loss: float, baselines: Mapping[str, float],
                lr_scale: float = 1.0, name: str = "run") -> str:
    """The markdown of a recipe file (see the module docstring)."""
    best = best_recipe(dict(recipes))
    hf = best if best.hf_native else best_recipe(dict(recipes), hf_native=True)
    units = "model units" if lr_scale == 1.0 else f"real units: lr = {lr_scale:.6g} x model rate"
    rows = [("optimum (table)", optimum_loss)]
    rows += [(f"recipe: {r.shape}" + (" (best)" if r is best else ""), r.final_loss)
             for r in sorted(recipes.values(), key=lambda r: r.final_loss)]
    rows += [(f"tuned baseline: {n}", v) for n, v in sorted(baselines.items(), key=lambda kv: kv[1])]
    lines = [
        f"# Recipe for {name}: the closed-form schedule closest to the optimum",
        "",
        f"Best: a {best.shape} schedule, {_describe(best, lr_scale)} ({units}). Its predicted final "
        f"loss is {100 * (best.final_loss / optimum_loss - 1):.2f}% above the optimum's.",
        "",
        "| schedule | predicted final loss L_T (model) | vs optimum |",
        "|---|---|---|",
        *[f"| {label} | {v:.6e} | {v / optimum_loss:.4f}x |" for label, v in rows],
        "",
        "Losses are the model's exact per-step replay; each recipe shape was tuned for the least L_T.",
        "",
        "## Hugging Face",
        "",
    ]
    if hf is not best:
        lines += [f"transformers builds no {best.shape} schedule with a stable phase; its best native "
                  f"recipe is a {hf.shape} one, {_describe(hf, lr_scale)}, "
                  f"{100 * (hf.final_loss / optimum_loss - 1):.2f}% above the optimum (or pass the torch "
                  "scheduler below to `Trainer(optimizers=(optimizer, scheduler))`).", ""]
    lines += ["```python", hf.huggingface(lr_scale).rstrip(), "```", "",
              "## torch", "", "```python", best.torch(lr_scale).rstrip(), "```", "",
              "## optax", "", "```python", best.optax(lr_scale).rstrip(), "```", ""]
    return "\n".join(lines)


def write_recipe(path: Path, recipes: Mapping[str, Recipe], *, optimum_loss: float,
                 baselines: Mapping[str, float], lr_scale: float = 1.0, name: str = "run") -> Path:
    """Write :func:`recipe_text` to ``path`` atomically."""
    write_text_atomic(Path(path), recipe_text(recipes, optimum_loss=optimum_loss, baselines=baselines,
                                              lr_scale=lr_scale, name=name) + "\n")
    return Path(path)
