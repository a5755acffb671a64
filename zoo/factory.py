"""Names -> objects: the layer above the models that resolves registered names (timm's `_factory.py`).

`zoo.registry` is a leaf that only maps names to classes; this module imports the packages whose modules register
themselves (`discover`), validates recipes against the chosen model's config dataclass (`load_recipe`), builds models
from names, recipes and checkpoints (`create_model`, `build_model`, `load_checkpoint`) and expands sweep files (`expand_sweep`).
"""
from __future__ import annotations

import itertools
import os
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch

from zoo.config import (ConfigError, ModelSection, Recipe, apply_overrides, check_ranges, drop_unread_eval_keys,
                        from_dict, read_yaml, to_dict)
from zoo.imports import UntrustedImportsError, import_modules  # noqa: F401 - import_modules: public here too
from zoo.models.base import GenerativeModel
from zoo.registry import METRICS, MODELS, UnknownNameError
from zoo.seeds import derive_seed
from zoo.training.checkpoint import (CONFIG, EMA_WEIGHTS, WEIGHTS, CheckpointError, check_finite,
                                     load_state_into_players, read_trainer_state, read_weights, resolve_checkpoint)


PLUGIN_GROUP = "zoo.models"  # entry-point group of installed packages that register models (or backbones, ...)
_plugins_loaded = False


def discover() -> None:
    """Import the packages whose modules register themselves (datasets, backbones, models and metrics), then every
    module an installed distribution declares in the `zoo.models` entry-point group."""
    import zoo.data  # noqa: F401
    import zoo.evaluation  # noqa: F401
    import zoo.models  # noqa: F401
    import zoo.nn  # noqa: F401
    load_plugins()


def load_plugins() -> list[str]:
    """Import the `zoo.models` entry points once per process, e.g. in a plugin's pyproject.toml::

        [project.entry-points."zoo.models"]
        my_vae = "my_package.my_vae"

    A plugin that fails to import is reported as a warning (one broken package must not stop the zoo). Returns the
    entry-point names loaded."""
    global _plugins_loaded
    if _plugins_loaded:
        return []
    _plugins_loaded = True

    loaded = []
    for point in entry_points(group=PLUGIN_GROUP):
        try:
            point.load()
            loaded.append(point.name)
        except Exception as err:  # noqa: BLE001 - any import error of third-party code
            warnings.warn(f"zoo: plugin {point.name!r} = {point.value!r} (entry-point group {PLUGIN_GROUP!r}) failed to "
                          f"import: {type(err).__name__}: {err}; fix or uninstall that package", stacklevel=2)
    return loaded


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


def load_recipe(source: str | os.PathLike | Mapping[str, Any], overrides: list[str] | None = None, *,
                trust_imports: bool = True) -> Recipe:
    """Read a recipe (YAML path or mapping), apply overrides and validate every section, the model's included.

    The model section must name a registered model (`model.name`); its other keys are checked against that model's
    config dataclass, and `optim` entries are merged over the model's default optimizers.

    Args:
        trust_imports: import the modules the recipe's `imports:` lists (running their code). A recipe you wrote is
            yours to trust (the default); a run folder's saved config.yaml is not (`load_checkpoint` passes False):
            then modules not imported yet raise `UntrustedImportsError` (a ConfigError) before any is imported.
    """
    tree = _deep_copy(dict(source) if isinstance(source, Mapping) else read_yaml(source))
    tree = drop_unread_eval_keys(apply_overrides(tree, overrides or []))
    imports = tree.get("imports") or []
    if not isinstance(imports, list):
        raise ConfigError(f"imports: got {imports!r}, expected a list of module names or .py files")
    if not trust_imports:
        discover()  # the zoo's own modules and installed plugins are imported already: they need no trust
    # before the model name is looked up: it may be defined there
    tree["imports"] = import_modules(imports, trusted=trust_imports)
    model = resolve_model(tree.get("model"))
    defaults = to_dict(model_class(model.name).default_optim(model.config))
    recipe = from_dict(Recipe, {**tree, "model": model, "optim": _merge(defaults, tree.get("optim") or {})})
    check_ranges(recipe)
    if recipe.eval.metrics:
        discover()  # the metrics register on import
    for name in recipe.eval.metrics:  # a typo fails here, not hours later at `zoo evaluate RUN`
        try:
            METRICS.get(name)
        except UnknownNameError as err:
            raise ConfigError(f"eval.metrics: {err}") from None
    return recipe


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


