"""Adversarial Variational Bayes (Mescheder et al. 2017), the AdversarialVB of Rosca et al. 2018 (section 4.1, App. J).

An implicit encoder z = E(x, eps), eps ~ N(0, I), whose density q(z|x) is never evaluated; an explicit decoder p(x|z)
(Bernoulli by default, as the zoo's VAE); and an adversary T(x, z) trained to separate (x, z ~ q(z|x)) from
(x, z ~ p(z)) (Mescheder eq. 3.3), whose optimum is T*(x, z) = log q(z|x) - log p(z) (Mescheder Prop. 1). The encoder
and decoder minimise -log p(x|z) + T(x, z) (Mescheder eq. 3.7, Algorithm 1), the negative ELBO with T in place of
log q(z|x) - log p(z).

Adaptive contrast (Mescheder section 3.4): T instead compares q to a Gaussian r(z|x) = N(mu(x), diag sigma^2(x))
with q's mean and standard deviation, estimated from `ac_samples` draws per x (one of which the losses use). The
adversary sees the normalised codes z~ = (z - mu(x)) / sigma(x) against N(0, I), so it estimates KL(q(z|x) || r(z|x)),
and the encoder and decoder minimise -log p(x|z) - log p(z) + log r(z|x) + T(x, z~) (Mescheder eq. 3.10 with the KL
replaced by T).

Rosca et al. (App. J) report AdversarialVB without adaptive contrast; both are here (`adaptive_contrast`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from einops import rearrange, repeat
from torch import Tensor, nn

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.adversarial import discriminator_loss
from zoo.models.base import GenerativeModel, Phase, PhaseOutput
from zoo.nn.decoder import Decoder
from zoo.nn.heads import joint_discriminator_for
from zoo.registry import BACKBONES, register_model

AC_MIN_STD = 1e-4  # floor of the estimated sigma(x): an encoder that ignores its noise must not divide by zero


@dataclass
class AdversarialVBConfig(ModelConfig):
    backbone: str = "rosca_mnist"  # family in zoo.nn: rosca_mnist (ColorMNIST), dcgan (CelebA, CIFAR-10)
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50
    width: int = 64
    noise_dim: int | None = None  # eps dimension of the implicit encoder; None: latent_dim
    likelihood: Literal["bernoulli", "gaussian", "laplace", "quantized_normal"] = "bernoulli"
    init_scale: float = 0.1
    learn_scale: bool = True
    disc_width: int | None = None  # data-feature width of T; default: width
    disc_norm: str = "layer"  # per-example: a density-ratio logit must not read batch statistics (heads.py)
    code_disc_hidden: int = 1000  # code features of T: the Rosca App. K 3 x 1000 code discriminator MLP
    code_disc_layers: int = 3
    joint_width: int = 512  # Rosca Table 6 head maps, 512 or 1024
    adaptive_contrast: bool = False
    ac_samples: int = 32  # draws per x for the moments of q(z|x) under adaptive contrast (>= 2)


class ImplicitEncoder(nn.Module):
    """E(x, eps): the family's encoder over the image with eps tiled as extra input channels.

    Mescheder et al. feed x and eps to one black-box network (their Fig. 2b); tiling eps over the image lets the
    Rosca App. K encoder (the transposed generator) take it unchanged but for its input channels, and the noise passes
    through every non-linearity, so q(z|x) is not restricted to a Gaussian.
    """

    def __init__(self, net: nn.Module, noise_dim: int):
        super().__init__()
        self.net, self.noise_dim = net, noise_dim

    def forward(self, x: Tensor, noise: Tensor) -> Tensor:
        tiled = noise[:, :, None, None].expand(-1, -1, *x.shape[2:])  # (B, noise_dim, H, W)
        return self.net(torch.cat([x, tiled], dim=1))  # (B, latent_dim)


@register_model("adversarial_vb")
class AdversarialVB(GenerativeModel):
    config_class = AdversarialVBConfig
    paper = "Mescheder et al. 2017; Rosca et al. 2018"
    has_encoder = True

    def __init__(self, config: AdversarialVBConfig):
        super().__init__(config)
        c = config
        if c.adaptive_contrast and c.ac_samples < 2:
            raise ValueError(f"adversarial_vb: adaptive contrast estimates the std of q(z|x) from ac_samples draws "
                             f"per x, which needs ac_samples >= 2, got {c.ac_samples}")
        self.noise_dim = c.noise_dim or c.latent_dim
        net = BACKBONES.get(f"{c.backbone}.encoder")(
            out_features=c.latent_dim, channels=c.channels + self.noise_dim, image_size=c.image_size, width=c.width)
        self.players["encoder"] = ImplicitEncoder(net, self.noise_dim)
        self.players["decoder"] = Decoder.from_backbone(c.backbone, latent_dim=c.latent_dim, channels=c.channels,
                                                        image_size=c.image_size, width=c.width,
                                                        likelihood=c.likelihood, init_scale=c.init_scale,
                                                        learn_scale=c.learn_scale)
        self.players["discriminator"] = joint_discriminator_for(c)  # Rosca Table 6 head

    @classmethod
    def default_optim(cls, config: AdversarialVBConfig) -> dict[str, OptimizerConfig]:
        # Rosca Table 3 has no AdversarialVB column: the VAE's encoder/decoder rate and VEEGAN's joint-discriminator
        # rate (docs/models.md).
        return {"disc": OptimizerConfig(players=["discriminator"], lr=1e-4, betas=(0.5, 0.9)),
                "vae": OptimizerConfig(players=["encoder", "decoder"], lr=5e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("disc", "disc"), Phase("vae", "vae"))

    # ---- the explicit decoder p(x|z) --------------------------------------------------------------------------------
    def decode(self, z: Tensor) -> Tensor:
        """Mean of p(x|z) in [-1, 1]."""
        return self.players["decoder"].mean(z)

    def log_px_given_z(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x|z) per example (nats) for images x in [-1, 1] and codes z (B, latent_dim)."""
        return self.players["decoder"].log_prob(x, z)

    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.decode(self.prior(n, self.config.latent_dim, generator))

    # ---- the implicit posterior ------------------------------------------------------------------------------------
    def encode(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """One draw z = E(x, eps) of the implicit q(z|x), (B, latent_dim): q has no closed-form mean or density."""
        if noise is None:
            noise = torch.randn(x.shape[0], self.noise_dim, device=x.device, dtype=x.dtype)
        return self.players["encoder"](x, noise)

    def reconstruct(self, x: Tensor) -> Tensor:
        """Decode one posterior draw to the mean of p(x|z)."""
        return self.decode(self.encode(x))

    def contrast(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Adaptive contrast: one draw z ~ q(z|x) per x, normalised by moments estimated from `ac_samples` draws.

        The K draws of each x come from one encoder pass (B * K rows); their mean and unbiased standard deviation
        are mu(x), sigma(x), detached: for any fixed r, log q(z|x) = T*(x, z~) + log r(z|x), so with r held fixed
        the pathwise gradient is the ELBO's. The first draw of each x, which is one of the K, is the one the losses
        use, so the decoder and T see B rows.

        Returns:
            z (B, latent_dim); z~ = (z - mu) / sigma (B, latent_dim); sum_i log sigma_i (B,).
        """
        k = self.config.ac_samples
        draws = rearrange(self.encode(repeat(x, "b ... -> (b k) ...", k=k)), "(b k) d -> b k d", k=k)  # (B, K, latent)
        z = draws[:, 0]  # (B, latent)
        mu = draws.detach().mean(1)
        sigma = draws.detach().std(1).clamp_min(AC_MIN_STD)  # unbiased (K - 1) estimate
        return z, (z - mu) / sigma, sigma.log().sum(1)

    # ---- losses ----------------------------------------------------------------------------------------------------
    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        T = self.players["discriminator"]
        if phase == "disc":
            with torch.no_grad():  # the encoder is not trained here
                if self.config.adaptive_contrast:
                    _, z_q, _ = self.contrast(batch)  # (x, z~ ~ q~(z~|x)) vs (x, z~ ~ N(0, I)) (section 3.4)
                else:
                    z_q = self.encode(batch)
            z_p = self.prior(batch.shape[0], self.config.latent_dim)
            q_logits, p_logits = T(batch, z_q), T(batch, z_p)
            loss = discriminator_loss(q_logits, p_logits)  # q labelled 1, p(z) labelled 0 (Mescheder eq. 3.3)
            return PhaseOutput(loss, {"t_posterior": torch.sigmoid(q_logits).mean().detach(),
                                      "t_prior": torch.sigmoid(p_logits).mean().detach()})
        if phase == "vae":
            if self.config.adaptive_contrast:
                z, z_tilde, log_sigma = self.contrast(batch)
                # -log p(z) + log r(z|x) for p = N(0, I), r = N(mu, sigma^2): the 2 pi terms cancel
                log_ratio = 0.5 * z.pow(2).sum(1) - 0.5 * z_tilde.pow(2).sum(1) - log_sigma
                kl = T(batch, z_tilde) + log_ratio  # estimates log q(z|x) - log p(z) (eq. 3.10)
            else:
                z = self.encode(batch)
                kl = T(batch, z)  # T ~ log q(z|x) - log p(z) (Prop. 1)
            nll = -self.log_px_given_z(batch, z)  # -log p(x|z)
            nll, kl = nll.mean(), kl.mean()
            return PhaseOutput(nll + kl, {"nll": nll.detach(), "kl": kl.detach(),  # eq. 3.7: E[-log p(x|z) + T]
                                          "elbo": -(nll + kl).detach()})
        raise KeyError(f"AdversarialVB has phases disc and vae, not {phase!r}")

