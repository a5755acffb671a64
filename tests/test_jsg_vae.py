"""The JS^G VAE family: each regulariser's loss by hand, the alpha limits through the model, the trainable skew, the
MSE likelihood, the paper's recipes, the reconstruction metric, and a short MNIST run whose test error falls."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import RECIPES, train_until
from zoo import ConfigError, build_model, create_model, load_recipe
from zoo.data import load_dataset
from zoo.evaluation.reconstruction import reconstruction_errors
from zoo.losses.likelihoods import (MSE_VARIANCES, VisibleDistribution, bernoulli_log_prob, bernoulli_nll_floor,
                                    mse_log_prob)
from zoo.models.jsg_vae import MMD_PRIOR_DRAWS
from zoo.training import Trainer

TINY = dict(channels=1, image_size=32, latent_dim=3, width=8)


def _images(n: int = 5, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 1, 32, 32), generator=g).float() / 127.5 - 1


def _kl(m1, v1, m2, v2):
    """Per-dimension KL(N(m1, v1) || N(m2, v2)) with variances, for the hand computations."""
    return 0.5 * (v1 / v2 + (m1 - m2) ** 2 / v2 - 1 + torch.log(v2 / v1))


def test_mse_likelihood_is_the_plain_summed_squared_error_of_the_authors_code():
    """`mse` = the authors' Gaussian loss F.mse_loss(x_hat, x, reduction="sum") in [0, 1] units (geometric-js
    vae/models/losses.py, every commit), i.e. -log N(x; x_hat, 1/2) up to (D / 2) log(pi); `mse_255` is 255 x it."""
    x = torch.tensor([[[[0.0, 0.5], [1.0, 0.25]]]])  # (1, 1, 2, 2)
    out = torch.zeros_like(x)  # x_hat = sigmoid(0) = 0.5 everywhere
    sse = 0.25 + 0.0 + 0.25 + 0.0625  # by hand
    const = 0.5 * 4 * math.log(math.pi)  # (D / 2) log(2 pi variance), variance 1/2
    assert MSE_VARIANCES["mse"] == 0.5
    torch.testing.assert_close(-mse_log_prob(x, out), torch.tensor([sse + const]))
    lik = VisibleDistribution("mse", channels=1)
    torch.testing.assert_close(-lik.log_prob(x, out) - const, torch.tensor([sse]))
    torch.testing.assert_close(-lik.log_prob(x, out) - const,
                               torch.nn.functional.mse_loss(torch.sigmoid(out), x, reduction="sum").unsqueeze(0))
    normal = torch.distributions.Normal(torch.full_like(x, 0.5), math.sqrt(0.5))  # the implied Gaussian
    torch.testing.assert_close(lik.log_prob(x, out), normal.log_prob(x).flatten(1).sum(1))
    # the 255-scaled option: (255 x - 255 x_hat)^2 / 255 summed = 255 SSE, variance 1/510
    lik255 = VisibleDistribution("mse_255", channels=1)
    torch.testing.assert_close(-lik255.log_prob(x, out), torch.tensor([255 * sse + 2 * math.log(2 * math.pi / 510)]))
    g = torch.Generator().manual_seed(0)
    xr, outr = torch.rand(4, 1, 5, 5, generator=g), torch.randn(4, 1, 5, 5, generator=g)
    normal = torch.distributions.Normal(torch.sigmoid(outr), math.sqrt(1 / 510))
    torch.testing.assert_close(lik255.log_prob(xr, outr), normal.log_prob(xr).flatten(1).sum(1))
    for kind in ("mse", "mse_255"):  # fixed variance, no parameters; the mean is the sigmoid of the decoder output
        lik = VisibleDistribution(kind, channels=1)
        assert not list(lik.parameters()) and not list(lik.buffers())
        torch.testing.assert_close(lik.mean(outr), torch.sigmoid(outr))


def test_the_model_trains_the_mse_likelihood_on_the_summed_squared_error():
    torch.manual_seed(0)
    model = create_model("jsg_vae", likelihood="mse", divergence="kl_qp", **TINY)
    out = model.phase_loss("vae", _images(), 0)
    const = 0.5 * 32 * 32 * math.log(math.pi)
    torch.testing.assert_close(out.logs["nll"], out.logs["sse"] + const)  # -log p(x|z) = SSE + const, z sampled


def test_bernoulli_floor_is_the_summed_binary_entropy_of_the_pixels():
    """Closed form: a pixel of value v costs at least H(v) = -v log v - (1 - v) log(1 - v) nats under any Bernoulli
    decoder (reached at p = v); binary pixels cost 0."""
    x = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]], [[[0.25, 0.75], [0.5, 0.0]]]])  # (2, 1, 2, 2)
    h25 = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75))
    floor = bernoulli_nll_floor(x)
    torch.testing.assert_close(floor, torch.tensor([2 * math.log(2), 2 * h25 + math.log(2)], dtype=torch.float64))
    logits_at_x = torch.logit(x.double(), eps=0)  # p = x: the loss equals the floor (0 log 0 = 0 at the binary ones)
    torch.testing.assert_close(-bernoulli_log_prob(x.double(), logits_at_x.clamp(-50, 50)), floor)
    g = torch.Generator().manual_seed(0)
    for _ in range(20):  # any other decoder output costs more
        other = torch.randn(x.shape, generator=g, dtype=torch.float64) * 3
        assert (-bernoulli_log_prob(x.double(), other) > floor).all()


@pytest.mark.parametrize("name,floor,paper_max", [("mnist", 45.53, 13.19), ("fashion_mnist", 189.86, 14.42)])
def test_published_errors_lie_below_the_bernoulli_floor_of_the_test_sets(shared_data, name, floor, paper_max):
    """docs/models.md: the Bernoulli floor of the 28 px test sets padded to 32 (padding adds nothing) against the
    largest reconstruction error Deasy et al. Table 2 publishes for that dataset."""
    x = load_dataset(name, "test", shared_data, pad_to=32).as_uint8_tensor()
    got = bernoulli_nll_floor(x.double() / 255).mean().item()
    assert got == pytest.approx(floor, abs=0.005)
    assert paper_max < got / 3


@pytest.mark.parametrize("divergence,beta,estimator", [
    ("kl_qp", 1.0, None), ("kl_qp", 4.0, None), ("kl_pq", 1.0, None), ("jsg", 1.0, None), ("jsg_dual", 1.0, None),
    ("mmd", 500.0, "infovae"), ("mmd", 500.0, "deasy")])
def test_phase_loss_by_hand(divergence, beta, estimator):
    torch.manual_seed(0)
    alpha = 0.3
    model = create_model("jsg_vae", likelihood="bernoulli", divergence=divergence, alpha=alpha, beta=beta,
                         mmd_estimator=estimator or "deasy", **TINY)
    x = _images()
    torch.manual_seed(7)
    out = model.phase_loss("vae", x, step=0)

    torch.manual_seed(7)  # the same noise by hand: reparameterisation first, then (mmd) the prior draws
    mu, logvar = model.players["encoder"](x).chunk(2, dim=1)
    var = logvar.exp()
    z = mu + torch.randn_like(mu) * var.sqrt()
    logits = model.players["decoder"].net(z)
    nll = torch.nn.functional.binary_cross_entropy_with_logits(logits, (x + 1) / 2, reduction="none").sum((1, 2, 3))
    zero, one = torch.zeros_like(mu), torch.ones_like(mu)
    if divergence == "kl_qp":  # eq. 3
        div = 0.5 * (var - logvar + mu ** 2 - 1).sum(1)
    elif divergence == "kl_pq":  # eq. 4
        div = 0.5 * (1 / var + logvar + mu ** 2 / var - 1).sum(1)
    elif divergence in ("jsg", "jsg_dual"):  # N_alpha' = q^alpha p^(1 - alpha), p = N(0, I) (eq. 16)
        var_m = 1 / (alpha / var + (1 - alpha))
        mu_m = var_m * alpha * mu / var
        if divergence == "jsg":  # eq. 17
            div = ((1 - alpha) * _kl(mu, var, mu_m, var_m) + alpha * _kl(zero, one, mu_m, var_m)).sum(1)
        else:  # eq. 10 with N_alpha'
            div = ((1 - alpha) * _kl(mu_m, var_m, mu, var) + alpha * _kl(mu_m, var_m, zero, one)).sum(1)
    elif estimator == "infovae":  # biased MMD^2 of samples against as many prior draws, exp(-||a - b||^2 / D^2)
        prior = torch.randn_like(z)
        k = lambda a, b: torch.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 9)  # noqa: E731
        div = k(z, z).mean() + k(prior, prior).mean() - 2 * k(z, prior).mean()
    else:  # the authors': cat(mu, logvar) against 200 draws of N(0, I_2D), exp(-||a - b||^2 / (2D)^2), biased
        moments, prior = torch.cat([mu, logvar], 1), torch.randn(200, 6)
        k = lambda a, b: torch.exp(-((a[:, None] - b[None]) ** 2).sum(-1) / 36)  # noqa: E731
        div = k(moments, moments).mean() + k(prior, prior).mean() - 2 * k(moments, prior).mean()
    torch.testing.assert_close(out.loss, nll.mean() + beta * div.mean(), rtol=1e-5, atol=1e-4)  # eq. 22
    torch.testing.assert_close(out.logs["div"], div.mean(), rtol=1e-5, atol=1e-6)
    sse = (torch.sigmoid(logits) - (x + 1) / 2).pow(2).sum((1, 2, 3)).mean()
    torch.testing.assert_close(out.logs["sse"], sse, rtol=1e-5, atol=1e-4)


def test_authors_mmd_estimator_by_hand():
    """geometric-js vae/models/losses.py `_mmd_loss` / `_compute_kernel`, written out with Python floats: the batch's
    cat(mu, logvar) against 200 draws of N(0, I_2D), k(a, b) = exp(-mean_d (a_d - b_d)^2 / dim), dim = 2D, and the
    biased estimate mean k(x, x') + mean k(y, y') - 2 mean k(x, y) with the diagonals included."""
    assert MMD_PRIOR_DRAWS == 200
    model = create_model("jsg_vae", divergence="mmd", beta=500.0, channels=1, image_size=32, latent_dim=1, width=8)
    assert model.config.mmd_estimator == "deasy"  # the default: the authors' estimator
    mu, logvar = torch.tensor([[0.5], [-1.0], [2.0]]), torch.tensor([[0.0], [-2.0], [1.0]])
    torch.manual_seed(5)
    got = model.divergence(mu, logvar, torch.zeros_like(mu))
    torch.manual_seed(5)
    prior = torch.randn(200, 2).tolist()
    moments = [[0.5, 0.0], [-1.0, -2.0], [2.0, 1.0]]

    def k(a: list[float], b: list[float]) -> float:
        dim = len(a)
        return math.exp(-sum((ai - bi) ** 2 for ai, bi in zip(a, b)) / dim / dim)

    def mean_k(xs, ys):
        return sum(k(a, b) for a in xs for b in ys) / (len(xs) * len(ys))

    expected = mean_k(prior, prior) + mean_k(moments, moments) - 2 * mean_k(prior, moments)
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert 0.0 < expected < 1.0
    infovae = create_model("jsg_vae", divergence="mmd", mmd_estimator="infovae", channels=1, image_size=32,
                           latent_dim=1, width=8)
    torch.manual_seed(5)
    assert infovae.divergence(mu, logvar, mu).item() != pytest.approx(expected, rel=1e-3)  # the switch matters
    with pytest.raises(ConfigError, match="mmd_estimator"):
        load_recipe({"model": {"name": "jsg_vae", "mmd_estimator": "gretton"}})


def test_authors_initialisation_and_unit_encoder_input():
    """init: kaiming_uniform draws every conv / deconv / linear weight from U(-b, b), b = sqrt(6 / fan_in) (variance
    2 / fan_in), as geometric-js vae/utils/initialization.py; PyTorch's default has b = 1 / sqrt(fan_in). Biases keep
    PyTorch's U(-1 / sqrt(fan_in), 1 / sqrt(fan_in)). encoder_input: unit feeds the encoder (x + 1) / 2."""
    cfg = dict(channels=1, image_size=32, latent_dim=10, width=32)  # the paper's MNIST networks
    torch.manual_seed(0)
    authors = create_model("jsg_vae", **cfg)
    assert authors.config.init == "kaiming_uniform"  # the default: it changes results (docs/models.md)
    torch.manual_seed(0)
    default = create_model("jsg_vae", init="pytorch", **cfg)
    layers = lambda m: [l for l in m.modules() if isinstance(l, (torch.nn.Conv2d, torch.nn.ConvTranspose2d,  # noqa
                                                                    torch.nn.Linear))]
    ours, theirs = layers(default), layers(authors)
    assert len(ours) == len(theirs) == 12  # encoder 3 conv + FC 256, FC 256, head; decoder 3 linear + 3 deconv
    for a, d in zip(theirs, ours):
        fan_in = torch.nn.init._calculate_fan_in_and_fan_out(a.weight)[0]
        bound = math.sqrt(6 / fan_in)
        assert a.weight.abs().max() <= bound and d.weight.abs().max() <= 1 / math.sqrt(fan_in) + 1e-7
        if a.weight.numel() >= 1000:  # the sample variance of U(-b, b) is b^2 / 3 = 2 / fan_in
            assert a.weight.var().item() == pytest.approx(2 / fan_in, rel=0.1)
            assert d.weight.var().item() == pytest.approx(1 / (3 * fan_in), rel=0.1)
        assert a.bias.abs().max() <= 1 / math.sqrt(fan_in)
    x = _images()
    unit = create_model("jsg_vae", encoder_input="unit", **TINY)
    mu, logvar = unit.posterior(x)
    torch.testing.assert_close(torch.cat([mu, logvar], 1), unit.players["encoder"]((x + 1) / 2))
    signed = create_model("jsg_vae", **TINY)
    torch.testing.assert_close(torch.cat(signed.posterior(x), 1), signed.players["encoder"](x))


