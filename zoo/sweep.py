"""Hyperparameter sweeps: a YAML file naming recipes and a grid of overrides, expanded to one run per combination.

A sweep file (recipes/sweeps/*.yaml)::

    recipes: [../aae_color_mnist.yaml, ../aae_cifar10.yaml]   # relative to the sweep file
    grid:                                                     # dotted recipe keys -> values to try
      optim.autoencoder.lr: [1.0e-3, 5.0e-4, 5.0e-3]
      optim.code_disc.lr: [5.0e-4, 5.0e-5, 1.0e-5]

expands to every recipe x the Cartesian product of the grid (here 2 x 9 runs). Every run is validated with
`load_recipe` when the sweep is read, so a typo in a key or a value of the wrong type fails before anything trains.
"""
from __future__ import annotations

import itertools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from zoo.config import ConfigError, Recipe, load_recipe, read_yaml


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: a recipe file and the overrides that make it this run."""

    name: str  # <recipe stem>__<key>=<value>__...: a run directory name
    recipe_path: Path
    overrides: tuple[str, ...]

    def recipe(self) -> Recipe:
        return load_recipe(self.recipe_path, list(self.overrides))


def _scalar(value: Any) -> str:
    """A grid value as the YAML text an override `key=value` parses back to the same value."""
    return yaml.safe_dump(value, default_flow_style=True, width=10**6).strip().removesuffix("...").strip()


def load_sweep(path: str | os.PathLike) -> list[SweepRun]:
    """Read a sweep file and expand it to its runs, each validated as a recipe."""
    path = Path(path)
    tree = read_yaml(path)
    unknown = set(tree) - {"recipes", "grid"}
    if unknown:
        raise ConfigError(f"{path}: unknown key(s) {', '.join(sorted(unknown))}; a sweep has 'recipes' and 'grid'")
    recipes, grid = tree.get("recipes"), tree.get("grid")
    if not isinstance(recipes, list) or not recipes or not all(isinstance(r, str) for r in recipes):
        raise ConfigError(f"{path}: recipes: got {recipes!r}, expected a non-empty list of recipe paths relative to "
                          f"the sweep file, e.g. [../aae_color_mnist.yaml]")
    if not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{path}: grid: got {grid!r}, expected a mapping of dotted keys to lists of values, e.g. "
                          f"{{optim.gen.lr: [1.0e-4, 2.0e-4]}}")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid.{key}: got {values!r}, expected a non-empty list of values to try")
    runs = []
    for recipe in recipes:
        recipe_path = (path.parent / recipe).resolve()
        optimizers = load_recipe(recipe_path).optim
        for key in grid:  # a new optim.<key> would load as an extra optimizer that no phase uses
            if key.startswith("optim.") and key.split(".")[1] not in optimizers:
                raise ConfigError(f"{path}: grid.{key}: {recipe_path.name} has no optimizer {key.split('.')[1]!r}; "
                                  f"its optimizers: {', '.join(optimizers)}")
        for combo in itertools.product(*grid.values()):
            overrides = tuple(f"{key}={_scalar(value)}" for key, value in zip(grid, combo))
            short = "__".join(o.removeprefix("optim.").removeprefix("model.") for o in overrides)
            run = SweepRun(f"{recipe_path.stem}__{short}", recipe_path, overrides)
            try:
                run.recipe()
            except ConfigError as err:
                raise ConfigError(f"{path}: run {run.name}: {err}") from None
            runs.append(run)
    return runs
