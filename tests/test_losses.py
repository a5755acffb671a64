"""Losses against closed forms and torch.distributions."""
from __future__ import annotations

import math

import pytest
import torch
import torch.distributions as D
import torch.nn.functional as F

from zoo.losses.adversarial import (critic_loss_wasserstein, discriminator_loss, generator_loss_nonsaturating,
                                    logit_ratio_loss, generator_loss_wasserstein)
from zoo.losses.divergences import kl_normal
from zoo.losses.likelihoods import VisibleDistribution, quantized_normal_log_prob
from zoo.losses.penalties import gradient_penalty


def test_continuous_likelihoods_match_torch_distributions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 4, 4, generator=g)
    out = torch.randn(3, 2, 4, 4, generator=g)
    for kind, dist in [("gaussian", D.Normal), ("laplace", D.Laplace)]:
        lik = VisibleDistribution(kind, channels=2, init_scale=0.3)
        with torch.no_grad():
            lik.log_scale.copy_(torch.tensor([0.2, -1.0]).view(2, 1, 1))
        expected = dist(out, lik.log_scale.exp()).log_prob(x).flatten(1).sum(1)
        torch.testing.assert_close(lik.log_prob(x, out), expected)
    bern = VisibleDistribution("bernoulli", channels=2)
    binary = (x > 0.5).float()
    torch.testing.assert_close(bern.log_prob(binary, out), D.Bernoulli(logits=out).log_prob(binary).flatten(1).sum(1))
    assert not list(bern.parameters())  # no unused scale parameter


def test_quantized_normal_is_a_distribution_over_256_levels():
    levels = torch.arange(256, dtype=torch.float64) / 255
    for mean, log_scale in [(0.5, math.log(0.1)), (0.0, math.log(0.01)), (0.98, math.log(0.003)), (3.0, 0.0)]:
        logp = quantized_normal_log_prob(levels.view(256, 1), torch.full((256, 1), mean, dtype=torch.float64),
                                         torch.tensor(log_scale, dtype=torch.float64))
        assert torch.isfinite(logp).all()
        assert logp.exp().sum().item() == pytest.approx(1.0, abs=1e-9)
    # an interior bin's mass is the CDF difference over [k/256, (k+1)/256)
    k, m, s = 100, 0.4, 0.05
    normal = D.Normal(torch.tensor(m, dtype=torch.float64), torch.tensor(s, dtype=torch.float64))
    expected = torch.log(normal.cdf(torch.tensor((k + 1) / 256)) - normal.cdf(torch.tensor(k / 256)))
    got = quantized_normal_log_prob(torch.tensor([[k / 255]], dtype=torch.float64),
                                    torch.tensor([[m]], dtype=torch.float64), torch.tensor(math.log(s)))
    assert got.item() == pytest.approx(expected.item(), rel=1e-9)
    # far tails stay finite (the stable log-CDF difference)
    far = quantized_normal_log_prob(torch.tensor([[0.5]]), torch.tensor([[0.0]]), torch.tensor(math.log(1e-3)))
    assert torch.isfinite(far).all() and far.item() < -1000


def test_kl_normal_matches_torch():
    g = torch.Generator().manual_seed(1)
    mu1, mu2, lv1, lv2 = (torch.randn(5, 3, generator=g) for _ in range(4))
    expected = D.kl_divergence(D.Normal(mu1, (0.5 * lv1).exp()), D.Normal(mu2, (0.5 * lv2).exp())).sum(-1)
    torch.testing.assert_close(kl_normal(mu1, lv1, mu2, lv2), expected)
    torch.testing.assert_close(kl_normal(mu1, lv1), 0.5 * (mu1 ** 2 + lv1.exp() - 1 - lv1).sum(-1))
    assert torch.equal(kl_normal(mu1, lv1, mu1, lv1), torch.zeros(5))


def test_gan_losses_closed_forms():
    real, fake = torch.tensor([2.0, -1.0]), torch.tensor([0.5, -3.0])
    expected_d = -(torch.log(torch.sigmoid(real)).mean() + torch.log(1 - torch.sigmoid(fake)).mean())
    torch.testing.assert_close(discriminator_loss(real, fake), expected_d)
    torch.testing.assert_close(generator_loss_nonsaturating(fake), -torch.log(torch.sigmoid(fake)).mean())
    assert critic_loss_wasserstein(real, fake).item() == pytest.approx(-1.25 - 0.5)
    assert generator_loss_wasserstein(fake).item() == pytest.approx(1.25)
    d = torch.sigmoid(fake)  # Rosca Alg. 5: R = -log D + log(1 - D), i.e. minus the log density ratio D / (1 - D)
    torch.testing.assert_close(logit_ratio_loss(fake), (-torch.log(d) + torch.log(1 - d)).mean())
    assert logit_ratio_loss(fake).item() == pytest.approx(1.25)
    assert discriminator_loss(real, fake).item() == pytest.approx(
        (F.softplus(-real).mean() + F.softplus(fake).mean()).item())


def test_gradient_penalty_of_a_linear_critic_is_closed_form_and_fp32():
    w = torch.tensor([[3.0, 4.0]])  # ||w|| = 5 -> penalty (5 - 1)^2 = 16 wherever evaluated
    critic = lambda x: (x.flatten(1) * w).sum(1)  # noqa: E731
    real, fake = torch.randn(6, 1, 1, 2), torch.randn(6, 1, 1, 2)
    assert gradient_penalty(critic, real, fake).item() == pytest.approx(16.0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        gp = gradient_penalty(lambda x: torch.nn.functional.linear(x.flatten(1), w).squeeze(1), real, fake)
    assert gp.dtype == torch.float32 and gp.item() == pytest.approx(16.0)
    # a 1-Lipschitz critic has zero penalty; the penalty's gradient reaches the critic's weights
    unit = torch.nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        unit.weight.copy_(torch.tensor([[0.6, 0.8]]))
    gp = gradient_penalty(lambda x: unit(x.flatten(1)).squeeze(1), real, fake)
    assert gp.item() == pytest.approx(0.0, abs=1e-12)
    with torch.no_grad():
        unit.weight.mul_(2)
    gradient_penalty(lambda x: unit(x.flatten(1)).squeeze(1), real, fake).backward()
    torch.testing.assert_close(unit.weight.grad, 2 * (2.0 - 1.0) * torch.tensor([[0.6, 0.8]]))
