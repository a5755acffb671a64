"""VEEGAN (Srivastava et al. 2017) as configured in Rosca et al. 2018 (section 5.2, App. H, K).

A generator x = G(z), z ~ p(z) = N(0, I); a reconstructor F mapping data to codes (Rosca eq. 10's p_gamma(z|x)); and a
joint discriminator D(x, z) over data and code features (Rosca App. K Table 6, `heads.joint_discriminator`).
Srivastava et al. Algorithm 1:
- D is a classifier with (G(z), z), z ~ p(z), labelled 1 and (x, F(x)), x ~ p*(x), labelled 0, so its logit
  estimates log [q(x|z) p(z)] / [p(z|x) p*(x)], the density ratio of the KL in Rosca eq. 10 / eq. 16;
- generator and reconstructor minimise (1/N) sum_i D(G(z_i), z_i) + ||z_i - F(G(z_i))||_1: the log-ratio (KL)
  estimate plus the code reconstruction. Only the second term depends on F, which gives Algorithm 1's F-gradient
  (line 8); both give G's (line 9). The l1 code reconstruction is Rosca App. K's choice (VEEGAN used l2); the terms
  are not weighted (App. K).
Rosca's p(z|x) sample is the reconstructor's output F(x): the reconstructor is deterministic (docs/models.md).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.adversarial import discriminator_loss
from zoo.models.base import LatentVariableModel, Phase, PhaseOutput
from zoo.nn.heads import joint_discriminator_for
from zoo.registry import BACKBONES, register_model


@dataclass
class VEEGANConfig(ModelConfig):
    backbone: str = "rosca_mnist"  # family in zoo.nn: rosca_mnist (ColorMNIST), dcgan (CelebA, CIFAR-10)
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50
    width: int = 64
    disc_width: int | None = None  # data-feature width of D; default: width
    disc_norm: str = "layer"  # per-example: a density-ratio logit must not read batch statistics (heads.py)
    code_disc_hidden: int = 1000  # code features of D: the Rosca App. K 3 x 1000 code discriminator MLP
    code_disc_layers: int = 3
    joint_width: int = 512  # Rosca Table 6 head maps, swept over 512 / 1024
    # Algorithm 1 trains F by the code reconstruction alone (False). True also trains F adversarially on the data
    # pairs, -D(x, F(x)), as the authors' linked reference implementation does: without it D can tell the pairs apart
    # by their codes alone (F(x) is never pulled towards p(z)) and G then gets no useful signal (docs/models.md). The
    # recipes set True; recipes/veegan_color_mnist_alg1.yaml keeps Algorithm 1.
    reconstructor_adversarial: bool = False


@register_model("veegan")
class VEEGAN(LatentVariableModel):
    """`posterior(x)` is (F(x), None), a point mass: `encode` is F(x), `reconstruct` G(F(x)), `sample` G(z)."""

    config_class = VEEGANConfig
    paper = "Srivastava et al. 2017; Rosca et al. 2018"

    def __init__(self, config: VEEGANConfig):
        super().__init__(config)
        c = config
        self.players["generator"] = BACKBONES.get(f"{c.backbone}.generator")(
            latent_dim=c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        # Rosca App. K: the encoder is the transposed generator, no activation after its last layer
        self.players["reconstructor"] = BACKBONES.get(f"{c.backbone}.encoder")(
            out_features=c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        self.players["discriminator"] = joint_discriminator_for(c)  # Rosca Table 6 head

    @classmethod
    def default_optim(cls, config: VEEGANConfig) -> dict[str, OptimizerConfig]:
        # Rosca App. K Table 3, VEEGAN: generator/encoder lr 1e-3 / 5e-4, discriminator 5e-5 / 1e-4.
        return {"disc": OptimizerConfig(players=["discriminator"], lr=1e-4, betas=(0.5, 0.9)),
                "gen": OptimizerConfig(players=["generator", "reconstructor"], lr=5e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("disc", "disc"), Phase("gen", "gen"))

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        G, F, D = self.players["generator"], self.players["reconstructor"], self.players["discriminator"]
        z = self.prior(batch.shape[0], self.config.latent_dim)
        if phase == "disc":
            with torch.no_grad():  # generator and reconstructor are not trained here
                x_gen, z_data = G(z), F(batch)
            gen_logits, data_logits = D(x_gen, z), D(batch, z_data)
            loss = discriminator_loss(gen_logits, data_logits)  # Srivastava Alg. 1 line 7: (G(z), z) is class 1
            return PhaseOutput(loss, {"d_generated": torch.sigmoid(gen_logits).mean().detach(),
                                      "d_data": torch.sigmoid(data_logits).mean().detach()})
        if phase == "gen":
            x_gen = G(z)  # (B, C, H, W)
            log_ratio = D(x_gen, z).mean()  # KL estimate of Rosca eq. 10 (Alg. 1 line 9, first term)
            code_l1 = (z - F(x_gen)).abs().sum(1).mean()  # ||z - F(G(z))||_1 (Alg. 1 lines 8-9; Rosca App. K)
            logs = {"log_ratio": log_ratio.detach(), "code_l1": code_l1.detach()}
            loss = log_ratio + code_l1
            if self.config.reconstructor_adversarial:  # F makes (x, F(x)) look generated; G does not enter it
                data_log_ratio = D(batch, F(batch)).mean()
                loss = loss - data_log_ratio
                logs["data_log_ratio"] = data_log_ratio.detach()
            return PhaseOutput(loss, logs)
        raise KeyError(f"VEEGAN has phases disc and gen, not {phase!r}")

    def posterior(self, x: Tensor) -> tuple[Tensor, None]:
        """The reconstructor's code F(x), (B, latent_dim), and None: F is deterministic (a point mass)."""
        return self.players["reconstructor"](x), None

    def decode(self, z: Tensor) -> Tensor:
        """G(z) in [-1, 1]."""
        return self.players["generator"](z)
