"""Adversarial autoencoder (Makhzani et al. 2015) as configured in Rosca et al. 2018 (sections 4.1, 6; App. K).

Rosca et al. use the AAE "to exhibit the effect of replacing the analytical KL in VAEs with the density ratio trick":
the VAE's Gaussian encoder q(z|x) = N(mu(x), diag sigma^2(x)) and explicit decoder p(x|z) (Bernoulli by default), with
KL(q(z|x) || p(z)) replaced by a code discriminator C(z) that matches the marginal q(z) to p(z) = N(0, I) (section
4.1: the AAE "ignores the mutual information term in Equation 5 and minimizes KL[q(z) || p(z)]"). Makhzani's two
phases per step, as three trainer phases:
1. recon: encoder and decoder minimise -log p(x|z), z ~ q(z|x) (the reconstruction phase);
2. code_disc: C separates p(z) (real) from encoder codes (fake), the classifier loss of Rosca eq. 15;
3. enc_adv: the encoder alone fools C with the non-saturating loss -log C(z) (Rosca footnote 1).
The terms are not weighted (Rosca App. K: "we followed the advice from the original paper and did not weight the
different loss terms"). Table 3 gives the AAE one Generator/Encoder learning rate, so both encoder phases use the
"autoencoder" optimizer entry; by default the adversarial phase steps its own Adam state over the encoder
(`Phase(own_state=True)`), as Makhzani's two phases are two separate updates: sharing one state mixes the adversarial
gradients into the reconstruction's second moments, and in 150 color_mnist steps the code discriminator then won
outright (C(q) about 0.008, against about 0.52 with separate states; issue 9). `encoder_adv_state="shared"` keeps the one-state
reading (docs/models.md, AAE).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

from zoo.config import ModelConfig, OptimizerConfig
from zoo.losses.adversarial import discriminator_loss, generator_loss_nonsaturating
from zoo.models.base import GaussianLatentModel, Phase, PhaseOutput
from zoo.registry import BACKBONES, register_model


@dataclass
class AAEConfig(ModelConfig):
    backbone: str = "rosca_mnist"  # family in zoo.nn: rosca_mnist (ColorMNIST), dcgan (CelebA, CIFAR-10)
    channels: int = 3
    image_size: int = 28
    latent_dim: int = 50  # Rosca App. K sweeps 10 / 50 / 75 on ColorMNIST
    width: int = 64
    likelihood: Literal["bernoulli", "gaussian", "laplace", "quantized_normal"] = "bernoulli"
    init_scale: float = 0.1
    learn_scale: bool = True
    code_disc_hidden: int = 1000  # Rosca App. K: code discriminator "3 layer MLP with 1000 units each", LeakyReLU 0.2
    code_disc_layers: int = 3
    # the encoder's adversarial phase: its own Adam state ("own", Makhzani's two separate phases) or the reconstruction
    # phase's ("shared")
    encoder_adv_state: Literal["own", "shared"] = "own"


@register_model("aae")
class AAE(GaussianLatentModel):
    """The VAE's Gaussian encoder and explicit decoder (`posterior`, `encode` = posterior mean, `reconstruct`,
    `decode`, `elbo` from `GaussianLatentModel`) plus a code discriminator; the analytic KL is gone from the loss."""

    config_class = AAEConfig
    paper = "Makhzani et al. 2015; Rosca et al. 2018"

    def __init__(self, config: AAEConfig):
        super().__init__(config)
        self.players["code_discriminator"] = BACKBONES.get("mlp.code_discriminator")(
            config.latent_dim, hidden=config.code_disc_hidden, layers=config.code_disc_layers)

    @classmethod
    def default_optim(cls, config: AAEConfig) -> dict[str, OptimizerConfig]:
        # Rosca App. K Table 3, AAE: generator/encoder lr 1e-3 / 5e-4 / 5e-3, code discriminator 5e-4 / 5e-5 / 1e-5.
        return {"autoencoder": OptimizerConfig(players=["encoder", "decoder"], lr=5e-4, betas=(0.5, 0.9)),
                "code_disc": OptimizerConfig(players=["code_discriminator"], lr=5e-5, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("recon", "autoencoder"), Phase("code_disc", "code_disc"),
                Phase("enc_adv", "autoencoder", players=("encoder",), own_state=self.config.encoder_adv_state == "own"))

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        C = self.players["code_discriminator"]
        if phase == "recon":
            nll = -self.log_px_given_z(batch, self.encode_sample(batch)).mean()  # -E_q[log p(x|z)] (Rosca eq. 3)
            return PhaseOutput(nll, {"nll": nll.detach()})
        if phase == "code_disc":
            with torch.no_grad():  # the encoder is not trained here
                z_fake = self.encode_sample(batch)
            z_real = self.prior(batch.shape[0], self.config.latent_dim)
            real_logits, fake_logits = C(z_real), C(z_fake)
            loss = discriminator_loss(real_logits, fake_logits)  # p(z) real, q(z) fake (Rosca eq. 15)
            return PhaseOutput(loss, {"c_prior": torch.sigmoid(real_logits).mean().detach(),
                                      "c_posterior": torch.sigmoid(fake_logits).mean().detach()})
        if phase == "enc_adv":
            return PhaseOutput(generator_loss_nonsaturating(C(self.encode_sample(batch))))  # -log C(z) (footnote 1)
        raise KeyError(f"AAE has phases recon, code_disc and enc_adv, not {phase!r}")
