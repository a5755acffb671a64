"""Names -> objects: the layer above the models that resolves registered names (timm's `_factory.py`).

`zoo.registry` is a leaf that only maps names to classes; this module imports the packages whose modules register
themselves (`discover`), validates recipes against the chosen model's config dataclass (`load_recipe`), builds models
from names, recipes and checkpoints (`create_model`, `load_checkpoint`) and expands sweep files (`expand_sweep`).
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch

from zoo.config import ConfigError, ModelSection, Recipe, apply_overrides, from_dict, read_yaml, to_dict
from zoo.models.base import GenerativeModel
from zoo.registry import MODELS
from zoo.training.checkpoint import (CONFIG, EMA_WEIGHTS, WEIGHTS, CheckpointError, load_state_into_players,
                                     read_trainer_state, read_weights, resolve_checkpoint)


def discover() -> None:
    """Import the packages whose modules register themselves: datasets, backbones, models and metrics."""
    import zoo.data  # noqa: F401
    import zoo.evaluation  # noqa: F401
    import zoo.models  # noqa: F401
    import zoo.nn  # noqa: F401


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a shell-style pattern such as ``"vae*"``."""
    discover()
    return MODELS.names(pattern)


def model_class(name: Any) -> type[GenerativeModel]:
    """The registered model class called `name`; a ConfigError naming the registered ones otherwise."""
    discover()
    if not isinstance(name, str):
        raise ConfigError(f"model.name: got {name!r}, expected a registered model name: {', '.join(MODELS.names())}")
    try:
        return MODELS.get(name)
    except KeyError as err:
        raise ConfigError(f"model.name: {err}") from None


def resolve_model(section: Mapping[str, Any]) -> ModelSection:
    """`{"name": ..., **options}` -> the model name with its config dataclass, validated (the one validation)."""
    if not isinstance(section, Mapping) or "name" not in section:
        raise ConfigError("model.name: missing; a recipe must say which registered model to build")
    options = dict(section)
    name = options.pop("name")
    config = from_dict(model_class(name).config_class, options, "model")
    return ModelSection(name, config)


def load_recipe(source: str | os.PathLike | Mapping[str, Any], overrides: list[str] | None = None) -> Recipe:
    """Read a recipe (YAML path or mapping), apply overrides and validate every section, the model's included.

    The model section must name a registered model (`model.name`); its other keys are checked against that model's
    config dataclass, and `optim` entries are merged over the model's default optimizers.
    """
    tree = _deep_copy(dict(source) if isinstance(source, Mapping) else read_yaml(source))
    tree = apply_overrides(tree, overrides or [])
    model = resolve_model(tree.get("model"))
    defaults = to_dict(model_class(model.name).default_optim(model.config))
    return from_dict(Recipe, {**tree, "model": model, "optim": _merge(defaults, tree.get("optim") or {})})


