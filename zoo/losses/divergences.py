"""Closed-form divergences between diagonal Gaussians, summed over the last dimension."""
from __future__ import annotations

from torch import Tensor


def kl_normal(mu1: Tensor, logvar1: Tensor, mu2: Tensor | float = 0.0, logvar2: Tensor | float = 0.0) -> Tensor:
    """KL(N(mu1, exp(logvar1)) || N(mu2, exp(logvar2))), summed over the last dimension.

    0.5 * sum(logvar2 - logvar1 + (exp(logvar1) + (mu1 - mu2)^2) / exp(logvar2) - 1); with the defaults this is the
    VAE's KL to the standard normal prior (Kingma & Welling 2014, App. B).
    """
    import torch

    mu2 = torch.as_tensor(mu2, dtype=mu1.dtype, device=mu1.device)
    logvar2 = torch.as_tensor(logvar2, dtype=mu1.dtype, device=mu1.device)
    # exp(logvar1 - logvar2) rather than exp(logvar1) / exp(logvar2): exactly zero for identical distributions
    log_ratio = logvar1 - logvar2
    return 0.5 * (log_ratio.exp() - log_ratio + (mu1 - mu2).pow(2) * (-logvar2).exp() - 1.0).sum(-1)
