"""DCGAN (Radford et al. 2016) with the non-saturating generator loss (Goodfellow et al. 2014), as a Rosca et al.
2018 baseline: the discriminator classifies data vs samples; the generator maximises log D(G(z))."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.adversarial import discriminator_loss, generator_loss_nonsaturating
from zoo.models.base import GenerativeModel, Phase, PhaseOutput
from zoo.registry import BACKBONES, register_model


@dataclass
class DCGANConfig(ModelConfig):
    backbone: str = "rosca_mnist"
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50
    width: int = 64
    disc_width: int | None = None  # default: width
    disc_norm: str = "batch"  # Rosca App. K: batch normalisation in every experiment
    dropout: float = 0.0  # Rosca App. K Table 4: dropout after the last conv for DCGAN (keep-prob 0.8 -> p = 0.2)


@register_model("dcgan")
class DCGAN(GenerativeModel):
    config_class = DCGANConfig
    paper = "Radford et al. 2016; Goodfellow et al. 2014"

    def __init__(self, config: DCGANConfig):
        super().__init__(config)
        c = config
        self.players["generator"] = BACKBONES.get(f"{c.backbone}.generator")(
            latent_dim=c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        extra = {"dropout": c.dropout} if c.dropout else {}
        self.players["discriminator"] = BACKBONES.get(f"{c.backbone}.discriminator")(
            channels=c.channels, image_size=c.image_size, width=c.disc_width or c.width, norm=c.disc_norm, **extra)

    @classmethod
    def default_optim(cls, config: DCGANConfig) -> dict[str, OptimizerConfig]:
        # Rosca App. K: Adam(0.5, 0.9), lr swept over 1e-4 / 2e-4 / 3e-4 for both networks.
        return {"disc": OptimizerConfig(players=["discriminator"], lr=2e-4, betas=(0.5, 0.9)),
                "gen": OptimizerConfig(players=["generator"], lr=2e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("disc", "disc"), Phase("gen", "gen"))

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        G, D = self.players["generator"], self.players["discriminator"]
        z = torch.randn(batch.shape[0], self.config.latent_dim, device=batch.device)
        if phase == "disc":
            with torch.no_grad():  # the generator is not trained here; no graph through it
                fake = G(z)
            real_logits, fake_logits = D(batch), D(fake)
            loss = discriminator_loss(real_logits, fake_logits)  # Goodfellow et al. eq. 1, D's side
            return PhaseOutput(loss, {"d_real": torch.sigmoid(real_logits).mean(),
                                      "d_fake": torch.sigmoid(fake_logits).mean()})
        if phase == "gen":
            return PhaseOutput(generator_loss_nonsaturating(D(G(z))))  # -log D(G(z))
        raise KeyError(f"DCGAN has phases disc and gen, not {phase!r}")

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.players["generator"](self.prior(n, self.config.latent_dim, generator))
