"""RealNVP normalizing flow on latent vectors (Dinh et al. 2017), used as a posterior q(z|x) on top of a Gaussian.

Rosca et al. 2018 (section 3.1, Fig. 1) train VAEs with "Real Non Volume Preserving (RNVP) normalizing flows"
posteriors and give no sizes; ours (docs/models.md): K affine coupling layers (default 4) alternating over the even
and odd latent coordinates, each y = m * z + (1 - m) * (z * exp(s(m * z)) + t(m * z)) with s, t from one MLP
(default 2 hidden layers of 256 ReLU units), s = scale * tanh(raw) as in Dinh et al. section 4.1. The last layer of
every MLP starts at zero, so a new flow is the identity (log-det 0). The couplings do not read x: the posterior is
amortised through the base Gaussian N(mu(x), sigma(x)^2).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.nn.layers import mlp_layers


class AffineCoupling(nn.Module):
    """One RealNVP affine coupling layer on (B, D) vectors; coordinates where `mask` is 1 pass unchanged.

    Args:
        mask: (D,) 0/1 tensor; the masked-in half conditions the affine map of the other half.
        hidden: units per hidden layer of the s, t network.
        layers: hidden layers of the s, t network.
    """

    def __init__(self, mask: Tensor, hidden: int, layers: int):
        super().__init__()
        dim = mask.numel()
        # derived from (dim, layer index), so not saved; a private copy, as safetensors refuses shared storage
        self.register_buffer("mask", mask.float().clone(), persistent=False)
        mods, width = mlp_layers(dim, hidden, layers)
        out = nn.Linear(width, 2 * dim)
        nn.init.zeros_(out.weight)  # identity at initialisation: s = t = 0
        nn.init.zeros_(out.bias)
        self.net = nn.Sequential(*mods, out)
        self.scale = nn.Parameter(torch.ones(dim))

    def _shift_and_log_scale(self, kept: Tensor) -> tuple[Tensor, Tensor]:
        raw_s, t = self.net(kept).chunk(2, dim=-1)  # (B, D) each
        free = 1 - self.mask
        return t * free, self.scale * torch.tanh(raw_s) * free  # zero on the kept coordinates

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z (B, D) -> (y (B, D), log|det dy/dz| (B,))."""
        kept = z * self.mask
        t, s = self._shift_and_log_scale(kept)
        y = kept + (1 - self.mask) * (z * torch.exp(s) + t)
        return y, s.sum(-1)  # the Jacobian is triangular with diagonal exp(s) (1 on the kept coordinates)

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """y (B, D) -> (z (B, D), log|det dz/dy| (B,))."""
        kept = y * self.mask
        t, s = self._shift_and_log_scale(kept)
        z = kept + (1 - self.mask) * ((y - t) * torch.exp(-s))
        return z, -s.sum(-1)


class RealNVP(nn.Module):
    """A stack of `couplings` affine couplings alternating between even and odd coordinates.

    Args:
        dim: latent size D (>= 2).
        couplings: number of coupling layers K (>= 1; 2 or more let every coordinate change).
        hidden: units per hidden layer of each s, t network.
        layers: hidden layers of each s, t network.
    """

    def __init__(self, dim: int, couplings: int = 4, hidden: int = 256, layers: int = 2):
        super().__init__()
        if dim < 2 or couplings < 1:
            raise ValueError(f"RealNVP needs dim >= 2 (a coupling splits the coordinates) and couplings >= 1, got "
                             f"dim={dim}, couplings={couplings}")
        even = (torch.arange(dim) % 2 == 0).float()
        self.couplings = nn.ModuleList(AffineCoupling(even if k % 2 == 0 else 1 - even, hidden, layers)
                                       for k in range(couplings))

    def forward(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """z_0 (B, D) -> (z_K (B, D), sum_k log|det dz_k / dz_{k-1}| (B,))."""
        logdet = z.new_zeros(z.shape[0])
        for layer in self.couplings:
            z, ld = layer(z)
            logdet = logdet + ld
        return z, logdet

    def inverse(self, y: Tensor) -> tuple[Tensor, Tensor]:
        """z_K (B, D) -> (z_0 (B, D), log|det dz_0 / dz_K| (B,))."""
        logdet = y.new_zeros(y.shape[0])
        for layer in reversed(self.couplings):
            y, ld = layer.inverse(y)
            logdet = logdet + ld
        return y, logdet
