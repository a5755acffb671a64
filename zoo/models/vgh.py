"""VGH, the Variational GAN Hybrid of Rosca et al. 2018 (section 5.1, App. F, Algorithm 5 without the sample term).

Players: encoder E (q(z|x)), generator G, data discriminator D (data real, reconstructions fake; eq. 8) and code
discriminator C (prior codes real, encoder codes fake; eq. 15). Marginal distribution matching in latent space by the
density-ratio trick (C), in visible space on reconstructions (D), plus an l1 reconstruction loss. With R(u) = -log D(u)
+ log(1 - D(u)) = -logit (Algorithm 5, lines 3-4), one training step is (Algorithm 5, lines 6-9):

    encoder    lambda_E ||x - x_hat||_1 + R_C(z_hat)                           eq. 14
    generator  lambda_G ||x - x_hat||_1 + R_D(x_hat)   [+ R_D(G(z)), z ~ p(z)  VGH++]
    disc       -log D(x) - log(1 - D(x_hat))           [- log(1 - D(G(z)))     VGH++]  eq. 8 / eq. 9
    code_disc  -log(1 - C(z_hat)) - log C(z), z ~ p(z)                          eq. 15

with z_hat ~ q(z|x), x_hat = G(z_hat). VGH++ (`VGHPlus`, at the end of this file) adds the bracketed sample terms.
Decisions (docs/models.md, "VGH and VGH++"): deterministic encoder by default (q(z|x) a point mass at E(x)); the l1
norm averaged over pixels in [-1, 1] units; adversarial terms weighted 1 (App. K). Algorithm 5 gives the encoder no
data-discriminator term, while App. F's single objective (R_D(G(z)), z ~ q(z|x)) and section 5.1 ("the encoder and
decoder minimize an adversarial loss") do: `encoder_data_adversarial: true` adds R_D(x_hat) to the encoder's loss.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.adversarial import generator_loss_nonsaturating, logit_ratio_loss
from zoo.losses.likelihoods import reparameterize
from zoo.models.base import LatentVariableModel, Phase, PhaseOutput
from zoo.registry import BACKBONES, register_model


@dataclass
class VGHConfig(ModelConfig):
    backbone: str = "rosca_mnist"  # family in zoo.nn for encoder, generator and data discriminator (App. K)
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50  # App. K sweeps 10 / 50 / 75 on ColorMNIST
    width: int = 64
    disc_width: int | None = None  # default: width
    disc_norm: str = "batch"  # App. K: batch normalisation in every experiment
    code_disc_hidden: int = 1000  # App. K: a 3 x 1000 MLP, LeakyReLU 0.2
    code_disc_layers: int = 3
    encoder_recon_weight: float = 10.0  # lambda of eq. 14; App. K sweeps 1, 5, 10, 50 (10: mid-sweep default)
    generator_recon_weight: float = 10.0  # lambda of Algorithm 5 line 7; swept separately over 1, 5, 10, 50
    recon_reduction: Literal["mean", "sum"] = "mean"  # ||x - x_hat||_1 averaged or summed over the pixels
    posterior: Literal["deterministic", "gaussian"] = "deterministic"  # q(z|x): point mass or reparameterised normal
    generator_loss: Literal["ratio", "nonsaturating"] = "ratio"  # R = -logit (Alg. 5) or -log D (footnote 1)
    disc_real_weight: float = 1.0  # weight of -log D(x) in the data discriminator loss (eq. 9; Alg. 5 exact form: 2)
    # the encoder also minimises R_D(x_hat) (App. F's objective, section 5.1) instead of Algorithm 5 line 6 alone
    encoder_data_adversarial: bool = False


@register_model("vgh")
class VGH(LatentVariableModel):
    config_class = VGHConfig
    paper = "Rosca et al. 2018, section 5.1, App. F"
    #: VGH++ also trains G and D on prior samples G(z) (eq. 9, the green arrow of Fig. 6).
    adversarial_samples: ClassVar[bool] = False

    def __init__(self, config: VGHConfig):
        super().__init__(config)
        c = config
        out = 2 * c.latent_dim if c.posterior == "gaussian" else c.latent_dim
        self.players["encoder"] = BACKBONES.get(f"{c.backbone}.encoder")(
            out_features=out, channels=c.channels, image_size=c.image_size, width=c.width)
        self.players["generator"] = BACKBONES.get(f"{c.backbone}.generator")(
            latent_dim=c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        self.players["discriminator"] = BACKBONES.get(f"{c.backbone}.discriminator")(
            channels=c.channels, image_size=c.image_size, width=c.disc_width or c.width, norm=c.disc_norm)
        self.players["code_discriminator"] = BACKBONES.get("mlp.code_discriminator")(
            latent_dim=c.latent_dim, hidden=c.code_disc_hidden, layers=c.code_disc_layers)
        for name in ("encoder_recon_weight", "generator_recon_weight", "disc_real_weight"):
            if getattr(c, name) < 0:
                raise ValueError(f"{type(self).__name__}: {name} must be >= 0, got {getattr(c, name)}")

    @classmethod
    def default_optim(cls, config: VGHConfig) -> dict[str, OptimizerConfig]:
        # App. K Table 3: generator / encoder lr swept over 1e-4 / 5e-4, both discriminators 5e-4; Adam(0.5, 0.9).
        return {"encoder": OptimizerConfig(players=["encoder"], lr=5e-4, betas=(0.5, 0.9)),
                "generator": OptimizerConfig(players=["generator"], lr=5e-4, betas=(0.5, 0.9)),
                "disc": OptimizerConfig(players=["discriminator"], lr=5e-4, betas=(0.5, 0.9)),
                "code_disc": OptimizerConfig(players=["code_discriminator"], lr=5e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        # Algorithm 5, lines 6-9, in order; every component is updated once per step (App. K, "Updates").
        return (Phase("encoder", "encoder"), Phase("generator", "generator"), Phase("disc", "disc"),
                Phase("code_disc", "code_disc"))

    # ---- q(z|x) -------------------------------------------------------------------------------------------------
    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor | None]:
        """Mean and log-variance of q(z|x), each (B, latent_dim); the log-variance is None for the deterministic
        encoder, whose q(z|x) is a point mass at E(x)."""
        h = self.players["encoder"](x)  # (B, latent) or (B, 2 * latent)
        if self.config.posterior == "deterministic":
            return h, None
        mu, logvar = h.chunk(2, dim=1)
        return mu, logvar

    def sample_posterior(self, x: Tensor) -> Tensor:
        """z_hat ~ q(z|x) (Algorithm 5, line 2), reparameterised so gradients reach the encoder."""
        mu, logvar = self.posterior(x)
        if logvar is None:
            return mu
        return reparameterize(mu, logvar)

    # ---- losses -------------------------------------------------------------------------------------------------
    def recon_loss(self, x: Tensor, x_hat: Tensor) -> Tensor:
        """||x - x_hat||_1 per example (mean or sum over the C*H*W values), averaged over the batch."""
        l1 = (x - x_hat).abs().flatten(1)  # (B, C*H*W)
        return (l1.mean(1) if self.config.recon_reduction == "mean" else l1.sum(1)).mean()

    def adversarial_loss(self, fake_logits: Tensor) -> Tensor:
        """R(u) of Algorithm 5 (lines 3-4) on a classifier's logits at the fakes, averaged over the batch."""
        if self.config.generator_loss == "ratio":
            return logit_ratio_loss(fake_logits)  # -log D + log(1 - D) = -logit
        return generator_loss_nonsaturating(fake_logits)  # -log D (Rosca footnote 1)

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        E, G = self.sample_posterior, self.players["generator"]
        D, C = self.players["discriminator"], self.players["code_discriminator"]
        c, x = self.config, batch  # (B, C, H, W) in [-1, 1]
        if phase == "encoder":
            z_hat = E(x)  # (B, latent), reparameterised
            x_hat = G(z_hat)  # (B, C, H, W)
            recon = self.recon_loss(x, x_hat)
            code_adv = self.adversarial_loss(C(z_hat))  # R_C(z_hat)
            loss = c.encoder_recon_weight * recon + code_adv  # eq. 14 (Algorithm 5, line 6)
            logs = {"recon": recon.detach(), "code_adv": code_adv.detach()}
            if c.encoder_data_adversarial:  # App. F: R_D(G(z)), z ~ q(z|x), reaches the encoder through z_hat
                adv_rec = self.adversarial_loss(D(x_hat))
                loss = loss + adv_rec
                logs["adv_rec"] = adv_rec.detach()
            return PhaseOutput(loss, logs)
        if phase == "generator":
            with torch.no_grad():  # the encoder is not trained here
                z_hat = E(x)
            x_hat = G(z_hat)  # (B, C, H, W)
            recon = self.recon_loss(x, x_hat)
            adv_rec = self.adversarial_loss(D(x_hat))  # R_D(x_hat)
            loss = c.generator_recon_weight * recon + adv_rec  # Algorithm 5, line 7
            logs = {"recon": recon.detach(), "adv_rec": adv_rec.detach()}
            if self.adversarial_samples:
                adv_gen = self.adversarial_loss(D(G(self.prior(x.shape[0], c.latent_dim))))  # R_D(G(z)), z ~ p(z)
                loss = loss + adv_gen  # Algorithm 5, line 7, the VGH++ term
                logs["adv_gen"] = adv_gen.detach()
            return PhaseOutput(loss, logs)
        if phase == "disc":
            with torch.no_grad():  # generator and encoder are not trained here
                x_hat = G(E(x))
                x_gen = G(self.prior(x.shape[0], c.latent_dim)) if self.adversarial_samples else None
            real, rec = D(x), D(x_hat)  # (B,) logits each
            loss = c.disc_real_weight * F.softplus(-real).mean() + F.softplus(rec).mean()  # eq. 8: -log D, -log(1-D)
            logs = {"d_real": torch.sigmoid(real).mean().detach(), "d_rec": torch.sigmoid(rec).mean().detach()}
            if x_gen is not None:
                gen = D(x_gen)
                loss = loss + F.softplus(gen).mean()  # eq. 9 / Algorithm 5 line 8: samples are fake too
                logs["d_gen"] = torch.sigmoid(gen).mean().detach()
            return PhaseOutput(loss, logs)
        if phase == "code_disc":
            with torch.no_grad():
                z_hat = E(x)
            prior, code = C(self.prior(x.shape[0], c.latent_dim)), C(z_hat)  # (B,) logits each
            loss = F.softplus(-prior).mean() + F.softplus(code).mean()  # eq. 15: -log C(z) - log(1 - C(z_hat))
            return PhaseOutput(loss, {"c_prior": torch.sigmoid(prior).mean().detach(),
                                      "c_code": torch.sigmoid(code).mean().detach()})
        raise KeyError(f"{type(self).__name__} has phases encoder, generator, disc and code_disc, not {phase!r}")

    # ---- inference ----------------------------------------------------------------------------------------------
    def decode(self, z: Tensor) -> Tensor:
        """G(z) in [-1, 1] for codes z (B, latent_dim)."""
        return self.players["generator"](z)


@register_model("vgh_plus")
class VGHPlus(VGH):
    """VGH++ (Rosca et al. 2018, section 5.1 eq. 9, App. F, Algorithm 5): VGH whose data discriminator also treats
    prior samples G(z), z ~ p(z), as fake, and whose generator also minimises R_D(G(z)) — "the green arrow between
    x_gen and D" of Fig. 6. Everything else (players, config, phases, encoder and code-discriminator losses) is
    VGH's; `phase_loss` carries the two extra terms behind `adversarial_samples`. Same paper, same file."""

    config_class = VGHConfig
    paper = "Rosca et al. 2018, section 5.1 eq. 9, App. F Algorithm 5"
    adversarial_samples = True
