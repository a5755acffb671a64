"""The JS^G_alpha VAE family of Deasy et al. (2020), "Constraining Variational Inference with Geometric
Jensen-Shannon Divergence", with the paper's baselines: one VAE whose latent regulariser D is chosen by config.

Loss (eq. 22, the Lagrangian of the constrained problem eq. 21, constant epsilon dropped, lambda = `beta`):
    L = -log p(x|z) + lambda * D(q(z|x) || p(z)),   z ~ q(z|x) reparameterised, p(z) = N(0, I),
with D one of
    kl_qp     KL(q(z|x) || p(z))                       eq. 3, the VAE (beta = 4: the beta-VAE baseline)
    kl_pq     KL(p(z) || q(z|x))                       eq. 4
    jsg       JS^G_alpha'(q || p)                      eq. 17 (primed, the paper's default) or eq. 8 (primed: false)
    jsg_dual  JS^G_alpha'_*(q || p)                    eq. 10 with the intermediate N_alpha' of eq. 16
    mmd       MMD^2 with a Gaussian kernel, lambda = 500: as the authors' code (`mmd_estimator: deasy`) between the
              batch's posterior moments cat(mu, logvar) and 200 draws of N(0, I_2D), or between posterior samples z
              and as many N(0, I) draws (`infovae`, the textbook InfoVAE estimator)
alpha is fixed, or trainable (`learn_alpha`): then alpha = sigmoid(a) with `a` the only parameter of the player
`skew`, trained by the same optimizer as the encoder and decoder. Networks: Table 3 (`backbone: jsg`), Adam with
PyTorch's default betas, lr 1e-4 (App. C); `init` and `encoder_input` select the authors' Kaiming-uniform weights and
[0, 1] encoder input. Decisions are in docs/models.md, "JS^G alpha VAE family".
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from zoo.config import ConfigError, ModelConfig, OptimizerConfig
from zoo.losses.divergences import jsg, kl_normal, mmd
from zoo.losses.likelihoods import reparameterize
from zoo.models.base import GaussianLatentModel, Phase, PhaseOutput
from zoo.registry import register_model

MMD_PRIOR_DRAWS = 200  # prior draws per batch of the authors' MMD (geometric-js vae/models/losses.py, `_mmd_loss`)


@dataclass
class JSGVAEConfig(ModelConfig):
    backbone: str = "jsg"  # Deasy et al. Table 3
    channels: int = 1
    image_size: int = 32  # 28 px MNIST zero-padded to 32 (data.options.pad_to: 32); 64 for dSprites / Chairs
    latent_dim: int = 10  # 32 for Chairs
    width: int = 32  # conv maps of Table 3
    # mse: the authors' Gaussian loss, plain summed squared error in [0, 1] units (variance 1/2); mse_255: 255 x it.
    # Table 3 prints "MSE" for MNIST, Bernoulli for the others; the published errors of all four are SSE-trained.
    likelihood: Literal["bernoulli", "mse", "mse_255", "gaussian", "laplace", "quantized_normal"] = "bernoulli"
    init_scale: float = 0.1  # initial scale of the continuous likelihoods, in [0, 1] pixel units
    learn_scale: bool = True
    divergence: Literal["kl_qp", "kl_pq", "jsg", "jsg_dual", "mmd"] = "jsg_dual"
    alpha: float = 0.5  # skew of jsg / jsg_dual; the paper sweeps {0.1, ..., 0.9}
    learn_alpha: bool = False  # train alpha (as sigmoid of a parameter) with the encoder and decoder
    primed: bool = True  # intermediate N_alpha' (eq. 16) rather than N_alpha (eq. 12-13)
    beta: float = 1.0  # lambda of eq. 22: 1 for every JS^G variant and the KL baselines, 4 for beta-VAE, 500 for MMD
    # the authors' code: every Conv / ConvTranspose / Linear weight Kaiming-uniform for ReLU, biases left at PyTorch's
    # default (geometric-js vae/utils/initialization.py, weights_init). It decides whether MNIST leaves the mean-image
    # plateau in the first epoch (docs/models.md); "pytorch": PyTorch's defaults throughout
    init: Literal["pytorch", "kaiming_uniform"] = "kaiming_uniform"
    # the encoder reads pixels in [0, 1] ("unit", the authors' ToTensor) or the zoo's batches in [-1, 1] ("signed")
    encoder_input: Literal["signed", "unit"] = "signed"
    mmd_estimator: Literal["deasy", "infovae"] = "deasy"  # see `divergence`; deasy = authors' vae/models/losses.py
    mmd_scale: float | None = None  # Gaussian-kernel scale 2 sigma^2 of the MMD; None: (input dim)^2, as both codes

    def __post_init__(self) -> None:  # runs when a recipe is loaded, so a bad recipe fails before training
        if not 0.0 <= self.alpha <= 1.0:
            raise ConfigError(f"model.alpha: got {self.alpha}, expected a skew in [0, 1] (the paper sweeps 0.1 ... "
                              f"0.9)")
        if self.learn_alpha and self.divergence not in ("jsg", "jsg_dual"):
            raise ConfigError(f"model.learn_alpha: only jsg and jsg_dual have a skew, but model.divergence is "
                              f"{self.divergence!r}; set learn_alpha: false or divergence: jsg / jsg_dual")
        if self.learn_alpha and not 0.0 < self.alpha < 1.0:
            raise ConfigError(f"model.alpha: a trainable skew starts strictly inside (0, 1) (alpha = sigmoid(a)), "
                              f"got {self.alpha}; start it at e.g. 0.5")
        if self.beta < 0:
            raise ConfigError(f"model.beta: the regulariser weight lambda (eq. 22) must be >= 0, got {self.beta}")


class Skew(nn.Module):
    """The trainable skew: alpha = sigmoid(logit), so it stays inside (0, 1)."""

    def __init__(self, alpha: float):
        super().__init__()
        self.logit = nn.Parameter(torch.tensor(math.log(alpha / (1 - alpha))))

    def forward(self) -> Tensor:
        return torch.sigmoid(self.logit)


def kaiming_uniform_init(module: nn.Module) -> None:
    """The authors' initialisation (geometric-js vae/utils/initialization.py, `weights_init` -> `linear_init` with its
    default activation "relu"): every Conv, ConvTranspose and Linear weight, output layers included, drawn from
    U(-b, b) with b = sqrt(6 / fan_in) (Kaiming-uniform for ReLU); biases keep PyTorch's default."""
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.kaiming_uniform_(m.weight, nonlinearity="relu")


