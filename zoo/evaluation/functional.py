"""Pure metric math: no models, no files, no randomness. The registered metrics in this package feed it features.

Every function here is pinned by closed forms or reference implementations in tests/test_metrics.py.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor

# Wang, Simoncelli & Bovik 2003, Table 1 / the MS-SSIM implementation Odena et al. 2017 used (tensorflow/models
# msssim.py): one weight per scale, finest first.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


# ---------------------------------------------------------------------------------------------- Inception Score
def inception_score(logits: Tensor, splits: int = 10) -> tuple[float, float, list[float]]:
    """Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))) per split, p(y) the split's mean.

    Args:
        logits: (N, K) class logits of N images (softmax gives p(y|x)); computed in float64.
        splits: the N images are cut, in order, into this many equal chunks (the last ones absorb the remainder as in
            torch-fidelity: chunk i is [i N / splits, (i + 1) N / splits)).

    Returns:
        (mean over splits, population std over splits, the per-split scores).
    """
    n = logits.shape[0]
    if logits.dim() != 2 or n < splits or splits < 1:
        raise ValueError(f"inception_score: need (N, K) logits with N >= splits >= 1, got shape {tuple(logits.shape)} "
                         f"and splits={splits}; lower splits or evaluate more samples")
    log_p = logits.double().log_softmax(dim=1)  # (N, K)
    scores = []
    for i in range(splits):
        chunk = log_p[i * n // splits:(i + 1) * n // splits]  # (n_i, K)
        log_marginal = torch.logsumexp(chunk, dim=0) - math.log(chunk.shape[0])  # log p(y), (K,)
        kl = (chunk.exp() * (chunk - log_marginal)).sum(dim=1).mean()
        scores.append(math.exp(kl.item()))
    mean = sum(scores) / splits
    std = math.sqrt(sum((s - mean) ** 2 for s in scores) / splits)
    return mean, std, scores


def frechet_distance(features_1: Tensor, features_2: Tensor) -> float:
    """Frechet distance of Gaussians fitted to two feature sets (Heusel et al. 2017): |mu_1 - mu_2|^2 +
    tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), with unbiased covariances and tr (S_1 S_2)^(1/2) as the sum of the real parts
    of the square roots of the eigenvalues of S_1 S_2, in float64 -- the computation of torch-fidelity (and of the
    TTUR reference code it adapts), in torch so that it runs where the features are."""
    f1, f2 = features_1.double(), features_2.double()
    if f1.dim() != 2 or f1.shape[1] != f2.shape[1] or min(len(f1), len(f2)) < 2:
        raise ValueError(f"frechet_distance: need two (N >= 2, D) feature sets of one width, got {tuple(f1.shape)} and "
                         f"{tuple(f2.shape)}")
    diff = f1.mean(dim=0) - f2.mean(dim=0)
    s1, s2 = torch.cov(f1.T), torch.cov(f2.T)  # (D, D)
    tr_covmean = torch.linalg.eigvals(s1 @ s2).sqrt().real.sum()
    return (diff @ diff + s1.trace() + s2.trace() - 2 * tr_covmean).item()


def accuracy(logits: Tensor, labels: Tensor) -> float:
    """Fraction of rows whose argmax is the label."""
    return (logits.argmax(dim=1) == labels.to(logits.device)).double().mean().item()


# ---------------------------------------------------------------------------------------------------- MS-SSIM
def gaussian_window_1d(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """(size,) normalised Gaussian; an even size is centred between pixels (as in tensorflow/models msssim.py)."""
    offset = 0.5 if size % 2 == 0 else 0.0
    coords = torch.arange(size, dtype=dtype) - (size // 2) + offset
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def gaussian_window(size: int, sigma: float, dtype: torch.dtype = torch.float64) -> Tensor:
    """(size, size) normalised 2-D Gaussian: the outer product of `gaussian_window_1d` with itself (the blur runs as
    the two 1-D passes; this window is what they equal)."""
    g = gaussian_window_1d(size, sigma, dtype)
    return g[:, None] * g[None, :]


def gaussian_blur_valid(x: Tensor, size: int, sigma: float) -> Tensor:
    """Valid 2-D Gaussian blur of every (H, W) plane of x (N, C, H, W) as a row pass then a column pass: equal to one
    2-D convolution with `gaussian_window` (to rounding), about 5x faster and without the size^2 unfolded copy that a
    2-D window costs on CPU."""
    n, c, h, w = x.shape
    g = gaussian_window_1d(size, sigma, x.dtype).to(x.device)
    planes = rearrange(x, "n c h w -> (n c) 1 h w")
    planes = F.conv2d(planes, g.view(1, 1, 1, size))  # rows: (NC, 1, H, W - size + 1)
    planes = F.conv2d(planes, g.view(1, 1, size, 1))  # columns: (NC, 1, H - size + 1, W - size + 1)
    return rearrange(planes, "(n c) 1 h w -> n c h w", n=n)


def _ssim_terms(x: Tensor, y: Tensor, max_val: float, window: int, sigma: float, k1: float, k2: float,
                shrink: bool = True) -> tuple[Tensor, Tensor]:
    """Per-example mean SSIM and contrast-structure term at one scale; x, y are (B, C, H, W) float64. With `shrink`
    the window is min(window, H, W) with sigma scaled alike (tensorflow/models msssim.py); else it must fit."""
    b, c, h, w = x.shape
    size = min(window, h, w) if shrink else window
    if size > min(h, w):
        raise ValueError(f"ms_ssim: a {window}-pixel window does not fit a {h}x{w} scale; use fewer scales, a smaller "
                         f"window or larger images")
    stats = gaussian_blur_valid(torch.cat([x, y, x * x, y * y, x * y], dim=1), size, size * sigma / window)
    mu_x, mu_y, e_xx, e_yy, e_xy = rearrange(stats, "b (s c) h w -> s b c h w", s=5)
    var_x, var_y, cov = e_xx - mu_x**2, e_yy - mu_y**2, e_xy - mu_x * mu_y
    c1, c2 = (k1 * max_val) ** 2, (k2 * max_val) ** 2
    cs_map = (2 * cov + c2) / (var_x + var_y + c2)
    ssim_map = (2 * mu_x * mu_y + c1) / (mu_x**2 + mu_y**2 + c1) * cs_map
    return ssim_map.mean(dim=(1, 2, 3)), cs_map.mean(dim=(1, 2, 3))


def downsample2(x: Tensor) -> Tensor:
    """Average 2x2 blocks; an odd side repeats its last row / column (scipy's 'reflect' convolution then [::2])."""
    h, w = x.shape[-2:]
    if h % 2 or w % 2:
        x = F.pad(x, (0, w % 2, 0, h % 2), mode="replicate")
    return F.avg_pool2d(x, 2)


def ms_ssim_terms(x: Tensor, y: Tensor, max_val: float = 255.0, window: int = 11, sigma: float = 1.5,
                  k1: float = 0.01, k2: float = 0.03, scales: int = 5, shrink: bool = True) -> Tensor:
    """The raw MS-SSIM terms of each pair, (B, scales): cs_1, ..., cs_{M-1}, ssim_M (finest first), before any
    clamping or mapping; see `ms_ssim`."""
    if x.shape != y.shape or x.dim() != 4:
        raise ValueError(f"ms_ssim: expected two (B, C, H, W) batches of one shape, got {tuple(x.shape)} and "
                         f"{tuple(y.shape)}")
    x, y = x.double(), y.double()
    terms = []
    for level in range(scales):
        ssim, cs = _ssim_terms(x, y, max_val, window, sigma, k1, k2, shrink)
        terms.append(ssim if level == scales - 1 else cs)
        if level < scales - 1:
            x, y = downsample2(x), downsample2(y)
    return torch.stack(terms, dim=1)


def combine_ms_ssim_terms(terms: Tensor, weights: tuple[float, ...], normalize: str = "relu") -> Tensor:
    """prod_j t_j^{w_j} over the (B, M) terms. `normalize`: "relu" clamps negative terms to 0 (tensorflow's
    ssim_multiscale, pytorch-msssim, torchmetrics' "relu"), which sends the whole product to 0; "simple" maps every
    term to (t + 1) / 2 in [0, 1] first (torchmetrics' "simple"), so no pair is clamped."""
    w = torch.tensor(weights, dtype=terms.dtype, device=terms.device)
    if normalize == "relu":
        terms = terms.clamp(min=0)
    elif normalize == "simple":
        terms = (terms + 1) / 2
    else:
        raise ValueError(f"ms_ssim: normalize must be 'relu' or 'simple', got {normalize!r}")
    return (terms**w).prod(dim=1)


def ms_ssim(x: Tensor, y: Tensor, max_val: float = 255.0, window: int = 11, sigma: float = 1.5, k1: float = 0.01,
            k2: float = 0.03, weights: tuple[float, ...] = MS_SSIM_WEIGHTS, shrink: bool = True,
            normalize: str = "relu") -> Tensor:
    """Multi-scale SSIM (Wang et al. 2003) of each pair (x[i], y[i]), as in the implementation Odena et al. used.

    len(weights) scales (default 5), each half the previous side. With `shrink` (the default, tensorflow/models
    msssim.py) the Gaussian window at every scale is min(window, H, W) pixels with sigma scaled by the same factor,
    so any image size works (28 px: sides 28, 14, 7, 4, 2 with windows 11, 11, 7, 4, 2). The blur is two 1-D passes
    (valid convolution); statistics are averaged over pixels and channels. MS-SSIM = prod_{j < M} cs_j^{w_j} *
    ssim_M^{w_M} after `normalize` (see `combine_ms_ssim_terms`).

    Args:
        x, y: (B, C, H, W) images on a scale with maximum `max_val` (uint8 images: 255).

    Returns:
        (B,) MS-SSIM values in [0, 1]; 1 for identical images.
    """
    terms = ms_ssim_terms(x, y, max_val, window, sigma, k1, k2, len(weights), shrink)
    return combine_ms_ssim_terms(terms, weights, normalize)


# ------------------------------------------------------------------------------------------ Wasserstein critic
def wasserstein_estimate(real_scores: Tensor, fake_scores: Tensor) -> tuple[float, float]:
    """W ~= E[D(x)] - E[D(G(z))] from critic scores on held-out data and samples, with its standard error
    sqrt(var_real / n_real + var_fake / n_fake) (unbiased variances)."""
    real, fake = real_scores.double().flatten(), fake_scores.double().flatten()
    if real.numel() < 2 or fake.numel() < 2:
        raise ValueError(f"wasserstein_estimate: need at least 2 scores per side, got {real.numel()} and "
                         f"{fake.numel()}")
    w = real.mean() - fake.mean()
    se = torch.sqrt(real.var() / real.numel() + fake.var() / fake.numel())
    return w.item(), se.item()


# ----------------------------------------------------------------------------------------- likelihood bounds
def log_mean_exp(x: Tensor, dim: int) -> Tensor:
    """log (1/K) sum_k exp(x_k) along `dim`, stably."""
    return torch.logsumexp(x, dim=dim) - math.log(x.shape[dim])


def importance_weighted_bound(log_weights: Tensor) -> Tensor:
    """Burda et al. 2016 eq. 8: L_K = log (1/K) sum_k w_k with log w_k = log p(x, z_k) - log q(z_k|x).

    Args:
        log_weights: (B, K) log importance weights of K posterior samples per example.

    Returns:
        (B,) bounds; L_1 is the ELBO, L_K increases with K towards log p(x) (Burda et al. Theorem 1).
    """
    return log_mean_exp(log_weights.double(), dim=1)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * (z**2 + math.log(2 * math.pi)).sum(dim=-1)


def diagonal_normal_log_prob(z: Tensor, mu: Tensor, logvar: Tensor) -> Tensor:
    """log N(z; mu, diag exp(logvar)) summed over the last dimension."""
    return -0.5 * ((z - mu) ** 2 * torch.exp(-logvar) + logvar + math.log(2 * math.pi)).sum(dim=-1)


# ------------------------------------------------------------------------------------------------------ modes
def mode_statistics(modes: Tensor, n_modes: int) -> tuple[int, float]:
    """Modes covered and KL(p_modes || uniform) of a mode histogram (Metz et al. 2017; Srivastava et al. 2017).

    Args:
        modes: (N,) integer mode of each sample, in [0, n_modes).
        n_modes: number of modes of the data (1000 for stacked MNIST).

    Returns:
        (number of modes with at least one sample, sum_m p_m log(p_m n_modes) over visited modes, in nats).
    """
    if modes.numel() == 0 or modes.min() < 0 or modes.max() >= n_modes:
        raise ValueError(f"mode_statistics: modes must be a non-empty tensor of integers in [0, {n_modes})")
    counts = torch.bincount(modes.flatten().long(), minlength=n_modes).double()
    p = counts[counts > 0] / counts.sum()
    return int((counts > 0).sum().item()), (p * torch.log(p * n_modes)).sum().item()
