"""GAN objectives on discriminator logits, averaged over the batch."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def discriminator_loss(real_logits: Tensor, fake_logits: Tensor) -> Tensor:
    """Binary cross-entropy of a classifier with real = 1, fake = 0 (Goodfellow et al. 2014, eq. 1):
    -log D(x) - log(1 - D(G(z))) with D = sigmoid(logit)."""
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss_nonsaturating(fake_logits: Tensor) -> Tensor:
    """-log D(G(z)): the non-saturating generator loss (Goodfellow et al. 2014, section 3)."""
    return F.softplus(-fake_logits).mean()


def critic_loss_wasserstein(real_scores: Tensor, fake_scores: Tensor) -> Tensor:
    """E[D(G(z))] - E[D(x)]: the WGAN critic minimises the negative Wasserstein estimate (Arjovsky et al. 2017)."""
    return fake_scores.mean() - real_scores.mean()


def generator_loss_wasserstein(fake_scores: Tensor) -> Tensor:
    """-E[D(G(z))] (Gulrajani et al. 2017, Algorithm 1, line 12)."""
    return -fake_scores.mean()


def logit_ratio_loss(logits: Tensor) -> Tensor:
    """-E[log D / (1 - D)] = -E[logit]: with D = p / (p + q) the logit estimates log p / q, so on samples of q this
    estimates KL(q || p) (Huszar 2016; Mohamed & Lakshminarayanan 2016; IJAE section 3, eq. 6-7; Rosca et al. 2018
    Algorithm 5, lines 3-4, R(x) = -log D(x) + log(1 - D(x))). Minimising it over the samples of q moves q towards p.
    Numerically the same as the WGAN generator loss, but a different quantity: D here is a trained classifier."""
    return -logits.mean()