@register_model("jsg_vae")
class JSGVAE(GaussianLatentModel):
    """A VAE (posterior, likelihood, decoding and sampling from `GaussianLatentModel`) with the regulariser of
    `config.divergence`. Players: encoder, decoder, and skew when alpha is trained."""

    config_class = JSGVAEConfig
    paper = "Deasy et al. 2020"

    def __init__(self, config: JSGVAEConfig):
        super().__init__(config)
        if config.learn_alpha:
            self.players["skew"] = Skew(config.alpha)
        if config.init == "kaiming_uniform":
            for name in ("encoder", "decoder"):
                kaiming_uniform_init(self.players[name])

    @classmethod
    def default_optim(cls, config: JSGVAEConfig) -> dict[str, OptimizerConfig]:
        # App. C: lr 1e-4, "where not specified (e.g. momentum coefficients in Adam) ... the default values from
        # PyTorch": betas (0.9, 0.999), eps 1e-8.
        players = ["encoder", "decoder"] + (["skew"] if config.learn_alpha else [])
        return {"vae": OptimizerConfig(players=players, lr=1e-4, betas=(0.9, 0.999))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("vae", "vae"),)

    def posterior(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Mean and log-variance of q(z|x), each (B, latent_dim), for images x in [-1, 1]."""
        if self.config.encoder_input == "unit":
            x = (x + 1) / 2  # (B, C, H, W) in [0, 1], what the authors' encoder reads
        return super().posterior(x)

    @property
    def alpha(self) -> Tensor | float:
        """The skew: the trainable one when `learn_alpha`, else the configured constant."""
        return self.players["skew"]() if self.config.learn_alpha else self.config.alpha

    def divergence(self, mu: Tensor, logvar: Tensor, z: Tensor) -> Tensor:
        """D(q(z|x) || N(0, I)) per example (B,), or for mmd the batch MMD^2 as a scalar."""
        c = self.config
        if c.divergence == "kl_qp":
            return kl_normal(mu, logvar)  # eq. 3
        if c.divergence == "kl_pq":
            zero = torch.zeros_like(mu)
            return kl_normal(zero, zero, mu, logvar)  # eq. 4
        if c.divergence == "mmd":
            if c.mmd_estimator == "infovae":  # posterior samples against as many prior draws
                return mmd(z, torch.randn_like(z), c.mmd_scale)
            moments = torch.cat([mu, logvar], dim=1)  # (B, 2 latent_dim), the authors' `_mmd_loss`
            prior = torch.randn(MMD_PRIOR_DRAWS, moments.shape[1], dtype=moments.dtype, device=moments.device)
            return mmd(moments, prior, c.mmd_scale)  # kernel exp(-||a - b||^2 / (2 latent_dim)^2), biased
        # eq. 17 (jsg) / eq. 10 with N_alpha' (jsg_dual); N1 = q(z|x), N2 = p(z) as in eq. 21
        return jsg(mu, logvar, 0.0, 0.0, self.alpha, dual=c.divergence == "jsg_dual", primed=c.primed)

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        x01 = (batch + 1) / 2  # (B, C, H, W) pixel intensities for p(x|z)
        mu, logvar = self.posterior(batch)  # (B, latent_dim) each
        z = reparameterize(mu, logvar)
        decoder = self.players["decoder"]
        out = decoder(z)  # (B, C, H, W) raw decoder output
        nll = -decoder.likelihood.log_prob(x01, out).mean()  # -log p(x|z), one sample
        div = self.divergence(mu, logvar, z).mean()
        loss = nll + self.config.beta * div  # eq. 22 with lambda = beta
        with torch.no_grad():
            sse = (decoder.likelihood.mean(out) - x01).pow(2).flatten(1).sum(1).mean()
        logs = {"nll": nll.detach(), "div": div.detach(), "sse": sse}
        if self.config.learn_alpha:
            logs["alpha"] = self.alpha.detach()
        return PhaseOutput(loss, logs)
