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


def kl_mvn(mu1: Tensor, cov1: Tensor, mu0: Tensor, cov0: Tensor) -> Tensor:
    """KL(N(mu1, cov1) || N(mu0, cov0)) for full covariances (d, d), in nats, computed in float64:

        0.5 * (tr(cov0^-1 cov1) + (mu0 - mu1)^T cov0^-1 (mu0 - mu1) - d + log det cov0 - log det cov1)

    Rosca et al. App. D compare Gaussians x = W^T z + b, i.e. N(b, W^T W) (eq. 13), in this closed form.
    """
    import torch

    mu1, cov1, mu0, cov0 = (t.double() for t in (mu1, cov1, mu0, cov0))
    l0 = torch.linalg.cholesky(cov0)
    l1 = torch.linalg.cholesky(cov1)
    # tr(cov0^-1 cov1) = ||L0^-1 L1||_F^2 and the Mahalanobis term = ||L0^-1 (mu0 - mu1)||^2, by triangular solves
    trace = torch.linalg.solve_triangular(l0, l1, upper=False).pow(2).sum()
    maha = torch.linalg.solve_triangular(l0, (mu0 - mu1).unsqueeze(-1), upper=False).pow(2).sum()
    log_det = 2 * (l0.diagonal().log().sum() - l1.diagonal().log().sum())
    return 0.5 * (trace + maha - mu1.shape[-1] + log_det)
