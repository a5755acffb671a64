"""lambda-IJAE, the implicit lambda-Jeffreys autoencoder (IJAE paper, sections 4-5, App. D), and its ablations
lambda-IJAE-L1 / -L2 (section 5, "Ablation Study").

Players: an implicit encoder E(x, xi) (Gaussian noise injected inside the network, App. D; by default as learned
per-position noise maps, the reading that reproduces App. D's 6436224 weights), the generator G(z), and
three discriminators, each trained with binary cross-entropy:
- `disc_x`, D_psi(x): data vs G(z), z ~ p(z) (eq. 3); its logit estimates log p*(x) / p_theta(x);
- `disc_pair`, D_tau(x, z, y): real triplets (x, z, y ~ r(y|x)) vs fake triplets (x, z, y ~ r'(y|G(z))), z = E(x, xi)
  (eq. 4), with r the cyclic-shift likelihood and r' the near-delta Gaussian; its logit at y = G(z) is the implicit
  log-likelihood (Theorem 1);
- `disc_joint`, D_zeta(x, z): pairs (x, z ~ p(z)) vs (x, z = E(x, xi)) (eq. 5); -logit estimates KL(q(z|x) || p(z)).
Encoder and generator minimise the lambda-Jeffreys bound of section 4 ("Final Objectives"):
    L = (1 - lambda) KL(p_theta || p*) - lambda ELBO
      = -(1 - lambda) E_p(z) logit D_psi(G(z)) - lambda E_p*(x) q(z|x) [logit D_tau(x, z, G(z)) + logit D_zeta(x, z)],
whose gradients in theta and phi are eq. 6 and eq. 7 once eq. 6's weights are read as (1 - lambda) on the GAN term and
lambda on the reconstruction term (`weighting: jeffreys`, the default; `weighting: eq6` is eq. 6 as printed; see
docs/models.md). The ablations replace -logit D_tau by an explicit -log Laplace (`l1`) or -log Gaussian (`l2`)
reconstruction term and have no D_tau.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from zoo.config import ConfigError, ModelConfig, OptimizerConfig
from zoo.losses.adversarial import discriminator_loss, logit_ratio_loss
from zoo.losses.likelihoods import cyclic_shift, gaussian_log_prob, laplace_log_prob, near_delta_gaussian
from zoo.models.base import GenerativeModel, Phase, PhaseOutput
from zoo.nn.resnet import IJAEDiscBody
from zoo.registry import BACKBONES, register_model


@dataclass
class IJAEConfig(ModelConfig):
    channels: int = 3
    image_size: int = 32  # App. D networks are for 32 px; 16 and 64 are generalisations
    latent_dim: int = 128  # Table 2
    width: int = 128  # App. D: 128 channels in every block
    noise_dim: int = 128  # App. D: Inject Noise = Linear(128, num channels)(normal(size=128))
    # App. D's encoder #Weights (6436224) need per-position noise maps after blocks 1-2 (docs/models.md); "channel"
    # is the table's text. The discriminators' counts (Tables 5-6) hold no injection weights: "free" adds xi per
    # channel unprojected and gives Table 5's 1053825 exactly; "channel" is the text's Linear(128, 128) (+33024).
    enc_noise: Literal["position", "channel"] = "position"
    disc_noise: Literal["channel", "free"] = "free"
    joint_hidden: tuple[int, ...] = (512, 256)  # Table 7 MLP after the flattened image and the latent
    lam: float = 0.3  # lambda; section 5 chooses 0.3 (Table 1)
    likelihood: Literal["implicit", "l1", "l2"] = "implicit"  # implicit r(y|x) or the L1 / L2 ablations
    weighting: Literal["jeffreys", "eq6"] = "jeffreys"
    max_shift: int = field(default=5, metadata={"minimum": 0})  # S of the cyclic-shift r(y|x), section 5; 0: none
    near_delta_sigma: float = 1e-8  # standard deviation of r'(y|x) = N(y | x, sigma^2 I), section 5
    recon_scale: float = 1.0  # l1 / l2 only: Laplace b / Gaussian sigma in [-1, 1] pixel units (not in the paper)
    enc_norm: str = "none"
    gen_norm: str = "batch"
    disc_norm: str = "none"

    def __post_init__(self) -> None:
        if not 0.0 <= self.lam <= 1.0:
            raise ConfigError(f"model.lam: got {self.lam}, expected a weight in [0, 1] (lambda of J_lambda; the paper "
                              f"uses 0.3)")
        if not 0 <= self.max_shift < self.image_size:
            raise ConfigError(f"model.max_shift: got {self.max_shift}, expected 0 <= max_shift < image_size "
                              f"({self.image_size}); the paper uses 5 at 32 px")
        if (self.enc_noise == "position" or self.disc_noise == "free") and self.noise_dim != self.width:
            raise ConfigError(f"model.noise_dim: got {self.noise_dim} with width {self.width}; enc_noise 'position' "
                              f"and disc_noise 'free' add xi unprojected to width channels, so set noise_dim = width "
                              f"(128 = 128 in App. D) or use enc_noise 'channel' / disc_noise 'channel'")
        if self.recon_scale <= 0 or self.near_delta_sigma < 0:
            raise ConfigError(f"model.recon_scale must be > 0 and model.near_delta_sigma >= 0, got "
                              f"{self.recon_scale} and {self.near_delta_sigma}")


@register_model("ijae")
class IJAE(GenerativeModel):
    config_class = IJAEConfig
    paper = "Implicit lambda-Jeffreys Autoencoders (IJAE)"
    has_encoder = True

    def __init__(self, config: IJAEConfig):
        super().__init__(config)
        c = config
        size = {"channels": c.channels, "image_size": c.image_size, "width": c.width}
        self.players["encoder"] = BACKBONES.get("ijae.encoder")(
            out_features=c.latent_dim, noise_dim=c.noise_dim, norm=c.enc_norm, noise=c.enc_noise, **size)
        self.players["generator"] = BACKBONES.get("ijae.generator")(latent_dim=c.latent_dim, norm=c.gen_norm, **size)
        self.players["disc_x"] = BACKBONES.get("ijae.discriminator")(
            noise_dim=c.noise_dim, norm=c.disc_norm, noise=c.disc_noise, **size)
        if c.likelihood == "implicit":
            self.players["disc_pair"] = BACKBONES.get("ijae.pair_discriminator")(
                latent_dim=c.latent_dim, noise_dim=c.noise_dim, norm=c.disc_norm, noise=c.disc_noise, **size)
        self.players["disc_joint"] = BACKBONES.get("ijae.joint_discriminator")(
            latent_dim=c.latent_dim, hidden=c.joint_hidden, **size)

    @classmethod
    def default_optim(cls, config: IJAEConfig) -> dict[str, OptimizerConfig]:
        # Table 2: one Adam(1e-4, (0.5, 0.9)) for the generator and encoder, one for the discriminators.
        discs = ["disc_x", "disc_pair", "disc_joint"] if config.likelihood == "implicit" else ["disc_x", "disc_joint"]
        return {"disc": OptimizerConfig(players=discs, lr=1e-4, betas=(0.5, 0.9)),
                "gen": OptimizerConfig(players=["encoder", "generator"], lr=1e-4, betas=(0.5, 0.9))}

    def phases(self) -> tuple[Phase, ...]:
        return (Phase("disc", "disc"), Phase("gen", "gen"))

    @property
    def weights(self) -> tuple[float, float, float]:
        """(GAN weight, reconstruction weight for G, ELBO weight for E): (1 - lambda, lambda, lambda) under the
        J_lambda weighting; eq. 6 as printed swaps the generator's two (lambda, 1 - lambda, lambda)."""
        lam = self.config.lam
        return (1 - lam, lam, lam) if self.config.weighting == "jeffreys" else (lam, 1 - lam, lam)

    def phase_loss(self, phase: str, batch: Tensor, step: int) -> PhaseOutput:
        if phase == "disc":
            return self.disc_phase(batch)
        if phase == "gen":
            return self.gen_phase(batch)
        raise KeyError(f"IJAE has phases disc and gen, not {phase!r}")

    # ---- discriminators: eq. 3, 4, 5 ------------------------------------------------------------------------------
    def disc_phase(self, x: Tensor) -> PhaseOutput:
        """Sum of the three binary cross-entropies; each discriminator's parameters enter only its own term."""
        c = self.config
        with torch.no_grad():  # encoder and generator are not trained here
            z_q = self.players["encoder"](x)  # (B, latent) ~ q(z|x)
            z_p = self.prior(x.shape[0], c.latent_dim)  # (B, latent) ~ p(z)
            fake = self.players["generator"](z_p)  # (B, C, H, W) ~ p_theta(x)
        D_x, D_j = self.players["disc_x"], self.players["disc_joint"]
        psi = discriminator_loss(D_x(x), D_x(fake))  # eq. 3: p*(x) real, p_theta(x) fake
        zeta = discriminator_loss(D_j(x, z_p), D_j(x, z_q))  # eq. 5: p*(x) p(z) real, p*(x) q(z|x) fake
        logs = {"psi": psi.detach(), "zeta": zeta.detach()}
        loss = psi + zeta
        if c.likelihood == "implicit":
            D_t = self.players["disc_pair"]
            with torch.no_grad():
                y_fake = near_delta_gaussian(self.players["generator"](z_q), c.near_delta_sigma)  # y ~ r'(y|G(z))
            y_real = cyclic_shift(x, c.max_shift)  # y ~ r(y|x)
            tau = discriminator_loss(D_t(x, y_real, z_q), D_t(x, y_fake, z_q))  # eq. 4 (the backbone takes x, y, z)
            logs["tau"] = tau.detach()
            loss = loss + tau
        return PhaseOutput(loss, logs)

    # ---- encoder and generator: eq. 6, 7 ---------------------------------------------------------------------------
    def reconstruction_nll(self, x: Tensor, z: Tensor, x_rec: Tensor, pair_noise: Tensor | None) -> Tensor:
        """Batch mean of -log p(x|z) with x_rec = G(z): -logit D_tau(x, z, G(z)) (Theorem 1; no r' noise on G(z)),
        or the explicit -log Laplace / Gaussian density of x around G(z), summed over pixels (ablations)."""
        c = self.config
        if c.likelihood == "implicit":
            return logit_ratio_loss(self.players["disc_pair"](x, x_rec, z, noise=pair_noise))  # D_tau(x, z, y = G(z))
        log_scale = torch.tensor(math.log(c.recon_scale), device=x.device, dtype=x_rec.dtype)
        log_prob = laplace_log_prob if c.likelihood == "l1" else gaussian_log_prob
        return -log_prob(x, x_rec, log_scale).mean()

    def gen_phase(self, x: Tensor) -> PhaseOutput:
        """The lambda-Jeffreys bound for the encoder and generator, with the weights of `self.weights`."""
        c = self.config
        E, G = self.players["encoder"], self.players["generator"]
        w_gan, w_rec_gen, w_elbo = self.weights
        z_q = E(x)  # (B, latent): z = E(x, xi), differentiable in phi for a fixed xi
        z_p = self.prior(x.shape[0], c.latent_dim)  # (B, latent)
        # D_tau's injection noise, drawn explicitly so that the eq6 correction below sees the same D_tau
        pair_noise = torch.randn(x.shape[0], IJAEDiscBody.n_injections, c.noise_dim, device=x.device) \
            if c.likelihood == "implicit" else None
        gan = logit_ratio_loss(self.players["disc_x"](G(z_p)))  # -E logit D_psi(G(z)) ~ KL(p_theta || p*), eq. 6
        nll = self.reconstruction_nll(x, z_q, G(z_q), pair_noise)  # -E_q log p(x|z), eq. 6 and 7
        kl = logit_ratio_loss(self.players["disc_joint"](x, z_q))  # -E_q logit D_zeta ~ KL(q(z|x) || p(z)), eq. 7
        loss = w_gan * gan + w_elbo * (nll + kl)  # (1 - lambda) KL(p_theta || p*) - lambda ELBO (section 4)
        if w_rec_gen != w_elbo:
            # eq. 6 as printed weights the reconstruction term differently for G than eq. 7 does for E. This copy has
            # the same value and generator gradient but none for the encoder, so G gets w_rec_gen in total, E w_elbo.
            z_stop = z_q.detach()
            loss = loss + (w_rec_gen - w_elbo) * self.reconstruction_nll(x, z_stop, G(z_stop), pair_noise)
        return PhaseOutput(loss, {"gan": gan.detach(), "recon": nll.detach(), "kl": kl.detach(),
                                  "neg_elbo": (nll + kl).detach()})

    # ---- inference ------------------------------------------------------------------------------------------------
    def sample(self, n: int, *, generator: torch.Generator | None = None) -> Tensor:
        return self.players["generator"](self.prior(n, self.config.latent_dim, generator))

    def encode(self, x: Tensor, noise: Tensor | None = None) -> Tensor:
        """One draw z = E(x, xi) of the implicit posterior (fresh xi unless `noise`, (B, 3, noise_dim), is given)."""
        return self.players["encoder"](x, noise)

    def reconstruct(self, x: Tensor) -> Tensor:
        """G(E(x, xi)) for one fresh xi: the implicit posterior has no mean to decode."""
        return self.players["generator"](self.encode(x))
