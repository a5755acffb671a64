"""Visible distributions p(x|z) for pixel intensities in [0, 1], as log-densities summed per example.

The decoder emits one unconstrained value per pixel (`out`): Bernoulli logits, or the location of a Gaussian /
Laplace / QuantizedNormal whose scale is a learned per-channel parameter (`log_scale`, broadcast over (C, 1, 1)).
`mse` is Deasy et al.'s "MSE" (Table 3; their code's Gaussian reconstruction loss): the plain summed squared error in
[0, 1] units, -log p(x|z) = sum_i (x_i - sigmoid(out_i))^2 + const, a Gaussian with mean sigmoid(out) and fixed
variance 1/2. `mse_255` is 255 x that sum (variance 1/510): the [0, 255]-unit squared error divided by 255 of the
disentangling-vae code, a line the JS^G authors carry commented out (see docs/models.md, JS^G VAE).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn

LIKELIHOODS = ("bernoulli", "gaussian", "laplace", "quantized_normal", "mse", "mse_255", "categorical")
_BINS = 256  # 8-bit pixels
#: fixed variances of the squared-error kinds: -log p(x|z) = SSE / (2 variance) + const
MSE_VARIANCES = {"mse": 0.5, "mse_255": 1.0 / 510}


def reparameterize(mu: Tensor, logvar: Tensor) -> Tensor:
    """One draw z = mu + sigma * eps, eps ~ N(0, I), of N(mu, diag exp(logvar)): the reparameterisation trick
    (Kingma & Welling 2014, eq. 10), differentiable in mu and logvar."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


def bernoulli_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """sum_i x_i log sigmoid(l_i) + (1 - x_i) log(1 - sigmoid(l_i)); grey values act as soft targets (Rosca App. G)."""
    return -F.binary_cross_entropy_with_logits(logits, x, reduction="none").flatten(1).sum(1)


def bernoulli_nll_floor(x: Tensor) -> Tensor:
    """The lowest Bernoulli negative log-likelihood any model can reach on images x in [0, 1], per image (nats).

    -log p(x) with soft targets, sum_i -[x_i log p_i + (1 - x_i) log(1 - p_i)], is minimised pixel by pixel at
    p_i = x_i, where it equals the binary entropy H(x_i); so the floor of an image is sum_i H(x_i) (0 for binary
    images). Deasy et al.'s reconstruction errors lie below this floor on grey-valued data, which shows they are not
    Bernoulli losses (docs/models.md).
    """
    x = x.double().flatten(1)
    return -(torch.special.xlogy(x, x) + torch.special.xlogy(1 - x, 1 - x)).sum(1)


