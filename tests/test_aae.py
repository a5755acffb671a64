"""AAE: the three Makhzani phases against hand-computed losses, the VAE encoder API, and a short color_mnist run."""
from __future__ import annotations

import pytest
import torch

from stubs import Affine, affine, bernoulli_nll, mean, rows, softplus
from zoo import create_model, load_recipe
from zoo.data import load_dataset
from zoo.data.stream import to_model_range
from zoo.losses.likelihoods import VisibleDistribution
from zoo.nn.decoder import Decoder
from zoo.training import Trainer

# x in [-1, 1], two 1x2x2 images; codes of size 2
X = torch.tensor([[-1.0, 1.0, 0.0, 1.0], [1.0, -1.0, 1.0, 0.5]]).view(2, 1, 2, 2)
ENC_W = [[0.5, 0, 0, 0], [0, 0.5, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
ENC_B = [0.0, 0.1, -80.0, -80.0]  # log-variance -80: z = mu to float precision, so the losses are deterministic
DEC_W, DEC_B = [[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [-1.0, 0.5]], [0.0, 0.2, -0.1, 0.0]
CODE_W, CODE_B = [[2.0, -1.0]], [0.25]


def stubbed_aae():
    model = create_model("aae", channels=1, latent_dim=2, width=8, code_disc_hidden=8)
    model.players["encoder"] = Affine(ENC_W, ENC_B)
    model.players["decoder"] = Decoder(Affine(DEC_W, DEC_B, out_shape=(1, 2, 2)), VisibleDistribution("bernoulli", 1))
    model.players["code_discriminator"] = Affine(CODE_W, CODE_B)
    return model


def hand_codes() -> list[list[float]]:
    return [affine(ENC_W, ENC_B, x)[:2] for x in rows(X)]  # posterior means


def code_logit(z: list[float]) -> float:
    return affine(CODE_W, CODE_B, z)[0]


def test_phases_and_optimizers_follow_makhzani_and_table_3():
    model = create_model("aae", channels=1, latent_dim=2, width=8, code_disc_hidden=8)
    assert [(p.name, p.optimizer, p.players) for p in model.phases()] == [
        ("recon", "autoencoder", ()), ("code_disc", "code_disc", ()), ("enc_adv", "autoencoder", ("encoder",))]
    optim = model.default_optim(model.config)
    assert optim["autoencoder"].players == ["encoder", "decoder"] and optim["code_disc"].players == ["code_discriminator"]
    assert optim["autoencoder"].lr in (1e-3, 5e-4, 5e-3) and optim["code_disc"].lr in (5e-4, 5e-5, 1e-5)
    assert optim["autoencoder"].betas == (0.5, 0.9)


def test_reconstruction_loss_by_hand():
    out = stubbed_aae().phase_loss("recon", X, step=0)
    x01 = rows((X + 1) / 2)
    expected = mean([bernoulli_nll(x, affine(DEC_W, DEC_B, z)) for x, z in zip(x01, hand_codes())])
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)  # -log p(x|z), no KL and no weight


def test_code_discriminator_loss_by_hand_prior_is_real():
    model = stubbed_aae()
    out = model.phase_loss("code_disc", X, step=0)
    (z_prior,), (z_codes,) = model.players["code_discriminator"].calls
    torch.testing.assert_close(z_codes, torch.tensor(hand_codes()))
    assert z_prior.shape == (2, 2) and not torch.allclose(z_prior, z_codes)
    expected = mean([softplus(-code_logit(z)) for z in z_prior.tolist()]) + \
        mean([softplus(code_logit(z)) for z in hand_codes()])  # -log C(z_p) - log(1 - C(z_q)), Rosca eq. 15
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_encoder_adversarial_loss_is_non_saturating():
    out = stubbed_aae().phase_loss("enc_adv", X, step=0)
    expected = mean([softplus(-code_logit(z)) for z in hand_codes()])  # -log C(z_q)
    assert out.loss.item() == pytest.approx(expected, rel=1e-6)


def test_encoder_api_is_the_gaussian_posterior():
    torch.manual_seed(0)
    model = create_model("aae", channels=1, latent_dim=4, width=8, code_disc_hidden=8).eval()
    x = torch.rand(3, 1, 28, 28) * 2 - 1
    with torch.no_grad():
        mu, logvar = model.posterior(x)
        assert mu.shape == logvar.shape == (3, 4)
        torch.testing.assert_close(model.encode(x), mu)
        torch.testing.assert_close(model.reconstruct(x), model.decode(mu))
        torch.testing.assert_close(model.log_px_given_z(x, mu), -torch.nn.functional.binary_cross_entropy_with_logits(
            model.players["decoder"](mu), (x + 1) / 2, reduction="none").flatten(1).sum(1))


def test_aae_color_mnist_reconstruction_improves(shared_data, one_thread):
    recipe = load_recipe({
        "model": {"name": "aae", "channels": 3, "latent_dim": 32, "width": 32, "code_disc_hidden": 64},
        "data": {"name": "color_mnist", "root": str(shared_data), "batch_size": 32},
        "optim": {"autoencoder": {"lr": 3e-3}},
        "train": {"max_steps": 250, "progress": False, "tensorboard": False, "log_every": 50},
    })
    torch.manual_seed(0)
    model = create_model(recipe)
    test = to_model_range(load_dataset("color_mnist", "test", shared_data, limit=500).as_uint8_tensor())

    def errors() -> tuple[float, float]:
        """Mean squared reconstruction error, and the same when decoding another example's code."""
        model.eval()
        with torch.no_grad():
            z = model.encode(test)
            own, other = model.decode(z), model.decode(z.roll(1, 0))
        model.train()
        return ((own - test) ** 2).mean().item(), ((other - test) ** 2).mean().item()

    before, _ = errors()
    Trainer(model, recipe).train()
    after, shuffled = errors()
    mean_image = ((test - test.mean(0)) ** 2).mean().item()
    print(f"AAE color_mnist MSE before {before:.3f}, after 250 steps {after:.3f}; mean image {mean_image:.3f}, "
          f"decoding another example's code {shuffled:.3f}")
    assert after < 0.3 * before, (before, after)  # untrained: about 0.9
    assert after < 0.9 * mean_image, (after, mean_image)  # better than the best constant image
    assert after < 0.8 * shuffled, (after, shuffled)  # the code carries the example