def test_skew_limits_recover_the_kl_baselines_through_the_model():
    """alpha -> 0 / 1 of the primed JS^G is KL(q||p) / KL(p||q) (eq. 18), of the dual the reverse (eq. 19)."""
    x = _images()

    def loss(**kw):
        torch.manual_seed(0)
        model = create_model("jsg_vae", **TINY, **kw)
        torch.manual_seed(3)
        out = model.phase_loss("vae", x, 0)
        return torch.stack([out.loss, out.logs["div"]])

    kl_qp, kl_pq = loss(divergence="kl_qp"), loss(divergence="kl_pq")
    assert kl_qp[1] > 1e-4 and kl_pq[1] > 1e-4 and not torch.allclose(kl_qp[1], kl_pq[1])
    torch.testing.assert_close(loss(divergence="jsg", alpha=0.0), kl_qp)
    torch.testing.assert_close(loss(divergence="jsg", alpha=1.0), kl_pq)
    torch.testing.assert_close(loss(divergence="jsg_dual", alpha=0.0), kl_pq)
    torch.testing.assert_close(loss(divergence="jsg_dual", alpha=1.0), kl_qp)
    assert loss(divergence="jsg", alpha=0.0, primed=False)[1] == 0  # N_alpha: zero at the ends (eq. 14)


