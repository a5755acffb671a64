"""WGAN-GP (Gulrajani et al. 2017, Algorithm 1): a critic trained n_critic = 5 times per generator step on fresh
batches, with the gradient penalty lambda (||grad D(x_hat)||_2 - 1)^2, lambda = 10, Adam(1e-4, 0.5, 0.9)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.adversarial import critic_loss_wasserstein, generator_loss_wasserstein
from zoo.losses.penalties import gradient_penalty
from zoo.models.base import GenerativeModel, Phase, PhaseOutput
from zoo.registry import BACKBONES, register_model


@dataclass
class WGANGPConfig(ModelConfig):
    backbone: str = "rosca_mnist"
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50
    width: int = 64
    disc_width: int | None = None
    # The penalty is per example, which batch norm breaks (Gulrajani et al. section 4): the critic has no norm by
    # default, although Rosca App. K says batch norm was used everywhere (docs/models.md).
    disc_norm: str = "none"
    n_critic: int = 5
    gp_weight: float = 10.0


@register_model("wgan_gp")
class WGANGP(GenerativeModel):
    config_class = WGANGPConfig
    paper = "Gulrajani et al. 2017"

    def __init__(self, config: WGANGPConfig):
        super().__init__(config)
        c = config
        self.players["generator"] = BACKBONES.get(f"{c.backbone}.generator")(
            latent_dim=c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        self.players["critic"] = BACKBONES.get(f"{c.backbone}.discriminator")(
            channels=c.channels, image_size=c.image_size, width=c.disc_width or c.width, norm=c.disc_norm)

    @classmethod
    def default_optim(cls, config: WGANGPConfig) -> dict[str, OptimizerConfig]:
        return {"critic": OptimizerConfig(players=["critic"], lr=1e-4, betas=(0.5, 0.9)),
                "gen": OptimizerConfig(players=["generator"], lr=1e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("critic", "critic", repeats=self.config.n_critic), Phase("gen", "gen"))

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        G, D = self.players["generator"], self.players["critic"]
        z = torch.randn(batch.shape[0], self.config.latent_dim, device=batch.device)
        if phase == "critic":
            with torch.no_grad():
                fake = G(z)
            real_scores, fake_scores = D(batch), D(fake)
            wasserstein = critic_loss_wasserstein(real_scores, fake_scores)  # Alg. 1 line 7, first two terms
            penalty = gradient_penalty(D, batch, fake)  # Alg. 1 line 7, penalty term (eq. 3), fp32
            return PhaseOutput(wasserstein + self.config.gp_weight * penalty,
                               {"wasserstein": -wasserstein.detach(), "gp": penalty.detach()})
        if phase == "gen":
            return PhaseOutput(generator_loss_wasserstein(D(G(z))))  # Alg. 1 line 12
        raise KeyError(f"WGAN-GP has phases critic and gen, not {phase!r}")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.players["generator"](self.prior(n, self.config.latent_dim, generator))
