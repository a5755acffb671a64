"""VGH and VGH++ (Rosca et al. 2018, App. F, Algorithm 5): every phase's loss by hand on 2x2 images with stub players
whose outputs are simple closed forms, the config's alternatives, and a short color_mnist run."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from zoo import build_model, create_model, load_recipe
from zoo.data import load_dataset
from zoo.data.stream import to_model_range
from zoo.training import Trainer

from conftest import train_until

TINY = dict(backbone="rosca_mnist", channels=1, image_size=28, latent_dim=2, width=8, code_disc_hidden=8)


def softplus(v: float) -> float:
    return math.log1p(math.exp(v))


class Stub(nn.Module):
    """A player computing `fn(input)` times a unit parameter (so it has parameters, like a real network)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, v):
        return self.fn(v) * self.scale


def stub_model(name: str, **config) -> nn.Module:
    """E(x) = first two pixels, G(z) = a constant image of value mean(z), D(x) = sum of pixels, C(z) = sum(z) - 1."""
    model = create_model(name, **{**TINY, **config})
    model.players["encoder"] = Stub(lambda x: x.flatten(1)[:, :2])
    model.players["generator"] = Stub(lambda z: z.mean(1).view(-1, 1, 1, 1).expand(-1, 1, 2, 2))
    model.players["discriminator"] = Stub(lambda x: x.flatten(1).sum(1))
    model.players["code_discriminator"] = Stub(lambda z: z.sum(1) - 1)
    return model


# two 1x2x2 images; E(x) = [[0.5, -0.5], [-1, 0.25]], x_hat = constant 0 and constant -0.375
X = torch.tensor([[0.5, -0.5, 1.0, 0.0], [-1.0, 0.25, 0.75, -0.25]]).view(2, 1, 2, 2)
L1_MEAN = (2.0 / 4 + 2.5 / 4) / 2  # per-pixel mean |x - x_hat|: 0.5 and 0.625
L1_SUM = (2.0 + 2.5) / 2
CODE_LOGITS = (-1.0, -1.75)  # C(z_hat)
REC_LOGITS = (0.0, -1.5)  # D(x_hat) = 4 * mean(z_hat)
REAL_LOGITS = (1.0, -0.25)  # D(x)


def prior_draw(seed: int) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(2, 2)


@pytest.mark.parametrize("name", ["vgh", "vgh_plus"])
def test_encoder_loss_eq14_by_hand(name):
    model = stub_model(name, encoder_recon_weight=5.0, generator_recon_weight=2.0)
    out = model.phase_loss("encoder", X, step=0)
    r_c = -sum(CODE_LOGITS) / 2  # R_C = -log C + log(1 - C) = -logit
    assert out.loss.item() == pytest.approx(5.0 * L1_MEAN + r_c)  # 4.1875: the encoder's own lambda
    assert out.logs["recon"].item() == pytest.approx(0.5625)


@pytest.mark.parametrize("name", ["vgh", "vgh_plus"])
def test_encoder_data_adversarial_adds_exactly_r_d_of_the_reconstruction(name):
    """App. F / section 5.1 reading: the encoder's loss gains R_D(x_hat) = -mean D(x_hat) (weight 1, App. K), and
    its gradient reaches the encoder through z_hat."""
    plain = stub_model(name, encoder_recon_weight=5.0).phase_loss("encoder", X, 0)
    model = stub_model(name, encoder_recon_weight=5.0, encoder_data_adversarial=True)
    out = model.phase_loss("encoder", X, 0)
    r_rec = -sum(REC_LOGITS) / 2  # 0.75
    assert out.loss.item() == pytest.approx(plain.loss.item() + r_rec)  # 4.9375
    assert out.logs["adv_rec"].item() == pytest.approx(r_rec) and "adv_rec" not in plain.logs
    # E's unit scale s: D(x_hat) = 4 s mean(E(x)), so the extra term adds -mean(D(x_hat)) / s = 0.75 to dloss/ds
    (grad,) = torch.autograd.grad(out.loss, model.players["encoder"].scale)
    base = stub_model(name, encoder_recon_weight=5.0)
    (base_grad,) = torch.autograd.grad(base.phase_loss("encoder", X, 0).loss, base.players["encoder"].scale)
    assert grad.item() - base_grad.item() == pytest.approx(r_rec)


def test_generator_loss_by_hand_vgh_and_vgh_plus():
    vgh = stub_model("vgh", encoder_recon_weight=5.0, generator_recon_weight=2.0)
    r_rec = -sum(REC_LOGITS) / 2
    assert vgh.phase_loss("generator", X, 0).loss.item() == pytest.approx(2.0 * L1_MEAN + r_rec)  # 1.875

    plus = stub_model("vgh_plus", encoder_recon_weight=5.0, generator_recon_weight=2.0)
    torch.manual_seed(3)
    out = plus.phase_loss("generator", X, 0)
    z = prior_draw(3)
    r_gen = -(4 * z.mean(1)).mean().item()  # R_D(G(z)), D(G(z)) = 4 mean(z)
    assert out.loss.item() == pytest.approx(2.0 * L1_MEAN + r_rec + r_gen, abs=1e-6)
    assert out.logs["adv_gen"].item() == pytest.approx(r_gen, abs=1e-6)


