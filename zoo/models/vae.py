"""Variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) as configured in Rosca et al. 2018.

Gaussian posterior q(z|x) = N(mu(x), diag sigma^2(x)), prior p(z) = N(0, I), visible distribution p(x|z) one of
Bernoulli (Rosca App. K default), Gaussian, Laplace, QuantizedNormal (Rosca section 4). beta weights the KL
(Higgins et al. 2017; beta = 1 is the ELBO). One phase: encoder and decoder minimise the negative ELBO together.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torch import Tensor

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.divergences import kl_normal
from zoo.losses.likelihoods import reparameterize
from zoo.models.base import GaussianLatentModel, Phase, PhaseOutput
from zoo.registry import register_model


@dataclass
class VAEConfig(ModelConfig):
    backbone: str = "rosca_mnist"  # family in zoo.nn: rosca_mnist, dcgan, resnet, jsg
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50  # Rosca App. K sweeps 10 / 50 / 75 on ColorMNIST
    width: int = 64
    likelihood: Literal["bernoulli", "gaussian", "laplace", "quantized_normal"] = "bernoulli"
    init_scale: float = 0.1  # initial scale of the continuous likelihoods, in [0, 1] pixel units
    learn_scale: bool = True
    beta: float = 1.0


@register_model("vae")
class VAE(GaussianLatentModel):
    config_class = VAEConfig
    paper = "Kingma & Welling 2014; Rosca et al. 2018"

    @classmethod
    def default_optim(cls, config: VAEConfig) -> dict[str, OptimizerConfig]:
        # Rosca App. K: Adam(0.5, 0.9), lr swept over 1e-3 / 5e-4 / 5e-3, batch 64.
        return {"vae": OptimizerConfig(players=["encoder", "decoder"], lr=5e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("vae", "vae"),)

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        x01 = (batch + 1) / 2  # (B, C, H, W) pixel intensities for p(x|z)
        mu, logvar = self.posterior(batch)
        z = reparameterize(mu, logvar)  # Kingma & Welling eq. 10
        decoder = self.players["decoder"]
        nll = -decoder.likelihood.log_prob(x01, decoder(z))  # -log p(x|z), one sample (eq. 10)
        kl = kl_normal(mu, logvar)  # KL(q(z|x) || N(0, I)) in closed form (App. B)
        nll, kl = nll.mean(), kl.mean()
        loss = nll + self.config.beta * kl  # -ELBO (beta = 1), Rosca eq. 1
        return PhaseOutput(loss, {"nll": nll, "kl": kl, "elbo": -(nll + kl)})
