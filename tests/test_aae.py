"""AAE: the three Makhzani phases against hand-computed losses, the VAE encoder API, and a short color_mnist run."""
from __future__ import annotations

import pytest
import torch

from conftest import RandomImages
from stubs import Affine, affine, bernoulli_nll, mean, rows, softplus
from zoo import build_model, create_model, load_recipe
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
    assert [(p.name, p.optimizer, p.players, p.own_state) for p in model.phases()] == [
        ("recon", "autoencoder", (), False), ("code_disc", "code_disc", (), False),
        ("enc_adv", "autoencoder", ("encoder",), True)]  # Makhzani's regularization phase: its own Adam state
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


def test_encoder_phases_step_separate_adam_states_by_default_and_one_in_the_shared_reading():
    """Makhzani's reconstruction and regularization phases: the encoder's adversarial step has its own Adam moments
    (`autoencoder/enc_adv`, same Table 3 rate), so after one recon and one enc_adv step each state holds exactly one
    phase's gradient: m = (1 - beta1) g. The shared reading mixes both gradients into one state (step count 2)."""
    def tiny(state: str):
        return load_recipe({"model": {"name": "aae", "channels": 1, "latent_dim": 2, "width": 8, "code_disc_hidden": 8,
                                      "encoder_adv_state": state},
                            "data": {"batch_size": 4}, "train": {"progress": False, "tensorboard": False}})

    recipe = tiny("own")
    torch.manual_seed(0)
    trainer = Trainer(build_model(recipe), recipe, dataset=RandomImages(16, (1, 28, 28)))
    assert set(trainer.optimizers) == {"autoencoder", "code_disc", "autoencoder/enc_adv"}
    own = trainer.optimizers["autoencoder/enc_adv"]
    assert own.defaults["lr"] == recipe.optim["autoencoder"].lr and own.defaults["betas"] == (0.5, 0.9)
    encoder = list(trainer.players["encoder"].parameters())
    assert [p for g in own.param_groups for p in g["params"]] == encoder  # the encoder alone
    recon, _, enc_adv = trainer.phases
    grads = {}
    for phase in (recon, enc_adv):
        trainer.run_phase(phase, trainer.stream.next(), 0)
        grads[phase.name] = [p.grad.clone() for p in encoder]
    shared = trainer.optimizers["autoencoder"].state
    for i, p in enumerate(encoder):
        assert shared[p]["step"].item() == 1 and own.state[p]["step"].item() == 1
        torch.testing.assert_close(shared[p]["exp_avg"], 0.5 * grads["recon"][i])  # beta1 = 0.5
        torch.testing.assert_close(own.state[p]["exp_avg"], 0.5 * grads["enc_adv"][i])
    assert not all(torch.allclose(a, b) for a, b in zip(grads["recon"], grads["enc_adv"]))

    shared_recipe = tiny("shared")
    trainer = Trainer(build_model(shared_recipe), shared_recipe, dataset=RandomImages(16, (1, 28, 28)))
    assert set(trainer.optimizers) == {"autoencoder", "code_disc"}
    for phase in trainer.phases[::2]:
        trainer.run_phase(phase, trainer.stream.next(), 0)
    assert all(trainer.optimizers["autoencoder"].state[p]["step"].item() == 2
               for p in trainer.players["encoder"].parameters())


@pytest.mark.parametrize("state", ["own", pytest.param("shared", marks=pytest.mark.slow)])
def test_aae_color_mnist_reconstructs_and_keeps_the_code_game_balanced(state, shared_data, one_thread):
    """250 steps at Table 3 rates (autoencoder 1e-3, code discriminator 5e-4), small networks. With its own Adam state
    (default) the encoder's adversarial step keeps C(q) at chance (seen: C(q) 0.52, C(p) 0.49; reconstruction MSE 0.90
    -> 0.25, shuffled codes 0.31, best constant image 0.27); with the reconstruction's state (shared) C wins
    (C(q) 0.19, C(p) 0.79; MSE 0.23)."""
    recipe = load_recipe({
        "model": {"name": "aae", "channels": 3, "latent_dim": 32, "width": 32, "code_disc_hidden": 64,
                  "encoder_adv_state": state},
        "data": {"name": "color_mnist", "root": str(shared_data), "batch_size": 32},
        "optim": {"autoencoder": {"lr": 1e-3}, "code_disc": {"lr": 5e-4}},
        "train": {"max_steps": 250, "progress": False, "tensorboard": False, "log_every": 50},
    })
    torch.manual_seed(0)
    model = build_model(recipe)
    test = to_model_range(load_dataset("color_mnist", "test", shared_data, limit=500).as_uint8_tensor())

    def evaluate() -> tuple[float, float, float, float]:
        """Reconstruction MSE, the same decoding another example's code, and mean C on q codes and prior codes."""
        model.eval()
        with torch.no_grad():
            z = model.encode(test)
            own, other = model.decode(z), model.decode(z.roll(1, 0))
            c = model.players["code_discriminator"]
            c_q, c_p = torch.sigmoid(c(z)).mean().item(), torch.sigmoid(c(torch.randn_like(z))).mean().item()
        model.train()
        return ((own - test) ** 2).mean().item(), ((other - test) ** 2).mean().item(), c_q, c_p

    before = evaluate()[0]
    Trainer(model, recipe).train()
    after, shuffled, c_q, c_p = evaluate()
    mean_image = ((test - test.mean(0)) ** 2).mean().item()
    print(f"AAE ({state} state) color_mnist MSE before {before:.3f}, after 250 steps {after:.3f}; mean image "
          f"{mean_image:.3f}, another example's code {shuffled:.3f}; C(q) {c_q:.3f}, C(p) {c_p:.3f}")
    assert after < 0.3 * before, (before, after)  # untrained: about 0.9
    assert after < mean_image, (after, mean_image)  # better than the best constant image
    assert after < 0.9 * shuffled, (after, shuffled)  # the code carries the example
    if state == "own":  # balanced: C cannot tell q(z) from p(z) (collapsed would be C(q) near 0)
        assert c_q > 0.35 and abs(c_q - c_p) < 0.15, (c_q, c_p)
    else:  # the regularization phase's steps are damped by the reconstruction's second moments: C wins
        assert c_q < 0.3 and c_p - c_q > 0.4, (c_q, c_p)
