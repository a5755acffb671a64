"""Toy vector datasets with exact densities: 1-D and 2-D Gaussian mixtures and an affine Gaussian.

Each split is a fixed float32 sample of shape (N, D) drawn when the factory is called. The distribution's parameters
depend only on `seed`; the sample of each split is drawn from a generator seeded by (seed, split), so "train" and
"test" are independent samples of the same distribution. Sampling runs in float64 and is cast to float32.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from zoo.data.base import check_count, check_split, split_seed
from zoo.registry import register_dataset

IJAE_WEIGHTS = (0.15, 0.35, 0.3, 0.2)  # IJAE App. B target mixture
IJAE_MEANS = (-8.0, -3.0, 3.0, 8.0)
IJAE_STDS = (0.2, 0.8, 1.0, 0.2)


class VectorDataset(Dataset):
    """A fixed sample of D-dimensional vectors; item i is a float32 tensor of shape (D,).

    Args:
        name: registry name, used in messages.
        data: the sample, (N, D) float32.
    """

    def __init__(self, name: str, data: Tensor):
        self.name = name
        self.data = data

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> Tensor:
        return self.data[index]

    @property
    def shape(self) -> tuple[int]:
        return (self.data.shape[1],)

    def as_float_tensor(self) -> Tensor:
        """The whole sample, (N, D) float32."""
        return self.data

    def _check_x(self, x: Tensor) -> Tensor:
        if x.shape[-1:] != self.shape:
            raise ValueError(f"{self.name}.log_prob expects (..., {self.shape[0]}) points, got {tuple(x.shape)}")
        return x.double()

    def log_prob(self, x: Tensor) -> Tensor:
        """Exact log-density of points ``(..., D)`` under the data distribution, shape (...)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, n={len(self)}, shape={self.shape})"


class GaussianMixture(VectorDataset):
    """A sample of a mixture of isotropic Gaussians ``sum_k w_k N(mu_k, s_k^2 I)``.

    Attributes:
        weights: (K,) mixture weights.
        means: (K, D) component means.
        stds: (K,) component standard deviations.
        targets: (N,) the component each example was drawn from (for mode-coverage metrics).
    """

    def __init__(self, name: str, weights: Sequence[float], means: Sequence[Sequence[float]],
                 stds: Sequence[float], size: int, seed: int):
        w = torch.as_tensor(weights, dtype=torch.float64)
        mu = torch.as_tensor(means, dtype=torch.float64)
        s = torch.as_tensor(stds, dtype=torch.float64)
        k = len(w)
        if w.ndim != 1 or mu.ndim != 2 or mu.shape[0] != k or s.shape != (k,):
            raise ValueError(
                f"{name}: weights {tuple(w.shape)}, means {tuple(mu.shape)} and stds {tuple(s.shape)} must describe "
                f"the same number of components: K weights, K means and K stds"
            )
        if (w <= 0).any() or abs(float(w.sum()) - 1) > 1e-6 or (s <= 0).any():
            raise ValueError(f"{name}: weights must be positive and sum to 1 (got {w.tolist()}, sum "
                             f"{float(w.sum()):.6g}) and stds positive (got {s.tolist()})")
        generator = torch.Generator().manual_seed(seed)
        components = torch.multinomial(w, size, replacement=True, generator=generator)
        noise = torch.randn(size, mu.shape[1], generator=generator, dtype=torch.float64)
        super().__init__(name, (mu[components] + s[components, None] * noise).float())
        self.weights, self.means, self.stds, self.targets = w.float(), mu.float(), s.float(), components

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check_x(x)
        mu, s, d = self.means.double(), self.stds.double(), self.shape[0]
        sq = ((x[..., None, :] - mu) ** 2).sum(-1)  # (..., K)
        log_normal = -0.5 * sq / s**2 - d * torch.log(s) - 0.5 * d * math.log(2 * math.pi)
        return torch.logsumexp(self.weights.double().log() + log_normal, dim=-1).float()


@register_dataset("mixture_1d")
def mixture_1d(root: Path, split: str = "train", *, weights: Sequence[float] = IJAE_WEIGHTS,
               means: Sequence[float] = IJAE_MEANS, stds: Sequence[float] = IJAE_STDS, size: int = 100_000,
               seed: int = 0) -> GaussianMixture:
    """1-D Gaussian mixture, by default the IJAE App. B target ``0.15 N(-8, .2^2) + 0.35 N(-3, .8^2) + 0.3 N(3, 1)
    + 0.2 N(8, .2^2)``; items have shape (1,). `root` is unused."""
    check_split("mixture_1d", split, ("train", "test"))
    check_count("mixture_1d", "size", size)
    return GaussianMixture("mixture_1d", weights, [[float(m)] for m in means], stds, size,
                           split_seed(seed, split, "mixture_1d"))


