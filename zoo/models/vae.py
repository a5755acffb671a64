"""Variational autoencoder (Kingma & Welling 2014; Rezende et al. 2014) as configured in Rosca et al. 2018.

Posterior q(z|x): a diagonal Gaussian N(mu(x), diag sigma^2(x)) (Rosca App. K default), or a RealNVP flow on top of
it (`posterior: realnvp`, Rosca section 3.1 / Fig. 1): z_0 ~ N(mu(x), sigma^2(x)), z = f(z_0), and
log q(z|x) = log N(z_0; mu, sigma^2) - log|det df/dz_0| (Rezende & Mohamed 2015, eq. 5). Prior p(z) = N(0, I).
Visible distribution p(x|z): Bernoulli (Rosca App. K default), Gaussian, Laplace, QuantizedNormal (section 3.2) or a
256-way Categorical per subpixel (section 3.2). beta weights the KL (Higgins et al. 2017; beta = 1 is the ELBO). One
phase: encoder, flow and decoder minimise the negative ELBO together.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from zoo.config import ConfigError, ModelConfig, OptimizerConfig
from zoo.losses.divergences import kl_normal
from zoo.models.base import GaussianLatentModel, Phase, PhaseOutput
from zoo.nn.flows import RealNVP
from zoo.registry import register_model


@dataclass
class VAEConfig(ModelConfig):
    backbone: str = "rosca_mnist"  # family in zoo.nn: rosca_mnist, dcgan, resnet, jsg
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50  # Rosca App. K sweeps 10 / 50 / 75 on ColorMNIST
    width: int = 64
    likelihood: Literal["bernoulli", "gaussian", "laplace", "quantized_normal", "categorical"] = "bernoulli"
    init_scale: float = 0.1  # initial scale of the continuous likelihoods, in [0, 1] pixel units
    learn_scale: bool = True
    beta: float = 1.0
    posterior: Literal["gaussian", "realnvp"] = "gaussian"  # realnvp: Rosca section 3.1 / Fig. 1
    flow_couplings: int = 4  # RealNVP sizes: not in the paper (docs/models.md)
    flow_hidden: int = 256
    flow_layers: int = 2

    def __post_init__(self) -> None:
        if self.posterior == "realnvp" and (self.latent_dim < 2 or self.flow_couplings < 1 or self.flow_hidden < 1
                                            or self.flow_layers < 0):
            raise ConfigError(f"model: a RealNVP posterior needs latent_dim >= 2, flow_couplings >= 1, flow_hidden >= "
                              f"1 and flow_layers >= 0; got latent_dim={self.latent_dim}, flow_couplings="
                              f"{self.flow_couplings}, flow_hidden={self.flow_hidden}, flow_layers={self.flow_layers}")


def log_normal(z: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    logvar = torch.as_tensor(logvar, dtype=z.dtype, device=z.device)
    return -0.5 * (math.log(2 * math.pi) + logvar + (z - mu).pow(2) * torch.exp(-logvar)).sum(-1)


@register_model("vae")
class VAE(GaussianLatentModel):
    config_class = VAEConfig
    paper = "Kingma & Welling 2014; Rosca et al. 2018"

    def __init__(self, config: VAEConfig):
        super().__init__(config)
        c = config
        if getattr(c, "posterior", "gaussian") == "realnvp":  # subclasses' configs (AAE, JS^G) have no flow
            self.players["flow"] = RealNVP(c.latent_dim, c.flow_couplings, c.flow_hidden, c.flow_layers)

    @classmethod
    def default_optim(cls, config: VAEConfig) -> dict[str, OptimizerConfig]:
        # Rosca App. K: Adam(0.5, 0.9), lr swept over 1e-3 / 5e-4 / 5e-3, batch 64.
        players = ["encoder", "decoder"] + (["flow"] if getattr(config, "posterior", "") == "realnvp" else [])
        return {"vae": OptimizerConfig(players=players, lr=5e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("vae", "vae"),)

    # ---- posterior: Gaussian or RealNVP on top of it ---------------------------------------------------------------
    @property
    def flow(self) -> RealNVP | None:
        return self.players["flow"] if "flow" in self.players else None

    def base_posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance, each (B, latent_dim), of the Gaussian the posterior starts from: q(z|x) itself, or
        the base q(z_0|x) of a RealNVP posterior."""
        return super().posterior(x)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of the Gaussian q(z|x), each (B, latent_dim), read by the latent analyses and the
        importance-weighted evidence. A RealNVP posterior is not Gaussian: refused rather than misread."""
        if self.flow is not None:
            raise ValueError("vae with posterior 'realnvp': q(z|x) is not a diagonal Gaussian, so it has no (mu, "
                             "logvar) for the Gaussian-posterior analyses; use model.base_posterior(x) with "
                             "model.sample_posterior / model.log_q (zoo.evaluation.latent for the marginal KL), "
                             "or a posterior 'gaussian' model")
        return self.base_posterior(x)

    def sample_posterior(self, mu: Tensor, logvar: Tensor, eps: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """One reparameterised draw z ~ q(z|x) and its single-sample KL estimate log q(z|x) - log p(z), (B,).

        Gaussian: z = mu + sigma * eps and the closed-form KL (App. B of Kingma & Welling). RealNVP: z = f(z_0), z_0 =
        mu + sigma * eps, and KL ~ log N(z_0; mu, sigma^2) - log|det df/dz_0| - log N(z; 0, I), the Monte Carlo
        estimate of Rezende & Mohamed 2015 (eq. 15): the flow's entropy has no closed form.
        """
        eps = torch.randn_like(mu) if eps is None else eps
        z0 = mu + eps * torch.exp(0.5 * logvar)  # reparameterisation (Kingma & Welling eq. 10)
        if self.flow is None:
            return z0, kl_normal(mu, logvar)
        z, logdet = self.flow(z0)
        return z, log_normal(z0, mu, logvar) - logdet - log_normal(z)

    def log_q(self, z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
        """log q(z|x) (B,) of codes z under the posterior with base (mu, logvar): through the flow's inverse."""
        if self.flow is None:
            return log_normal(z, mu, logvar)
        z0, logdet_inv = self.flow.inverse(z)
        return log_normal(z0, mu, logvar) + logdet_inv

    def encode(self, x: Tensor) -> Tensor:
        """The posterior mean for a Gaussian posterior; f(mu), the flow's image of the base mean, for RealNVP."""
        mu = self.base_posterior(x)[0]
        return mu if self.flow is None else self.flow(mu)[0]

    def encode_sample(self, x: Tensor) -> Tensor:
        """One draw z ~ q(z|x), (B, latent_dim)."""
        return self.sample_posterior(*self.base_posterior(x))[0]

    # ---- loss: the negative ELBO -----------------------------------------------------------------------------------
    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        mu, logvar = self.base_posterior(batch)
        z, kl = self.sample_posterior(mu, logvar)  # KL(q(z|x) || N(0, I)): closed form, or one-sample for RealNVP
        nll = -self.players["decoder"].log_prob(batch, z)  # -log p(x|z), one sample (eq. 10)
        nll, kl = nll.mean(), kl.mean()
        loss = nll + self.config.beta * kl  # -ELBO (beta = 1), Rosca eq. 1
        return PhaseOutput(loss, {"nll": nll, "kl": kl, "elbo": -(nll + kl)})

    @torch.no_grad()
    def elbo(self, x: Tensor) -> Tensor:
        """Single-sample ELBO per example (nats) of images x in [-1, 1]."""
        z, kl = self.sample_posterior(*self.base_posterior(x))
        return self.log_px_given_z(x, z) - kl
