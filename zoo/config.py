"""Strict dataclass configs: YAML / dict <-> dataclasses, typed CLI overrides, recipe sections.

Every error names the dotted key, the value seen and what is allowed, because a typo in a recipe must never be
silently ignored (it would train a different model than the one written down).
"""
from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Union

import yaml

from zoo import yaml_limits


class ConfigError(ValueError):
    """A recipe or override that does not fit the config schema."""


# --------------------------------------------------------------------------------------------------------------------
# Generic dataclass <-> dict conversion
# --------------------------------------------------------------------------------------------------------------------
def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is not None:
        return f"{getattr(origin, '__name__', origin)}[{', '.join(_type_name(a) for a in typing.get_args(tp))}]"
    if tp is type(None):
        return "null"
    return getattr(tp, "__name__", str(tp))


def _fail(path: str, value: Any, tp: Any) -> ConfigError:
    return ConfigError(f"{path or '<root>'}: got {value!r} ({type(value).__name__}), expected {_type_name(tp)}")


def convert(value: Any, tp: Any, path: str) -> Any:
    """Check `value` against the type annotation `tp` and convert containers; raise ConfigError on mismatch."""
    if tp is Any:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return convert(value, arg, path)
            except ConfigError as err:
                errors.append(err)
        raise _fail(path, value, tp)
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"{path}: got {value!r}, allowed values: {', '.join(map(repr, args))}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise _fail(path, value, tp)
        return from_dict(tp, value, path)
    if origin in (list, tuple) or tp in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise _fail(path, value, tp)
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            if len(value) != len(args):
                raise ConfigError(f"{path}: got {value!r} with {len(value)} items, expected {len(args)} ({_type_name(tp)})")
            return tuple(convert(v, a, f"{path}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [convert(v, item, f"{path}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise _fail(path, value, tp)
        key_t, val_t = args if args else (Any, Any)
        return {convert(k, key_t, path): convert(v, val_t, f"{path}.{k}") for k, v in value.items()}
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise _fail(path, value, tp)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise _fail(path, value, tp)
    if tp in (str, bool):
        if isinstance(value, tp):
            return value
        raise _fail(path, value, tp)
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise _fail(path, value, tp)
    raise ConfigError(f"{path}: unsupported annotation {tp!r}")


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check_keys(path: str, given: Iterable[Any], allowed: Iterable[str], what: str = "key") -> None:
    """The one check of option names (recipe sections, dataset options, protocol options): the first unknown name is
    a ConfigError naming its dotted path, the closest allowed name and every allowed one."""
    allowed = list(allowed)
    for key in given:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            dotted = f"{path}.{key}" if path else str(key)
            raise ConfigError(f"{dotted}: unknown {what}{hint}; allowed {what}s: {', '.join(allowed) or '(none)'}")


def from_dict(cls: type, data: Mapping[str, Any], path: str = "") -> Any:
    """Build dataclass `cls` from `data`, strictly: unknown keys and wrong types raise ConfigError."""
    if not isinstance(data, Mapping):
        raise _fail(path, data, cls)
    types_ = field_types(cls)
    check_keys(path, data, types_)
    kwargs = {k: convert(v, types_[k], f"{path}.{k}" if path else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as err:  # missing required fields
        raise ConfigError(f"{path or cls.__name__}: {err}") from None


def to_dict(obj: Any) -> Any:
    """Dataclasses -> plain dicts / lists (tuples become lists so the result is YAML- and JSON-safe)."""
    if isinstance(obj, ModelSection):  # the recipe's flat `model: {name: ..., **options}`
        return {"name": obj.name, **to_dict(obj.config)}
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {k: to_dict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------------------------------
# Overrides: "train.max_steps=20" -> nested dict update, value typed by YAML
# --------------------------------------------------------------------------------------------------------------------
def apply_overrides(tree: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `key.sub=value` overrides to a nested dict (in place, returned). Values are parsed as YAML scalars,
    so `lr=1e-4` is a float and `betas=[0.5,0.9]` a list; the schema check afterwards rejects wrong types."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. train.max_steps=20")
        key, raw = item.split("=", 1)
        try:
            value = yaml_limits.load(raw) if raw.strip() else ""
        except yaml_limits.YAMLLimitError as err:
            raise ConfigError(f"override {key!r} refused: {err}") from None
        # YAML reads "1e-4" as a string (no dot); users mean a number.
        if isinstance(value, str):
            try:
                value = float(value) if any(c in value for c in "eE.") else value
            except ValueError:
                pass
        node = tree
        parts = key.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {'.'.join(parts[: i + 1])} is {child!r}, not a section")
            node = child
        node[parts[-1]] = value
    return tree


# --------------------------------------------------------------------------------------------------------------------
# Recipe sections
# --------------------------------------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Which dataset, where it lives and how batches are drawn."""

    name: str = "mnist"
    root: str | None = None  # else env ZOO_DATA, else the user cache dir
    split: str = "train"
    batch_size: int = 64
    options: dict[str, Any] = field(default_factory=dict)  # dataset-specific keyword options (image_size, seed, ...)
    on_device: Literal["auto", "always", "never"] = "auto"  # hold the split as one uint8 tensor on the device
    num_workers: int = 0  # DataLoader workers when the split is streamed from disk
    drop_last: bool = True  # drop each epoch's incomplete last batch; false keeps it (a DataLoader's default epoch)


@dataclass
class ScheduleConfig:
    """Learning-rate schedule: multiplier on the base lr as a function of the optimizer's step."""

    name: Literal["constant", "linear", "cosine"] = "constant"
    warmup_steps: int = 0
    final_factor: float = 0.0  # lr multiplier at train.max_steps for linear / cosine decay


@dataclass
class OptimizerConfig:
    """One optimizer over a set of players. Phases refer to it by its key in `optim`."""

    players: list[str] = field(default_factory=list)
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.9)
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip: float | None = None  # max global grad norm over this optimizer's parameters
    accumulation: int = 1  # micro-batches per phase step; the batch is split, gradients summed, one step
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)


@dataclass
class EMAConfig:
    players: list[str] = field(default_factory=list)
    decay: float = 0.999
    start_step: int = 0  # copy the weights until this step, average afterwards


@dataclass
class TrainConfig:
    max_steps: int = 1000
    seed: int = 0
    # auto: bf16 autocast on GPU, fp32 on CPU. fp16 is not offered: it needs one GradScaler per optimizer.
    mixed_precision: Literal["auto", "no", "bf16"] = "auto"
    log_every: int = 50
    sample_every: int = 1000  # 0 disables sample grids
    n_samples: int = 64  # images per sample grid
    checkpoint_every: int = 1000  # 0: only at the end
    keep_last: int = 3
    ema: EMAConfig | None = None
    progress: bool = True
    tensorboard: bool = True  # false drops "tensorboard" from `loggers` (the older switch, kept for recipes using it)
    # Where scalars, sample / reconstruction grids and the resolved recipe go besides metrics.jsonl and the PNGs:
    # tensorboard (<run>/tb) and / or wandb (Weights & Biases; `pip install "zoo[wandb]"`; WANDB_MODE=offline works).
    loggers: list[Literal["tensorboard", "wandb"]] = field(default_factory=lambda: ["tensorboard"])
    wandb_project: str = "zoo"
    collective_timeout_s: float = 600.0  # multi-process: a peer silent this long is gone, and every process exits
    # Speed switches (zoo.training.speed). compile: torch.compile each player in place (opt-in: the first steps pay
    # for compilation); compile_options go to torch.compile (mode, backend, dynamic, ...).
    compile: bool = False
    compile_options: dict[str, Any] = field(default_factory=dict)
    channels_last: bool | Literal["auto"] = "auto"  # auto: conv players in channels_last on CUDA
    fused_adam: bool | Literal["auto"] = "auto"  # auto: one fused Adam kernel on CUDA, foreach elsewhere
    tf32: bool | Literal["auto"] = "auto"  # auto: TF32 matmuls/convs on CUDA when training under bf16 autocast


@dataclass
class EvalConfig:
    """A recipe's `eval` section: the metrics its paper reports, which `zoo evaluate RUN` computes when no --metric is
    given (each at its own protocol; --n-samples, --split etc. stay command options)."""

    metrics: list[str] = field(default_factory=list)


# `eval` keys that no zoo version ever read; run folders saved before they were removed hold them at these values,
# which are dropped on load (any other value is an error that says so, see `drop_unread_eval_keys`).
UNREAD_EVAL_KEYS = {"n_samples": 10000, "batch_size": 256, "split": "test"}


def drop_unread_eval_keys(tree: dict[str, Any]) -> dict[str, Any]:
    """`tree` without the never-read `eval.n_samples / batch_size / split` of older configs: at their old defaults
    they carry nothing (dropped); a changed value was never used either, and the error says so and what to use."""
    section = tree.get("eval")
    if not isinstance(section, dict) or not set(section) & set(UNREAD_EVAL_KEYS):
        return tree
    changed = {k: section[k] for k in UNREAD_EVAL_KEYS if k in section and section[k] != UNREAD_EVAL_KEYS[k]}
    if changed:
        shown = ", ".join(f"eval.{k}={v!r}" for k, v in changed.items())
        raise ConfigError(f"{shown}: no zoo version read this key (evaluation settings are options of zoo evaluate, "
                          f"e.g. --n-samples, --batch-size, --split); remove it from the recipe")
    return {**tree, "eval": {k: v for k, v in section.items() if k not in UNREAD_EVAL_KEYS}}


@dataclass
class ModelConfig:
    """Base of every model's config dataclass (a recipe's `model` section, less its `name`)."""


@dataclass
class ModelSection:
    """A recipe's `model` section: the registered model name and that model's validated config. In YAML it is one
    flat mapping, `model: {name: vae, latent_dim: 8, ...}`; `zoo.factory.load_recipe` validates it once."""

    name: str
    config: ModelConfig


@dataclass
class Recipe:
    """A whole run. Build it with `zoo.factory.load_recipe`, which validates `model` against the chosen model's
    config dataclass and merges `optim` over the model's default optimizers."""

    model: ModelSection
    data: DataConfig = field(default_factory=DataConfig)
    optim: dict[str, OptimizerConfig] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # Python modules (or .py files) imported before the model is resolved: models, backbones or datasets defined
    # outside the package (`zoo train --import MODULE` adds to it, so a checkpoint's config.yaml records them).
    imports: list[str] = field(default_factory=list)


def read_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A YAML file as a mapping, bounded (`zoo.yaml_limits`): an oversized file or an alias bomb fails at once with
    a ConfigError naming the file, before anything walks or copies the tree."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"recipe {str(path)!r} does not exist; recipes live in recipes/*.yaml")
    if (size := path.stat().st_size) > yaml_limits.MAX_BYTES:  # before reading it into memory
        raise ConfigError(f"{str(path)!r} is {size:,} bytes, over the {yaml_limits.MAX_BYTES:,}-byte limit for a YAML "
                          f"file the zoo reads; it is not a recipe")
    try:
        tree = yaml_limits.load(path.read_text())
    except yaml_limits.YAMLLimitError as err:
        raise ConfigError(f"{str(path)!r} refused: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"recipe {str(path)!r} is not valid YAML: {err}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"recipe {str(path)!r}: expected a mapping with sections model, data, optim, train, eval")
    return tree


# Integer model options are sizes, widths and counts: >= 1, unless the model's config field says otherwise with
# `field(metadata={"minimum": 0})` (IJAE's max_shift: 0 = no shift).
def _int_minimum(config: Any, name: str) -> int:
    found = [f for f in dataclasses.fields(config) if f.name == name]
    return found[0].metadata.get("minimum", 1) if found else 1


def check_ranges(recipe: Recipe) -> None:
    """Reject values of the right type that make no sense and would change training silently (a negative grad_clip
    flips the gradient; latent_dim 0 trains a model without a latent; log_every 0 divides by zero)."""
    checks: list[tuple[str, Any, bool, str]] = [
        ("data.batch_size", recipe.data.batch_size, recipe.data.batch_size >= 1, ">= 1"),
        ("data.num_workers", recipe.data.num_workers, recipe.data.num_workers >= 0, ">= 0"),
    ]
    t = recipe.train
    checks += [(f"train.{k}", getattr(t, k), getattr(t, k) >= low, f">= {low}")
               for k, low in (("max_steps", 0), ("log_every", 1), ("sample_every", 0), ("n_samples", 1),
                              ("checkpoint_every", 0), ("keep_last", 0), ("collective_timeout_s", 1))]
    if t.ema is not None:
        checks += [("train.ema.decay", t.ema.decay, 0.0 <= t.ema.decay <= 1.0, "in [0, 1]"),
                   ("train.ema.start_step", t.ema.start_step, t.ema.start_step >= 0, ">= 0")]
    for key, o in recipe.optim.items():
        k = f"optim.{key}"
        checks += [(f"{k}.lr", o.lr, 0 <= o.lr < math.inf, "finite and >= 0"),
                   (f"{k}.betas", list(o.betas), all(0.0 <= b < 1.0 for b in o.betas), "each in [0, 1)"),
                   (f"{k}.eps", o.eps, 0 <= o.eps < math.inf, "finite and >= 0"),
                   (f"{k}.weight_decay", o.weight_decay, 0 <= o.weight_decay < math.inf, "finite and >= 0"),
                   (f"{k}.grad_clip", o.grad_clip, o.grad_clip is None or 0 < o.grad_clip < math.inf,
                    "finite and > 0, or null for none"),
                   (f"{k}.accumulation", o.accumulation, o.accumulation >= 1, ">= 1"),
                   (f"{k}.schedule.warmup_steps", o.schedule.warmup_steps, o.schedule.warmup_steps >= 0, ">= 0"),
                   (f"{k}.schedule.final_factor", o.schedule.final_factor, 0 <= o.schedule.final_factor < math.inf,
                    "finite and >= 0")]
    for name, value in to_dict(recipe.model.config).items():
        values = value if isinstance(value, (list, tuple)) else [value]
        if any(isinstance(v, float) and not math.isfinite(v) for v in values):  # NaN / inf train nonsense silently
            checks.append((f"model.{name}", value, False, "a finite number"))
        if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            low = _int_minimum(recipe.model.config, name)
            checks.append((f"model.{name}", value, all(v >= low for v in values), f">= {low}"))
    for key, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"{key}: got {value!r}, expected {allowed}")
