"""The pure metric math (zoo/evaluation/functional.py and the FID/KID wrappers) against closed forms and reference
implementations."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from zoo.evaluation.functional import (MS_SSIM_WEIGHTS, downsample2, frechet_distance, importance_weighted_bound,
                                       inception_score, mode_statistics, ms_ssim, wasserstein_estimate)
from zoo.evaluation.inception import kernel_inception_distance
from zoo.evaluation.likelihood import importance_weighted_log_likelihood


# ------------------------------------------------------------------------------------------------------------- IS
def test_inception_score_of_uniform_predictions_is_one():
    mean, std, scores = inception_score(torch.zeros(200, 1008), splits=10)
    assert mean == pytest.approx(1.0, abs=1e-12) and std == pytest.approx(0.0, abs=1e-12) and len(scores) == 10


@pytest.mark.parametrize("k", [1, 7, 10])
def test_inception_score_of_confident_predictions_spread_over_k_classes_is_k(k):
    labels = torch.arange(10 * k * 3) % k  # every split holds each of the k classes 3 times
    logits = torch.nn.functional.one_hot(labels, 1008).double() * 1000.0
    mean, std, _ = inception_score(logits, splits=10)
    assert mean == pytest.approx(k, rel=1e-9) and std == pytest.approx(0.0, abs=1e-9)


def test_inception_score_matches_torch_fidelity():
    from torch_fidelity.metric_isc import isc_features_to_metric

    logits = torch.randn(103, 50, generator=torch.Generator().manual_seed(0)) * 3  # uneven splits
    mean, std, _ = inception_score(logits, splits=5)
    ref = isc_features_to_metric(logits, splits=5, shuffle=False)
    assert mean == pytest.approx(ref["inception_score_mean"], rel=1e-12)
    assert std == pytest.approx(ref["inception_score_std"], rel=1e-9)
    with pytest.raises(ValueError, match="lower splits"):
        inception_score(logits[:3], splits=5)


# ---------------------------------------------------------------------------------------------------------- FID/KID
def test_frechet_distance_of_a_shifted_feature_set_is_the_squared_shift():
    f = torch.randn(400, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.0], dtype=torch.float64)
    assert frechet_distance(f, f) == pytest.approx(0.0, abs=1e-6)
    assert frechet_distance(f, f + shift) == pytest.approx(float(shift @ shift), rel=1e-6)


def test_frechet_distance_matches_torch_fidelity_and_the_rank_one_closed_form():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(4)
    a, b = torch.randn(50, 12, generator=g), torch.randn(40, 12, generator=g) * 1.5 + 0.3
    stats = [fid_features_to_statistics(f.double()) for f in (a, b)]
    reference = fid_statistics_to_metric(*stats, False)["frechet_inception_distance"]
    assert frechet_distance(a, b) == pytest.approx(reference, rel=1e-9)
    # two samples per set: S = u u^T with u = (x_1 - x_2) / sqrt(2), and tr (S_1 S_2)^(1/2) = |u_1 . u_2|
    x, y = torch.randn(2, 64, generator=g, dtype=torch.float64), torch.randn(2, 64, generator=g, dtype=torch.float64)
    u, v = (x[0] - x[1]) / math.sqrt(2), (y[0] - y[1]) / math.sqrt(2)
    closed = (x.mean(0) - y.mean(0)).square().sum() + u @ u + v @ v - 2 * (u @ v).abs()
    assert frechet_distance(x, y) == pytest.approx(closed.item(), rel=1e-6)


def test_kernel_inception_distance_is_zero_for_one_set_and_positive_for_a_shift():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(300, 16, generator=g), torch.randn(300, 16, generator=g)
    same, _ = kernel_inception_distance(a, b, subsets=20, subset_size=100)
    shifted, _ = kernel_inception_distance(a, b + 1.0, subsets=20, subset_size=100)
    # cubic kernel k(x, y) = (x.y / d + 1)^3: a unit shift in every coordinate moves the MMD^2 well away from 0
    assert abs(same) < 0.02 and shifted > 0.5 and shifted > 50 * abs(same)


# ---------------------------------------------------------------------------------------------------------- MS-SSIM
def _reference_ms_ssim(img1: np.ndarray, img2: np.ndarray) -> float:
    """The MS-SSIM implementation Odena et al. used (tensorflow/models msssim.py), on (1, H, W, C) arrays, with scipy:
    fftconvolve 'valid' Gaussian windows of min(11, H, W) pixels and sigma 1.5 scaled alike, and downsampling by a
    2x2 box filter ('reflect') followed by [::2, ::2]."""
    from scipy import ndimage, signal

    def gauss(size, sigma):
        radius, offset, start, stop = size // 2, 0.0, -(size // 2), size // 2 + 1
        if size % 2 == 0:
            offset, stop = 0.5, stop - 1
        x, y = np.mgrid[offset + start:stop, offset + start:stop]
        g = np.exp(-((x**2 + y**2) / (2.0 * sigma**2)))
        return g / g.sum()

    def ssim(a, b):
        _, h, w, _ = a.shape
        size = min(11, h, w)
        window = np.reshape(gauss(size, size * 1.5 / 11), (1, size, size, 1))
        mu1, mu2 = (signal.fftconvolve(t, window, mode="valid") for t in (a, b))
        s11, s22, s12 = (signal.fftconvolve(t, window, mode="valid") for t in (a * a, b * b, a * b))
        s11, s22, s12 = s11 - mu1 * mu1, s22 - mu2 * mu2, s12 - mu1 * mu2
        c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
        v1, v2 = 2.0 * s12 + c2, s11 + s22 + c2
        return np.mean((2.0 * mu1 * mu2 + c1) * v1 / ((mu1 * mu1 + mu2 * mu2 + c1) * v2)), np.mean(v1 / v2)

    weights = np.array(MS_SSIM_WEIGHTS)
    a, b = img1.astype(np.float64), img2.astype(np.float64)
    mssim, mcs = [], []
    for _ in range(len(weights)):
        s, c = ssim(a, b)
        mssim.append(s)
        mcs.append(c)
        a, b = (ndimage.convolve(t, np.ones((1, 2, 2, 1)) / 4.0, mode="reflect")[:, ::2, ::2, :] for t in (a, b))
    return float(np.prod(np.array(mcs[:-1]) ** weights[:-1]) * mssim[-1] ** weights[-1])


@pytest.mark.parametrize("side", [32, 28, 17])
def test_ms_ssim_matches_the_reference_implementation_at_small_sizes(side):
    g = torch.Generator().manual_seed(side)
    x = torch.randint(0, 256, (3, 3, side, side), generator=g).double()
    y = (x + torch.randn(x.shape, generator=g, dtype=torch.float64) * 40).clamp(0, 255)  # correlated pairs
    ours = ms_ssim(x, y)
    for i in range(3):
        ref = _reference_ms_ssim(x[i:i + 1].permute(0, 2, 3, 1).numpy(), y[i:i + 1].permute(0, 2, 3, 1).numpy())
        assert ours[i].item() == pytest.approx(ref, rel=1e-9)


def test_downsample_matches_scipy_reflect_box_filter():
    from scipy import ndimage
    x = torch.randn(1, 1, 7, 10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    ref = ndimage.convolve(x.numpy(), np.ones((1, 1, 2, 2)) / 4.0, mode="reflect")[:, :, ::2, ::2]
    assert torch.allclose(downsample2(x), torch.from_numpy(ref), atol=1e-12)


def test_ms_ssim_closed_forms():
    x = torch.randint(0, 256, (2, 3, 20, 20), generator=torch.Generator().manual_seed(3)).double()
    assert torch.allclose(ms_ssim(x, x), torch.ones(2, dtype=torch.float64))  # identical pairs: diversity 0
    # Two constant images a and b: every contrast-structure term is C2 / C2 = 1, so only the coarsest luminance term
    # remains: MS-SSIM = ((2ab + C1) / (a^2 + b^2 + C1))^w_5.
    a, b, c1 = 60.0, 200.0, (0.01 * 255) ** 2
    value = ms_ssim(torch.full((1, 1, 16, 16), a), torch.full((1, 1, 16, 16), b))
    assert value.item() == pytest.approx(((2 * a * b + c1) / (a * a + b * b + c1)) ** MS_SSIM_WEIGHTS[-1], rel=1e-12)


# -------------------------------------------------------------------------------------------------- critic, modes
def test_wasserstein_estimate_and_its_standard_error():
    real, fake = torch.tensor([1.0, 2.0, 3.0, 4.0]), torch.tensor([0.0, 0.0, 1.0, 1.0])
    w, se = wasserstein_estimate(real, fake)
    assert w == pytest.approx(2.0) and se == pytest.approx(math.sqrt(real.var().item() / 4 + fake.var().item() / 4))


def test_mode_statistics_closed_forms():
    assert mode_statistics(torch.zeros(50, dtype=torch.long), 1000) == (1, pytest.approx(math.log(1000)))
    covered, kl = mode_statistics(torch.arange(1000).repeat(3), 1000)
    assert covered == 1000 and kl == pytest.approx(0.0, abs=1e-12)
    covered, kl = mode_statistics(torch.tensor([0, 0, 0, 1]), 4)  # p = (3/4, 1/4) against 1/4 each
    assert covered == 2 and kl == pytest.approx(0.75 * math.log(3) + 0.25 * math.log(1))
    with pytest.raises(ValueError, match=r"\[0, 10\)"):
        mode_statistics(torch.tensor([10]), 10)


# -------------------------------------------------------------------------------------------- likelihood bounds
class LinearGaussian:
    """p(z) = N(0, I), p(x|z) = N(Wz + b, s^2 I) with orthogonal columns of W, so the exact posterior is diagonal:
    var_j = 1 / (1 + |w_j|^2 / s^2), mean = var * W^T (x - b) / s^2; log p(x) = log N(x; b, W W^T + s^2 I)."""

    def __init__(self, d_x: int = 6, d_z: int = 3, s: float = 0.5, posterior_scale: float = 1.0):
        q, _ = torch.linalg.qr(torch.randn(d_x, d_z, generator=torch.Generator().manual_seed(0), dtype=torch.float64))
        self.W = q * torch.tensor([2.0, 1.0, 0.5], dtype=torch.float64)
        self.b = torch.linspace(-1, 1, d_x, dtype=torch.float64)
        self.s, self.posterior_scale = s, posterior_scale

    def posterior(self, x):
        var = 1 / (1 + (self.W**2).sum(0) / self.s**2)  # (d_z,)
        mu = (x - self.b) @ self.W * var / self.s**2
        return mu, torch.log(var * self.posterior_scale).expand_as(mu)

    def log_px_given_z(self, x, z):
        dist = torch.distributions.Normal(z @ self.W.T + self.b, self.s)
        return dist.log_prob(x).sum(-1)

    def log_px(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(x)


def test_importance_weighted_bound_is_exact_with_the_true_posterior():
    model = LinearGaussian()
    x = torch.randn(5, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for k in (1, 7):  # every weight equals p(x) exactly, so L_K = log p(x) for any K (Burda et al. eq. 8)
        bound = importance_weighted_log_likelihood(model, x, k, torch.Generator().manual_seed(k))
        assert torch.allclose(bound, model.log_px(x), atol=1e-9)


def test_importance_weighted_bound_tightens_with_k_for_a_poor_posterior():
    model = LinearGaussian(posterior_scale=6.0)  # too wide: the ELBO is loose
    x = torch.randn(200, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    g = torch.Generator().manual_seed(3)
    l1, l10, l200 = (importance_weighted_log_likelihood(model, x, k, g).mean().item() for k in (1, 10, 200))
    exact = model.log_px(x).mean().item()
    assert l1 < l10 < l200 < exact and exact - l200 < 0.25 * (exact - l1)
    assert importance_weighted_bound(torch.zeros(2, 5)).tolist() == [0.0, 0.0]
