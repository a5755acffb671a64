"""The model interface the generic trainer runs: players (networks) and phases (the update schedule).

A model owns its networks in `self.players` and declares, with `phases()`, which optimizer updates which players in
what order; `phase_loss()` computes one phase's scalar loss. Everything model-agnostic (optimizers, precision,
distributed training, checkpoints) lives in `zoo.training`.
"""
from __future__ import annotations

import abc
import contextlib
import contextvars
from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterator

import torch
from torch import Tensor, nn

from zoo.config import ConfigError, ModelConfig, OptimizerConfig
from zoo.losses.divergences import kl_normal
from zoo.losses.likelihoods import reparameterize
from zoo.nn.decoder import Decoder
from zoo.registry import BACKBONES


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
            updated by two losses with one optimizer state (the AAE's shared-state reading).
        own_state: step with an optimizer state of its own (Adam moments and step count) over its trained players,
            built from the same `optim` entry (lr, betas, schedule), instead of the entry's shared one; checkpointed
            as `<optimizer>/<phase name>`. For a player updated by two losses that must not mix their gradient
            statistics, e.g. the AAE encoder in Makhzani's reconstruction and regularization phases.
    """

    name: str
    optimizer: str
    repeats: int = 1
    every: int = 1
    players: tuple[str, ...] = ()
    own_state: bool = False

    @property
    def state_key(self) -> str:
        """The key of the optimizer state this phase steps (in the trainer and in checkpoints)."""
        return f"{self.optimizer}/{self.name}" if self.own_state else self.optimizer


@dataclass
class PhaseOutput:
    """A phase's scalar loss (to minimise) and detached scalars to log under `<phase>/<key>`."""

    loss: Tensor
    logs: dict[str, Tensor] = field(default_factory=dict)


class GenerativeModel(nn.Module, abc.ABC):
    """Base class of every registered model. Subclasses set `config_class` and `paper`, build `self.players` in
    `__init__(config)`, and implement `phases`, `phase_loss` and `sample` (plus `encode`/`reconstruct` where an
    encoder exists). Images go in and come out in [-1, 1], shape (B, C, H, W)."""

    config_class: ClassVar[type[ModelConfig]]
    name: ClassVar[str] = ""  # the registered name, set by `zoo.registry.register_model`
    paper: ClassVar[str] = ""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.players = nn.ModuleDict()

    # ---- schedule ---------------------------------------------------------------------------------------------
    @classmethod
    @abc.abstractmethod
    def default_optim(cls, config: ModelConfig) -> dict[str, OptimizerConfig]:
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
        """n draws of the standard normal prior p(z) = N(0, I) on the model's device; inside `indexed_noise` row i is
        drawn from its own generator (see there) and `generator` is not used."""
        indexed = _INDEXED_NOISE.get()
        if indexed is not None:
            return indexed.draw(n, dim).to(self.device)
        device = generator.device if generator is not None else self.device
        return torch.randn(n, dim, generator=generator, device=device).to(self.device)


class _IndexedNoise:
    """Per-sample noise: row i of the k-th `prior` call of a `sample` call comes from a CPU generator seeded by
    seed_of(first + i, k), so sample i is the same whatever batch it falls in."""

    def __init__(self, seed_of: Callable[[int, int], int], first: int):
        self.seed_of, self.first, self.calls = seed_of, first, 0

    def draw(self, n: int, dim: int) -> Tensor:
        k, self.calls = self.calls, self.calls + 1
        g = torch.Generator()
        rows = [torch.randn(dim, generator=g.manual_seed(self.seed_of(self.first + i, k))) for i in range(n)]
        return torch.stack(rows)  # (n, dim)


_INDEXED_NOISE: contextvars.ContextVar[_IndexedNoise | None] = contextvars.ContextVar("zoo_indexed_noise",
                                                                                       default=None)


@contextlib.contextmanager
def indexed_noise(seed_of: Callable[[int, int], int], first: int) -> Iterator[_IndexedNoise]:
    """Within this block, `GenerativeModel.prior` draws the noise of sample `first + i` (its k-th prior call) from a
    generator seeded by `seed_of(first + i, k)`: samples then depend on (seed, index) only, not on the batch size.
    The yielded object's `calls` says whether the model drew through `prior` at all."""
    state = _IndexedNoise(seed_of, first)
    token = _INDEXED_NOISE.set(state)
    try:
        yield state
    finally:
        _INDEXED_NOISE.reset(token)


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


class GaussianLatentModel(LatentVariableModel):
    """A Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)) and an explicit decoder p(x|z) (VAE, AAE, JS^G VAE).

    The config has backbone, channels, image_size, latent_dim, width, likelihood, init_scale and learn_scale; the
    players "encoder" (outputs mu and log sigma^2) and "decoder" (a `zoo.nn.decoder.Decoder`) come from the
    backbone family in `zoo.nn`.
    """

    def __init__(self, config: ModelConfig):
        super().__init__(config)
        c = config
        self.players["encoder"] = BACKBONES.get(f"{c.backbone}.encoder")(
            out_features=2 * c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        self.players["decoder"] = Decoder.from_backbone(c.backbone, latent_dim=c.latent_dim, channels=c.channels,
                                                        image_size=c.image_size, width=c.width,
                                                        likelihood=c.likelihood, init_scale=c.init_scale,
                                                        learn_scale=c.learn_scale)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x), each (B, latent_dim)."""
        mu, logvar = self.players["encoder"](x).chunk(2, dim=1)
        return mu, logvar

    def encode_sample(self, x: Tensor) -> Tensor:
        """One reparameterised draw z ~ q(z|x), (B, latent_dim)."""
        return reparameterize(*self.posterior(x))

    def decode(self, z: Tensor) -> Tensor:
        """Mean of p(x|z) in [-1, 1]."""
        return self.players["decoder"].mean(z)

    def log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per example (nats) for images x in [-1, 1] and codes z (B, latent_dim): the explicit likelihood
        that ELBO and importance-weighted evaluations need."""
        return self.players["decoder"].log_prob(x, z)

    @torch.no_grad()
    def elbo(self, x: Tensor) -> Tensor:
        """Single-sample ELBO per example (nats) of images x in [-1, 1]."""
        mu, logvar = self.posterior(x)
        return self.log_px_given_z(x, reparameterize(mu, logvar)) - kl_normal(mu, logvar)


def validate_schedule(model: GenerativeModel, optim: dict[str, OptimizerConfig], phases: tuple[Phase, ...]) -> None:
    """Phases, optimizers and players must fit together: every phase's optimizer exists, every optimizer is used,
    optimizers name existing players, no player is in two optimizers and every trainable player is in one."""
    players = set(model.players.keys())
    for phase in phases:
        if phase.optimizer not in optim:
            raise ConfigError(f"optim.{phase.optimizer}: phase {phase.name!r} needs this optimizer; "
                              f"defined optimizers: {', '.join(optim) or '(none)'}")
        if phase.repeats < 1 or phase.every < 1:
            raise ConfigError(f"phase {phase.name!r}: repeats and every must be >= 1, got {phase}")
        outside = [p for p in phase.players if p not in optim[phase.optimizer].players]
        if outside:
            raise ConfigError(f"optim.{phase.optimizer}.players: phase {phase.name!r} trains {', '.join(outside)}, "
                              f"which must be among this optimizer's players "
                              f"({', '.join(optim[phase.optimizer].players) or 'none'}); add them there")
    owner: dict[str, str] = {}
    for key, cfg in optim.items():
        if key not in {p.optimizer for p in phases}:
            raise ConfigError(f"optim.{key}: no phase uses this optimizer; the model's phases use "
                              f"{', '.join(sorted({p.optimizer for p in phases}))}")
        for player in cfg.players:
            if player not in players:
                raise ConfigError(f"optim.{key}.players: unknown player {player!r}; players: {', '.join(players)}")
            if player in owner:
                raise ConfigError(f"optim.{key}.players: {player!r} is already trained by optim.{owner[player]}")
            owner[player] = key
        if cfg.accumulation < 1:
            raise ConfigError(f"optim.{key}.accumulation: got {cfg.accumulation}, expected >= 1")
    orphans = [n for n in players if n not in owner and any(p.requires_grad for p in model.players[n].parameters())]
    if orphans:
        raise ConfigError(f"players {', '.join(orphans)} are in no optimizer's players list; add them to optim")