def _deep_copy(tree: Any) -> Any:
    if isinstance(tree, Mapping):
        return {k: _deep_copy(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_deep_copy(v) for v in tree]
    return tree


def _merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in update.items():
        out[key] = _merge(out[key], value) if isinstance(value, Mapping) and isinstance(out.get(key), dict) else value
    return out


def create_model(source: str | Mapping[str, Any] | Recipe | ModelSection | os.PathLike, **overrides: Any
                 ) -> GenerativeModel:
    """Build a model from a registered name, a model section / recipe mapping, a `Recipe`, or a YAML path.

    Keyword overrides replace fields of the model config, e.g. ``create_model("vae", latent_dim=8)``.
    """
    if isinstance(source, (str, os.PathLike)) and str(source).endswith((".yaml", ".yml")):
        source = load_recipe(source)
    if isinstance(source, Recipe):
        source = source.model
    if isinstance(source, ModelSection) and not overrides:
        return model_class(source.name)(source.config)  # validated already: built as is
    if isinstance(source, ModelSection):
        section = {"name": source.name, **to_dict(source.config)}
    elif isinstance(source, Mapping):
        section = dict(source.get("model", source))
    elif isinstance(source, str):
        section = {"name": source}
    else:
        raise TypeError(f"create_model: expected a model name, recipe or mapping, got {type(source).__name__}")
    model = resolve_model({**section, **overrides})
    return model_class(model.name)(model.config)


class Checkpoint(NamedTuple):
    model: GenerativeModel  # in eval mode, with EMA weights where the run kept an EMA
    recipe: Recipe  # the resolved recipe
    step: int
    path: Path


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu", ema: bool = True) -> Checkpoint:
    """Rebuild a trained model: `path` is a checkpoint or a run directory (then its latest checkpoint).

    Returns the model (EMA weights for the EMA players unless `ema=False`), its resolved recipe and the step.
    """
    ckpt = resolve_checkpoint(path)
    if not (ckpt / CONFIG).is_file():
        raise CheckpointError(f"{str(ckpt)!r} has weights but no {CONFIG}; it was not written by zoo")
    recipe = load_recipe(ckpt / CONFIG)
    model = create_model(recipe)
    players = dict(model.players.items())
    load_state_into_players(players, read_weights(ckpt), str(ckpt / WEIGHTS))
    if ema and (ckpt / EMA_WEIGHTS).is_file():
        averaged = read_weights(ckpt, ema=True)
        names = {k.split(".", 1)[0] for k in averaged}
        load_state_into_players({n: players[n] for n in names},
                                {f"players.{k}": v for k, v in averaged.items()}, str(ckpt / EMA_WEIGHTS))
    step = int(read_trainer_state(ckpt)["step"])
    return Checkpoint(model.to(device).eval(), recipe, step, ckpt)


# --------------------------------------------------------------------------------------------------------------------
# Sweeps: a grid of overrides over recipes (recipes/sweeps/*.yaml)
# --------------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SweepPoint:
    """One run of a sweep: a recipe file, the overrides that make it this grid point, and a readable name."""

    recipe: Path
    overrides: tuple[str, ...]
    name: str


def expand_sweep(path: str | os.PathLike) -> list[SweepPoint]:
    """The runs of a sweep file: for each block, every recipe times the Cartesian product of its grid.

    Format (recipe paths relative to the sweep file)::

        blocks:
          - recipes: [../vgh_color_mnist.yaml]
            grid:
              optim.encoder.lr,optim.generator.lr: [1.0e-4, 5.0e-4]   # comma-joined keys take the same value
              model.latent_dim: [10, 50, 75]

    Every point is validated with `load_recipe`, so a typo fails here, naming the dotted key, not hours later.
    """
    path = Path(path)
    tree = read_yaml(path)
    blocks = tree.get("blocks")
    if not isinstance(blocks, list) or not blocks:
        raise ConfigError(f"sweep {str(path)!r}: expected a non-empty list under 'blocks', each with 'recipes' "
                          f"and 'grid'")
    points: list[SweepPoint] = []
    for b, block in enumerate(blocks):
        where = f"sweep {str(path)!r}, blocks[{b}]"
        if not isinstance(block, Mapping) or set(block) - {"recipes", "grid"} or "recipes" not in block:
            raise ConfigError(f"{where}: expected keys 'recipes' (a list of recipe files) and 'grid', got {block!r}")
        grid = block.get("grid") or {}
        axes = []
        for keys, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"{where}.grid.{keys}: expected a non-empty list of values, got {values!r}")
            axes.append((str(keys).split(","), values))
        for recipe in block["recipes"]:
            recipe_path = (path.parent / recipe).resolve()
            for combo in itertools.product(*(values for _, values in axes)):
                overrides = tuple(f"{k.strip()}={v}" for (keys, _), v in zip(axes, combo) for k in keys)
                label = ",".join(f"{keys[0].strip().rsplit('.', 1)[-1]}={v}" for (keys, _), v in zip(axes, combo))
                load_recipe(recipe_path, list(overrides))  # validate now
                points.append(SweepPoint(recipe_path, overrides, f"{recipe_path.stem}/{label or 'base'}"))
    return points
