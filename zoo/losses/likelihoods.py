"""Visible distributions p(x|z) for pixel intensities in [0, 1], as log-densities summed per example.

The decoder emits one unconstrained value per pixel (`out`): Bernoulli logits, or the location of a Gaussian /
Laplace / QuantizedNormal whose scale is a learned per-channel parameter (`log_scale`, broadcast over (C, 1, 1)).
`mse` is a squared-error loss as a density, the zoo's reading of Deasy et al. Table 3's "Sigmoid. MSE": the squared
error in 8-bit units divided by 255, i.e. -log p(x|z) = 255 * sum_i (x_i - sigmoid(out_i))^2 + const, a Gaussian with
mean sigmoid(out) and fixed variance 1 / 510 (see docs/models.md, JS^G VAE).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LIKELIHOODS = ("bernoulli", "gaussian", "laplace", "quantized_normal", "mse")
_BINS = 256  # 8-bit pixels
MSE_VARIANCE = 1.0 / 510  # the `mse` kind: 255 * (sum of squared errors) = SSE / (2 * MSE_VARIANCE)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """sum_i x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i)); grey values act as soft targets (Rosca App. G)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    z = (x - mean) * torch.exp(-log_scale)
    return (-0.5 * z.pow(2) - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def mse_log_prob(x: Tensor, logits: Tensor, variance: float = MSE_VARIANCE) -> Tensor:
    """N(x; sigmoid(logits), variance) summed per example: -SSE / (2 variance) - (D / 2) log(2 pi variance), a
    proper density whose negative is the weighted summed squared error plus a constant."""
    sse = (x - torch.sigmoid(logits)).pow(2).flatten(1).sum(1)
    return -sse / (2 * variance) - 0.5 * x[0].numel() * math.log(2 * math.pi * variance)


def laplace_log_prob(x: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    return (-(x - loc).abs() * torch.exp(-log_scale) - log_scale - math.log(2.0)).flatten(1).sum(1)


def _log_diff_ndtr(upper: Tensor, lower: Tensor) -> Tensor:
    """log(Phi(upper) - Phi(lower)) for upper > lower, stable in both tails (reflect to the left tail)."""
    flip = lower > 0  # in the right tail Phi(u) - Phi(l) = Phi(-l) - Phi(-u), computed where log_ndtr is accurate
    hi = torch.where(flip, -lower, upper)
    lo = torch.where(flip, -upper, lower)
    log_hi, log_lo = torch.special.log_ndtr(hi), torch.special.log_ndtr(lo)
    return log_hi + torch.log1p(-torch.exp((log_lo - log_hi).clamp(max=-1e-12)))


def quantized_normal_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    """Log-probability of 8-bit pixels under a Normal integrated over each pixel's bin.

    Pixel k in {0..255} (x = k / 255) owns the bin [k/256, (k+1)/256); the two edge bins extend to -inf / +inf so the
    256 probabilities sum to one. Rosca et al. (section 4, after Theis et al. 2016) describe the QuantizedNormal as a
    Normal on uniformly dequantized data; the dequantized log-density (+ log bin width) lower-bounds this log-mass,
    and the mass itself is exact and noise-free (see docs/models.md).
    """
    k = torch.round(x * (_BINS - 1))
    inv_scale = torch.exp(-log_scale)
    upper = torch.where(k >= _BINS - 1, torch.full_like(k, float("inf")), ((k + 1) / _BINS - mean) * inv_scale)
    lower = torch.where(k <= 0, torch.full_like(k, float("-inf")), (k / _BINS - mean) * inv_scale)
    return _log_diff_ndtr(upper, lower).flatten(1).sum(1)


class VisibleDistribution(nn.Module):
    """p(x|z) of one kind, holding the learned per-channel log-scale for the continuous kinds.

    Args:
        kind: one of bernoulli, gaussian, laplace, quantized_normal, mse.
        channels: image channels (one scale each).
        init_scale: initial scale of the continuous kinds (in [0, 1] pixel units).
        learn_scale: learn the scale (True) or keep it fixed.
    """

    def __init__(self, kind: str, channels: int, init_scale: float = 0.1, learn_scale: bool = True):
        super().__init__()
        if kind not in LIKELIHOODS:
            raise ValueError(f"likelihood: got {kind!r}, allowed: {', '.join(LIKELIHOODS)}")
        self.kind = kind
        if kind not in ("bernoulli", "mse"):  # mse has the fixed variance MSE_VARIANCE
            log_scale = torch.full((channels, 1, 1), math.log(init_scale))
            if learn_scale:
                self.log_scale = nn.Parameter(log_scale)
            else:
                self.register_buffer("log_scale", log_scale)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        """log p(x|z) per example; x in [0, 1], `out` the raw decoder output, both (B, C, H, W)."""
        if self.kind == "bernoulli":
            return bernoulli_log_prob(x, out)
        if self.kind == "mse":
            return mse_log_prob(x, out)
        fn = {"gaussian": gaussian_log_prob, "laplace": laplace_log_prob,
              "quantized_normal": quantized_normal_log_prob}[self.kind]
        return fn(x, out, self.log_scale)

    def mean(self, out: Tensor) -> Tensor:
        """The distribution's mean image in [0, 1] (location clamped for the continuous kinds)."""
        return torch.sigmoid(out) if self.kind in ("bernoulli", "mse") else out.clamp(0.0, 1.0)
