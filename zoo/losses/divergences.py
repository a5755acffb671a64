"""Closed-form divergences between diagonal Gaussians, summed over the last dimension, and the kernel MMD.

Every Gaussian is given by its mean and log-variance (tensors broadcast together; a float stands for a constant, so
``mu2=0, logvar2=0`` is the standard normal prior).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor


def _like(value: Tensor | float, ref: Tensor) -> Tensor:
    return torch.as_tensor(value, dtype=ref.dtype, device=ref.device)


def kl_normal(mu1: Tensor, logvar1: Tensor, mu2: Tensor | float = 0.0, logvar2: Tensor | float = 0.0) -> Tensor:
    """KL(N(mu1, exp(logvar1)) || N(mu2, exp(logvar2))), summed over the last dimension.

    0.5 * sum(logvar2 - logvar1 + (exp(logvar1) + (mu1 - mu2)^2) / exp(logvar2) - 1); with the defaults this is the
    VAE's KL to the standard normal prior (Kingma & Welling 2014, App. B).
    """
    return _kl_terms(mu1, logvar1, _like(mu2, mu1), _like(logvar2, mu1)).sum(-1)


def geometric_mean_normal(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor,
                          w2: Tensor | float) -> tuple[Tensor, Tensor]:
    """Mean and log-variance of the normalised weighted geometric mean p1^(1 - w2) p2^w2 of two diagonal Gaussians.

    Precisions add with the weights (Deasy et al. eq. 12, the harmonic barycenter of the covariances) and the mean is
    the precision-weighted mean (eq. 13). Computed in log space: logsumexp of the weighted log-precisions keeps the
    result finite and differentiable for variances down to exp(-80) and for weights of exactly 0 or 1.
    """
    w2 = _like(w2, mu1)
    log_w = torch.stack(torch.broadcast_tensors(torch.log1p(-w2) - logvar1, torch.log(w2) - logvar2))  # (2, ..., D)
    log_precision = torch.logsumexp(log_w, dim=0)
    share = torch.exp(log_w - log_precision)  # each distribution's share of the precision, sums to 1
    return share[0] * mu1 + share[1] * mu2, -log_precision


def jsg(mu1: Tensor, logvar1: Tensor, mu2: Tensor | float = 0.0, logvar2: Tensor | float = 0.0,
        alpha: Tensor | float = 0.5, *, dual: bool = False, primed: bool = True) -> Tensor:
    """Skew geometric Jensen-Shannon divergence between diagonal Gaussians N1 and N2 (Deasy et al. 2020).

    JS^G_alpha(N1 || N2) = (1 - alpha) KL(N1 || Nm) + alpha KL(N2 || Nm)        (eq. 8 and 17; dual=False)
    JS^G_alpha_*(N1 || N2) = (1 - alpha) KL(Nm || N1) + alpha KL(Nm || N2)      (eq. 10; dual=True)

    where Nm is the normalised geometric mean of N1 and N2, a Gaussian (eq. 12-13):
    - primed=True: N_alpha' = N1^alpha N2^(1 - alpha) (eq. 16), the variant the JS^G VAE uses. Then alpha -> 0 gives
      KL(N1 || N2) and alpha -> 1 gives KL(N2 || N1) (eq. 18); the dual gives the reverse (eq. 19).
    - primed=False: N_alpha = N1^(1 - alpha) N2^alpha (eq. 9-13), which vanishes at both ends (eq. 14-15).
    The printed VAE forms eq. 23-26 are the unprimed case with N2 = N(0, I) (and eq. 24 lacks the factor
    (1 - alpha) on mu^2 / sigma^2 that eq. 11 has); this function evaluates eq. 8 / 10 from the Gaussian KL, which
    equals eq. 9 / 11, see docs/models.md.

    Args:
        mu1, logvar1: N1 (the posterior q(z|x) in the VAE), (..., D).
        mu2, logvar2: N2 (the prior; default N(0, I)).
        alpha: skew in [0, 1]; a float or a tensor broadcasting against (..., D) (a trainable skew).
        dual: JS^G_* instead of JS^G.
        primed: use N_alpha' (eq. 16), the paper's default, rather than N_alpha.

    Returns:
        The divergence summed over the last dimension, shape (...).
    """
    if not isinstance(alpha, Tensor) and not 0.0 <= alpha <= 1.0:
        raise ValueError(f"jsg: alpha must be in [0, 1], got {alpha}")
    logvar1 = _like(logvar1, mu1)
    mu2, logvar2, alpha = _like(mu2, mu1), _like(logvar2, mu1), _like(alpha, mu1)
    w2 = 1 - alpha if primed else alpha  # weight of N2 inside the geometric mean
    mu_m, logvar_m = geometric_mean_normal(mu1, logvar1, mu2, logvar2, w2)
    if dual:  # eq. 10
        kl1, kl2 = _kl_terms(mu_m, logvar_m, mu1, logvar1), _kl_terms(mu_m, logvar_m, mu2, logvar2)
    else:  # eq. 8 / 17
        kl1, kl2 = _kl_terms(mu1, logvar1, mu_m, logvar_m), _kl_terms(mu2, logvar2, mu_m, logvar_m)
    return ((1 - alpha) * kl1 + alpha * kl2).sum(-1)


def _kl_terms(mu1: Tensor, logvar1: Tensor, mu2: Tensor, logvar2: Tensor) -> Tensor:
    """Per-dimension KL(N1 || N2) (not summed), so that a per-dimension skew can weight it."""
    # exp(logvar1 - logvar2) rather than exp(logvar1) / exp(logvar2): exactly zero for identical distributions
    log_ratio = logvar1 - logvar2
    return 0.5 * (log_ratio.exp() - log_ratio + (mu1 - mu2).pow(2) * (-logvar2).exp() - 1.0)


def gaussian_kernel(x: Tensor, y: Tensor, scale: float | None = None) -> Tensor:
    """k(x, y) = exp(-||x - y||^2 / scale) for every pair of rows, (N, D) x (M, D) -> (N, M).

    The default scale is D^2: InfoVAE's reference code (Zhao et al. 2019) divides the mean squared difference over
    the D dimensions by D again, i.e. a Gaussian kernel with 2 sigma^2 = D^2; see docs/models.md (JS^G VAE, MMD).
    """
    scale = float(x.shape[-1]) ** 2 if scale is None else scale
    if scale <= 0:
        raise ValueError(f"gaussian_kernel: scale must be positive, got {scale}")
    return torch.exp(-torch.cdist(x, y).pow(2) / scale)


def mmd(x: Tensor, y: Tensor, scale: float | None = None, *, unbiased: bool = False) -> Tensor:
    """Squared maximum mean discrepancy between the samples x (N, D) and y (M, D) with `gaussian_kernel`
    (Gretton et al. 2012, eq. 3 for the biased V-statistic, eq. 4 for the unbiased U-statistic).

    The biased form, mean k(x, x') + mean k(y, y') - 2 mean k(x, y) with the diagonals included, is what InfoVAE
    minimises; `unbiased=True` drops the diagonal terms.
    """
    if x.dim() != 2 or y.dim() != 2 or x.shape[1] != y.shape[1]:
        raise ValueError(f"mmd: expected samples (N, D) and (M, D), got {tuple(x.shape)} and {tuple(y.shape)}")
    kxx, kyy, kxy = gaussian_kernel(x, x, scale), gaussian_kernel(y, y, scale), gaussian_kernel(x, y, scale)
    if not unbiased:
        return kxx.mean() + kyy.mean() - 2 * kxy.mean()
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"mmd(unbiased=True) needs at least 2 samples on each side, got {n} and {m}")
    off = lambda k, s: (k.sum() - k.diagonal().sum()) / (s * (s - 1))  # noqa: E731
    return off(kxx, n) + off(kyy, m) - 2 * kxy.mean()


def log_normal(x: Tensor, mu: Tensor | float = 0.0, logvar: Tensor | float = 0.0) -> Tensor:
    """log N(x; mu, diag exp(logvar)), summed over the last dimension."""
    mu, logvar = _like(mu, x), _like(logvar, x)
    return -0.5 * ((x - mu).pow(2) * (-logvar).exp() + logvar + math.log(2 * math.pi)).sum(-1)


def kl_mvn(mu1: Tensor, cov1: Tensor, mu0: Tensor, cov0: Tensor) -> Tensor:
    """KL(N(mu1, cov1) || N(mu0, cov0)) for full covariances (d, d), in nats, computed in float64:

        0.5 * (tr(cov0^-1 cov1) + (mu0 - mu1)^T cov0^-1 (mu0 - mu1) - d + log det cov0 - log det cov1)

    Rosca et al. App. D compare Gaussians x = W^T z + b, i.e. N(b, W^T W) (eq. 13), in this closed form.
    """
    mu1, cov1, mu0, cov0 = (t.double() for t in (mu1, cov1, mu0, cov0))
    l0 = torch.linalg.cholesky(cov0)
    l1 = torch.linalg.cholesky(cov1)
    # tr(cov0^-1 cov1) = ||L0^-1 L1||_F^2 and the Mahalanobis term = ||L0^-1 (mu0 - mu1)||^2, by triangular solves
    trace = torch.linalg.solve_triangular(l0, l1, upper=False).pow(2).sum()
    maha = torch.linalg.solve_triangular(l0, (mu0 - mu1).unsqueeze(-1), upper=False).pow(2).sum()
    log_det = 2 * (l0.diagonal().log().sum() - l1.diagonal().log().sum())
    return 0.5 * (trace + maha - mu1.shape[-1] + log_det)