def test_data_discriminator_eq8_and_eq9_by_hand():
    real = sum(softplus(-v) for v in REAL_LOGITS) / 2  # -log D(x)
    rec = sum(softplus(v) for v in REC_LOGITS) / 2  # -log(1 - D(x_hat))
    assert stub_model("vgh").phase_loss("disc", X, 0).loss.item() == pytest.approx(real + rec)  # eq. 8

    plus = stub_model("vgh_plus")
    torch.manual_seed(4)
    out = plus.phase_loss("disc", X, 0)
    gen = sum(softplus(4 * v) for v in prior_draw(4).mean(1).tolist()) / 2  # -log(1 - D(G(z)))
    assert out.loss.item() == pytest.approx(real + rec + gen, abs=1e-6)  # eq. 9
    doubled = stub_model("vgh_plus", disc_real_weight=2.0)  # Algorithm 5's exact form, "-2 log D(x)"
    torch.manual_seed(4)
    assert doubled.phase_loss("disc", X, 0).loss.item() == pytest.approx(2 * real + rec + gen, abs=1e-6)


@pytest.mark.parametrize("name", ["vgh", "vgh_plus"])
def test_code_discriminator_eq15_by_hand(name):
    model = stub_model(name)
    torch.manual_seed(5)
    out = model.phase_loss("code_disc", X, 0)
    prior = sum(softplus(-(v - 1)) for v in prior_draw(5).sum(1).tolist()) / 2  # -log C(z), z ~ p(z): real
    code = sum(softplus(v) for v in CODE_LOGITS) / 2  # -log(1 - C(z_hat)): encoder codes fake
    assert out.loss.item() == pytest.approx(prior + code, abs=1e-6)


def test_sum_reduction_and_nonsaturating_alternatives():
    model = stub_model("vgh", recon_reduction="sum", generator_loss="nonsaturating", encoder_recon_weight=1.0)
    ns = sum(softplus(-v) for v in CODE_LOGITS) / 2  # -log C(z_hat) instead of -logit
    assert model.phase_loss("encoder", X, 0).loss.item() == pytest.approx(L1_SUM + ns)


def test_gaussian_posterior_is_reparameterised():
    model = create_model("vgh", **TINY, posterior="gaussian")
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    h = model.players["encoder"](x)
    assert h.shape == (3, 4)  # mean and log-variance of 2 latents
    mu, logvar = model.posterior(x)
    torch.testing.assert_close(torch.cat([mu, logvar], 1), h)
    torch.manual_seed(0)
    z = model.sample_posterior(x)
    torch.manual_seed(0)
    torch.testing.assert_close(z, mu + torch.randn_like(mu) * (0.5 * logvar).exp())
    deterministic = create_model("vgh", **TINY).eval()
    mu, logvar = deterministic.posterior(x)
    assert logvar is None and torch.equal(deterministic.sample_posterior(x), mu)
    with torch.no_grad():  # reconstructions decode E(x); samples decode prior draws
        torch.testing.assert_close(deterministic.reconstruct(x), deterministic.players["generator"](mu))
        z = torch.randn(4, 2, generator=torch.Generator().manual_seed(9))
        torch.testing.assert_close(deterministic.sample(4, generator=torch.Generator().manual_seed(9)),
                                   deterministic.players["generator"](z))
    with pytest.raises(ValueError, match="encoder_recon_weight must be >= 0"):
        create_model("vgh", **TINY, encoder_recon_weight=-1.0)


def test_phase_order_is_algorithm_5():
    model = create_model("vgh_plus", **TINY)
    assert [p.name for p in model.phases()] == ["encoder", "generator", "disc", "code_disc"]
    optim = model.default_optim(model.config)
    assert {k: v.players for k, v in optim.items()} == {
        "encoder": ["encoder"], "generator": ["generator"], "disc": ["discriminator"],
        "code_disc": ["code_discriminator"]}
    assert all(v.betas == (0.5, 0.9) for v in optim.values())


def test_vgh_plus_color_mnist_reconstruction_improves(shared_data, one_thread):
    """VGH++ on the shared color_mnist learns to reconstruct: the test l1 error falls below 0.6 of the untrained
    model's within 480 steps (seen: 0.58 of it after 120 steps on torch 2.4-2.13, 0.65 on 2.14.1, so the test trains
    until the criterion holds, checking every 60 steps, instead of asserting one build's value at step 120)."""
    recipe = load_recipe({
        "model": {"name": "vgh_plus", "backbone": "rosca_mnist", "channels": 3, "latent_dim": 16, "width": 16,
                  "code_disc_hidden": 128, "encoder_recon_weight": 10.0, "generator_recon_weight": 10.0},
        "data": {"name": "color_mnist", "root": str(shared_data), "batch_size": 32, "options": {"limit": 4096}},
        "optim": {k: {"lr": 1e-3} for k in ("encoder", "generator", "disc", "code_disc")},
        "train": {"max_steps": 480, "progress": False, "tensorboard": False, "log_every": 40},
    })
    torch.manual_seed(0)
    model = build_model(recipe)
    test = to_model_range(load_dataset("color_mnist", "test", shared_data, limit=256).as_uint8_tensor())

    def test_l1() -> float:
        model.eval()
        with torch.no_grad():
            value = (model.reconstruct(test) - test).abs().mean().item()
        model.train()
        return value

    before = test_l1()
    assert before > 0.5  # an untrained generator: about the mean |x| of mostly-black images in [-1, 1]
    steps, after = train_until(Trainer(model, recipe), test_l1, lambda v: v < 0.6 * before, every=60, max_steps=480)
    print(f"VGH++ color_mnist test l1 before {before:.3f}, after {steps} steps {after:.3f}")
    assert after < 0.6 * before, (before, steps, after)