def gaussian_log_prob(x: Tensor, mean: Tensor, log_scale: Tensor) -> Tensor:
    z = (x - mean) * torch.exp(-log_scale)
    return (-0.5 * z.pow(2) - log_scale - 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def mse_log_prob(x: Tensor, logits: Tensor, variance: float = MSE_VARIANCES["mse"]) -> Tensor:
    """N(x; sigmoid(logits), variance) summed per example: -SSE / (2 variance) - (D / 2) log(2 pi variance), a
    proper density whose negative is the summed squared error SSE / (2 variance) plus a constant: variance 1/2 (the
    default, `mse`) gives SSE + (D / 2) log(pi)."""
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


def categorical_log_prob(x: Tensor, logits: Tensor) -> Tensor:
    """256-way Categorical over each 8-bit subpixel (Rosca section 3.2), summed per example.

    Args:
        x: (B, C, H, W) intensities k / 255, k in {0..255} (rounded to the nearest level).
        logits: (B, C * 256, H, W), channel c's 256 logits contiguous (c * 256 ... c * 256 + 255).
    """
    b, c, h, w = x.shape
    if logits.shape != (b, c * _BINS, h, w):
        raise ValueError(f"categorical likelihood: expected logits of shape (B, C * 256, H, W) = {(b, c * _BINS, h, w)}"
                         f" for images {tuple(x.shape)}, got {tuple(logits.shape)}; build the decoder with "
                         f"{_BINS} x channels outputs (VisibleDistribution.outputs_per_channel)")
    log_p = F.log_softmax(rearrange(logits, "b (c k) h w -> b c k h w", k=_BINS), dim=2)  # (B, C, 256, H, W)
    k = torch.round(x * (_BINS - 1)).long().clamp(0, _BINS - 1)  # (B, C, H, W) pixel levels
    return log_p.gather(2, k.unsqueeze(2)).squeeze(2).flatten(1).sum(1)


def categorical_mean(logits: Tensor) -> Tensor:
    """E[k / 255] per subpixel, (B, C * 256, H, W) logits -> (B, C, H, W) in [0, 1]."""
    p = F.softmax(rearrange(logits, "b (c k) h w -> b c k h w", k=_BINS), dim=2)
    levels = torch.arange(_BINS, device=logits.device, dtype=p.dtype) / (_BINS - 1)
    return (p * levels[:, None, None]).sum(2)  # levels along k, broadcast over (h, w)


class VisibleDistribution(nn.Module):
    """p(x|z) of one kind, holding the learned per-channel log-scale for the continuous kinds.

    Args:
        kind: one of `LIKELIHOODS` (categorical: the decoder emits `outputs_per_channel` = 256 logits per image
            channel).
        channels: image channels (one scale each).
        init_scale: initial scale of the continuous kinds (in [0, 1] pixel units).
        learn_scale: learn the scale (True) or keep it fixed.
    """

    def __init__(self, kind: str, channels: int, init_scale: float = 0.1, learn_scale: bool = True):
        super().__init__()
        if kind not in LIKELIHOODS:
            raise ValueError(f"likelihood: got {kind!r}, allowed: {', '.join(LIKELIHOODS)}")
        self.kind = kind
        self.outputs_per_channel = _BINS if kind == "categorical" else 1
        if kind not in ("bernoulli", "categorical", *MSE_VARIANCES):  # squared-error kinds: fixed variance
            log_scale = torch.full((channels, 1, 1), math.log(init_scale))
            if learn_scale:
                self.log_scale = nn.Parameter(log_scale)
            else:
                self.register_buffer("log_scale", log_scale)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        """log p(x|z) per example; x in [0, 1], `out` the raw decoder output, both (B, C, H, W)."""
        if self.kind == "bernoulli":
            return bernoulli_log_prob(x, out)
        if self.kind in MSE_VARIANCES:
            return mse_log_prob(x, out, MSE_VARIANCES[self.kind])
        if self.kind == "categorical":
            return categorical_log_prob(x, out)
        fn = {"gaussian": gaussian_log_prob, "laplace": laplace_log_prob,
              "quantized_normal": quantized_normal_log_prob}[self.kind]
        return fn(x, out, self.log_scale)

    def mean(self, out: Tensor) -> Tensor:
        """The distribution's mean image in [0, 1] (location clamped for the continuous kinds)."""
        if self.kind == "categorical":
            return categorical_mean(out)
        return torch.sigmoid(out) if self.kind in ("bernoulli", *MSE_VARIANCES) else out.clamp(0.0, 1.0)


# ------------------------------------------------------------------------------------ IJAE symmetric likelihoods
#: direction codes of `cyclic_shift`: the image content moves up, down, left or right (rows / columns wrap around)
# Direction codes 0-3 as `cyclic_shift` applies them (even codes move the content towards higher indices): "down" moves
# an image's rows to larger row indices, "right" its columns to larger column indices.
SHIFT_DIRECTIONS = ("down", "up", "right", "left")


def shift_size_probabilities(max_shift: int = 5) -> Tensor:
    """P(s) for s = 0..max_shift of the IJAE cyclic-shift likelihood r(y|x): proportional to 1 / (s + 1).

    The paper (section 5) divides by sum_{i=1}^{S} 1/(i+1), which makes the S + 1 probabilities sum to
    H_{S+1} / (H_{S+1} - 1) (1.69 for S = 5); we divide by sum_{s=0}^{S} 1/(s+1) = H_{S+1} (2.45 for S = 5), so they
    sum to one (docs/models.md).

    Returns:
        (max_shift + 1,) float64 probabilities.
    """
    if max_shift < 0:
        raise ValueError(f"max_shift must be >= 0 (0 makes r(y|x) the identity), got {max_shift}")
    weights = 1.0 / torch.arange(1, max_shift + 2, dtype=torch.float64)
    return weights / weights.sum()


def roll_images(x: Tensor, shift_h: Tensor, shift_w: Tensor) -> Tensor:
    """Cyclically roll each image by its own offsets: out[b, :, i, j] = x[b, :, (i - dh_b) % H, (j - dw_b) % W].

    Per example this is `torch.roll(x[b], (dh_b, dw_b), dims=(-2, -1))`: pixels are only moved, never changed.

    Args:
        x: (B, C, H, W) images.
        shift_h: (B,) integer row offsets (positive moves the content down).
        shift_w: (B,) integer column offsets (positive moves the content right).
    """
    b, c, h, w = x.shape
    rows = (torch.arange(h, device=x.device) - shift_h.to(x.device)[:, None]) % h  # (B, H)
    cols = (torch.arange(w, device=x.device) - shift_w.to(x.device)[:, None]) % w  # (B, W)
    out = x.gather(2, rows[:, None, :, None].expand(b, c, h, w))  # rows rolled
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))  # then columns