@register_dataset("mixture_2d")
def mixture_2d(root: Path, split: str = "train", *, means: Sequence[Sequence[float]] | None = None,
               num_modes: int | None = None, radius: float | None = None, stds: float | Sequence[float] = 0.02,
               weights: Sequence[float] | None = None, size: int = 100_000, seed: int = 0) -> GaussianMixture:
    """2-D Gaussian mixture; by default the GAN toy of 8 equal modes on a ring of radius 2 with std 0.02.

    Args:
        means: custom component means ``[[x, y], ...]``; excludes `num_modes` and `radius`.
        num_modes: modes on the ring (default 8); mode k sits at angle ``2 pi k / num_modes``.
        radius: ring radius (default 2).
        stds: one std for all components, or one per component.
        weights: mixture weights (default uniform).
    """
    check_split("mixture_2d", split, ("train", "test"))
    check_count("mixture_2d", "size", size)
    if means is not None and (num_modes is not None or radius is not None):
        raise ValueError(f"mixture_2d: give either means (custom mixture) or num_modes/radius (ring), not both; "
                         f"got means={means!r}, num_modes={num_modes!r}, radius={radius!r}")
    if means is None:
        k, r = 8 if num_modes is None else num_modes, 2.0 if radius is None else radius
        check_count("mixture_2d", "num_modes", k)
        means = [[r * math.cos(2 * math.pi * i / k), r * math.sin(2 * math.pi * i / k)] for i in range(k)]
    k = len(means)
    stds = [float(stds)] * k if isinstance(stds, (int, float)) else stds
    weights = [1.0 / k] * k if weights is None else weights
    return GaussianMixture("mixture_2d", weights, means, stds, size, split_seed(seed, split, "mixture_2d"))


class AffineGaussian(VectorDataset):
    """A sample of ``x = A eps + mu``, ``eps ~ N(0, I_k)``: so ``x ~ N(mu, A A^T)`` (Rosca et al. App. D, eq. 13).

    Attributes:
        mean: (D,) mu.
        covariance: (D, D) ``A A^T``.
        transform: (D, k) A.
    """

    def __init__(self, dim: int, latent_dim: int, size: int, seed: int, split: str):
        params = torch.Generator().manual_seed(split_seed(seed, "params", "affine_gaussian"))
        mu = torch.randn(dim, generator=params, dtype=torch.float64)
        # 1/sqrt(k) keeps A A^T near the identity whatever k is, so the problem is well conditioned for any dim
        a = torch.randn(dim, latent_dim, generator=params, dtype=torch.float64) / math.sqrt(latent_dim)
        sample = torch.Generator().manual_seed(split_seed(seed, split, "affine_gaussian"))
        eps = torch.randn(size, latent_dim, generator=sample, dtype=torch.float64)
        super().__init__("affine_gaussian", (eps @ a.T + mu).float())
        self._mu, self._cov = mu, a @ a.T
        self.mean, self.covariance, self.transform = mu.float(), self._cov.float(), a.float()

    def log_prob(self, x: Tensor) -> Tensor:
        x = self._check_x(x)
        chol = torch.linalg.cholesky(self._cov)
        z = torch.linalg.solve_triangular(chol, (x - self._mu).unsqueeze(-1), upper=False).squeeze(-1)
        half_log_det = chol.diagonal().log().sum()
        return (-0.5 * (z**2).sum(-1) - half_log_det - 0.5 * self.shape[0] * math.log(2 * math.pi)).float()


@register_dataset("affine_gaussian")
def affine_gaussian(root: Path, split: str = "train", *, dim: int = 10, latent_dim: int | None = None,
                    size: int = 10_000, seed: int = 0) -> AffineGaussian:
    """Gaussian ``N(mu, A A^T)`` in `dim` dimensions with a seeded random mean ``mu ~ N(0, I)`` and map A of i.i.d.
    ``N(0, 1/k)`` entries, k = `latent_dim` (default ``10 * dim``, as in Rosca et al., so ``A A^T`` has full rank).
    `root` is unused."""
    check_split("affine_gaussian", split, ("train", "test"))
    check_count("affine_gaussian", "dim", dim)
    check_count("affine_gaussian", "size", size)
    latent_dim = 10 * dim if latent_dim is None else latent_dim
    if check_count("affine_gaussian", "latent_dim", latent_dim) < dim:
        raise ValueError(f"affine_gaussian: latent_dim={latent_dim} < dim={dim} makes the covariance singular; "
                         f"use latent_dim >= dim (default 10 * dim)")
    return AffineGaussian(dim, latent_dim, size, seed, split)