def init_seed(seed: int) -> int:
    """The seed of a model's initialisation, derived from the recipe's `train.seed` (a stream of its own, apart from
    the trainer's per-step noise seeds)."""
    return derive_seed("init", int(seed))


def create_model(name: str, *, seed: int | None = None, **options: Any) -> GenerativeModel:
    """A registered model by name, its config fields set by `options` (timm's `create_model`), e.g.
    ``create_model("vae", latent_dim=8, channels=1)``; the model a recipe describes is `build_model(recipe)`.

    Args:
        seed: seeds everything drawn at construction (player initialisation), so one seed gives bit-identical initial
            weights in any process; None: the global torch RNG, as `nn.Module` does. The caller's global RNG is left
            as it was either way.
    """
    if not isinstance(name, str) or name.endswith((".yaml", ".yml")):
        shown = name if isinstance(name, str) else type(name).__name__
        raise TypeError(f"create_model takes a registered model name (see zoo.list_models()), got {shown!r}; for a "
                        f"recipe, use zoo.build_model(zoo.load_recipe(PATH_OR_MAPPING))")
    return _construct(resolve_model({"name": name, **options}), seed)


def build_model(recipe: Recipe, *, seed: int | None = None) -> GenerativeModel:
    """The model a validated recipe (`load_recipe(path or mapping)`) describes, its players initialised under `seed`
    (default: the recipe's `train.seed`, so a run's initial weights follow from its recipe)."""
    if not isinstance(recipe, Recipe):
        raise TypeError(f"build_model takes a Recipe from zoo.load_recipe(PATH_OR_MAPPING), got "
                        f"{type(recipe).__name__}; for a model by name, use zoo.create_model(NAME, **options)")
    return _construct(recipe.model, recipe.train.seed if seed is None else seed)


def _construct(model: ModelSection, seed: int | None) -> GenerativeModel:
    if seed is None:
        return model_class(model.name)(model.config)
    with torch.random.fork_rng(devices=[]):  # construction happens on the CPU; the caller's RNG stays untouched
        torch.manual_seed(init_seed(seed))
        return model_class(model.name)(model.config)


class Checkpoint(NamedTuple):
    model: GenerativeModel  # in eval mode, with EMA weights where the run kept an EMA
    recipe: Recipe  # the resolved recipe
    step: int
    path: Path


def load_checkpoint(path: str | Path, *, device: str | torch.device = "cpu", ema: bool = True,
                    trust_imports: bool = False) -> Checkpoint:
    """Rebuild a trained model: `path` is a checkpoint or a run directory (then its latest checkpoint).

    Returns the model (EMA weights for the EMA players unless `ema=False`), its resolved recipe and the step.

    Args:
        trust_imports: import the modules the run's config.yaml lists under `imports:` (a model defined outside the
            package). Off by default: a run folder may come from anywhere, and importing runs its code. Modules
            imported already (the zoo's, installed plugins, ones you imported) need no trust; for the others a
            CheckpointError names them and this switch.
    """
    ckpt = resolve_checkpoint(path)
    if not (ckpt / CONFIG).is_file():
        raise CheckpointError(f"{str(ckpt)!r} has weights but no {CONFIG}; it was not written by zoo")
    try:
        recipe = load_recipe(ckpt / CONFIG, trust_imports=trust_imports)
    except UntrustedImportsError as err:
        run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
        raise CheckpointError(f"run folder {str(run)!r} {err}") from None
    except ConfigError as err:
        raise CheckpointError(f"{str(ckpt / CONFIG)!r} does not describe a model this zoo can build: {err}") from None
    model = build_model(recipe)
    players = dict(model.players.items())
    weights = read_weights(ckpt)
    check_finite(weights, str(ckpt / WEIGHTS))
    load_state_into_players(players, weights, str(ckpt / WEIGHTS))
    if ema and (ckpt / EMA_WEIGHTS).is_file():
        averaged = read_weights(ckpt, ema=True)
        check_finite(averaged, str(ckpt / EMA_WEIGHTS))
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