def sample_cyclic_shifts(n: int, max_shift: int = 5, generator: torch.Generator | None = None,
                         device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """n draws of (direction, size) from the IJAE shift distribution (section 5): a direction uniform over
    `SHIFT_DIRECTIONS`, independently a size s in {0..max_shift} with P(s) = `shift_size_probabilities`.

    Drawn on the generator's device (CPU by default) and moved to `device`. Returns two (n,) int64 tensors.
    """
    where = generator.device if generator is not None else torch.device("cpu")
    direction = torch.randint(len(SHIFT_DIRECTIONS), (n,), generator=generator, device=where)
    size = torch.multinomial(shift_size_probabilities(max_shift).to(where), n, replacement=True, generator=generator)
    return direction.to(device or where), size.to(device or where)


def cyclic_shift(x: Tensor, max_shift: int = 5, generator: torch.Generator | None = None) -> Tensor:
    """One sample y ~ r(y|x) per image: the IJAE cyclic-shift likelihood (section 5).

    Each image is cyclically rolled (what leaves one edge re-enters at the opposite one) by its own direction (down,
    up, right, left: codes 0-3 of `SHIFT_DIRECTIONS`, equally likely) and size s in {0..max_shift}, P(s) proportional to 1/(s + 1), normalised to
    sum to one. r is a symmetric likelihood (Definition 1): rolling back is a roll of the same size in the opposite,
    equally likely direction, and s = 0 is the most likely size.

    Args:
        x: (B, C, H, W) images.
        max_shift: S, the largest shift in pixels (5 in the paper).
        generator: makes the draw reproducible.

    Returns:
        (B, C, H, W), each image an exact cyclic roll of its input.
    """
    if x.dim() != 4:
        raise ValueError(f"cyclic_shift expects images (B, C, H, W), got shape {tuple(x.shape)}")
    direction, size = sample_cyclic_shifts(x.shape[0], max_shift, generator, x.device)
    sign = 1 - 2 * (direction % 2)  # down / right (even codes): positive offsets; up / left: towards index 0
    vertical = direction < 2
    return roll_images(x, torch.where(vertical, sign * size, 0), torch.where(vertical, 0, sign * size))


def near_delta_gaussian(x: Tensor, sigma: float = 1e-8, generator: torch.Generator | None = None) -> Tensor:
    """One sample y ~ r'(y|x) = N(y | x, sigma^2 I), the near-delta likelihood of the IJAE fake triplets (section 5).

    With sigma = 1e-8 and float32 pixels this is x itself almost everywhere: in [0.5, 1) float32 values are 6e-8
    apart, so only draws beyond 3 sigma (0.3 %) move a pixel, by one step. The paper's "close to a delta function",
    kept literal; docs/models.md discusses sigma vs sigma^2.
    """
    noise = torch.randn(x.shape, generator=generator, device=generator.device if generator is not None else x.device,
                        dtype=x.dtype)
    return x + sigma * noise.to(x.device)
