"""The model interface the generic trainer runs: players (networks) and phases (the update schedule).

A model owns its networks in `self.players` and declares, with `phases()`, which optimizer updates which players in
what order; `phase_loss()` computes one phase's scalar loss. Everything model-agnostic (optimizers, precision,
distributed training, checkpoints) lives in `zoo.training`.
"""
from __future__ import annotations

import abc
import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Mapping

import torch
from torch import Tensor, nn

from zoo.config import ConfigError, OptimizerConfig, from_dict, to_dict
from zoo.registry import MODELS, _import_all


@dataclass(frozen=True)
class Phase:
    """One step of a model's update schedule.

    Attributes:
        name: log prefix and the key `phase_loss` dispatches on ("disc", "gen", "critic", ...).
        optimizer: key in `recipe.optim`; only that optimizer's players receive gradients in this phase.
        repeats: consecutive updates per training step (n_critic), each on a fresh batch.
        every: run only on steps where `step % every == 0`.
        players: the subset of the optimizer's players this phase trains (default, empty: all of them). The others
            get no gradient, so the optimizer step leaves their parameters and optimizer state alone. For a player
            updated by two losses with one optimizer state, e.g. the AAE encoder (reconstruction with the decoder,
            then its adversarial loss alone).
    """

    name: str
    optimizer: str
    repeats: int = 1
    every: int = 1
    players: tuple[str, ...] = ()


@dataclass
class PhaseOutput:
    """A phase's scalar loss (to minimise) and detached scalars to log under `<phase>/<key>`."""

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


class GenerativeModel(nn.Module, abc.ABC):
    """Base class of every registered model. Subclasses set `config_class` and `paper`, build `self.players` in
    `__init__(config)`, and implement `phases`, `phase_loss` and `sample` (plus `encode`/`reconstruct` where an
    encoder exists). Images go in and come out in [-1, 1], shape (B, C, H, W)."""

    config_class: ClassVar[type]
    paper: ClassVar[str] = ""

    def __init__(self, config: Any):
        super().__init__()
        self.config = config
        self.players = nn.ModuleDict()

    # ---- schedule ---------------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def default_optim(cls, config: Any) -> dict[str, OptimizerConfig]:
        """The paper's optimizers; a recipe's `optim` section overrides them field by field."""

    @abc.abstractmethod
    def phases(self) -> tuple[Phase, ...]:
        """The update schedule, in execution order."""

    @abc.abstractmethod
    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        """The loss of phase `phase` on a batch of data in [-1, 1]."""

    # ---- inference --------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        """n samples in [-1, 1]; `generator` makes them reproducible."""

    #: models with an encoder set this and define `encode(x) -> (B, latent)` and `reconstruct(x) -> x_hat`.
    has_encoder: ClassVar[bool] = False

    @property
    def data_shape(self) -> tuple[int, ...] | None:
        """Shape of one data example the model expects, from the config's channels / image_size where it has them."""
        c = self.config
        if hasattr(c, "channels") and hasattr(c, "image_size"):
            return (c.channels, c.image_size, c.image_size)
        return None

    # ---- helpers for subclasses -------------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def prior(self, n: int, dim: int, generator: torch.Generator | None = None) -> Tensor:
        """n draws of the standard normal prior p(z) = N(0, I) on the model's device."""
        device = generator.device if generator is not None else self.device
        return torch.randn(n, dim, generator=generator, device=device).to(self.device)


class LatentVariableModel(GenerativeModel):
    """A model with an encoder q(z|x) and a decoder: subclasses define `posterior(x) -> (mu, logvar)` (logvar None
    for a deterministic encoder, whose q(z|x) is a point mass) and `decode(z) -> x in [-1, 1]`, and have
    `config.latent_dim`. Sampling decodes prior draws; encoding is the posterior mean; reconstructions decode it
    (the protocol of Rosca App. L and JS^G-VAE Table 1). The latent-space analyses (`zoo.evaluation.latent`) read
    `posterior` and `decode`."""

    has_encoder = True

    @abc.abstractmethod
    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Mean and log-variance of q(z|x), each (B, latent_dim); log-variance None for a point mass."""

    @abc.abstractmethod
    def decode(self, z: Tensor) -> Tensor:
        """Images in [-1, 1] for codes z (B, latent_dim): the generator, or the mean of p(x|z)."""

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.decode(self.prior(n, self.config.latent_dim, generator))

    def encode(self, x: Tensor) -> Tensor:
        return self.posterior(x)[0]

    def reconstruct(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))


def resolve_model_section(section: Mapping[str, Any]) -> tuple[type[GenerativeModel], Any]:
    """`{"name": ..., **options}` -> (model class, validated config dataclass)."""
    _import_all()
    options = dict(section)
    name = options.pop("name")
    if not isinstance(name, str):
        raise ConfigError(f"model.name: got {name!r}, expected a registered model name: {', '.join(MODELS.names())}")
    try:
        cls = MODELS.get(name)
    except KeyError as err:
        raise ConfigError(f"model.name: {err}") from None
    return cls, from_dict(cls.config_class, options, "model")


def init_seed(seed: int) -> int:
    """The seed of a model's initialisation, derived from the recipe's `train.seed` (a stream of its own, apart from
    the per-step noise seeds of the trainer)."""
    digest = hashlib.sha256(f"init:{int(seed)}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & ((1 << 63) - 1)


def create_model(source: str | Mapping[str, Any] | Any, *, seed: int | None = None,
                 **overrides: Any) -> GenerativeModel:
    """Build a model from a registered name, a model section / recipe mapping, a `Recipe`, or a YAML path.

    Keyword overrides replace fields of the model config, e.g. ``create_model("vae", latent_dim=8)``.

    Args:
        seed: seeds everything drawn at construction (player initialisation), so one seed gives bit-identical initial
            weights in any process. Default: the recipe's `train.seed` when `source` is a `Recipe`, a YAML path or a
            recipe mapping with `train.seed`; else unseeded (the global torch RNG, as `nn.Module` does). The global
            RNG is left as it was either way.
    """
    from zoo.config import Recipe, load_recipe

    if isinstance(source, str) and (source.endswith((".yaml", ".yml"))):
        source = load_recipe(source)
    if isinstance(source, Recipe):
        section = dict(source.model)
        seed = source.train.seed if seed is None else seed
    elif isinstance(source, Mapping):
        section = dict(source.get("model", source))
        train = source.get("train") if "model" in source else None
        if seed is None and isinstance(train, Mapping) and isinstance(train.get("seed"), int):
            seed = train["seed"]
    elif isinstance(source, str):
        section = {"name": source}
    else:
        raise TypeError(f"create_model: expected a model name, recipe or mapping, got {type(source).__name__}")
    section.update(overrides)
    cls, config = resolve_model_section(section)
    if seed is None:
        return cls(config)
    with torch.random.fork_rng(devices=[]):  # construction happens on the CPU; the caller's RNG stays untouched
        torch.manual_seed(init_seed(seed))
        return cls(config)


def model_section(model: GenerativeModel) -> dict[str, Any]:
    """The recipe `model` section that rebuilds `model`."""
    name = next(n for n in MODELS.names() if MODELS.get(n) is type(model))
    return {"name": name, **to_dict(model.config)}


def replace_config(config: Any, **changes: Any) -> Any:
    return dataclasses.replace(config, **changes)