def test_trainable_skew_is_its_own_player_in_the_vae_optimizer():
    torch.manual_seed(0)
    model = create_model("jsg_vae", divergence="jsg_dual", alpha=0.25, learn_alpha=True, **TINY)
    assert set(model.players) == {"encoder", "decoder", "skew"}
    assert model.default_optim(model.config)["vae"].players == ["encoder", "decoder", "skew"]
    assert model.alpha.item() == pytest.approx(0.25)
    model.double()  # float64, so that a central difference of the loss resolves the gradient
    x = _images().double()

    def loss_at(shift: float) -> torch.Tensor:
        with torch.no_grad():
            model.players["skew"].logit += shift
        torch.manual_seed(1)
        out = model.phase_loss("vae", x, 0)
        with torch.no_grad():
            model.players["skew"].logit -= shift
        return out

    out = loss_at(0.0)
    (grad,) = torch.autograd.grad(out.loss, model.players["skew"].logit)
    numeric = (loss_at(1e-4).loss - loss_at(-1e-4).loss).item() / 2e-4
    assert grad.item() == pytest.approx(numeric, rel=1e-4) and grad.item() != 0
    assert out.logs["alpha"].item() == pytest.approx(0.25)

    recipe = load_recipe(RECIPES / "tiny_jsg_vae.yaml")
    assert recipe.optim["vae"].players == ["encoder", "decoder", "skew"]
    with pytest.raises(ConfigError, match="only jsg and jsg_dual have a skew"):
        create_model("jsg_vae", divergence="kl_qp", learn_alpha=True)
    with pytest.raises(ConfigError, match=r"model.alpha: got 1.5"):
        load_recipe({"model": {"name": "jsg_vae", "alpha": 1.5}})
    with pytest.raises(ConfigError, match="strictly inside"):
        create_model("jsg_vae", alpha=1.0, learn_alpha=True)


