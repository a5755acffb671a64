"""Variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) as configured in Rosca et al. 2018.

Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)), prior p(z) = N(0, I), visible distribution p(x|z) one of
Bernoulli (Rosca App. K default), Gaussian, Laplace, QuantizedNormal (Rosca section 4). beta weights the KL
(Higgins et al. 2017; beta = 1 is the ELBO). One phase: encoder and decoder minimise the negative ELBO together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from zoo.config import OptimizerConfig
from zoo.losses.divergences import kl_normal
from zoo.losses.likelihoods import VisibleDistribution
from zoo.models.base import LatentVariableModel, Phase, PhaseOutput
from zoo.registry import BACKBONES, register_model


@dataclass
class VAEConfig:
    backbone: str = "rosca_mnist"  # family in zoo.nn: rosca_mnist, dcgan, resnet, jsg
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50  # Rosca App. K sweeps 10 / 50 / 75 on ColorMNIST
    width: int = 64
    likelihood: Literal["bernoulli", "gaussian", "laplace", "quantized_normal"] = "bernoulli"
    init_scale: float = 0.1  # initial scale of the continuous likelihoods, in [0, 1] pixel units
    learn_scale: bool = True
    beta: float = 1.0


class Decoder(nn.Module):
    """Generator network with raw outputs + the visible distribution those outputs parameterise."""

    def __init__(self, net: nn.Module, likelihood: VisibleDistribution):
        super().__init__()
        self.net, self.likelihood = net, likelihood

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


@register_model("vae")
class VAE(LatentVariableModel):
    config_class = VAEConfig
    paper = "Kingma & Welling 2014; Rosca et al. 2018"

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        self.players["encoder"] = BACKBONES.get(f"{c.backbone}.encoder")(
            out_features=2 * c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width)
        net = BACKBONES.get(f"{c.backbone}.generator")(
            latent_dim=c.latent_dim, channels=c.channels, image_size=c.image_size, width=c.width,
            output_activation=None)
        self.players["decoder"] = Decoder(net, VisibleDistribution(c.likelihood, c.channels, c.init_scale,
                                                                   c.learn_scale))

    @classmethod
    def default_optim(cls, config: VAEConfig) -> dict[str, OptimizerConfig]:
        # Rosca App. K: Adam(0.5, 0.9), lr swept over 1e-3 / 5e-4 / 5e-3, batch 64.
        return {"vae": OptimizerConfig(players=["encoder", "decoder"], lr=5e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("vae", "vae"),)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x), each (B, latent_dim)."""
        mu, logvar = self.players["encoder"](x).chunk(2, dim=1)
        return mu, logvar

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        x01 = (batch + 1) / 2  # (B, C, H, W) pixel intensities for p(x|z)
        mu, logvar = self.posterior(batch)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)  # reparameterisation (Kingma & Welling eq. 10)
        decoder = self.players["decoder"]
        nll = -decoder.likelihood.log_prob(x01, decoder(z))  # -log p(x|z), one sample (eq. 10)
        kl = kl_normal(mu, logvar)  # KL(q(z|x) || N(0, I)) in closed form (App. B)
        nll, kl = nll.mean(), kl.mean()
        loss = nll + self.config.beta * kl  # -ELBO (beta = 1), Rosca eq. 1
        return PhaseOutput(loss, {"nll": nll, "kl": kl, "elbo": -(nll + kl)})

    def decode(self, z: Tensor) -> Tensor:
        """Mean of p(x|z) in [-1, 1]."""
        decoder = self.players["decoder"]
        return decoder.likelihood.mean(decoder(z)) * 2 - 1

    def log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per example (nats) for images x in [-1, 1] and codes z (B, latent_dim): the explicit likelihood
        that ELBO and importance-weighted evaluations need."""
        decoder = self.players["decoder"]
        return decoder.likelihood.log_prob((x + 1) / 2, decoder(z))

    @torch.no_grad()
    def elbo(self, x: Tensor) -> Tensor:
        """Single-sample ELBO per example (nats) of images x in [-1, 1]."""
        mu, logvar = self.posterior(x)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
        return self.log_px_given_z(x, z) - kl_normal(mu, logvar)
