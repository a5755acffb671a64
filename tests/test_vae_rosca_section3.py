"""Rosca et al. 2018 section 3: the RealNVP posterior and the 256-way Categorical visible distribution of the VAE, and
the section-3 recipes."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import RECIPES, data_shape
from zoo import build_model, create_model, load_recipe
from zoo.config import ConfigError
from zoo.evaluation.latent import marginal_kl_mc_flow
from zoo.evaluation.latent import marginal_kl_mc, sample_posteriors
from zoo.losses.divergences import kl_normal
from zoo.losses.likelihoods import VisibleDistribution, categorical_log_prob, categorical_mean
from zoo.nn.flows import RealNVP

TINY = dict(backbone="rosca_mnist", channels=1, image_size=28, latent_dim=4, width=8)


def randomised_flow(dim: int = 5, couplings: int = 3, seed: int = 0) -> RealNVP:
    """A RealNVP whose zero-initialised output layers are replaced by random weights, so it is not the identity."""
    torch.manual_seed(seed)
    flow = RealNVP(dim, couplings, hidden=7, layers=2).double()
    with torch.no_grad():
        for layer in flow.couplings:
            layer.net[-1].weight.normal_(0, 0.5)
            layer.net[-1].bias.normal_(0, 0.5)
            layer.scale.uniform_(0.5, 1.5)
    return flow


# ------------------------------------------------------------------------------------------------------ RealNVP
def test_flow_log_det_is_autograd_log_abs_det_jacobian():
    flow = randomised_flow()
    z = torch.randn(3, 5, dtype=torch.float64)
    _, logdet = flow(z)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], z[i])  # (5, 5)
        assert not torch.allclose(jac, torch.eye(5, dtype=jac.dtype))  # the flow is not the identity
        torch.testing.assert_close(logdet[i], torch.linalg.slogdet(jac)[1])


def test_flow_is_invertible_and_inverse_log_det_is_the_negative():
    flow = randomised_flow()
    z = torch.randn(8, 5, dtype=torch.float64)
    y, logdet = flow(z)
    back, logdet_inv = flow.inverse(y)
    torch.testing.assert_close(back, z)
    torch.testing.assert_close(logdet_inv, -logdet)
    assert (y - z).abs().max() > 0.1


def test_flow_log_q_integrates_to_one_on_a_2d_grid():
    """q(z|x) = N(f^-1(z); mu, sigma^2) |det df^-1/dz| is a density: in 2-D its grid integral is 1."""
    torch.manual_seed(0)
    model = create_model("vae", posterior="realnvp", flow_hidden=6, **{**TINY, "latent_dim": 2})
    with torch.no_grad():
        for layer in model.flow.couplings:
            layer.net[-1].weight.normal_(0, 0.3)
        g = torch.linspace(-8, 8, 801)
        zz = torch.stack(torch.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
        mu, logvar = torch.tensor([[0.5, -0.3]]), torch.tensor([[-0.5, 0.2]])
        q = model.log_q(zz, mu.expand_as(zz), logvar.expand_as(zz)).exp()
    assert abs(q.sum().item() * (g[1] - g[0]).item() ** 2 - 1) < 2e-3


def test_zero_initialised_flow_gives_the_gaussian_elbo():
    """A new flow is the identity: same z, same reconstruction term as the Gaussian VAE; its one-sample KL is
    log N(z; mu, sigma^2) - log N(z; 0, I), whose mean over draws is the closed-form Gaussian KL."""
    torch.manual_seed(0)
    gauss = create_model("vae", **TINY)
    torch.manual_seed(0)
    flow = create_model("vae", posterior="realnvp", **TINY)
    flow.load_state_dict({**flow.state_dict(), **gauss.state_dict()})
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    torch.manual_seed(3)
    out_g = gauss.phase_loss("vae", x, 0)
    torch.manual_seed(3)
    out_f = flow.phase_loss("vae", x, 0)
    torch.testing.assert_close(out_f.logs["nll"], out_g.logs["nll"])
    mu, logvar = flow.base_posterior(x)
    eps = torch.randn(20000, *mu.shape[1:])
    z, kl = flow.sample_posterior(mu[:1].expand(20000, -1), logvar[:1].expand(20000, -1), eps)
    torch.testing.assert_close(z, mu[:1] + eps * torch.exp(0.5 * logvar[:1]))
    by_hand = -0.5 * (logvar[:1] + eps ** 2).sum(1) + 0.5 * (z ** 2).sum(1)  # log N(z; mu, s^2) - log N(z; 0, I)
    torch.testing.assert_close(kl, by_hand, atol=1e-4, rtol=1e-5)
    closed = kl_normal(mu[:1], logvar[:1])[0]
    assert abs(kl.mean() - closed) < 4 * kl.std() / math.sqrt(20000)
    # the ELBO the model logs is nll + that KL: with the flow's own draw, -(nll + kl) matches by construction
    torch.testing.assert_close(out_f.logs["elbo"], -(out_f.logs["nll"] + out_f.logs["kl"]))


def test_realnvp_vae_checkpoint_round_trip(tmp_path):
    """The weights save with safetensors (no shared storage) and load into a fresh model with the same outputs."""
    from safetensors.torch import load_file, save_file
    torch.manual_seed(0)
    model = create_model("vae", posterior="realnvp", **TINY)
    with torch.no_grad():
        for layer in model.flow.couplings:
            layer.net[-1].weight.normal_(0, 0.5)
    save_file(model.state_dict(), str(tmp_path / "w.safetensors"))
    torch.manual_seed(1)
    fresh = create_model("vae", posterior="realnvp", **TINY)
    fresh.load_state_dict(load_file(str(tmp_path / "w.safetensors")))
    z = torch.randn(3, 4)
    torch.testing.assert_close(fresh.flow(z), model.flow(z))
    masks = [layer.mask for layer in fresh.flow.couplings]
    assert masks[0].tolist() == [1, 0, 1, 0] and masks[1].tolist() == [0, 1, 0, 1]


def test_realnvp_vae_trains_the_flow_and_refuses_gaussian_analyses():
    model = create_model("vae", posterior="realnvp", **TINY)
    recipe_players = model.default_optim(model.config)["vae"].players
    assert recipe_players == ["encoder", "decoder", "flow"]
    x = torch.rand(4, 1, 28, 28) * 2 - 1
    model.phase_loss("vae", x, 0).loss.backward()
    assert model.flow.couplings[0].net[-1].weight.grad.abs().sum() > 0  # zero-initialised, but it gets a gradient
    with pytest.raises(ValueError, match="q\\(z\\|x\\) is not a diagonal Gaussian"):
        model.posterior(x)
    with pytest.raises(ConfigError, match="latent_dim >= 2, flow_couplings >= 1"):
        create_model("vae", posterior="realnvp", flow_couplings=0, **TINY)


# ------------------------------------------------------------------------------------------------- Categorical
def test_categorical_likelihood_is_the_hand_computed_log_softmax():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 2, 2)).float() / 255
    logits = torch.randn(2, 3 * 256, 2, 2)
    expected = torch.zeros(2)
    for b in range(2):
        for c in range(3):
            for i in range(2):
                for j in range(2):
                    v = logits[b, c * 256:(c + 1) * 256, i, j]
                    k = int(round(x[b, c, i, j].item() * 255))
                    expected[b] += v[k] - torch.logsumexp(v, 0)
    torch.testing.assert_close(categorical_log_prob(x, logits), expected)
    lik = VisibleDistribution("categorical", channels=3)
    assert lik.outputs_per_channel == 256 and not list(lik.parameters())
    torch.testing.assert_close(lik.log_prob(x, logits), expected)
    with pytest.raises(ValueError, match=r"expected logits of shape \(B, C \* 256, H, W\) = \(2, 768, 2, 2\)"):
        categorical_log_prob(x, logits[:, :3])


def test_categorical_normalises_over_the_256_levels_and_its_mean():
    """One subpixel: the probabilities of its 256 levels k / 255 sum to 1; the mean is sum_k p_k k / 255."""
    torch.manual_seed(0)
    logits = torch.randn(1, 256, 1, 1) * 3
    levels = torch.arange(256).float() / 255
    log_p = categorical_log_prob(levels.view(256, 1, 1, 1), logits.expand(256, -1, -1, -1))  # (256,)
    torch.testing.assert_close(torch.logsumexp(log_p, 0), torch.tensor(0.0), atol=1e-5, rtol=0)
    p = torch.softmax(logits[0, :, 0, 0], 0)
    torch.testing.assert_close(log_p.exp(), p)
    torch.testing.assert_close(categorical_mean(logits)[0, 0, 0, 0], (p * levels).sum())


def test_categorical_vae_loss_and_decoder_width():
    torch.manual_seed(0)
    model = create_model("vae", likelihood="categorical", **TINY)
    x = torch.randint(0, 256, (3, 1, 28, 28)).float() / 127.5 - 1
    torch.manual_seed(5)
    out = model.phase_loss("vae", x, 0)
    torch.manual_seed(5)
    mu, logvar = model.base_posterior(x)
    z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
    raw = model.players["decoder"](z)
    assert raw.shape == (3, 256, 28, 28)
    nll = -categorical_log_prob((x + 1) / 2, raw).mean()
    torch.testing.assert_close(out.logs["nll"], nll)
    assert abs(nll.item() / (28 * 28) - math.log(256)) < 0.5  # near-uniform at initialisation: ~log 256 per pixel
    assert model.decode(z).shape == (3, 1, 28, 28)


# ------------------------------------------------------------------------------------------------------ recipes
SECTION3 = {  # recipe -> (dataset, posterior, likelihood)
    "vae_color_mnist_160.yaml": ("color_mnist", "gaussian", "bernoulli"),
    "vae_color_mnist_160_realnvp.yaml": ("color_mnist", "realnvp", "bernoulli"),
    "vae_celeba64_160.yaml": ("celeba64", "gaussian", "bernoulli"),
    "vae_celeba64_160_realnvp.yaml": ("celeba64", "realnvp", "bernoulli"),
    "vae_cifar10_160.yaml": ("cifar10", "gaussian", "bernoulli"),
    "vae_cifar10_160_realnvp.yaml": ("cifar10", "realnvp", "bernoulli"),
    "vae_cifar10_160_quantized_normal.yaml": ("cifar10", "gaussian", "quantized_normal"),
    "vae_cifar10_160_categorical.yaml": ("cifar10", "gaussian", "categorical"),
}


@pytest.mark.parametrize("name", sorted(SECTION3))
def test_section3_recipes(name):
    dataset, posterior, likelihood = SECTION3[name]
    recipe = load_recipe(RECIPES / name)
    m = recipe.model.config
    assert (recipe.data.name, m.posterior, m.likelihood, m.latent_dim) == (dataset, posterior, likelihood, 160)
    assert recipe.data.batch_size == 64 and recipe.optim["vae"].betas == (0.5, 0.9)  # App. K
    assert recipe.optim["vae"].lr in (1e-3, 5e-4, 5e-3)  # Table 3, VAE column
    assert recipe.train.max_steps == (100000 if dataset == "color_mnist" else 200000)
    players = ["encoder", "decoder"] + (["flow"] if posterior == "realnvp" else [])
    assert recipe.optim["vae"].players == players
    torch.manual_seed(0)
    model = build_model(recipe)  # full size: one step of the negative ELBO on two random images
    assert sorted(model.players) == sorted(players)
    x = torch.randint(0, 256, (2, *data_shape(recipe))).float() / 127.5 - 1
    with torch.no_grad():
        out = model.phase_loss("vae", x, step=0)
    assert torch.isfinite(out.loss) and out.logs["kl"] > 0
    torch.testing.assert_close(out.loss, out.logs["nll"] + out.logs["kl"])


# ------------------------------------------------------------------------------- Fig. 1: marginal KL with a flow
def test_flow_marginal_kl_equals_brute_force_mixture_of_flow_densities():
    """log q(z) through the shared Jacobian equals logmeanexp_n VAE.log_q(z | x_n) computed per component."""
    torch.manual_seed(0)
    model = create_model("vae", posterior="realnvp", flow_hidden=6, **{**TINY, "latent_dim": 3}).double()
    mu, logvar = torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64) * 0.3
    # identity flow (new): exactly the Gaussian estimate on the same draws
    same = marginal_kl_mc_flow(mu, logvar, model.flow, num_z=64, generator=torch.Generator().manual_seed(1))
    gauss = marginal_kl_mc(mu, logvar, num_z=64, generator=torch.Generator().manual_seed(1))
    assert same.marginal_kl == pytest.approx(gauss.marginal_kl, abs=1e-9)
    assert same.mutual_information == pytest.approx(gauss.mutual_information, abs=1e-9)
    with torch.no_grad():
        for layer in model.flow.couplings:
            layer.net[-1].weight.normal_(0, 0.5)
    res = marginal_kl_mc_flow(mu, logvar, model.flow, num_z=64, generator=torch.Generator().manual_seed(1))
    idx, z0 = sample_posteriors(mu, logvar, 64, torch.Generator().manual_seed(1))
    with torch.no_grad():
        z = model.flow(z0)[0]
        per_comp = torch.stack([model.log_q(z, mu[n].expand_as(z), logvar[n].expand_as(z)) for n in range(5)], 1)
        log_q = torch.logsumexp(per_comp, 1) - math.log(5)
        log_p = -0.5 * (z ** 2).sum(1) - 1.5 * math.log(2 * math.pi)
        mi = (per_comp[torch.arange(64), idx] - log_q).mean()
    assert res.marginal_kl == pytest.approx((log_q - log_p).mean().item(), abs=1e-9)
    assert res.mutual_information == pytest.approx(mi.item(), abs=1e-9)
    assert res.mutual_information == pytest.approx(gauss.mutual_information, abs=1e-9)  # invariant under f
    assert abs(res.marginal_kl - gauss.marginal_kl) > 0.01  # the marginal KL is not
    assert res.avg_posterior_kl == pytest.approx(res.marginal_kl + res.mutual_information, abs=1e-9)
