"""VAE loss = -log p(x|z) + beta * KL(q(z|x) || N(0, I)) for every visible distribution, checked by hand."""
from __future__ import annotations

import pytest
import torch

from zoo import create_model
from zoo.losses.divergences import kl_normal

TINY = dict(backbone="rosca_mnist", channels=1, image_size=28, latent_dim=4, width=8)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian", "laplace", "quantized_normal"])
def test_vae_phase_loss_is_the_negative_elbo(likelihood):
    torch.manual_seed(0)
    # init_scale 0.5 keeps the naive float64 reference CDF difference away from underflow
    model = create_model("vae", likelihood=likelihood, beta=2.5, init_scale=0.5, **TINY)
    x = torch.randint(0, 256, (6, 1, 28, 28)).float() / 127.5 - 1
    torch.manual_seed(7)
    out = model.phase_loss("vae", x, step=0)

    torch.manual_seed(7)  # same reparameterisation noise by hand
    mu, logvar = model.players["encoder"](x).chunk(2, dim=1)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    decoder = model.players["decoder"]
    raw = decoder.net(z)
    x01 = (x + 1) / 2
    if likelihood == "bernoulli":
        log_px = torch.distributions.Bernoulli(logits=raw, validate_args=False).log_prob(x01).flatten(1).sum(1)
    elif likelihood == "gaussian":
        log_px = torch.distributions.Normal(raw, decoder.likelihood.log_scale.exp()).log_prob(x01).flatten(1).sum(1)
    elif likelihood == "laplace":
        log_px = torch.distributions.Laplace(raw, decoder.likelihood.log_scale.exp()).log_prob(x01).flatten(1).sum(1)
    else:
        normal = torch.distributions.Normal(raw.double(), decoder.likelihood.log_scale.exp().double())
        k = torch.round(x01 * 255).double()
        hi = torch.where(k == 255, torch.ones_like(k), normal.cdf(((k + 1) / 256)))
        lo = torch.where(k == 0, torch.zeros_like(k), normal.cdf(k / 256))
        log_px = torch.log(hi - lo).flatten(1).sum(1).float()
    kl = 0.5 * (mu ** 2 + logvar.exp() - 1 - logvar).sum(1)
    torch.testing.assert_close(out.loss, (-log_px + 2.5 * kl).mean(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out.logs["elbo"], (log_px - kl).mean(), rtol=1e-4, atol=1e-3)
    torch.testing.assert_close(out.logs["kl"], kl_normal(mu, logvar).mean())
    if likelihood != "bernoulli":  # the learned scale is trained with the decoder
        out.loss.backward()
        assert decoder.likelihood.log_scale.grad is not None and decoder.likelihood.log_scale.grad.abs().sum() > 0


def test_reconstruct_decodes_the_posterior_mean():
    torch.manual_seed(0)
    model = create_model("vae", **TINY).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        mu, _ = model.posterior(x)
        expected = torch.sigmoid(model.players["decoder"](mu)) * 2 - 1
        torch.testing.assert_close(model.reconstruct(x), expected)
        torch.testing.assert_close(model.encode(x), mu)