def test_recipes_follow_the_paper():
    """App. C / Table 3: networks, latents, Adam(1e-4, PyTorch defaults), batch 64 / 256, 100 epochs (30 for
    dSprites); baselines beta = 4 and MMD lambda = 500 with the authors' estimator; the skews of Table 1's best rows;
    the likelihood the published numbers were made with (SSE); Table 3's Bernoulli one override away."""
    best = {"mnist": (0.1, 0.3), "fashion_mnist": (0.2, 0.4), "dsprites": (0.1, 0.5), "chairs": (0.2, 0.4)}
    # an epoch keeps its incomplete last batch (the authors' DataLoader): MNIST 938 steps, the last of 32
    steps = {"mnist": 100 * 938, "fashion_mnist": 100 * 938, "dsprites": 30 * (737280 // 256),
             "chairs": 100 * 338}  # Chairs: every render (data.split: all), as the authors' loader
    for dataset in best:
        # beta = 0.25 is a row of the NeurIPS appendix's Table 2 for MNIST and Fashion-MNIST
        extra = ("beta025",) if dataset in ("mnist", "fashion_mnist") else ()
        for reg in ("kl_qp", "kl_pq", "beta4", "mmd", "jsg", "jsg_dual") + extra:
            r = load_recipe(RECIPES / f"jsg_vae_{dataset}_{reg}.yaml")
            m, small = r.model.config, dataset in ("mnist", "fashion_mnist")
            assert (m.backbone, m.width, m.channels) == ("jsg", 32, 1)
            assert m.image_size == (32 if small else 64) and m.latent_dim == (32 if dataset == "chairs" else 10)
            assert r.data.options.get("pad_to") == (32 if small else None)
            assert m.likelihood == "mse"  # the published errors are SSE-trained, Table 3 notwithstanding
            assert r.data.split == ("all" if dataset == "chairs" else "train")
            assert m.mmd_estimator == "deasy"
            assert (m.init, m.encoder_input) == ("kaiming_uniform", "unit")  # geometric-js vae/utils, datasets
            assert r.data.batch_size == (64 if small else 256) and r.train.max_steps == steps[dataset]
            assert r.data.drop_last is False
            assert r.optim["vae"].lr == 1e-4 and r.optim["vae"].betas == (0.9, 0.999)
            assert m.divergence == {"beta4": "kl_qp", "beta025": "kl_qp"}.get(reg, reg)
            assert m.beta == {"beta4": 4.0, "beta025": 0.25, "mmd": 500.0}.get(reg, 1.0) and m.primed and not m.learn_alpha
            if reg in ("jsg", "jsg_dual"):
                assert m.alpha == best[dataset][reg == "jsg_dual"]
    table3 = load_recipe(RECIPES / "jsg_vae_fashion_mnist_jsg_dual.yaml", ["model.likelihood=bernoulli"])
    assert table3.model.config.likelihood == "bernoulli"


def test_reconstruction_error_is_the_summed_squared_error_of_the_posterior_mean():
    torch.manual_seed(0)
    model = create_model("jsg_vae", **TINY)
    images = torch.randint(0, 256, (7, 1, 32, 32), dtype=torch.uint8)
    x = images.float() / 127.5 - 1
    with torch.no_grad():
        mu, _ = model.posterior(x)
        x_hat = torch.sigmoid(model.players["decoder"](mu))
    expected = (x_hat - images.float() / 255).pow(2).sum((1, 2, 3))
    torch.testing.assert_close(reconstruction_errors(model, images, batch_size=3), expected, rtol=1e-5, atol=1e-4)
    assert model.training  # the mode is restored


def test_jsg_dual_vae_trains_on_mnist_and_its_test_reconstruction_error_falls(shared_data):
    """Table 3 networks with the authors' initialisation (the default), the MSE likelihood (plain SSE) and
    JS^G_0.5'_*. lr 1e-3 with gradient clipping and batch 32. Measured: 22.0 after 600 steps against the mean image's
    49.4 (with PyTorch's default initialisation: 42.8, still near the mean-image plateau). Trained until the criterion
    holds (checked every 200 steps, at most 1,200), so another torch build's kernels cannot fail it by a hair."""
    recipe = load_recipe({
        "model": {"name": "jsg_vae", "likelihood": "mse", "divergence": "jsg_dual", "alpha": 0.5},
        "data": {"name": "mnist", "root": str(shared_data), "batch_size": 32, "options": {"pad_to": 32}},
        "optim": {"vae": {"lr": 1e-3, "grad_clip": 100.0}},
        "train": {"max_steps": 1200, "progress": False, "tensorboard": False, "log_every": 100},
    })
    torch.manual_seed(0)
    model = build_model(recipe)
    test = load_dataset("mnist", "test", shared_data, pad_to=32).as_uint8_tensor()[:500]
    mean_image = (test.float() / 255 - test.float().mean(0) / 255).pow(2).sum((1, 2, 3)).mean().item()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # measured: 26 s on one thread (43 s on a loaded machine); two threads are slower
    try:
        before = reconstruction_errors(model, test).mean().item()
        steps, after = train_until(Trainer(model, recipe), lambda: reconstruction_errors(model, test).mean().item(),
                                   lambda v: v < 0.2 * before and v < 0.6 * mean_image, every=200, max_steps=1200)
    finally:
        torch.set_num_threads(threads)
    print(f"test reconstruction error before {before:.1f}, after {steps} steps {after:.1f}, mean image {mean_image:.1f}")
    assert before > 200
    assert after < 0.2 * before and after < 0.6 * mean_image, (before, steps, after, mean_image)
